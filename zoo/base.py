"""The model contract every zoo family follows (a PyroModule whose forward is the Pyro model)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import pyro
import torch
from pyro.nn import PyroModule
from torch import Tensor

from .config import make_config

__all__ = [
    "ZooModel",
    "DataError",
    "check_inputs",
    "data_size",
    "local_params",
    "LocalParams",
    "MetricKind",
    "HasPredictiveDistribution",
    "HasClassProbs",
    "HasLogits",
    "HasLogProb",
    "HasLogWeights",
    "HasIWAESamples",
    "HasFigures",
    "HasPredictiveComponents",
    "ChecksTrainingData",
    "HasEpochSchedule",
    "HasTemperature",
    "DeclaresPlateNesting",
    "plate_nesting",
    "SupportsForecast",
]

#: Which metrics apply to a model's predictions (``ZooModel.metric_kind``).
MetricKind = Literal["continuous", "count", "class", "density", "forecast"]

# "this batch stands for N data points": set only inside a training step (see data_size)
_DATA_SIZE: contextvars.ContextVar[int | None] = contextvars.ContextVar("data_size", default=None)


@contextlib.contextmanager
def data_size(num_data: int | None) -> Iterator[None]:
    """Within the block, a batch stands for ``num_data`` points: the plate ``data`` of every
    zoo model has size ``num_data`` and scales the data term by ``num_data / batch``.

    ``inference.fit`` enters it around each training step with the size of the whole training
    set (on every rank under data parallelism); outside it a model's plate has the size of the
    batch it is given, so a trained or loaded model traced on 20 points has ``obs`` scale 1.
    ``None`` turns scaling off inside an outer block.

    Example:
        >>> with data_size(60000):  # a batch of 128 MNIST images stands for all 60,000
        ...     loss = Trace_ELBO().differentiable_loss(model, model.guide, xb, xb)
    """
    if num_data is not None and int(num_data) < 1:
        raise ValueError(f"num_data must be >= 1; got {num_data}")
    token = _DATA_SIZE.set(None if num_data is None else int(num_data))
    try:
        yield
    finally:
        _DATA_SIZE.reset(token)


def local_params() -> contextlib.AbstractContextManager:
    """Pyro's ``module_local_params`` setting, on for the block only (restored after it).

    Zoo models enter it wherever Pyro reads the setting (when a module is built and when it
    runs), so ``import zoo`` changes nothing global and a user's own ``Trace_ELBO`` or
    ``Predictive`` on a zoo model works without any call first.
    """
    return pyro.settings.context(module_local_params=True)


class LocalParams:
    """Mixin for a PyroModule: every call runs with module-local parameters (see
    :func:`local_params`); AutoGuides of zoo models use it, ``ZooModel`` itself does too."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with local_params():
            return super().__call__(*args, **kwargs)  # type: ignore[misc]


# --- optional hooks a model may offer; inference checks them with isinstance ------------------
@runtime_checkable
class HasPredictiveDistribution(Protocol):
    """The exact predictive p(y | x) (or None when the model has none in closed form)."""

    def predictive_distribution(self, x: Tensor) -> torch.distributions.Distribution | None: ...


@runtime_checkable
class HasClassProbs(Protocol):
    """Predictive class probabilities ``[N, C]`` (``[N]`` of class 1 for binary models)."""

    def class_probs(self, x: Tensor, num_samples: int = 100) -> Tensor: ...


@runtime_checkable
class HasLogits(Protocol):
    """Logits (temperature-scaled where the model has a temperature): ``[N]`` or ``[N, C]``."""

    def logits(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class HasLogProb(Protocol):
    """An exact log density ``log p(x)`` per row, ``[N]`` (density models)."""

    def log_prob(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class HasLogWeights(Protocol):
    """Importance log-weights ``log p(x, z_k) - log q(z_k | x)``, ``[k, N]`` (latent models)."""

    def log_weights(self, x: Tensor, k: int) -> Tensor: ...


@runtime_checkable
class HasIWAESamples(Protocol):
    """The number K of importance samples the model's IWAE bound uses in evaluation."""

    @property
    def iwae_samples(self) -> int: ...


@runtime_checkable
class HasQuasiLikelihood(Protocol):
    """Whether the model's ``log_prob`` is a quasi-likelihood (a training loss written as a
    log density, e.g. a pinball loss as asymmetric Laplace densities), not a density of the
    data: its held-out value is then reported as ``quasi_nll``, not ``nll``."""

    @property
    def quasi_likelihood(self) -> bool: ...


@runtime_checkable
class HasFigures(Protocol):
    """Figures a family describes itself: ``{file stem: (plot name, kwargs)}``; each plot name
    is a key of ``inference.figures.PLOTS``."""

    def figures(self, dataset: Any) -> dict[str, tuple[str, dict[str, Any]]]: ...


@runtime_checkable
class HasPredictiveComponents(Protocol):
    """The predictive distribution of each of S posterior draws, batch ``[S, N]``."""

    def predictive_components(
        self, x: Tensor, num_samples: int = 100
    ) -> torch.distributions.Distribution: ...


@runtime_checkable
class ChecksTrainingData(Protocol):
    """Checks of the training split only (for example that every class appears)."""

    def check_training_data(self, x: Tensor, y: Tensor | None) -> None: ...


@runtime_checkable
class ChecksData(Protocol):
    """Checks inputs (and targets) and returns them in the dtypes the model computes in."""

    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]: ...


@runtime_checkable
class HasDefaultFit(Protocol):
    """Training options (``inference.FitConfig`` fields) that suit the model."""

    default_fit: dict[str, Any]


@runtime_checkable
class HasEpochSchedule(Protocol):
    """Told the epoch (1-based) and the number of epochs before each epoch (e.g. KL warm-up)."""

    def set_epoch(self, epoch: int, epochs: int) -> None: ...


class DataError(ValueError):
    """Training or evaluation data is malformed; the message names the problem and the fix."""


def check_inputs(
    x: Tensor, name: str = "x", features: int | None = None, dtype: torch.dtype | None = None
) -> None:
    """Checks that ``x`` is a non-empty, finite float tensor ``[N, features]`` of ``dtype``."""
    if not torch.is_tensor(x):
        raise DataError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() != 2:
        fix = "use x[:, None] for 1-D" if x.dim() < 2 else "flatten it with x.reshape(len(x), -1)"
        raise DataError(f"{name} must have shape [N, features]; got {list(x.shape)} ({fix})")
    if len(x) == 0:
        raise DataError(f"{name} is empty (shape {list(x.shape)}); pass at least one row")
    if features is not None and x.shape[1] != features:
        raise DataError(
            f"{name} has {x.shape[1]} features per row but the model expects {features}"
        )
    if not x.is_floating_point():
        raise DataError(f"{name} must be a float tensor; got {x.dtype} (use {name}.float())")
    if dtype is not None and x.dtype != dtype:
        raise DataError(
            f"{name} is {x.dtype} but the model computes in {dtype}; convert it with "
            f"{name}.to({dtype}) (or the model with model.to({x.dtype}))"
        )
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.reshape(len(x), -1).any(-1).nonzero()[0, 0])
        raise DataError(f"{name} contains NaN or inf (first at row {row}); clean or impute it")


@runtime_checkable
class HasTemperature(Protocol):
    """A classifier whose ``logits(x)`` are divided by a scalar ``temperature`` buffer."""

    temperature: Tensor

    def logits(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class DeclaresPlateNesting(Protocol):
    """How many plates nest around the observed site (for vectorized particles)."""

    max_plate_nesting: int


def plate_nesting(model: Any) -> int:
    """``model.max_plate_nesting`` where the model declares it, else 1 (the plate ``data``)."""
    return int(model.max_plate_nesting) if isinstance(model, DeclaresPlateNesting) else 1


class ZooModel(LocalParams, PyroModule):
    """Base class of every zoo model.

    The contract: ``forward(x, y=None)`` is the Pyro model, observing ``y`` at the site
    ``obs`` under the plate ``data`` over the batch; ``guide`` is its guide; every parameter
    lives in the module (Pyro's ``module_local_params``, which the model turns on for its own
    construction and calls only: ``import zoo`` changes no global setting).
    ``Predictive(model, guide=model.guide, num_samples=S)(x)["obs"]`` has shape
    ``[S, N, *event]``.

    Minibatch scaling belongs to a training step, not to the model: inside
    ``with zoo.base.data_size(N):`` (``inference.fit`` enters it around every step with the
    size of the whole training set) the plate ``data`` has size N and the batch is its
    subsample, so the data term is scaled by N / batch and priors and KL terms keep their
    weight. Outside it the plate has the batch's own size: a trained or loaded model is the
    plain Pyro program of the points it is given (``Trace_ELBO().loss(model, model.guide, x)``
    is the ELBO of those points).

    Optional capabilities (``class_probs``, ``logits``, ``log_prob``, ``log_weights``,
    ``figures``, ``set_epoch``, ...) are the Protocols of this module; ``inference`` checks them
    with ``isinstance``.

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
        # the module's Pyro context (shared by its PyroModule children) is made for local params
        with local_params():
            super().__init__()
        if config is None or overrides:
            config = make_config(type(self).Config, overrides, base=config)
        self.config = config

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
        """The plate ``data`` over the batch; inside :func:`data_size` it has that size and
        scales the data term by ``num_data / batch``."""
        n = x.shape[0]
        num_data = _DATA_SIZE.get()
        if num_data is None or num_data == n:
            return pyro.plate("data", n, dim=-1)
        # the subsample only sets the batch size: the scale is num_data / n
        return pyro.plate("data", num_data, subsample=torch.arange(n, device=x.device), dim=-1)

    def guide(self, x: Tensor, y: Tensor | None = None) -> None:
        """The empty guide: no latent variables, so SVI is maximum likelihood."""

    # --- data checks ---------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return int(self.config.input_dim)

    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Checks inputs and targets before training and returns them in the right dtypes."""
        check_inputs(x, "x", self.input_dim, self._float_dtype())
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

    def _float_dtype(self) -> torch.dtype:
        for t in self.parameters():
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    # --- predictions ---------------------------------------------------------------------
    def predictive_distribution(self, x: Tensor) -> torch.distributions.Distribution | None:
        """The exact predictive p(y | x) when the model has one in closed form, else None."""
        return None

    @property
    def metric_kind(self) -> MetricKind:
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


# --- optional capabilities (checked by type in inference, never by a family's name) ---------
@runtime_checkable
class SupportsForecast(Protocol):
    """A model that forecasts series: windows for training, inputs for an origin's forecast.

    ``Predictive(model, guide=model.guide, num_samples=S)(model.forecast_inputs(series, H))``
    gives ``obs`` of shape ``[S, N, H]``: sample paths of the H steps after each series.
    """

    def training_windows(self, series: Any) -> tuple[Tensor, Tensor]:
        """``(x, y)`` windows cut from each series, for ``inference.fit``."""
        ...

    def forecast_inputs(
        self, series: Any, horizon: int, future_covariates: Tensor | None = None
    ) -> Tensor:
        """Inputs ``x`` whose predictive ``obs`` are the next ``horizon`` steps of each series."""
        ...


@runtime_checkable
class NeedsHistory(Protocol):
    """A forecaster that needs this many steps of a series for one training window."""

    @property
    def min_train_length(self) -> int: ...
