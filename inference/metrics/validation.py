"""Input checks shared by every metric: shapes, NaNs, levels, with one-line messages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["DEFAULT_LEVELS", "PredictiveLike"]

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
_PROB_TOL = 1e-4

# A predictive distribution with batch_shape [N], or predictive samples [S, N]. (Not named
# `Predictive`: that is pyro.infer.Predictive, which produces the samples.)
PredictiveLike = Distribution | Tensor


def _shape(t: Tensor | torch.Size) -> str:
    return "[" + ", ".join(str(s) for s in (t.shape if isinstance(t, Tensor) else t)) + "]"


def _target(y: Tensor) -> Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.numel() == 0:
        raise ValueError(f"y has shape {_shape(y)}; expected a non-empty 1-D tensor [N]")
    if not y.is_floating_point():
        y = y.to(torch.get_default_dtype())
    if torch.isnan(y).any():
        raise ValueError("y contains NaN; expected finite targets")
    return y


def _samples(samples: Tensor, y: Tensor, check_nan: bool = True) -> Tensor:
    samples = torch.as_tensor(samples)
    if samples.ndim != 2 or samples.shape[1] != y.shape[0] or samples.shape[0] == 0:
        raise ValueError(
            f"samples has shape {_shape(samples)} but y has shape {_shape(y)}; "
            "expected samples [S, N] with S >= 1 and N = len(y)"
        )
    if check_nan and torch.isnan(samples).any():
        raise ValueError("samples contains NaN; expected finite predictive samples")
    return samples.to(torch.promote_types(samples.dtype, y.dtype))


def _dist(dist: Distribution, y: Tensor) -> Distribution:
    if dist.batch_shape != y.shape or dist.event_shape != torch.Size():
        raise ValueError(
            f"dist has batch_shape {_shape(dist.batch_shape)} and event_shape "
            f"{_shape(dist.event_shape)} but y has shape {_shape(y)}; "
            "expected batch_shape [N] and event_shape []"
        )
    return dist


def _no_nan(t: Tensor, what: str) -> Tensor:
    if torch.isnan(t).any():
        raise ValueError(f"{what} contains NaN; expected finite predictions")
    return t


def _check_levels(levels: Sequence[float], name: str = "levels") -> Tensor:
    lv = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
    if lv.numel() == 0 or (lv <= 0).any() or (lv >= 1).any():
        raise ValueError(f"{name} is {list(levels)}; expected values strictly between 0 and 1")
    return lv
