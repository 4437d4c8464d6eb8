"""Split-conformal calibration of forecast sample paths: a spread factor and its fit."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .metrics.forecast import sample_quantiles

__all__ = ["SpreadCalibration", "fit_spread", "spread_scores", "spread_from_scores", "widen_only"]


@dataclass(frozen=True)
class SpreadCalibration:
    """Sample paths widened (``factor > 1``) or narrowed about their per-step median.

    ``apply(paths)`` maps every draw to ``median + factor * (draw - median)`` at each series and
    step, so each central interval's half-widths are multiplied by ``factor`` and the median is
    kept. Paths that were all integers stay integers (rounded) and paths that were all
    non-negative stay non-negative, so a count forecaster's paths keep their support.
    ``factor`` comes from :func:`fit_spread` on a validation window; ``points`` is how many
    held-out points it rests on and ``steps`` how far ahead that window reached (None: the
    factor holds at every horizon).

    Paths longer than ``steps`` are only ever widened (``max(factor, 1)``): errors grow with the
    horizon faster than a forecaster's own spread often does, so a window that found the
    intervals too wide says nothing safe about steps beyond it (AirPassengers: 12 validated
    months narrowed a 36-month forecast to 8% coverage).
    """

    factor: float = 1.0
    level: float = 0.9
    points: int = 0
    steps: int | None = None

    def factor_for(self, horizon: int) -> float:
        """The factor applied to paths of ``horizon`` steps."""
        if self.steps is None or horizon <= self.steps:
            return self.factor
        return max(self.factor, 1.0)

    def apply(self, paths: torch.Tensor) -> torch.Tensor:
        factor = self.factor_for(paths.shape[-1])
        if factor == 1.0:
            return paths
        median = sample_quantiles(paths, [0.5])
        out = median + factor * (paths - median)
        if bool((paths == paths.round()).all()):
            out = out.round()
        if bool((paths >= 0).all()):
            out = out.clamp_min(0)
        return out

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def describe(self, horizon: int | None = None) -> str:
        """One line for a run's summary: the factor applied to paths of ``horizon`` steps and
        what it rests on."""
        text = f"intervals x {self.factor_for(horizon or 0):.3f} (split conformal on {self.points}"
        if self.steps is None:
            return text + " points)"
        text += f" points up to {self.steps} steps ahead"
        if horizon is not None and horizon > self.steps and self.factor < 1:
            text += f", whose x {self.factor:.3f} would narrow: {horizon} steps are only widened"
        return text + ")"


def spread_scores(paths: torch.Tensor, truth: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """The conformity score of each finite point of ``[N, H]`` ``truth`` under ``[S, N, H]``
    ``paths``: the spread factor that just brings it inside their central ``level`` interval
    (``(y - median) / (upper - median)`` above the median, ``(median - y) / (median - lower)``
    below; inf where the interval has zero width and the point is off it). Flat, float64."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    paths = torch.as_tensor(paths, dtype=torch.float64)
    truth = torch.as_tensor(truth, dtype=torch.float64).reshape(paths.shape[1:])
    lower, median, upper = sample_quantiles(paths, [(1 - level) / 2, 0.5, (1 + level) / 2])
    above = truth > median
    gap = torch.where(above, upper - median, median - lower)
    dev = (truth - median).abs()
    need = torch.where(gap > 0, dev / gap.clamp_min(1e-300), torch.where(dev > 0, torch.inf, 0.0))
    return need[torch.isfinite(truth)].flatten()


def spread_from_scores(
    scores: torch.Tensor, level: float = 0.9, steps: int | None = None
) -> SpreadCalibration:
    """The split-conformal factor of :func:`spread_scores` (possibly pooled from several
    validation forecasts): their ``ceil((n + 1) * level)``-th smallest. ``steps``: how far
    ahead the validation forecasts reached."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    need = torch.as_tensor(scores, dtype=torch.float64).flatten()
    n = need.numel()
    if n == 0:
        return SpreadCalibration(1.0, level, 0)
    k = min(n, math.ceil((n + 1) * level))
    factor = float(need.sort().values[k - 1])
    if not math.isfinite(factor) or factor <= 0:
        return SpreadCalibration(1.0, level, n, steps)  # zero-width intervals: nothing to scale
    return SpreadCalibration(factor, level, n, steps)


def widen_only(
    own: torch.Tensor, extra, level: float = 0.9, steps: int | None = None
) -> SpreadCalibration:
    """The factor of the ``own`` scores, or of ``own`` pooled with the ``extra`` ones (a list of
    score tensors) where that is larger: more points may widen what the most recent window
    calls for, never narrow it. ``points`` counts all of them."""
    first = spread_from_scores(own, level, steps)
    pooled = spread_from_scores(torch.cat([torch.as_tensor(own), *extra]), level, steps)
    return (
        pooled if pooled.factor > first.factor else dataclasses.replace(first, points=pooled.points)
    )


def fit_spread(paths: torch.Tensor, truth: torch.Tensor, level: float = 0.9) -> SpreadCalibration:
    """The split-conformal spread factor of ``[S, N, H]`` paths against their ``[N, H]`` truth.

    Each held-out point needs the factor ``c_i`` that just brings it inside the central
    ``level`` interval widened about the median (:func:`spread_scores`); the factor is the
    ``ceil((n + 1) * level)``-th smallest of the ``n`` points' ``c_i`` (split conformal
    prediction, Vovk et al. 2005; Stankeviciute et al. 2021 for forecasts), so the widened
    interval covers a new exchangeable point with probability at least ``level``.
    """
    scores = spread_scores(paths, truth, level)
    steps = int(torch.as_tensor(truth).shape[-1])
    return spread_from_scores(scores, level, steps)
