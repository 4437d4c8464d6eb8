"""Likelihoods: map network outputs to a predictive distribution, check targets' support."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import MetricKind

__all__ = [
    "Likelihood",
    "Normal",
    "StudentT",
    "Laplace",
    "LogNormal",
    "Gamma",
    "Poisson",
    "NegativeBinomial",
    "Beta",
    "Bernoulli",
    "Categorical",
    "LIKELIHOODS",
    "make_likelihood",
    "TargetError",
]


class TargetError(ValueError):
    """Targets do not fit a likelihood's support or dtype."""


def _positive(raw: Tensor, floor: float = 1e-4) -> Tensor:
    # softplus never overflows like exp, and the floor keeps scales away from 0
    return F.softplus(raw) + floor


def _first_bad_row(bad: Tensor) -> int:
    return int(bad.reshape(bad.shape[0], -1).any(-1).nonzero()[0, 0])


class Likelihood(nn.Module):
    """Maps network outputs ``[N, num_outputs]`` to a distribution over targets.

    A likelihood knows how many network outputs it needs per target dimension, the event shape
    of a target, its support (checked before training), and which metrics apply to it
    (``kind``: ``"continuous"``, ``"count"`` or ``"class"``).

    Arguments:
        target_dim: number of target dimensions (1 for scalar targets ``y`` of shape ``[N]``).
    """

    name: str = ""
    kind: MetricKind = "continuous"
    params_per_dim: int = 1

    def __init__(self, target_dim: int = 1):
        super().__init__()
        self.target_dim = target_dim

    @property
    def num_outputs(self) -> int:
        """Number of network outputs this likelihood consumes."""
        return self.target_dim * self.params_per_dim

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size([]) if self.target_dim == 1 else torch.Size([self.target_dim])

    def _split(self, out: Tensor) -> list[Tensor]:
        out = out.reshape(*out.shape[:-1], self.target_dim, self.params_per_dim)
        parts = out.unbind(-1)
        if self.target_dim == 1:
            parts = tuple(p.squeeze(-1) for p in parts)
        return list(parts)

    def _finish(self, d: dist.TorchDistribution) -> dist.TorchDistribution:
        return d if self.target_dim == 1 else d.to_event(1)

    def forward(self, out: Tensor) -> dist.TorchDistribution:
        """The predictive distribution for network outputs ``out`` of shape ``[..., N, k]``."""
        return self._finish(self.make(*self._split(out)))

    def make(self, *params: Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    # --- targets -------------------------------------------------------------------------
    def target_dtype(self) -> torch.dtype:
        return torch.get_default_dtype()

    def prepare_targets(self, y: Tensor) -> Tensor:
        """Checks ``y`` and returns it in the dtype the distribution expects."""
        y = torch.as_tensor(y)
        if y.is_complex():
            raise TargetError(f"{self.name} targets must be real; got {y.dtype}")
        want = (len(y),) if self.target_dim == 1 else (len(y), self.target_dim)
        if y.dim() == 2 and self.target_dim == 1 and y.shape[1] == 1:
            y = y[:, 0]
        if tuple(y.shape) != want:
            raise TargetError(
                f"{self.name} targets must have shape {list(want)}; got {list(y.shape)}"
            )
        if y.is_floating_point():
            bad = ~torch.isfinite(y)
            if bad.any():
                row = _first_bad_row(bad)
                raise TargetError(f"targets contain NaN or inf; row {row} has {y[row].tolist()}")
        self.check_support(y)
        return y.to(self.target_dtype())

    def check_support(self, y: Tensor) -> None:
        """Raises :class:`TargetError` naming the first row outside the support."""

    def _require(self, bad: Tensor, y: Tensor, what: str) -> None:
        if bad.any():
            row = _first_bad_row(bad)
            value = y[row].tolist()
            raise TargetError(f"{self.name} targets must be {what}; row {row} has {value}")

    def extra_repr(self) -> str:
        return f"target_dim={self.target_dim}"


class Normal(Likelihood):
    """Normal with location and scale from the network, or one learned scale if homoscedastic.

    Arguments:
        target_dim: number of target dimensions.
        homoscedastic: one learned scale for all inputs (MSE up to a constant) instead of
            a scale that depends on x.
        init_scale: initial value of the homoscedastic scale.
    """

    name = "normal"

    def __init__(self, target_dim: int = 1, homoscedastic: bool = False, init_scale: float = 1.0):
        super().__init__(target_dim)
        self.homoscedastic = homoscedastic
        self.params_per_dim = 1 if homoscedastic else 2
        if homoscedastic:
            raw = math.log(math.expm1(init_scale))
            self.raw_scale = nn.Parameter(torch.full((target_dim,), raw))

    def forward(self, out: Tensor) -> dist.TorchDistribution:
        if not self.homoscedastic:
            return super().forward(out)
        loc = out if self.target_dim > 1 else out.squeeze(-1)
        scale = _positive(self.raw_scale)
        scale = scale.expand_as(loc) if self.target_dim > 1 else scale[0].expand_as(loc)
        return self._finish(dist.Normal(loc, scale))

    def make(self, loc: Tensor, raw_scale: Tensor) -> dist.TorchDistribution:
        return dist.Normal(loc, _positive(raw_scale))


class StudentT(Likelihood):
    """Student-t with location and scale from the network and one learned df > 2."""

    name = "studentt"
    params_per_dim = 2

    def __init__(self, target_dim: int = 1, init_df: float = 10.0):
        super().__init__(target_dim)
        # df = 2 + softplus(raw) keeps the variance finite, which CRPS and coverage need
        self.raw_df = nn.Parameter(torch.tensor(math.log(math.expm1(init_df - 2.0))))

    @property
    def df(self) -> Tensor:
        return 2.0 + F.softplus(self.raw_df)

    def make(self, loc: Tensor, raw_scale: Tensor) -> dist.TorchDistribution:
        return dist.StudentT(self.df.expand_as(loc), loc, _positive(raw_scale))


class Laplace(Likelihood):
    """Laplace with location and scale from the network."""

    name = "laplace"
    params_per_dim = 2

    def make(self, loc: Tensor, raw_scale: Tensor) -> dist.TorchDistribution:
        return dist.Laplace(loc, _positive(raw_scale))


class _Positive(Likelihood):
    def check_support(self, y: Tensor) -> None:
        self._require(y <= 0, y, "positive")


class LogNormal(_Positive):
    """LogNormal for positive targets: log y is Normal with x-dependent location and scale."""

    name = "lognormal"
    params_per_dim = 2

    def make(self, loc: Tensor, raw_scale: Tensor) -> dist.TorchDistribution:
        return dist.LogNormal(loc, _positive(raw_scale))


class Gamma(_Positive):
    """Gamma for positive targets, with x-dependent concentration and rate."""

    name = "gamma"
    params_per_dim = 2

    def make(self, raw_conc: Tensor, raw_rate: Tensor) -> dist.TorchDistribution:
        return dist.Gamma(_positive(raw_conc), _positive(raw_rate))


class _Count(Likelihood):
    kind: MetricKind = "count"

    def check_support(self, y: Tensor) -> None:
        if y.is_floating_point():
            self._require((y < 0) | (y != y.round()), y, "non-negative integers")
        else:
            self._require(y < 0, y, "non-negative integers")


class Poisson(_Count):
    """Poisson counts; the rate is softplus of the network output (no overflow, unlike exp)."""

    name = "poisson"
    params_per_dim = 1

    def make(self, raw_rate: Tensor) -> dist.TorchDistribution:
        return dist.Poisson(_positive(raw_rate, 1e-6))


class NegativeBinomial(_Count):
    """Negative binomial counts (over-dispersed Poisson): total count and logits from the net."""

    name = "negbinomial"
    params_per_dim = 2

    def make(self, raw_total: Tensor, logits: Tensor) -> dist.TorchDistribution:
        return dist.NegativeBinomial(total_count=_positive(raw_total), logits=logits)


class Beta(Likelihood):
    """Beta for targets strictly inside (0, 1)."""

    name = "beta"
    params_per_dim = 2

    def check_support(self, y: Tensor) -> None:
        self._require((y <= 0) | (y >= 1), y, "strictly between 0 and 1")

    def make(self, raw_a: Tensor, raw_b: Tensor) -> dist.TorchDistribution:
        return dist.Beta(_positive(raw_a), _positive(raw_b))


class Bernoulli(Likelihood):
    """Bernoulli on logits (never probabilities through a log) for binary labels 0/1."""

    name = "bernoulli"
    kind: MetricKind = "class"
    params_per_dim = 1

    @property
    def num_classes(self) -> int:
        return 2

    def check_support(self, y: Tensor) -> None:
        self._require((y != 0) & (y != 1), y, "0 or 1")

    def make(self, logits: Tensor) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=logits)

    def probs(self, out: Tensor) -> Tensor:
        """Class probabilities ``[..., N, 2]`` from network outputs."""
        p1 = torch.sigmoid(out.squeeze(-1))
        return torch.stack([1 - p1, p1], -1)


class Categorical(Likelihood):
    """Categorical on logits over ``num_classes`` classes, for integer labels."""

    name = "categorical"
    kind: MetricKind = "class"

    def __init__(self, target_dim: int = 1, num_classes: int = 2):
        if target_dim != 1:
            raise ValueError("categorical likelihood takes one label per row (target_dim=1)")
        super().__init__(target_dim)
        self.num_classes = num_classes
        self.params_per_dim = num_classes

    def forward(self, out: Tensor) -> dist.TorchDistribution:
        return dist.Categorical(logits=out)

    def target_dtype(self) -> torch.dtype:
        return torch.long

    def check_support(self, y: Tensor) -> None:
        if y.is_floating_point():
            self._require(y != y.round(), y, "integer class labels")
        what = f"integer class labels in [0, {self.num_classes - 1}]"
        self._require((y < 0) | (y >= self.num_classes), y, what)

    def probs(self, out: Tensor) -> Tensor:
        """Class probabilities ``[..., N, C]`` from network outputs."""
        return torch.softmax(out, -1)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "normal": Normal,
    "studentt": StudentT,
    "laplace": Laplace,
    "lognormal": LogNormal,
    "gamma": Gamma,
    "poisson": Poisson,
    "negbinomial": NegativeBinomial,
    "beta": Beta,
    "bernoulli": Bernoulli,
    "categorical": Categorical,
}


def make_likelihood(name: str, target_dim: int = 1, **kwargs) -> Likelihood:
    """Builds a likelihood by name; an unknown name lists the valid ones."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name](target_dim, **kwargs)
