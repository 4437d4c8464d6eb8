"""The mixture density network: mixture algebra, known answers, stability, metrics, study CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import Predictive

import zoo
from inference import evaluate, fit
from inference.metrics import crps_samples
from zoo.likelihoods import Normal
from zoo.mdn import GaussianMixture

ROOT = Path(__file__).resolve().parent.parent


def test_weights_sum_to_one_and_shapes():
    model = zoo.build("mdn", components=4, target_dim=2, input_dim=3)
    w, loc, scale = model.mixture(torch.randn(7, 3))
    assert w.shape == (7, 4) and loc.shape == scale.shape == (7, 4, 2)
    torch.testing.assert_close(w.sum(-1), torch.ones(7))
    assert (w > 0).all() and (scale >= model.config.min_scale).all()


@pytest.mark.parametrize("components", [1, 3])
def test_density_integrates_to_one_over_y(components):
    torch.manual_seed(0)
    model = zoo.build("mdn", components=components).double()
    x = torch.tensor([[-3.0], [0.0], [2.5]], dtype=torch.float64)
    ys = torch.linspace(-40, 40, 80_001, dtype=torch.float64)
    with torch.no_grad():
        density = model.predictive_distribution(x).log_prob(ys[:, None]).exp()  # [Y, 3]
    integral = torch.trapezoid(density, ys, dim=0)
    torch.testing.assert_close(integral, torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_one_component_equals_a_normal_regression_given_the_same_outputs():
    out = torch.randn(50, 2)  # loc, raw scale
    y = torch.randn(50) * 2
    normal = Normal()(out)
    logit = torch.randn(50, 1)  # any logit: one component has weight 1
    mixture = GaussianMixture(components=1, min_scale=1e-4)(torch.cat([logit, out], -1))
    torch.testing.assert_close(mixture.log_prob(y), normal.log_prob(y))
    torch.testing.assert_close(mixture.mean, normal.mean)
    torch.testing.assert_close(mixture.stddev, normal.stddev)


def test_extreme_inputs_and_outputs_stay_finite():
    model = zoo.build("mdn", components=3)
    x = torch.tensor([[-1e4], [1e4], [0.0], [3.0]])
    y = torch.tensor([1e3, -1e3, 0.0, 1e4])
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, model.guide, x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # saturated outputs: logits of +-1e4 and raw scales of -1e4 (scale at its floor)
    lik = GaussianMixture(components=2, min_scale=1e-3)
    out = torch.tensor([[1e4, -1e4, 0.0, 5.0, -1e4, -1e4]])
    lp = lik(out).log_prob(torch.tensor([0.0]))
    assert torch.isfinite(lp).all()


def test_multivariate_targets_through_predictive():
    model = zoo.build("mdn", target_dim=2, components=3)
    x = torch.randn(5, 1)
    s = Predictive(model, guide=model.guide, num_samples=4)(x)["obs"]
    assert s.shape == (4, 5, 2)
    assert model.predictive_distribution(x).log_prob(s[0]).shape == (5,)


def test_bad_config_and_targets_are_clear_errors():
    with pytest.raises(zoo.ConfigError, match="components must be >= 1"):
        zoo.build("mdn", components=0)
    model = zoo.build("mdn")
    with pytest.raises(ValueError, match="NaN or inf"):
        model.check_data(torch.zeros(3, 1), torch.tensor([0.0, float("nan"), 1.0]))


def test_metrics_use_the_closed_form_mixture_crps():
    data = zoo.datasets.load_toy(seed=1, n_train=300, n_val=100, n_test=400)
    pyro.set_rng_seed(0)
    model = zoo.build("mdn", hidden=16)
    fit(model, data.train, data.val, epochs=5, lr=1e-2, quiet=True)
    m = evaluate(model, data.test, true_log_prob=data.true_log_prob)
    for key in ("nll", "nll_gap", "crps", "rmse", "coverage_90", "ece_quantile"):
        assert torch.isfinite(torch.tensor(m[key])), key
    assert m["nll_kind"] == "exact"
    with torch.no_grad():
        draws = model.predictive_distribution(data.test.x).sample((20_000,))
    sampled = crps_samples(draws, data.test.y).mean()
    assert m["crps"] == pytest.approx(float(sampled), rel=0.01)


def test_learns_the_bimodal_toy_problem():
    data = zoo.datasets.load_toy(seed=0, n_test=5_000)
    pyro.set_rng_seed(0)
    model = zoo.build("mdn")
    fit(model, data.train, data.val, quiet=True, epochs=30)  # and the MDN's default_fit
    with torch.no_grad():
        nll = float(-model.predictive_distribution(data.test.x).log_prob(data.test.y).mean())
    assert nll < 0.7  # a single Gaussian cannot go below 0.955 here (0.61 measured)


def test_study_cli_quick(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "study.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("table.md", "metrics.json", "bands.png", "density.png", "slices.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "table.md").read_text()
    for label in ("MSE", "Gaussian", "Student-t", "MDN", "truth"):
        assert f"| {label} |" in table
    record = json.loads((out / "metrics.json").read_text())
    assert set(record["models"]) == {"MSE", "Gaussian", "Student-t", "MDN"}
    assert {"nll", "nll_gap", "crps", "rmse", "coverage_90", "ece_quantile", "seconds"} <= set(
        record["models"]["MDN"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]  # nothing else written
