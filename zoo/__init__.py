"""pyro-zoo: probabilistic deep-learning models as Pyro model/guide pairs.

The registry ``MODELS`` is a plain dict from name to model class; ``build(name, **overrides)``
makes one with its typed config, and ``load(run_dir)`` brings back a trained one.
"""

from __future__ import annotations

from typing import Any

import pyro

# Parameters live in the modules, never in Pyro's global param store: state_dict, .to(device)
# and torch.save just work, and two models in one notebook never share parameters.
pyro.settings.set(module_local_params=True)

from . import datasets, likelihoods  # noqa: E402
from .base import DataError, ZooModel  # noqa: E402
from .bnn import BNN  # noqa: E402
from .classifier import BernoulliClassifier, CategoricalClassifier  # noqa: E402
from .config import ConfigError, make_config, parse_overrides  # noqa: E402
from .flow import ConditionalFlow, Flow  # noqa: E402
from .io import CheckpointError, load, save  # noqa: E402
from .mdn import MDN  # noqa: E402
from .regression import MSE, Regression  # noqa: E402
from .vae import VAE  # noqa: E402

__all__ = [
    "MODELS",
    "build",
    "load",
    "save",
    "family_name",
    "ZooModel",
    "Regression",
    "MSE",
    "BernoulliClassifier",
    "CategoricalClassifier",
    "BNN",
    "VAE",
    "MDN",
    "Flow",
    "ConditionalFlow",
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
