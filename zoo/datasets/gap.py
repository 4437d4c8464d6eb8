"""A 1-D regression problem with a gap: data on [-4, -1] and [1, 4], none in between."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..base import DataError
from .base import Dataset, Split

__all__ = ["gap_function", "gap_sample", "gap_log_prob", "load_gap"]

NOISE = 0.1
LOW, HIGH = 1.0, 4.0  # |x| in [LOW, HIGH]: the gap is (-LOW, LOW)


def gap_function(x: Tensor) -> Tensor:
    """The smooth mean function f(x) = sin(x) + 0.3 x."""
    return torch.sin(x) + 0.3 * x


def gap_sample(
    n: int, generator: torch.Generator, noise: float = NOISE, low: float = LOW, high: float = HIGH
) -> tuple[Tensor, Tensor]:
    """x uniform on [-high, -low] and [low, high] (half in each), y = f(x) + noise * eps."""
    side = torch.where(torch.arange(n) % 2 == 0, -1.0, 1.0).double()
    x = side * (low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64))
    y = gap_function(x) + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    return x[:, None].float(), y.float()


def gap_log_prob(x: Tensor, y: Tensor, noise: float = NOISE) -> Tensor:
    """The exact conditional log density log p(y | x) = log N(y; f(x), noise), shape ``[N]``."""
    x = x.reshape(-1).double()
    z = (y.reshape(-1).double() - gap_function(x)) / noise
    return -0.5 * z**2 - math.log(noise) - 0.5 * math.log(2 * math.pi)


def load_gap(
    seed: int = 0,
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 2000,
    noise: float = NOISE,
    gap: float = LOW,
    extent: float = HIGH,
) -> Dataset:
    """The gap problem with seeded splits drawn from the data's support (the gap stays empty).

    ``info["gap"]`` is the empty interval and ``info["support"]`` the two data intervals; a
    model's uncertainty in the gap is judged on a grid (``info["grid"]``), not on test points.
    """
    g = torch.Generator().manual_seed(seed)
    if not 0 <= gap < extent:
        raise DataError(f"need 0 <= gap < extent; got gap={gap}, extent={extent}")
    splits = (gap_sample(n, g, noise, gap, extent) for n in (n_train, n_val, n_test))
    train, val, test = (Split(*s) for s in splits)
    info = {
        "gap": (-gap, gap),
        "support": ((-extent, -gap), (gap, extent)),
        "grid": (-extent - 2.0, extent + 2.0),
        "noise": noise,
        "function": "sin(x) + 0.3 x",
    }

    def true_log_prob(x: Tensor, y: Tensor) -> Tensor:
        return gap_log_prob(x, y, noise)

    return Dataset("gap", "regression", train, val, test, true_log_prob=true_log_prob, info=info)
