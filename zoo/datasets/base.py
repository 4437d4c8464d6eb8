"""Dataset containers shared by every loader: seeded splits and optional true densities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Split", "Dataset", "split_indices", "standardize"]


@dataclass
class Split:
    """One split: inputs ``x [N, ...]`` and targets or labels ``y [N, ...]`` (None if unlabeled)."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Dataset:
    """A dataset with train / validation / test splits.

    Arguments:
        name: registry name.
        task: ``regression``, ``classification`` or ``density``.
        train, val, test: the splits.
        true_log_prob: exact log density of the data-generating process, ``(x, y) -> [N]``
            for conditional problems or ``(y) -> [N]`` for densities, when it is known.
        num_classes: for classification.
        image_shape: ``(H, W)`` for image data (rows of ``x`` are flattened images).
        info: anything else worth recording (scalers, sources).
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    true_log_prob: Callable[..., Tensor] | None = None
    num_classes: int | None = None
    image_shape: tuple[int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.train.x.shape[1:].numel())

    @property
    def target_dim(self) -> int:
        y = self.train.y
        return 1 if y is None or y.dim() == 1 else int(y.shape[1])

    def true_nll(self, split: str = "test") -> float | None:
        """Mean negative true log density on a split, the limit any model can reach."""
        if self.true_log_prob is None:
            return None
        s = getattr(self, split)
        lp = self.true_log_prob(s.x, s.y) if s.y is not None else self.true_log_prob(s.x)
        return float(-lp.mean())


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> tuple[Tensor, ...]:
    """A seeded permutation cut into train / val / test index sets (val, test fractions given)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = int(round(fractions[0] * n))
    n_test = int(round(fractions[1] * n))
    return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]


def standardize(train: Tensor, *others: Tensor) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
    """Standardizes with the training split's mean and std (std of a constant column is 1)."""
    mean = train.mean(0)
    std = train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple((t - mean) / std for t in (train, *others)), mean, std
