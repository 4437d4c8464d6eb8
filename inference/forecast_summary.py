"""Summaries of forecast sample paths (mean, median, intervals, exceedance) and the fan chart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["ForecastSummary", "summarize_paths", "fan_chart"]

LEVELS = (0.5, 0.8, 0.9, 0.95)


@dataclass
class ForecastSummary:
    """What a forecaster is asked, per series and step, from sample paths ``[S, N, H]``.

    Attributes:
        samples: the paths ``[S, N, H]``.
        mean: expected value ``[N, H]``.
        median: ``[N, H]``.
        intervals: level -> ``(lower, upper)``, central intervals ``[N, H]`` each (the
            ``(1 - level) / 2`` and ``(1 + level) / 2`` sample quantiles).

    Example:
        >>> s = summarize_paths(predict(model, x, 500).samples)
        >>> s.mean[0], s.intervals[0.9][0][0], s.intervals[0.9][1][0], s.exceedance(500)[0]
    """

    samples: Tensor
    mean: Tensor
    median: Tensor
    intervals: dict[float, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def exceedance(self, threshold: float | Tensor) -> Tensor:
        """P(y_{t+h} > threshold) per series and step ``[N, H]``: the share of paths above it.

        ``threshold`` is a number or anything broadcastable to ``[N, H]`` (one per series:
        ``[N, 1]``).
        """
        t = torch.as_tensor(threshold, dtype=self.mean.dtype, device=self.mean.device)
        return (self.samples > t).to(self.mean.dtype).mean(0)


def summarize_paths(samples: Tensor, levels: Sequence[float] = LEVELS) -> ForecastSummary:
    """The :class:`ForecastSummary` of sample paths ``[S, N, H]`` (any numeric dtype)."""
    if samples.dim() != 3:
        raise ValueError(f"sample paths must be [S, N, H]; got {list(samples.shape)}")
    bad = [lv for lv in levels if not 0 < lv < 1]
    if bad:
        raise ValueError(f"interval levels must be in (0, 1); got {bad}")
    values = samples if samples.is_floating_point() else samples.double()
    probs = [p for lv in levels for p in ((1 - lv) / 2, (1 + lv) / 2)]
    q = torch.quantile(values, torch.tensor(probs, dtype=values.dtype, device=values.device), 0)
    intervals = {float(lv): (q[2 * i], q[2 * i + 1]) for i, lv in enumerate(levels)}
    return ForecastSummary(values, values.mean(0), values.median(0).values, intervals)


def _np(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def fan_chart(
    history: Tensor,
    summary: ForecastSummary,
    path: str | Path,
    *,
    truth: Tensor | None = None,
    names: Sequence[str] | None = None,
    series: Sequence[int] | None = None,
    max_series: int = 4,
    history_steps: int | None = None,
) -> Path:
    """History, median forecast, 50% and 90% bands and held-out truth, one panel per series.

    Arguments:
        history: observed values ``[N, T]`` before the forecast origin.
        summary: the forecast's :class:`ForecastSummary` (``[N, H]`` each).
        path: the PNG to write.
        truth: held-out values ``[N, H]`` (optional).
        names: one title per series.
        series: which rows to draw (default: the first ``max_series``).
        history_steps: how much history to show (default: four horizons).
    """
    rows = list(series) if series is not None else list(range(min(max_series, len(history))))
    horizon = summary.median.shape[-1]
    keep = history_steps or 4 * horizon
    fig = Figure(figsize=(7, 2.2 * len(rows)))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, i in zip(axes, rows, strict=True):
        past = _np(history[i])[-keep:]
        t_past = np.arange(-len(past), 0)
        t_future = np.arange(horizon)
        ax.plot(t_past, past, color="black", lw=1, label="history")
        for level, alpha in ((0.9, 0.2), (0.5, 0.4)):
            if level in summary.intervals:
                lo, hi = summary.intervals[level]
                ax.fill_between(t_future, _np(lo[i]), _np(hi[i]), color="C0", alpha=alpha,
                                lw=0, label=f"{int(level * 100)}% interval")  # fmt: skip
        ax.plot(t_future, _np(summary.median[i]), color="C0", lw=1.5, label="median")
        if truth is not None:
            ax.plot(t_future, _np(truth[i]), color="C3", lw=1, ls="--", label="held out")
        ax.axvline(-0.5, color="grey", lw=0.5)
        ax.set_title(names[i] if names is not None else f"series {i}", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left", ncol=5)
    axes[-1].set_xlabel("steps from the forecast origin")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
