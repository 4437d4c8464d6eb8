"""Scores of continuous and count targets: NLL, and every regression metric at once."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

from .calibration import (
    _intervals,
    _proportions,
    interval_score,
    mean_absolute_calibration_error,
    miscalibration_area,
    pinball_loss,
    root_mean_squared_calibration_error,
)
from .discrete import _interval_hits
from .validation import DEFAULT_LEVELS, _check_levels, _dist, _no_nan, _shape, _target
from .view import _PredictiveView

__all__ = ["nll", "nll_from_log_likelihoods", "regression_metrics"]

_PINBALL_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95


def nll(dist: Distribution, y: Tensor) -> Tensor:
    """Mean negative log predictive density, -mean_n log p(y_n).

    Args:
        dist: predictive distribution with batch_shape [N] and event_shape [].
        y: targets [N].

    Returns:
        Scalar tensor.
    """
    y = _target(y)
    return _no_nan(-_dist(dist, y).log_prob(y).mean(), "dist.log_prob(y)")


def nll_from_log_likelihoods(log_lik: Tensor) -> Tensor:
    """NLL of the posterior-mean likelihood: -mean_n log(mean_s p(y_n | theta_s)).

    Args:
        log_lik: log p(y_n | theta_s) for S posterior samples, shape [S, N].

    Returns:
        Scalar tensor.
    """
    log_lik = torch.as_tensor(log_lik)
    if log_lik.ndim != 2 or 0 in log_lik.shape:
        raise ValueError(f"log_lik has shape {_shape(log_lik)}; expected a non-empty [S, N]")
    _no_nan(log_lik, "log_lik")
    return -(torch.logsumexp(log_lik, 0) - math.log(log_lik.shape[0])).mean()


def _level_key(level: float) -> str:
    return f"{100 * level:g}"


def regression_metrics(
    y: Tensor,
    dist: Distribution | None = None,
    samples: Tensor | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    log_lik: Tensor | None = None,
    num_samples: int = 1000,
    num_bins: int = 100,
    discrete: bool | None = None,
) -> dict[str, float | str]:
    """All continuous-target metrics at once, as Python floats.

    Args:
        y: targets [N].
        dist: predictive distribution (batch_shape [N]); give exactly one of dist and samples.
        samples: predictive samples [S, N] (mixtures, posterior predictives, flows).
        levels: central-interval levels for coverage, width and interval score.
        log_lik: optional [S, N] per-posterior-sample log-likelihoods of y; used for "nll" when
            there is no dist.
        num_samples: draws for distribution methods without a closed form (e.g. icdf).
        num_bins: number of expected proportions on the calibration curve.
        discrete: whether the predictive is integer-valued (counts); None reads it off the
            distribution's support (samples are then taken as continuous).

    Returns:
        Keys: nll and nll_kind ("exact" from dist, "posterior_mean_likelihood" from log_lik;
        absent with neither), crps, rmse, mae (predictive mean), rmse_median, mae_median,
        coverage_{L} and width_{L} and interval_score_{L} per level (L in percent, e.g.
        coverage_90), sharpness_std (mean predictive sd), ece_quantile (mean absolute
        calibration error), rms_calibration_error, miscalibration_area (interval-based, as
        uncertainty-toolbox), pinball (mean over levels 0.05, 0.10, ..., 0.95).

        For a discrete predictive, quantiles and interval bounds are integers; coverage_{L}
        and the calibration errors use the randomized PIT, so the true model scores nominal
        coverage and zero calibration error in expectation (see `interval_coverage` and
        `calibration_proportions`); int_coverage_{L} is the fraction of y inside the integer
        interval [q((1 - L) / 2), q((1 + L) / 2)] and int_mass_{L} the mean predictive mass of
        that interval, which int_coverage_{L} matches for a calibrated model (it is >= L).
    """
    y = _target(y)
    if (dist is None) == (samples is None):
        raise ValueError("dist and samples are both given or both None; expected exactly one")
    lv = _check_levels(levels)
    view = _PredictiveView(dist if dist is not None else samples, y, num_samples, discrete)
    y = view.y  # promoted to the samples' dtype
    out: dict[str, Tensor | str] = {}
    if dist is not None:
        out["nll"], out["nll_kind"] = nll(dist, y), "exact"
    elif log_lik is not None:
        if log_lik.shape[-1] != y.shape[0]:
            raise ValueError(
                f"log_lik has shape {_shape(log_lik)}; expected [S, N] with N = {len(y)}"
            )
        out["nll"], out["nll_kind"] = nll_from_log_likelihoods(log_lik), "posterior_mean_likelihood"
    out["crps"] = view.crps().mean()
    mean, median = view.mean(), view.median()
    out["rmse"] = (mean - y).pow(2).mean().sqrt()
    out["mae"] = (mean - y).abs().mean()
    out["rmse_median"] = (median - y).pow(2).mean().sqrt()
    out["mae_median"] = (median - y).abs().mean()
    lo, hi = _intervals(view, lv)
    inside = ((y >= lo) & (y <= hi)).to(y.dtype).mean(1)
    if view.discrete:
        f_lo, f_hi = view.pit_bounds()
        randomized = _interval_hits(f_lo, f_hi, lv).mean(1)
        mass = view.cdf_at(hi) - view.cdf_at(lo - 1)
    for k, level in enumerate(lv.tolist()):
        key = _level_key(level)
        if view.discrete:
            out[f"coverage_{key}"] = randomized[k]
            out[f"int_coverage_{key}"] = inside[k]
            out[f"int_mass_{key}"] = mass[k].mean()
        else:
            out[f"coverage_{key}"] = inside[k]
        out[f"width_{key}"] = (hi[k] - lo[k]).mean()
        out[f"interval_score_{key}"] = interval_score(lo[k], hi[k], y, level).mean()
    out["sharpness_std"] = view.stddev().mean()
    expected, observed = _proportions(view, num_bins, "interval")
    out["ece_quantile"] = mean_absolute_calibration_error(expected, observed)
    out["rms_calibration_error"] = root_mean_squared_calibration_error(expected, observed)
    out["miscalibration_area"] = miscalibration_area(expected, observed)
    taus = torch.tensor(_PINBALL_LEVELS, dtype=torch.float64)
    out["pinball"] = pinball_loss(view.quantiles(taus), y, taus).mean()
    return {k: v if isinstance(v, str) else float(v) for k, v in out.items()}
