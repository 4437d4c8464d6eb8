"""Offline data loaders: a plain registry ``DATASETS`` of name -> loader(seed=..., **kwargs)."""

from __future__ import annotations

from collections.abc import Callable

from .base import Dataset, Split, split_indices, standardize
from .sklearn_sets import load_diabetes
from .toy import load_toy, toy_log_prob, toy_sample

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "load_dataset",
    "split_indices",
    "standardize",
    "toy_log_prob",
    "toy_sample",
]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "toy": load_toy,
    "diabetes": load_diabetes,
}


def load_dataset(name: str, seed: int = 0, **kwargs) -> Dataset:
    """Loads a registered dataset; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](seed=seed, **kwargs)
