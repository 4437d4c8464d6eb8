"""The model contract every zoo family follows (a PyroModule whose forward is the Pyro model)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pyro
import torch
from pyro.nn import PyroModule
from pyro.poutine.runtime import _PYRO_STACK
from torch import Tensor

from .config import make_config

__all__ = ["ZooModel", "DataError", "check_inputs"]


class DataError(ValueError):
    """Training or evaluation data is malformed; the message names the problem and the fix."""


def check_inputs(x: Tensor, name: str = "x", features: int | None = None) -> None:
    """Checks that ``x`` is a finite float tensor ``[N, features]``."""
    if not torch.is_tensor(x):
        raise DataError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() < 2:
        raise DataError(
            f"{name} must have shape [N, features]; got {list(x.shape)} (use x[:, None] for 1-D)"
        )
    if features is not None and x.shape[1:].numel() != features:
        raise DataError(
            f"{name} has {x.shape[1:].numel()} features per row but the model expects {features}"
        )
    if not x.is_floating_point():
        raise DataError(f"{name} must be a float tensor; got {x.dtype}")
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.reshape(len(x), -1).any(-1).nonzero()[0, 0])
        raise DataError(f"{name} contains NaN or inf (first at row {row}); clean or impute it")


class ZooModel(PyroModule):
    """Base class of every zoo model.

    The contract: ``forward(x, y=None)`` is the Pyro model, observing ``y`` at the site
    ``obs`` under the plate ``data`` (scaled to ``num_data`` on minibatches); ``guide`` is its
    guide; every parameter lives in the module (``pyro.settings.set(module_local_params=True)``).
    ``Predictive(model, guide=model.guide, num_samples=S)(x)["obs"]`` has shape
    ``[S, N, *event]``.

    Subclasses set ``Config`` (a dataclass), ``description`` and build their networks in
    ``__init__(config)``.
    """

    Config: ClassVar[type]
    description: ClassVar[str] = ""
    #: True for models that observe their own input (x is both conditioned on and observed).
    target_is_input: ClassVar[bool] = False
    #: The dataset ``scripts/train.py`` uses when none is named.
    default_dataset: ClassVar[str] = "toy"
    #: Training options (``inference.FitConfig`` fields) that suit the family.
    default_fit: ClassVar[dict[str, Any]] = {}
    #: Small config overrides for the contract tests (seconds per family).
    tiny_config: ClassVar[dict[str, Any]] = {}
    #: Plates nested around the observed site (for vectorized particles and Predictive).
    max_plate_nesting: ClassVar[int] = 1

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__()
        if config is None or overrides:
            config = make_config(type(self).Config, overrides, base=config)
        self.config = config
        #: Size of the full training set, so minibatch log-likelihoods are scaled up to it.
        self.num_data: int | None = None

    def __getattr__(self, name: str) -> Any:
        # Inside the model, PyroModule.__getattr__ emits a no-op "param" statement per weight
        # of a plain nn.Module child on every access (module-local params keep nothing in the
        # param store), about 15 us per weight per step. Only handlers that read param sites
        # need them (poutine.trace, JitTrace_ELBO); when the outermost handler declares
        # ``skips_param_sites`` (the recorder of inference.elbo.LeanTrace_ELBO) the child is
        # returned as it is.
        if _PYRO_STACK and getattr(_PYRO_STACK[0], "skips_param_sites", False):
            module = self.__dict__.get("_modules", {}).get(name)
            if module is not None and not isinstance(module, PyroModule):
                return module
        return super().__getattr__(name)

    @classmethod
    def data_overrides(cls, dataset: Any) -> dict[str, Any]:
        """Config values read off a dataset (input size, target size, classes)."""
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        values = {
            "input_dim": dataset.input_dim,
            "target_dim": dataset.target_dim,
            "num_classes": dataset.num_classes,
        }
        return {k: v for k, v in values.items() if k in fields and v is not None}

    # --- the Pyro program ----------------------------------------------------------------
    def data_plate(self, x: Tensor) -> pyro.plate:
        """The plate over data points; on a minibatch it scales the data term to ``num_data``."""
        n = x.shape[0]
        if self.num_data is None or self.num_data == n:
            return pyro.plate("data", n, dim=-1)
        # the subsample only sets the batch size: the scale is num_data / n
        return pyro.plate("data", self.num_data, subsample=torch.arange(n, device=x.device), dim=-1)

    def guide(self, x: Tensor, y: Tensor | None = None) -> None:
        """The empty guide: no latent variables, so SVI is maximum likelihood."""

    # --- data checks ---------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return int(self.config.input_dim)

    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Checks inputs and targets before training and returns them in the right dtypes."""
        check_inputs(x, "x", self.input_dim)
        if y is None:
            return x, None
        if not torch.is_tensor(y):
            y = torch.as_tensor(y)
        if len(y) != len(x):
            raise DataError(f"x has {len(x)} rows but y has {len(y)}; they must match")
        likelihood = getattr(self, "likelihood", None)
        if likelihood is not None:
            y = likelihood.prepare_targets(y)
        return x, y

    # --- predictions ---------------------------------------------------------------------
    def predictive_distribution(self, x: Tensor) -> torch.distributions.Distribution | None:
        """The exact predictive p(y | x) when the model has one in closed form, else None."""
        return None

    @property
    def metric_kind(self) -> str:
        """Which metrics apply: ``continuous``, ``count``, ``class`` or ``density``."""
        likelihood = getattr(self, "likelihood", None)
        return likelihood.kind if likelihood is not None else "density"

    def val_score(self, x: Tensor, y: Tensor | None) -> float:
        """Validation score (lower is better) for early stopping: the held-out NLL per point.

        The default uses the exact predictive when there is one; models with latent variables
        override this (for example with the negative ELBO per point).
        """
        with torch.no_grad():
            d = self.predictive_distribution(x)
            if d is None:
                raise NotImplementedError(f"{type(self).__name__} must define val_score")
            return float(-d.log_prob(y).mean())

    def example_inputs(self, n: int = 8) -> Tensor:
        """Inputs of the right shape and range for quick checks (standard normal features)."""
        return torch.randn(n, self.input_dim)

    def init_lazy(self) -> None:
        """Creates lazily built parameters (AutoGuides) so ``load_state_dict`` finds them."""

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
