"""The shared SVI trainer: reproducibility, early stopping, divergence, devices."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

import zoo
from inference import FitConfig, TrainingDiverged, fit, resolve_device
from inference.device import DeviceError


def small_problem(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 6 - 3
    y = torch.sin(x[:, 0]) + 0.1 * (1 + x[:, 0].abs()) * torch.randn(n, generator=g)
    return x, y


def test_same_seed_same_weights_different_seed_different_weights():
    x, y = small_problem()
    states = []
    for seed in (5, 5, 6):
        torch.manual_seed(123)  # the fit seed must win over any outer state
        model = zoo.build("regression", hidden=16)
        fit(model, (x, y), epochs=3, batch_size=64, seed=seed, quiet=True)
        states.append(model.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=0)
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_training_improves_and_early_stopping_restores_the_best_weights():
    x, y = small_problem(512)
    xv, yv = small_problem(256, seed=1)
    model = zoo.build("regression", hidden=32)
    before = model.val_score(xv, yv)
    history = fit(model, (x, y), (xv, yv), epochs=400, lr=1e-2, patience=5, quiet=True)
    assert history.stopped == "early_stopping"
    assert len(history.rows) < 400
    assert history.best_val == min(history.column("val"))
    with torch.no_grad():
        assert model.val_score(xv, yv) == pytest.approx(history.best_val, abs=1e-5)
    assert history.best_val < before - 0.5


def test_on_improve_is_called_with_the_improving_rows():
    x, y = small_problem()
    seen = []
    history = fit(
        zoo.build("mse", hidden=8),
        (x, y),
        (x, y),
        epochs=5,
        quiet=True,
        on_improve=lambda m, row: seen.append(row["epoch"]),
    )
    assert seen and seen[-1] == history.best_epoch


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state():
    x, y = small_problem()
    model = zoo.build("regression", hidden=8)
    calls = {"n": 0}

    class Poison(torch.nn.Module):
        def forward(self, h):
            calls["n"] += 1
            return h * (math.nan if calls["n"] > 8 else 1.0)

    model.net.append(Poison())
    saved = {}
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch \d+, step \d+"):
        fit(
            model,
            (x, y),
            (x, y),
            epochs=20,
            batch_size=64,
            quiet=True,
            on_improve=lambda m, row: saved.update(epoch=row["epoch"]),
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert saved, "the improving epochs before the failure were checkpointed"


def test_schedules_and_elbo_variants_run():
    x, y = small_problem(128)
    for opts in (
        {"schedule": "onecycle"},
        {"schedule": "cosine"},
        {"elbo": "meanfield"},
        {"num_particles": 3},
    ):
        model = zoo.build("regression", hidden=8)
        history = fit(model, (x, y), epochs=2, quiet=True, **opts)
        assert all(math.isfinite(r["loss"]) for r in history.rows), opts


def test_fit_config_errors_name_the_key():
    x, y = small_problem(32)
    with pytest.raises(zoo.ConfigError, match="unknown config key 'epoch' for FitConfig"):
        fit(zoo.build("mse"), (x, y), epoch=3)
    with pytest.raises(zoo.ConfigError, match="FitConfig.schedule must be one of"):
        fit(zoo.build("mse"), (x, y), FitConfig(), schedule="linear")


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
            resolve_device("cuda:0")


def test_fit_on_the_requested_device(device):
    x, y = small_problem(64)
    model = zoo.build("regression", hidden=8)
    fit(model, (x, y), epochs=1, quiet=True, device=str(device))
    assert all(p.device.type == device.type for p in model.parameters())


def test_each_training_step_and_only_it_scales_the_batch_to_the_training_set():
    # a batch stands for the whole training set inside a step (zoo.base.data_size), so the
    # plate "data" each step opens has size 40 over its subsample; after fit it is unscaled
    model = zoo.build("mdn", hidden=8, components=2)
    seen: list[tuple[int, int]] = []

    def spy(module, args):
        with pyro.poutine.block():  # the plate's own subsample site stays out of the ELBO
            plate = module.data_plate(args[0])
        seen.append((plate.size, plate.subsample_size))

    handle = model.register_forward_pre_hook(spy)
    x, y = torch.randn(40, 1), torch.randn(40)
    fit(model, (x, y), epochs=1, batch_size=16, quiet=True, device="cpu", patience=None)
    assert seen == [(40, 16), (40, 16), (40, 16), (40, 8)]  # warm-up call, then 3 steps
    seen.clear()
    model(x[:20], y[:20])
    assert seen == [(20, 20)]
    handle.remove()


def test_data_size_is_scoped_and_checked():
    from zoo.base import data_size

    model = zoo.build("mdn", hidden=8, components=2)
    x = torch.randn(4, 1)
    with data_size(12):
        assert model.data_plate(x).size == 12
        with data_size(None):  # an inner block can turn scaling off
            assert model.data_plate(x).size == 4
        assert model.data_plate(x).size == 12
    assert model.data_plate(x).size == 4
    with pytest.raises(ValueError, match="num_data must be >= 1"):
        with data_size(0):
            pass
