"""Mixture density network: an MLP whose outputs parameterize a mixture of K Gaussians."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ZooModel
from .likelihoods import Likelihood
from .nets import MLP

__all__ = ["GaussianMixture", "MDNConfig", "MDN"]


class _Mixture(dist.MixtureSameFamily):
    """``MixtureSameFamily`` whose ``expand`` to its own batch shape is free.

    ``pyro.plate`` expands every observed distribution to the plate's shape, even when it
    already has it; rebuilding a mixture's three distributions costs about 40 us a step.
    """

    def expand(self, batch_shape, _instance=None):
        if _instance is None and torch.Size(batch_shape) == self.batch_shape:
            return self  # distributions are immutable: the same one serves
        return super().expand(batch_shape, _instance)


class GaussianMixture(Likelihood):
    """A mixture of K diagonal Gaussians whose weights, locations and scales are network outputs.

    Per data point the network gives ``K`` logits, then ``K x target_dim`` locations and
    ``K x target_dim`` raw scales. Weights are a softmax of the logits (``Categorical(logits=)``,
    never log of probabilities) and scales are ``softplus(raw) + min_scale``, so no output
    can overflow or collapse a component onto a point.

    Arguments:
        target_dim: target dimensions (1 for ``y`` of shape ``[N]``).
        components: number of mixture components K.
        min_scale: floor of every component's scale.

    Example:
        >>> lik = GaussianMixture(components=3)
        >>> lik(torch.randn(10, lik.num_outputs)).log_prob(torch.randn(10)).shape
        torch.Size([10])
    """

    name = "gaussian_mixture"
    kind = "continuous"

    def __init__(self, target_dim: int = 1, components: int = 5, min_scale: float = 1e-3):
        super().__init__(target_dim)
        self.components = components
        self.min_scale = min_scale

    @property
    def num_outputs(self) -> int:
        return self.components * (1 + 2 * self.target_dim)

    def split(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``[..., K]``, locations and scales ``[..., K, target_dim]`` from outputs."""
        k, d = self.components, self.target_dim
        logits, loc, raw_scale = out.split([k, k * d, k * d], dim=-1)
        scale = F.softplus(raw_scale) + self.min_scale
        shape = (*out.shape[:-1], k, d)
        return logits, loc.reshape(shape), scale.reshape(shape)

    def forward(self, out: Tensor) -> dist.MixtureSameFamily:
        k = self.components
        if self.target_dim == 1:  # [..., K] parameters directly: no reshapes on the hot path
            logits, loc, raw_scale = out.split([k, k, k], dim=-1)
            components = dist.Normal(loc, F.softplus(raw_scale) + self.min_scale)
        else:
            logits, loc, scale = self.split(out)
            components = dist.Normal(loc, scale).to_event(1)
        return _Mixture(dist.Categorical(logits=logits), components)

    def extra_repr(self) -> str:
        return f"target_dim={self.target_dim}, components={self.components}"


@dataclass
class MDNConfig:
    """Config of :class:`MDN`.

    Arguments:
        input_dim: input features.
        target_dim: target dimensions (diagonal components when > 1).
        components: mixture components K.
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        activation: relu, tanh, silu, gelu, softplus or elu.
        min_scale: floor of the component scales.
    """

    input_dim: int = 1
    target_dim: int = 1
    components: int = 2
    hidden: int = 64
    depth: int = 2
    activation: str = "tanh"
    min_scale: float = 1e-3

    def validate(self) -> None:
        if self.components < 1:
            raise ValueError(f"components must be >= 1; got {self.components}")
        if self.input_dim < 1 or self.target_dim < 1 or self.hidden < 1 or self.depth < 0:
            raise ValueError("input_dim, target_dim and hidden must be >= 1 and depth >= 0")
        if not self.min_scale > 0:
            raise ValueError(f"min_scale must be > 0; got {self.min_scale}")


class MDN(ZooModel):
    """Mixture density network: p(y | x) is a mixture of K Gaussians from an MLP.

    The Pyro model observes ``y`` at ``obs`` from a ``MixtureSameFamily``; the guide is empty,
    so SVI is maximum likelihood. The predictive distribution is exact, so the metrics use
    the mixture's closed-form NLL and CRPS.

    Arguments:
        config: an :class:`MDNConfig`; keyword overrides are applied on top.

    Example:
        >>> model = MDN(components=5)
        >>> fit(model, data.train, data.val)
        >>> model.predictive_distribution(x).log_prob(y)
    """

    Config = MDNConfig
    description = "mixture density network: a mixture of K Gaussians from an MLP"
    default_dataset = "toy"
    tiny_config = {"hidden": 8, "components": 3}
    # measured on the toy problem (benchmarks/mdn.py): smooth units, a one-cycle schedule and
    # early stopping generalize best from 2,000 points; more components only add variance
    default_fit = {
        "epochs": 200,
        "lr": 1e-2,
        "batch_size": 256,
        "schedule": "onecycle",
        "patience": 40,
    }

    def __init__(self, config: MDNConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.likelihood = GaussianMixture(c.target_dim, c.components, c.min_scale)
        self.net = MLP(c.input_dim, self.likelihood.num_outputs, c.hidden, c.depth, c.activation)

    def predictive_distribution(self, x: Tensor) -> dist.MixtureSameFamily:
        return self.likelihood(self.net(x))

    def mixture(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Weights ``[N, K]``, locations and scales ``[N, K, target_dim]`` at inputs ``x``."""
        logits, loc, scale = self.likelihood.split(self.net(x))
        return torch.softmax(logits, -1), loc, scale

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        d = self.likelihood(self.net(x))
        with self.data_plate(x):
            return pyro.sample("obs", d, obs=y)
