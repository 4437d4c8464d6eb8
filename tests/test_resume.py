"""Resume: a run stopped anywhere and resumed ends where the uninterrupted run ends."""

from __future__ import annotations

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
