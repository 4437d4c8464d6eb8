"""Calibration and sharpness: quantiles, central intervals and their coverage, PIT,
calibration curves and their errors, interval and pinball scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .discrete import _interval_hits, _pit_cdf, randomized_pit
from .validation import DEFAULT_LEVELS, PredictiveLike, _check_levels, _target
from .view import _PredictiveView

__all__ = [
    "predictive_quantiles",
    "central_intervals",
    "interval_coverage",
    "pit_values",
    "calibration_proportions",
    "mean_absolute_calibration_error",
    "root_mean_squared_calibration_error",
    "miscalibration_area",
    "interval_score",
    "pinball_loss",
]


def predictive_quantiles(
    pred: PredictiveLike,
    y: Tensor,
    probs: Sequence[float] | Tensor,
    num_samples: int = 1000,
    *,
    discrete: bool | None = None,
) -> Tensor:
    """Predictive quantiles [Q, N] at levels `probs`.

    From a distribution via `icdf` when implemented, else from `num_samples` draws; from samples
    by linear interpolation between order statistics (numpy's and torch.quantile's default).
    A discrete predictive (integer support, or `discrete=True` for samples) has integer
    quantiles: the smallest k with F(k) >= p. `y` only fixes N, the device and the dtype.
    """
    y = _target(y)
    p = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
    if ((p < 0) | (p > 1) | torch.isnan(p)).any():
        raise ValueError(f"probs is {p.tolist()}; expected quantile levels in [0, 1]")
    return _PredictiveView(pred, y, num_samples, discrete).quantiles(p)


def _enough_samples(view: _PredictiveView, levels: Tensor) -> None:
    if view.dist is None:
        S = view.sorted.shape[1]
        need = math.ceil(2 / (1 - levels.max().item()) - 1e-9)
        if S < need:
            raise ValueError(
                f"samples has {S} draws per point; expected at least {need} for a "
                f"{levels.max().item():g} central interval (2 / (1 - level))"
            )


def _intervals(view: _PredictiveView, levels: Tensor) -> tuple[Tensor, Tensor]:
    _enough_samples(view, levels)
    q = view.quantiles(torch.cat([(1 - levels) / 2, (1 + levels) / 2]))
    return q[: len(levels)], q[len(levels) :]


def central_intervals(
    pred: PredictiveLike,
    y: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    num_samples: int = 1000,
    *,
    discrete: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds [L, N] of the central intervals [q((1 - l) / 2), q((1 + l) / 2)].

    From samples, each level l needs S >= 2 / (1 - l) samples. `y` only fixes N, device, dtype.
    Discrete predictives have integer bounds (see `predictive_quantiles`).
    """
    y = _target(y)
    view = _PredictiveView(pred, y, num_samples, discrete)
    return _intervals(view, _check_levels(levels))


def interval_coverage(
    pred: PredictiveLike,
    y: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    num_samples: int = 1000,
    *,
    discrete: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Coverage and mean width of central prediction intervals.

    For a continuous predictive, the coverage is the fraction of y inside
    [q((1 - l) / 2), q((1 + l) / 2)]. For a discrete one (integer support, or `discrete=True`
    for count samples) an integer interval rarely holds mass exactly l, so the coverage is
    that of the randomized central interval: the integers strictly between the bounds, and
    each bound with the fraction of its probability that brings the mass to exactly l. That
    is the probability that the randomized PIT lies in [(1 - l) / 2, (1 + l) / 2], averaged
    over the points; under the true model its expectation is exactly l. The width is that of
    the integer interval [q((1 - l) / 2), q((1 + l) / 2)]; `regression_metrics` also reports
    how often y falls in that integer interval and the predictive mass it holds.

    Args:
        pred: distribution with batch_shape [N], or samples [S, N] (S >= 2 / (1 - max level)).
        y: targets [N].
        levels: nominal coverages in (0, 1).
        num_samples: draws for distributions without `icdf`.
        discrete: whether samples come from an integer-valued predictive (a distribution
            says so by its support when None).

    Returns:
        (coverage [L], mean width [L]); y on a bound counts as covered.
    """
    y = _target(y)
    lv = _check_levels(levels)
    view = _PredictiveView(pred, y, num_samples, discrete)
    lo, hi = _intervals(view, lv)
    if view.discrete:
        coverage = _interval_hits(*view.pit_bounds(), lv).mean(1).to(view.y.dtype)
    else:
        coverage = ((view.y >= lo) & (view.y <= hi)).to(view.y.dtype).mean(1)
    return coverage, (hi - lo).mean(1)


def pit_values(
    pred: PredictiveLike,
    y: Tensor,
    num_samples: int = 1000,
    *,
    discrete: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Probability integral transform F(y) [N]; for samples the fraction of samples <= y.

    For a discrete predictive (integer support, or `discrete=True` for count samples) the
    randomized PIT F(y - 1) + V (F(y) - F(y - 1)), V ~ Uniform(0, 1) drawn from `generator`
    (Czado, Gneiting & Held 2009): uniform under the true model, as F(y) is for continuous y.
    """
    y = _target(y)
    view = _PredictiveView(pred, y, num_samples, discrete)
    if view.discrete:
        return randomized_pit(*view.pit_bounds(), generator=generator).to(view.y.dtype)
    return view.cdf()


def _proportions(view: _PredictiveView, num_bins: int, prop_type: str) -> tuple[Tensor, Tensor]:
    if prop_type not in ("interval", "quantile"):
        raise ValueError(f"prop_type is {prop_type!r}; expected 'interval' or 'quantile'")
    y = view.y
    expected = torch.linspace(0, 1, num_bins, dtype=torch.float64)
    if view.discrete:
        # the expected fraction of randomized PITs in the central / lower p-interval
        lo, hi = view.pit_bounds()
        if prop_type == "interval":
            hit = _interval_hits(lo, hi, expected.to(lo.device))
        else:
            hit = _pit_cdf(lo, hi, expected.to(lo.device))
        return expected.to(y.device, y.dtype), hit.mean(1).to(y.dtype)
    if prop_type == "interval":
        q = view.quantiles(torch.cat([0.5 - expected / 2, 0.5 + expected / 2]))
        hit = (y >= q[:num_bins]) & (y <= q[num_bins:])
    else:
        hit = y <= view.quantiles(expected)
    return expected.to(y.device, y.dtype), hit.to(y.dtype).mean(1)


def calibration_proportions(
    pred: PredictiveLike,
    y: Tensor,
    num_bins: int = 100,
    prop_type: str = "interval",
    num_samples: int = 1000,
    *,
    discrete: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Expected vs observed proportions, as uncertainty-toolbox's `get_proportion_lists`.

    Expected proportions are p = linspace(0, 1, num_bins). With prop_type="interval" (the
    toolbox default) the observed proportion is the fraction of y inside the central interval
    [q(0.5 - p/2), q(0.5 + p/2)], bounds included; with "quantile" it is the fraction of
    y <= q(p). (The toolbox's own "quantile" variant counts y >= q(1 - p), which has the same
    expectation.) From samples, p = 1 is the range of the samples, so its observed proportion
    is about 1 - 2 / (S + 1) rather than 1. For a discrete predictive (integer support, or
    `discrete=True` for count samples) the observed proportion is the expected fraction of
    randomized PITs in the central interval [0.5 - p/2, 0.5 + p/2] (or in [0, p]), computed
    exactly from F(y - 1) and F(y), so it is p in expectation under the true model.

    Returns:
        (expected [num_bins], observed [num_bins]).
    """
    y = _target(y)
    view = _PredictiveView(pred, y, num_samples, discrete)
    return _proportions(view, num_bins, prop_type)


def mean_absolute_calibration_error(expected: Tensor, observed: Tensor) -> Tensor:
    """Mean |observed - expected| over the quantile levels (toolbox's MACE / "ECE")."""
    return (observed - expected).abs().mean()


def root_mean_squared_calibration_error(expected: Tensor, observed: Tensor) -> Tensor:
    """Root mean squared (observed - expected) over the quantile levels (toolbox's RMSCE)."""
    return (observed - expected).pow(2).mean().sqrt()


def miscalibration_area(expected: Tensor, observed: Tensor) -> Tensor:
    """Area between the calibration curve and the diagonal.

    The toolbox measures the polygons between the piecewise-linear curve and the diagonal; this
    is the same area computed segment by segment (a segment that crosses the diagonal
    contributes two triangles).
    """
    d = observed - expected
    d0, d1, dx = d[:-1], d[1:], expected[1:] - expected[:-1]
    a0, a1 = d0.abs(), d1.abs()
    same = d0 * d1 >= 0
    crossing = (d0**2 + d1**2) / (2 * (a0 + a1)).clamp_min(torch.finfo(d.dtype).tiny)
    return (torch.where(same, (a0 + a1) / 2, crossing) * dx).sum()


def interval_score(lower: Tensor, upper: Tensor, y: Tensor, level: float) -> Tensor:
    """Interval score of a central (level) interval, Gneiting & Raftery (2007) eq. 43, [N].

    (u - l) + (2 / alpha) (l - y) 1{y < l} + (2 / alpha) (y - u) 1{y > u}, alpha = 1 - level.
    """
    alpha = 1 - level
    return (upper - lower) + (2 / alpha) * ((lower - y).clamp_min(0) + (y - upper).clamp_min(0))


def pinball_loss(quantiles: Tensor, y: Tensor, probs: Tensor) -> Tensor:
    """Pinball (check) loss [Q, N] of predicted quantiles [Q, N] at levels probs [Q]."""
    diff = y - quantiles
    tau = probs.to(quantiles)[:, None]
    return torch.maximum(tau * diff, (tau - 1) * diff)
