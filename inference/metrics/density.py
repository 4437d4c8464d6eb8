"""Density-model metrics: bits per dimension, ELBO and IWAE bounds from log weights."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .validation import _no_nan, _shape

__all__ = ["bits_per_dim", "elbo_from_log_weights", "iwae_from_log_weights", "iwae_bound"]


def bits_per_dim(nll_nats: float | Tensor, num_dims: int) -> float | Tensor:
    """Convert a per-example NLL in nats to bits per dimension: nll / (num_dims ln 2)."""
    return nll_nats / (num_dims * math.log(2))


def _log_weights(log_weights: Tensor) -> Tensor:
    log_weights = torch.as_tensor(log_weights)
    if log_weights.ndim != 2 or 0 in log_weights.shape:
        raise ValueError(
            f"log_weights has shape {_shape(log_weights)}; expected a non-empty [K, N]"
        )
    return _no_nan(log_weights, "log_weights")


def elbo_from_log_weights(log_weights: Tensor) -> Tensor:
    """ELBO estimate [N]: mean over K of log p(x, z_k) - log q(z_k | x), from [K, N]."""
    return _log_weights(log_weights).mean(0)


def iwae_from_log_weights(log_weights: Tensor) -> Tensor:
    """Importance-weighted bound [N]: logsumexp over K of the log weights [K, N] minus log K."""
    lw = _log_weights(log_weights)
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


@torch.no_grad()
def iwae_bound(
    log_weight_fn: Callable[[Tensor, int], Tensor],
    x: Tensor,
    num_samples: int = 1000,
    chunk_size: int = 100,
) -> Tensor:
    """Importance-weighted lower bound on log p(x) [N] with K = num_samples, in chunks.

    A running logsumexp over chunks of at most `chunk_size` samples keeps memory at
    O(chunk_size N) whatever K is. Evaluation only: runs under no_grad.

    Args:
        log_weight_fn: (x, k) -> log p(x, z_k) - log q(z_k | x) for k fresh draws, shape [k, N].
        x: data batch (passed through to log_weight_fn).
        num_samples: total number of importance samples K.
        chunk_size: draws per call of log_weight_fn.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples={num_samples}, chunk_size={chunk_size}; expected both >= 1")
    total: Tensor | None = None
    done = 0
    while done < num_samples:
        k = min(chunk_size, num_samples - done)
        lw = _log_weights(log_weight_fn(x, k))
        if lw.shape[0] != k or (total is not None and lw.shape != (k, total.shape[0])):
            raise ValueError(f"log_weight_fn returned shape {_shape(lw)}; expected [{k}, N]")
        chunk = torch.logsumexp(lw, 0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
        done += k
    return total - math.log(num_samples)
