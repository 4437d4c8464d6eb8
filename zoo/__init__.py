"""pyro-zoo: probabilistic deep-learning models as Pyro model/guide pairs.

The registry ``MODELS`` is a plain dict from name to model class; ``build(name, **overrides)``
makes one with its typed config, and ``load(run_dir)`` brings back a trained one.
"""

from __future__ import annotations

from typing import Any

# Parameters live in the modules, never in Pyro's global param store: every zoo model turns
# Pyro's module_local_params on for its own construction and calls (zoo.base.local_params), so
# importing zoo changes no global setting.
from . import datasets, likelihoods
from .base import DataError, ZooModel, data_size
from .bnn import BNN
from .classifier import BernoulliClassifier, CategoricalClassifier
from .config import ConfigError, make_config, parse_overrides
from .flow import ConditionalFlow, Flow
from .forecast import Forecaster
from .io import CheckpointError, load, save
from .mdn import MDN
from .regression import MSE, Regression
from .vae import VAE

__all__ = [
    "MODELS",
    "build",
    "load",
    "save",
    "family_name",
    "ZooModel",
    "data_size",
    "Regression",
    "MSE",
    "BernoulliClassifier",
    "CategoricalClassifier",
    "BNN",
    "VAE",
    "MDN",
    "Flow",
    "ConditionalFlow",
    "Forecaster",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "make_config",
    "parse_overrides",
    "datasets",
    "likelihoods",
]

MODELS: dict[str, type[ZooModel]] = {
    "regression": Regression,
    "mse": MSE,
    "bernoulli": BernoulliClassifier,
    "categorical": CategoricalClassifier,
    "bnn": BNN,
    "vae": VAE,
    "mdn": MDN,
    "flow": Flow,
    "cflow": ConditionalFlow,
    "forecast": Forecaster,
}


def build(name: str, **overrides: Any) -> ZooModel:
    """Builds the registered model ``name`` with config overrides.

    An unknown name, an unknown key or a value of the wrong type raises :class:`ConfigError`
    naming the problem and the allowed names or keys.

    Example:
        >>> model = zoo.build("regression", likelihood="studentt", hidden=128)
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    try:
        config = make_config(cls.Config, overrides)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return cls(config)


def family_name(model: ZooModel) -> str:
    """The registry name of a model's class."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ConfigError(f"{type(model).__name__} is not in zoo.MODELS; register it to save it")
