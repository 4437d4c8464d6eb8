"""Split-conformal calibration of forecast sample paths: a spread factor and its fit."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .metrics.forecast import sample_quantiles

__all__ = [
    "BEYOND_GROWTH",
    "SpreadCalibration",
    "fit_spread",
    "spread_scores",
    "spread_from_scores",
    "widen_only",
]


#: how the factor grows past the validated steps: ``(h / steps) ** BEYOND_GROWTH`` at step ``h``
#: (a random walk's: errors whose variance grows linearly with the lead time, against paths
#: whose spread does not grow at all). Measured on AirPassengers' earlier windows (the final
#: ones dropped): the factor 90% of the points need grows about as ``h ** 0.5`` to ``h ** 0.7``
#: over 36 months; see the README (Forecasting, interval calibration).
BEYOND_GROWTH = 0.5


@dataclass(frozen=True)
class SpreadCalibration:
    """Sample paths widened (``factor > 1``) or narrowed about their per-step median.

    ``apply(paths)`` maps every draw to ``median + f_h * (draw - median)`` at each series and
    step ``h`` (from 1), so each central interval's half-widths are multiplied by ``f_h`` and
    the median is kept. Paths that were all integers stay integers (rounded) and paths that
    were all non-negative stay non-negative, so a count forecaster's paths keep their support.
    ``factor`` comes from :func:`fit_spread` on a validation window; ``points`` is how many
    held-out points it rests on and ``steps`` how far ahead that window reached (None: the
    factor holds at every horizon).

    A path of at most ``steps`` steps gets ``factor`` at every step. A longer one is only ever
    widened (12 validated months once narrowed a 36-month AirPassengers forecast to 8%
    coverage): ``max(factor, 1)`` at steps 1 to ``steps`` and, past them, where the data said
    nothing, ``max(factor * (h / steps) ** growth, 1)``: errors grow with the horizon faster
    than a forecaster's own spread often does (its paths are sampled from one-step
    distributions learnt with teacher forcing), as a random walk's outgrow constant-spread
    paths with ``growth = 0.5`` (:data:`BEYOND_GROWTH`, what :func:`fit_spread` sets).
    ``growth = 0`` keeps the factor flat, the rule of factors saved before 2026-12-06 (which
    have no ``growth``).
    """

    factor: float = 1.0
    level: float = 0.9
    points: int = 0
    steps: int | None = None
    growth: float = 0.0

    def __post_init__(self):
        if not 0 <= self.growth < math.inf:  # NaN fails too
            raise ValueError(f"growth must be finite and >= 0 (0: flat); got {self.growth}")

    def factors(self, horizon: int) -> torch.Tensor:
        """``[horizon]`` float64: the factor applied at each step of a ``horizon``-step path."""
        horizon = int(horizon)
        if self.steps is None or horizon <= self.steps:
            return torch.full((horizon,), float(self.factor), dtype=torch.float64)
        f = torch.full((horizon,), max(float(self.factor), 1.0), dtype=torch.float64)
        if self.growth:
            h = torch.arange(self.steps + 1, horizon + 1, dtype=torch.float64)
            grown = float(self.factor) * (h / self.steps) ** float(self.growth)
            f[self.steps :] = grown.clamp_min(1.0)
        return f

    def apply(self, paths: torch.Tensor) -> torch.Tensor:
        factors = self.factors(paths.shape[-1])
        if bool((factors == 1.0).all()):
            return paths
        median = sample_quantiles(paths, [0.5])
        # one factor: a Python scalar, as before steps had factors of their own (same bits)
        flat = float(factors.min()) == float(factors.max())
        scale = float(factors[0]) if flat else factors.to(paths.device, paths.dtype)
        out = median + scale * (paths - median)
        if bool((paths == paths.round()).all()):
            out = out.round()
        if bool((paths >= 0).all()):
            out = out.clamp_min(0)
        return out

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def describe(self, horizon: int | None = None) -> str:
        """One line for a run's summary: the factors applied to paths of ``horizon`` steps and
        what they rest on."""
        f = self.factors(horizon or 1)
        rests = f"split conformal on {self.points} points"
        if self.steps is not None:
            rests += f" up to {self.steps} steps ahead"
        longer = self.steps is not None and len(f) > self.steps
        if longer and self.factor < 1:
            rests += f", whose x {self.factor:.3f} would narrow: a longer forecast is only widened"
        if float(f.min()) == float(f.max()):
            return f"intervals x {float(f[0]):.3f} ({rests})"
        n = self.steps
        past = f"x {float(f[n]):.3f} at step {n + 1}"
        if len(f) > n + 1:
            past = f"x {float(f[n]):.3f} to x {float(f[-1]):.3f} at steps {n + 1}-{len(f)}"
        return (
            f"intervals x {float(f[0]):.3f} at steps 1-{n}, {past} ({rests}; past"
            f" them x max({self.factor:.3f} (h / {n}) ** {self.growth:g}, 1))"
        )


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
    scores: torch.Tensor,
    level: float = 0.9,
    steps: int | None = None,
    growth: float = BEYOND_GROWTH,
) -> SpreadCalibration:
    """The split-conformal factor of :func:`spread_scores` (possibly pooled from several
    validation forecasts): their ``ceil((n + 1) * level)``-th smallest. ``steps``: how far
    ahead the validation forecasts reached; ``growth``: how the factor grows past them
    (:class:`SpreadCalibration`)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    need = torch.as_tensor(scores, dtype=torch.float64).flatten()
    n = need.numel()
    if n == 0:
        return SpreadCalibration(1.0, level, 0)
    k = min(n, math.ceil((n + 1) * level))
    factor = float(need.sort().values[k - 1])
    if not math.isfinite(factor) or factor <= 0:
        return SpreadCalibration(1.0, level, n, steps, growth)  # zero width: nothing to scale
    return SpreadCalibration(factor, level, n, steps, growth)


def widen_only(
    own: torch.Tensor,
    extra,
    level: float = 0.9,
    steps: int | None = None,
    growth: float = BEYOND_GROWTH,
) -> SpreadCalibration:
    """The factor of the ``own`` scores, or of ``own`` pooled with the ``extra`` ones (a list of
    score tensors) where that is larger: more points may widen what the most recent window
    calls for, never narrow it. ``points`` counts all of them."""
    first = spread_from_scores(own, level, steps, growth)
    pooled = spread_from_scores(torch.cat([torch.as_tensor(own), *extra]), level, steps, growth)
    return (
        pooled if pooled.factor > first.factor else dataclasses.replace(first, points=pooled.points)
    )


def fit_spread(
    paths: torch.Tensor, truth: torch.Tensor, level: float = 0.9, growth: float = BEYOND_GROWTH
) -> SpreadCalibration:
    """The split-conformal spread factor of ``[S, N, H]`` paths against their ``[N, H]`` truth.

    Each held-out point needs the factor ``c_i`` that just brings it inside the central
    ``level`` interval widened about the median (:func:`spread_scores`); the factor is the
    ``ceil((n + 1) * level)``-th smallest of the ``n`` points' ``c_i`` (split conformal
    prediction, Vovk et al. 2005; Stankeviciute et al. 2021 for forecasts), so the widened
    interval covers a new exchangeable point with probability at least ``level``. Past the
    window's steps the factor grows with ``growth`` (:class:`SpreadCalibration`).
    """
    scores = spread_scores(paths, truth, level)
    steps = int(torch.as_tensor(truth).shape[-1])
    return spread_from_scores(scores, level, steps, growth)
