"""Forecast scores from sample paths ``[S, N, H]``: CRPS, MASE, wQL, MAPE, coverage, Brier.

Point forecasts are the sample median, as in GluonTS's ``Evaluator`` (MASE, MAPE); quantiles
are the linearly interpolated sample quantiles (``numpy.quantile``'s default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .crps import crps_samples

__all__ = [
    "QUANTILES",
    "crps_paths",
    "exceedance_brier",
    "forecast_metrics",
    "interval_coverage_width",
    "mean_weighted_quantile_loss",
    "sample_quantiles",
    "scaled_errors",
    "seasonal_scale",
    "weighted_quantile_loss",
]

#: The levels of GluonTS's ``mean_wQuantileLoss``.
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _check(samples: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    samples, y = torch.as_tensor(samples), torch.as_tensor(y)
    if samples.dim() != 3 or samples.shape[1:] != y.shape or samples.shape[0] < 1:
        raise ValueError(
            f"samples has shape {list(samples.shape)} and y {list(y.shape)};"
            " expected sample paths [S, N, H] and truth [N, H]"
        )
    if not torch.isfinite(samples).all():
        raise ValueError("samples contains NaN or inf; expected finite sample paths")
    dtype = torch.promote_types(samples.dtype, y.dtype)
    return samples.to(dtype), y.to(dtype)


def sample_quantiles(samples: Tensor, probs: Sequence[float]) -> Tensor:
    """Sample quantiles ``[Q, N, H]`` of paths ``[S, N, H]`` (linear interpolation)."""
    p = torch.as_tensor(probs, dtype=samples.dtype, device=samples.device)
    return torch.quantile(samples, p, dim=0)


def crps_paths(samples: Tensor, y: Tensor) -> Tensor:
    """Sample CRPS of every point ``[N, H]`` (``inference.metrics.crps_samples``)."""
    samples, y = _check(samples, y)
    s, n, h = samples.shape
    return crps_samples(samples.reshape(s, n * h), y.reshape(-1)).reshape(n, h)


def seasonal_scale(history: Tensor, period: int) -> Tensor:
    """In-sample MAE of the seasonal naive forecast, per series ``[N]`` (MASE's denominator).

    ``mean_t |y_t - y_{t-period}|`` over the history ``[N, T]``; with ``T <= period`` the
    lag is 1 instead (GluonTS does the same). A constant history gives 0, so its MASE is NaN.
    """
    history = torch.as_tensor(history)
    m = period if history.shape[-1] > period else 1
    if history.shape[-1] <= m:
        raise ValueError(f"a history of {history.shape[-1]} steps has no naive error to scale by")
    return (history[..., m:] - history[..., :-m]).abs().mean(-1)


def scaled_errors(point: Tensor, y: Tensor, scale: Tensor) -> Tensor:
    """``|y - point| / scale`` per point ``[N, H]``; its mean is the MASE (NaN where scale is 0)."""
    scale = torch.as_tensor(scale, dtype=y.dtype)
    scale = torch.where(scale > 0, scale, torch.full_like(scale, math.nan))
    return (y - point).abs() / scale[:, None]


def weighted_quantile_loss(
    samples: Tensor, y: Tensor, probs: Sequence[float] = QUANTILES, dim: tuple[int, ...] = (0, 1)
) -> Tensor:
    """GluonTS's wQuantileLoss per level: ``2 sum |(y - q)(1{y <= q} - p)| / sum |y|``.

    Summed over ``dim`` of ``[N, H]`` (both by default: one number per level ``[Q]``; ``dim=(0,)``
    gives ``[Q, H]``, per horizon step).
    """
    samples, y = _check(samples, y)
    q = sample_quantiles(samples, probs)
    p = torch.as_tensor(probs, dtype=y.dtype)[:, None, None]
    loss = 2 * ((q - y) * ((y <= q).to(y.dtype) - p)).abs()
    d = tuple(k + 1 for k in dim)
    return loss.sum(d) / y.abs().sum(dim)


def mean_weighted_quantile_loss(
    samples: Tensor, y: Tensor, probs: Sequence[float] = QUANTILES, dim: tuple[int, ...] = (0, 1)
) -> Tensor:
    """The mean over levels of :func:`weighted_quantile_loss` (GluonTS ``mean_wQuantileLoss``)."""
    return weighted_quantile_loss(samples, y, probs, dim).mean(0)


def interval_coverage_width(
    samples: Tensor, y: Tensor, level: float = 0.9
) -> tuple[Tensor, Tensor]:
    """Whether each point lies in the central ``level`` sample interval and its width, ``[N, H]``.

    The interval runs between the ``(1 - level) / 2`` and ``(1 + level) / 2`` sample quantiles.
    """
    samples, y = _check(samples, y)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    lo, hi = sample_quantiles(samples, [(1 - level) / 2, (1 + level) / 2])
    return ((y >= lo) & (y <= hi)).to(y.dtype), hi - lo


def exceedance_brier(samples: Tensor, y: Tensor, threshold: Tensor | float) -> Tensor:
    """Brier score ``(P(y > threshold) - 1{y > threshold})^2`` per point ``[N, H]``.

    ``threshold`` broadcasts against ``[N, H]``: a number, ``[N, 1]`` per series, or ``[N, H]``.
    """
    samples, y = _check(samples, y)
    t = torch.as_tensor(threshold, dtype=y.dtype)
    p = (samples > t).to(y.dtype).mean(0)
    return (p - (y > t).to(y.dtype)) ** 2


def forecast_metrics(
    samples: Tensor,
    y: Tensor,
    scale: Tensor,
    threshold: Tensor | float | None = None,
    level: float = 0.9,
) -> dict:
    """Every score, overall and per horizon step, of paths ``[S, N, H]`` against ``y [N, H]``.

    Arguments:
        samples: sample paths; rows may be series, or series x forecast origins.
        y: the held-out truth.
        scale: MASE's denominator per row ``[N]`` (:func:`seasonal_scale` of each history).
        threshold: for the exceedance Brier score (omitted when None).
        level: the central interval whose coverage and width are reported.

    Returns:
        ``{"overall": {name: float}, "per_horizon": {name: [H floats]}}`` with ``crps``,
        ``mase``, ``mape`` (points where y = 0 are left out), ``wql`` (mean over
        :data:`QUANTILES`), ``coverage_{pct}``, ``width_{pct}`` and ``brier``.
    """
    samples, y = _check(samples, y)
    point = sample_quantiles(samples, [0.5])[0]
    pct = f"{round(level * 100):d}"
    covered, width = interval_coverage_width(samples, y, level)
    ape = torch.where(y != 0, (y - point).abs() / y.abs(), torch.full_like(y, math.nan))
    per_point = {
        "crps": crps_paths(samples, y),
        "mase": scaled_errors(point, y, scale),
        "mape": ape,
        f"coverage_{pct}": covered,
        f"width_{pct}": width,
    }
    if threshold is not None:
        per_point["brier"] = exceedance_brier(samples, y, threshold)
    overall = {k: float(v.nanmean()) for k, v in per_point.items()}
    per_h = {k: v.nanmean(0).tolist() for k, v in per_point.items()}
    overall["wql"] = float(mean_weighted_quantile_loss(samples, y))
    per_h["wql"] = mean_weighted_quantile_loss(samples, y, dim=(0,)).tolist()
    order = ["wql", "crps", "mase", "mape", f"coverage_{pct}", f"width_{pct}", "brier"]
    return {
        "overall": {k: overall[k] for k in order if k in overall},
        "per_horizon": {k: per_h[k] for k in order if k in per_h},
    }
