"""Resume: a run stopped anywhere and resumed ends where the uninterrupted run ends."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

import zoo
from inference import fit
from inference.checkpoint import load_training_state, save_training_state


def problem(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 6 - 3
    y = torch.sin(x[:, 0]) + 0.2 * torch.randn(n, generator=g)
    return x, y


# latent weights (the BNN samples in every step), a schedule, early stopping state
CASES = [
    ("regression", {"hidden": 8}, {"schedule": "onecycle"}),
    ("bnn", {"hidden": 8}, {"schedule": "cosine", "num_particles": 2}),
]


def stop_after(steps: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= steps

    return should_stop


@pytest.mark.parametrize(("name", "config", "opts"), CASES)
@pytest.mark.parametrize("stop_step", [9, 7])  # 3 steps per epoch: an epoch's end, its middle
def test_resumed_run_ends_where_the_straight_run_ends(name, config, opts, stop_step, tmp_path):
    x, y = problem()
    xv, yv = problem(48, seed=1)
    common = dict(epochs=6, batch_size=32, lr=1e-2, seed=3, quiet=True, patience=50, **opts)

    def build():
        torch.manual_seed(0)
        return zoo.build(name, **config)

    straight = build()
    h_straight = fit(straight, (x, y), (xv, yv), **common)

    first = build()
    h1 = fit(first, (x, y), (xv, yv), should_stop=stop_after(stop_step),
             checkpoint=lambda s: save_training_state(tmp_path, s), **common)  # fmt: skip
    assert h1.stopped == "interrupted" and len(h1.rows) == stop_step // 3
    state = load_training_state(tmp_path)
    assert (state["epoch"], state["step"]) == (stop_step // 3 + 1, stop_step % 3)
    # the outer RNGs are scrambled on purpose: the checkpoint holds their states
    torch.manual_seed(999), random.seed(999), np.random.seed(999)  # noqa: NPY002
    resumed = build()
    h2 = fit(resumed, (x, y), (xv, yv), resume=tmp_path, **common)
    assert h2.stopped == h_straight.stopped
    assert [r["epoch"] for r in h2.rows] == [r["epoch"] for r in h_straight.rows]
    for a, b in zip(h2.rows, h_straight.rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["lr"] == pytest.approx(b["lr"])
    want, got = straight.state_dict(), resumed.state_dict()
    assert set(want) == set(got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-7)


def test_resume_refuses_other_options_data_or_model(tmp_path):
    x, y = problem()
    fit(zoo.build("regression", hidden=8), (x, y), epochs=2, seed=0, quiet=True,
        checkpoint=lambda s: save_training_state(tmp_path, s))  # fmt: skip
    with pytest.raises(zoo.ConfigError, match="options: lr: 0.003 in the checkpoint, 0.1 now"):
        fit(zoo.build("regression", hidden=8), (x, y), epochs=2, seed=0, lr=0.1,
            resume=tmp_path)  # fmt: skip
    with pytest.raises(zoo.DataError, match="cannot resume on other training data: x_shape"):
        fit(zoo.build("regression", hidden=8), (x[:50], y[:50]), epochs=2, seed=0,
            resume=tmp_path)  # fmt: skip
    with pytest.raises(zoo.CheckpointError, match="cannot resume another model: config"):
        fit(zoo.build("regression", hidden=8, likelihood="laplace"), (x, y), epochs=2,
            seed=0, resume=tmp_path)  # fmt: skip
    (tmp_path / "train_state.pt").write_bytes(b"torn")
    with pytest.raises(zoo.CheckpointError, match="train_state.pt cannot be read"):
        load_training_state(tmp_path)


@pytest.mark.parametrize("batch_size", [32, 1024])
def test_a_resumed_fit_with_dropout_draws_the_masks_of_the_straight_run(
    batch_size, tmp_path, device
):
    # a 2-layer LSTM forecaster (dropout between its layers) over 98 windows in batches of
    # 32 (the last batch of each epoch is partial, a structure the resumed fit checks anew) or
    # in one batch (the data plate's indices then live on the CPU, the masks on the device)
    from inference.forecasting import validation_windows
    from zoo.datasets import SeriesData

    t = torch.arange(64, dtype=torch.float32)
    values = torch.stack([5 + torch.sin(t * math.pi / 2), 7 + torch.cos(t * math.pi / 2)])
    values = values + 0.1 * torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    series = SeriesData(
        "toy", values, period=4, freq="M", horizon=3, kind="continuous", names=["a", "b"],
        time=np.datetime64("2000-01", "M") + np.arange(64),
    )  # fmt: skip
    config = {**zoo.MODELS["forecast"].tiny_config, "period": 4, "layers": 2, "dropout": 0.3}

    def build():
        torch.manual_seed(0)
        return zoo.build("forecast", **config)

    x, y, val = validation_windows(build(), series)
    assert len(x) % 32 != 0 and len(x) < 1024
    common = dict(epochs=3, batch_size=batch_size, lr=1e-2, seed=3, quiet=True, patience=None,
                  device=str(device))  # fmt: skip
    straight = build()
    h_straight = fit(straight, (x, y), val, **common)
    first = build()
    # 4 steps per epoch in batches of 32 (stopped inside epoch 2), 1 in one batch (after it)
    fit(first, (x, y), val, should_stop=stop_after(6 if batch_size == 32 else 2),
        checkpoint=lambda s: save_training_state(tmp_path, s), **common)  # fmt: skip
    assert load_training_state(tmp_path)["epoch"] == (2 if batch_size == 32 else 3)
    torch.manual_seed(999)
    resumed = build()
    h2 = fit(resumed, (x, y), val, resume=tmp_path, **common)
    assert [r["loss"] for r in h2.rows] == [r["loss"] for r in h_straight.rows]
    assert [r["val"] for r in h2.rows] == [r["val"] for r in h_straight.rows]
    for k, v in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[k].cpu(), v.cpu()), k
