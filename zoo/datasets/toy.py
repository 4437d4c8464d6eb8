"""The seed notebook's multimodal heteroscedastic toy problem, with its exact density."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Dataset, Split

__all__ = ["toy_sample", "toy_log_prob", "load_toy"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def toy_sample(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x ~ U(-4, 4); with prob. sigmoid(x) y = sin(1.5x) + 0.15 eps, else y = 0.5x + 1 + 0.6 eps."""
    x = torch.rand(n, generator=generator, dtype=torch.float64) * 8 - 4
    upper = torch.rand(n, generator=generator, dtype=torch.float64) < torch.sigmoid(x)
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    y = torch.where(upper, torch.sin(1.5 * x) + 0.15 * eps, 0.5 * x + 1 + 0.6 * eps)
    return x[:, None].float(), y.float()


def _normal_lp(y: Tensor, loc: Tensor, scale: float) -> Tensor:
    return -0.5 * ((y - loc) / scale) ** 2 - math.log(scale) - _LOG_SQRT_2PI


def toy_log_prob(x: Tensor, y: Tensor) -> Tensor:
    """The exact conditional log density log p(y | x), computed in float64, shape ``[N]``."""
    x = x.reshape(-1).double()
    y = y.reshape(-1).double()
    a = torch.nn.functional.logsigmoid(x) + _normal_lp(y, torch.sin(1.5 * x), 0.15)
    b = torch.nn.functional.logsigmoid(-x) + _normal_lp(y, 0.5 * x + 1, 0.6)
    return torch.logaddexp(a, b)


def load_toy(
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 20000,
) -> Dataset:
    """The toy problem with seeded train / validation / test splits (independent draws)."""
    g = torch.Generator().manual_seed(seed)
    train, val, test = (Split(*toy_sample(n, g)) for n in (n_train, n_val, n_test))
    return Dataset("toy", "regression", train, val, test, true_log_prob=toy_log_prob)
