"""Each plot in inference.plots writes a non-empty PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference import metrics as M
from inference import plots as P

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_calibration_curve(tmp_path, gen):
    mu = torch.randn(300, generator=gen, dtype=torch.float64)
    y = mu + 1.5 * torch.randn(300, generator=gen, dtype=torch.float64)
    expected, observed = M.calibration_proportions(torch.distributions.Normal(mu, 1.0), y)
    out = P.calibration_curve(expected, observed, tmp_path / "cal.png")
    assert out == tmp_path / "cal.png" and _is_png(out)


def test_reliability_diagram(tmp_path, gen):
    probs = torch.softmax(2 * torch.randn(500, 3, generator=gen), -1)
    y = torch.randint(0, 3, (500,), generator=gen)
    data = M.reliability_data(probs, y, n_bins=15)  # has empty (NaN) bins at low confidence
    assert _is_png(P.reliability_diagram(data, tmp_path / "rel.png"))


def test_prediction_intervals(tmp_path, gen):
    x = torch.rand(80, generator=gen) * 6 - 3  # unsorted on purpose
    truth = torch.sin(x)
    y = truth + 0.3 * torch.randn(80, generator=gen)
    z50, z90 = 0.674, 1.645
    args = (truth, truth - 0.3 * z50, truth + 0.3 * z50, truth - 0.3 * z90, truth + 0.3 * z90)
    assert _is_png(P.prediction_intervals(x, y, *args, tmp_path / "pi.png"))
    # keyword form (as inference.evaluate calls it), numpy inputs and a str path
    bands = dict(zip(("lower50", "upper50", "lower90", "upper90"), args[1:], strict=True))
    out = P.prediction_intervals(
        x.numpy(), y.numpy(), truth.numpy(), **bands, path=str(tmp_path / "pi2.png"), truth=truth
    )
    assert out == tmp_path / "pi2.png" and _is_png(out)


def test_pit_histogram(tmp_path, gen):
    pit = torch.rand(1000, generator=gen)
    assert _is_png(P.pit_histogram(pit, tmp_path / "pit.png"))


def test_training_curve(tmp_path):
    history = [{"epoch": e, "loss": 100.0 / (e + 1), "val": 2.0 - e / 20} for e in range(20)]
    assert _is_png(P.training_curve(history, tmp_path / "train.png"))
    no_val = [{"epoch": e, "loss": -float(e)} for e in range(5)]
    assert _is_png(P.training_curve(no_val, tmp_path / "train2.png"))


def test_confusion_matrix(tmp_path, gen):
    y_true = torch.randint(0, 4, (200,), generator=gen)
    y_pred = torch.where(torch.rand(200, generator=gen) < 0.7, y_true, torch.randint(0, 4, (200,)))
    assert _is_png(P.confusion_matrix(y_true, y_pred, 4, tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="num_classes"):
        P.confusion_matrix(np.array([0, 5]), np.array([0, 1]), 4, tmp_path / "bad.png")


def test_figures_are_closed(tmp_path):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    P.pit_histogram(np.linspace(0, 1, 50), tmp_path / "a.png")
    P.calibration_curve([0, 0.5, 1], [0, 0.4, 1], tmp_path / "b.png")
    assert len(plt.get_fignums()) == before
