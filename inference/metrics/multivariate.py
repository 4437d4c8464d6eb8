"""Targets with several dimensions: the energy score and marginal metrics per dimension."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

from .regression import nll_from_log_likelihoods, regression_metrics
from .validation import DEFAULT_LEVELS, _no_nan, _shape

__all__ = ["energy_score", "multivariate_metrics"]

_PAIR_ELEMS = 1 << 22  # entries of the [n, S, S] distance block per chunk of points


def _multi(y: Tensor, samples: Tensor) -> tuple[Tensor, Tensor]:
    y, samples = torch.as_tensor(y), torch.as_tensor(samples)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"y has shape {_shape(y)}; expected a non-empty [N, D]")
    if samples.ndim != 3 or samples.shape[1:] != y.shape or samples.shape[0] == 0:
        raise ValueError(
            f"samples has shape {_shape(samples)} but y has shape {_shape(y)}; "
            "expected samples [S, N, D] with S >= 1"
        )
    dtype = torch.promote_types(torch.promote_types(y.dtype, samples.dtype), torch.float32)
    return y.to(dtype), _no_nan(samples.to(dtype), "samples")


def energy_score(samples: Tensor, y: Tensor) -> Tensor:
    """Energy score [N] of predictive samples [S, N, D] at targets y [N, D] (Gneiting &
    Raftery 2007): (1/S) sum_s |x_s - y| - 1/(2 S^2) sum_{s, t} |x_s - x_t|, Euclidean norms.

    The multivariate CRPS (for D = 1 it equals the sample CRPS); lower is better. Chunked over
    points so the [n, S, S] pairwise distances stay bounded.
    """
    y, samples = _multi(y, samples)
    S, N, _ = samples.shape
    x = samples.transpose(0, 1)  # [N, S, D]
    out = torch.empty(N, dtype=y.dtype, device=y.device)
    step = max(1, _PAIR_ELEMS // (S * S))
    for i in range(0, N, step):
        xi = x[i : i + step]
        first = (xi - y[i : i + step, None]).norm(dim=-1).mean(1)
        pair = torch.cdist(xi, xi, compute_mode="donot_use_mm_for_euclid_dist")
        out[i : i + step] = first - pair.sum((1, 2)) / (2 * S * S)
    return out


def multivariate_metrics(
    y: Tensor,
    samples: Tensor,
    dist: Distribution | None = None,
    *,
    log_lik: Tensor | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    discrete: bool = False,
) -> dict[str, float | str]:
    """Metrics of a predictive over targets y [N, D] from its samples [S, N, D].

    Returns:
        nll (joint, exact from dist's log_prob, or the posterior-mean likelihood from log_lik
        [S, N]) with nll_kind; energy_score (mean over points); target_dim; for every key of
        `regression_metrics` computed on the samples of dimension d, the key with suffix
        ``_dim{d}``, and the key itself averaged over the D dimensions (marginal NLLs are not
        reported: the joint one is).
    """
    y, samples = _multi(y, samples)
    out: dict[str, float | str] = {}
    if dist is not None:
        lp = _no_nan(dist.log_prob(y), "dist.log_prob(y)")
        if lp.shape != y.shape[:1]:
            raise ValueError(f"dist.log_prob(y) has shape {_shape(lp)}; expected [{len(y)}]")
        out["nll"], out["nll_kind"] = float(-lp.mean()), "exact"
    elif log_lik is not None:
        out["nll"] = float(nll_from_log_likelihoods(log_lik))
        out["nll_kind"] = "posterior_mean_likelihood"
    out["energy_score"] = float(energy_score(samples, y).mean())
    D = y.shape[1]
    out["target_dim"] = D
    per_dim = [
        regression_metrics(y[:, d], samples=samples[..., d], levels=levels, discrete=discrete)
        for d in range(D)
    ]
    for key in per_dim[0]:
        for d, m in enumerate(per_dim):
            out[f"{key}_dim{d}"] = m[key]
        out[key] = sum(m[key] for m in per_dim) / D
    return out
