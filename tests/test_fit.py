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
    history = fit(
        model, (x, y), (xv, yv), epochs=400, lr=1e-2, patience=5, quiet=True, device="cpu"
    )
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


def test_fit_merges_the_models_default_fit():
    x, y = small_problem(64)
    bnn = zoo.build("bnn", hidden=4)
    history = fit(bnn, (x, y), (x, y), epochs=1, quiet=True)
    assert history.config.elbo == "meanfield" == zoo.BNN.default_fit["elbo"]
    assert history.config.patience is None and history.config.lr == zoo.BNN.default_fit["lr"]
    # an explicit FitConfig is used as it is, overrides on top of either
    history = fit(zoo.build("bnn", hidden=4), (x, y), config=FitConfig(epochs=1), quiet=True)
    assert history.config.elbo == "trace" and history.config.patience == 20


def test_without_a_seed_fit_leaves_the_rng_to_the_caller():
    x, y = small_problem(64)
    weights, after = [], []
    for outer in (7, 7, 8):
        torch.manual_seed(0)
        model = zoo.build("regression", hidden=8)  # the same initial weights each time
        torch.manual_seed(outer)
        fit(model, (x, y), epochs=2, batch_size=32, quiet=True)  # seed=None: not reseeded
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        after.append(torch.rand(1))
    assert torch.equal(weights[0], weights[1]) and torch.equal(after[0], after[1])
    assert not torch.equal(weights[0], weights[2]) and not torch.equal(after[0], after[2])


def test_a_value_error_that_is_not_a_divergence_keeps_its_traceback():
    x, y = small_problem(64)
    model = zoo.build("regression", hidden=8)

    class Bug(torch.nn.Module):
        def forward(self, h):
            raise ValueError("a bug in the model, not a NaN")

    model.net.append(Bug())
    with pytest.raises(ValueError, match="a bug in the model"):
        fit(model, (x, y), epochs=1, quiet=True)


def test_a_huge_but_finite_loss_counts_as_divergence():
    x, y = small_problem()
    model = zoo.build("mse", hidden=8)  # one learned noise scale: a loss that can explode
    calls = {"n": 0}

    class Blowup(torch.nn.Module):  # finite but enormous outputs after the first epochs
        def forward(self, h):
            calls["n"] += 1
            return h * (1e6 if calls["n"] > 13 else 1.0)

    model.net.append(Blowup())
    with pytest.raises(TrainingDiverged, match=r"loss exploded to .* at epoch \d+, more than 100"):
        fit(model, (x, y), epochs=20, batch_size=64, quiet=True, clip_norm=None)
    with pytest.raises(zoo.ConfigError, match="explode_factor must be > 0"):
        fit(model, (x, y), explode_factor=0.0)


REFUSED = [
    ({"lr": math.inf}, "lr must be a finite number > 0"),
    ({"lr": math.nan}, "lr must be a finite number > 0"),
    ({"num_particles": 0}, "num_particles must be >= 1"),
    ({"patience": -1}, "patience must be >= 1"),
    ({"patience": 0}, "patience must be >= 1"),
    ({"epochs": 0}, "epochs must be >= 1"),
]


@pytest.mark.parametrize(("opts", "message"), REFUSED)
def test_fit_refuses_options_it_cannot_train_with(opts, message):
    x, y = small_problem(16)
    with pytest.raises(zoo.ConfigError, match=message):
        fit(zoo.build("mse", hidden=4), (x, y), quiet=True, **opts)


def test_fit_refuses_data_it_cannot_train_on():
    x, y = small_problem(16)
    model = zoo.build("regression", hidden=4)
    cases = [
        ((x, None), "supervised .* no targets were given"),
        ((x[:0], y[:0]), "the training split is empty"),
        ((x.double(), y), "x is torch.float64 but the model computes in torch.float32"),
        ((x[:, :, None], y), r"x must have shape \[N, features\]; got \[16, 1, 1\]"),
        ((x, y.to(torch.complex64)), "targets must be real; got torch.complex64"),
        ((x.long(), y), "x must be a float tensor; got torch.int64"),
    ]
    for data, message in cases:
        with pytest.raises(zoo.DataError if "targets must" not in message else ValueError,
                           match=message):  # fmt: skip
            fit(model, data, epochs=1, quiet=True)
