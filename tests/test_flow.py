"""Normalizing flows: exact densities, invertibility, device/dtype moves, checkpoints, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions.transforms import ComposeTransform

import zoo
from inference import fit
from zoo.datasets import load_dataset
from zoo.datasets.density2d import (
    mixture_log_prob,
    mixture_sample,
    moons_log_prob,
    rings_log_prob,
)

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["spline_coupling", "spline_autoregressive", "affine_autoregressive", "affine_coupling",
         "spline"]  # fmt: skip
CONDITIONAL_KINDS = ["spline", "spline_autoregressive", "affine_autoregressive", "affine_coupling"]


def perturbed(model: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Moves every parameter away from its initial value, so no transform is near identity."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g).to(p))
    return model


def flow(kind: str, dim: int = 2, **kw) -> zoo.Flow:
    return perturbed(
        zoo.build("flow", input_dim=dim, transform=kind, num_layers=3, hidden=16, **kw)
    )


def cflow(kind: str, target_dim: int, **kw) -> zoo.ConditionalFlow:
    model = zoo.build("cflow", input_dim=3, target_dim=target_dim, transform=kind, num_layers=2,
                      hidden=16, count_bins=5, **kw)  # fmt: skip
    return perturbed(model)


def grid(lo: float, hi: float, n: int) -> tuple[torch.Tensor, float]:
    """Cell centres of an n x n grid on [lo, hi]^2 (never exactly 0) and the cell area."""
    h = (hi - lo) / n
    c = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    gx, gy = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1), h * h


# --- exact densities ---------------------------------------------------------------------
def test_learned_density_integrates_to_one():
    g = torch.Generator().manual_seed(0)
    train, val = mixture_sample(2000, g), mixture_sample(500, g)
    model = zoo.build("flow", transform="spline_autoregressive", num_layers=2, hidden=16)
    before = float(-model.log_prob(val).mean().detach())
    fit(
        model,
        (train, None),
        (val, None),
        epochs=5,
        batch_size=400,
        lr=1e-2,
        quiet=True,
        device="cpu",
    )
    after = float(-model.log_prob(val).mean().detach())
    assert after < before - 0.3, "brief training should improve the held-out NLL"
    points, area = grid(-7.0, 7.0, 280)
    with torch.no_grad():
        mass = float(model.to(torch.float64).log_prob(points).exp().sum()) * area
    assert mass == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_of_forward_is_identity(kind):
    model = flow(kind, dim=3).to(torch.float64)
    z = torch.randn(50, 3, dtype=torch.float64)
    forward = ComposeTransform(model.distribution().transforms)
    x = forward(z)
    # a second distribution() clears the caches, so the inverse is really computed
    inverse = ComposeTransform(model.distribution().transforms).inv
    assert not torch.allclose(x, z, atol=1e-2)
    torch.testing.assert_close(inverse(x), z, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("kind", CONDITIONAL_KINDS)
def test_conditional_inverse_of_forward_is_identity(kind):
    dim = 1 if kind == "spline" else 2
    model = cflow(kind, dim).to(torch.float64)
    x = torch.randn(40, 3, dtype=torch.float64)
    z = torch.randn(40, dim, dtype=torch.float64)
    t = model.predictive_distribution(x).transforms
    y = ComposeTransform(t)(z)
    back = ComposeTransform(model.predictive_distribution(x).transforms).inv(y)
    torch.testing.assert_close(back.reshape(z.shape), z, atol=1e-8, rtol=1e-6)


def _log_prob_by_change_of_variables(inverse, base_log_prob, x: torch.Tensor, eps=1e-4):
    """log p_base(f^-1(x)) + log |det d f^-1 / dx|, the Jacobian by central differences.

    eps = 1e-4: splines are only C1 at their knots and not exact to float64 round-off, so the
    difference quotient is good to about 1e-4 nats: far below any missing Jacobian term.
    """
    d = x.shape[-1]
    cols = []
    for j in range(d):
        e = torch.zeros(d, dtype=x.dtype)
        e[j] = eps
        cols.append((inverse(x + e) - inverse(x - e)) / (2 * eps))
    jac = torch.stack(cols, -1)  # [N, D, D]
    return base_log_prob(inverse(x)) + torch.linalg.slogdet(jac).logabsdet


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_matches_numerical_change_of_variables(kind):
    model = flow(kind, dim=2, shift=0.5, scale=2.0).to(torch.float64)
    x = 2 * torch.randn(20, 2, dtype=torch.float64)

    def inverse(v):
        return ComposeTransform(model.distribution().transforms).inv(v)

    def base_log_prob(z):
        return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    with torch.no_grad():
        expected = _log_prob_by_change_of_variables(inverse, base_log_prob, x)
        torch.testing.assert_close(model.log_prob(x), expected, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("kind", ["spline", "affine_coupling"])
def test_conditional_log_prob_matches_numerical_change_of_variables(kind):
    dim = 1 if kind == "spline" else 2
    model = cflow(kind, dim).to(torch.float64)
    x = torch.randn(15, 3, dtype=torch.float64)
    y = 2 * torch.randn(15, dim, dtype=torch.float64)
    n01 = torch.distributions.Normal(0.0, 1.0)

    def inverse(v):  # the flow without the final reshape, so y keeps a [N, D] shape
        transforms = model.predictive_distribution(x).transforms[: model.transforms.__len__()]
        return ComposeTransform(transforms).inv(v)

    with torch.no_grad():
        expected = _log_prob_by_change_of_variables(inverse, lambda z: n01.log_prob(z).sum(-1), y)
        got = model.predictive_distribution(x).log_prob(y[:, 0] if dim == 1 else y)
        torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-5)


def test_conditional_flow_event_shapes():
    x = torch.randn(6, 3)
    d1 = zoo.build("cflow", input_dim=3).predictive_distribution(x)
    assert d1.batch_shape == (6,) and d1.event_shape == ()
    d2 = zoo.build("cflow", input_dim=3, target_dim=2, transform="affine_coupling")
    d2 = d2.predictive_distribution(x)
    assert d2.batch_shape == (6,) and d2.event_shape == (2,)
    assert d1.sample((4,)).shape == (4, 6)


# --- devices, dtypes, checkpoints --------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_dtype_and_device_moves_keep_the_density(kind, device):
    model = flow(kind, dim=3)
    x = torch.randn(30, 3)
    with torch.no_grad():
        lp = model.log_prob(x)
        m64 = model.to(torch.float64)
        torch.testing.assert_close(m64.log_prob(x.double()), lp.double(), atol=1e-4, rtol=1e-4)
        assert m64.sample(5).dtype == torch.float64  # sampling inverts MAF layers in float64
        moved = m64.to(device)
        for name, t in [*moved.named_parameters(), *moved.named_buffers()]:
            assert t.device.type == device.type, f"{name} stayed on {t.device}"
        torch.testing.assert_close(moved.log_prob(x.double().to(device)).cpu(), lp.double(),
                                   atol=1e-4, rtol=1e-4)  # fmt: skip
        assert moved.sample(4).device.type == device.type


def test_permutations_and_masks_are_buffers_in_the_state_dict():
    state = zoo.build("flow", input_dim=4, transform="affine_autoregressive").state_dict()
    assert any(k.endswith(".permutation") and ".arn." not in k for k in state)
    assert any(k.endswith(".mask") for k in state)  # MADE masks travel with the weights
    assert "base_loc" in state and "scale" in state


@pytest.mark.parametrize("name", ["flow", "cflow"])
def test_save_load_round_trip(name, tmp_path, device):
    overrides = {"input_dim": 4, "transform": "affine_autoregressive"} if name == "flow" else {}
    model = perturbed(zoo.build(name, **overrides))
    x = torch.randn(16, model.config.input_dim)

    def density(m, dev="cpu"):
        with torch.no_grad():
            if name == "flow":
                return m.log_prob(x.to(dev)).cpu()
            return m.predictive_distribution(x.to(dev)).log_prob(torch.zeros(16, device=dev)).cpu()

    zoo.save(model, tmp_path)
    torch.testing.assert_close(density(zoo.load(tmp_path)), density(model))
    torch.testing.assert_close(density(zoo.load(tmp_path, map_location=device), device),
                               density(model), atol=1e-5, rtol=1e-5)  # fmt: skip


# --- data and configs --------------------------------------------------------------------
@pytest.mark.parametrize("log_prob", [mixture_log_prob, rings_log_prob])
def test_true_densities_integrate_to_one(log_prob):
    points, area = grid(-5.0, 5.0, 500)
    assert float(log_prob(points).exp().sum()) * area == pytest.approx(1.0, abs=1e-3)


def test_moons_quadrature_integrates_to_one():
    points, area = grid(-3.0, 3.0, 150)
    assert float(moons_log_prob(points).exp().sum()) * area == pytest.approx(1.0, abs=2e-3)


def test_density_datasets_are_seeded_and_digits_are_dequantized_levels():
    a, b = (
        load_dataset("gaussian_mixture", n_train=100),
        load_dataset("gaussian_mixture", n_train=100),
    )
    torch.testing.assert_close(a.train.x, b.train.x)
    assert a.task == "density" and a.train.y is None and a.test.x.shape == (20000, 2)
    assert not torch.equal(load_dataset("moons", seed=1).train.x, load_dataset("moons").train.x)
    digits, raw = load_dataset("digits_dequantized"), load_dataset("digits")
    levels = torch.floor(digits.train.x)
    torch.testing.assert_close(levels / 16, raw.train.x)  # the same images and split
    assert float(digits.train.x.min()) >= 0 and float(digits.train.x.max()) < 17
    assert zoo.Flow.data_overrides(digits) == {"input_dim": 64, "shift": 8.5, "scale": 4.25}


def test_scaling_is_counted_in_the_density():
    """The fixed affine map's Jacobian is part of log_prob: densities of x and of 2x differ
    by exactly D log 2."""
    a = zoo.build("flow", transform="affine_coupling")
    b = zoo.build("flow", transform="affine_coupling", scale=2.0)
    b.load_state_dict({**a.state_dict(), "scale": torch.full((2,), 2.0)})
    x = torch.randn(10, 2)
    with torch.no_grad():
        torch.testing.assert_close(b.log_prob(2 * x), a.log_prob(x) - 2 * math.log(2))


def test_bad_configs_and_data_are_clear_errors():
    with pytest.raises(zoo.ConfigError, match="needs input_dim >= 2"):
        zoo.build("flow", input_dim=1, transform="affine_coupling")
    with pytest.raises(zoo.ConfigError, match="transform must be one of"):
        zoo.build("flow", transform="glow")
    with pytest.raises(zoo.ConfigError, match="unknown activation 'swish'"):
        zoo.build("cflow", activation="swish")
    with pytest.raises(zoo.ConfigError, match="needs hidden >= input_dim"):
        zoo.build("flow", input_dim=64, hidden=32, transform="affine_autoregressive")
    model = zoo.build("cflow")
    with pytest.raises(zoo.DataError, match="float"):
        model.check_data(torch.randn(5, 1), torch.arange(5))
    with pytest.raises(zoo.DataError, match="shape"):
        model.check_data(torch.randn(5, 1), torch.randn(5, 2))
    with pytest.raises(zoo.DataError, match="features"):
        zoo.build("flow").check_data(torch.randn(5, 3), None)


# --- the command line --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "dataset", "figures"),
    [
        ("flow", "moons", ["density.png", "samples.png"]),
        # slow: CRPS and coverage pass 1,000 draws per test point through the splines
        pytest.param("cflow", "toy", ["conditional_density.png"], marks=pytest.mark.slow),
    ],
)
def test_cli_smoke_run(tmp_path, model, dataset, figures):
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts/train.py"), "--model", model, "--dataset", dataset,
           "--epochs", "1", "--quiet", "--num-samples", "50", "--out", str(run),
           "--set", "num_layers=2", "hidden=16"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["nll"]) and math.isfinite(metrics["nll_gap"])
    if model == "flow":
        assert metrics["bits_per_dim"] == pytest.approx(metrics["nll"] / (2 * math.log(2)))
    else:
        assert math.isfinite(metrics["crps"])
    for name in figures:
        assert (run / name).stat().st_size > 1000
    assert zoo.load(run).config.num_layers == 2
