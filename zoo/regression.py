"""Heteroscedastic regression: an MLP whose outputs parameterize any shared likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
from torch import Tensor

from .base import ZooModel
from .likelihoods import LIKELIHOODS, make_likelihood
from .nets import MLP

__all__ = ["RegressionConfig", "Regression", "MSEConfig", "MSE"]


@dataclass
class RegressionConfig:
    """Config of :class:`Regression`.

    Arguments:
        input_dim: input features.
        target_dim: target dimensions (1 for ``y`` of shape ``[N]``).
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        activation: relu, tanh, silu, gelu, softplus or elu.
        likelihood: normal, studentt, laplace, lognormal, gamma, poisson, negbinomial, beta.
        homoscedastic: one learned noise scale instead of an x-dependent one (normal only).
    """

    input_dim: int = 1
    target_dim: int = 1
    hidden: int = 64
    depth: int = 2
    activation: str = "silu"
    likelihood: str = "normal"
    homoscedastic: bool = False

    def validate(self) -> None:
        if self.likelihood not in LIKELIHOODS or self.likelihood in ("bernoulli", "categorical"):
            names = [n for n in LIKELIHOODS if n not in ("bernoulli", "categorical")]
            raise ValueError(
                f"likelihood {self.likelihood!r} is not a regression likelihood; "
                f"choose one of {', '.join(names)} (bernoulli/categorical models take labels)"
            )
        if self.homoscedastic and self.likelihood != "normal":
            raise ValueError("homoscedastic=true needs likelihood=normal")
        if self.input_dim < 1 or self.hidden < 1 or self.depth < 0:
            raise ValueError("input_dim and hidden must be >= 1 and depth >= 0")


class Regression(ZooModel):
    """p(y | x) from an MLP: location and scale both depend on x.

    Arguments:
        config: a :class:`RegressionConfig`; keyword overrides are applied on top.

    Example:
        >>> model = Regression(input_dim=1, likelihood="studentt")
        >>> Predictive(model, guide=model.guide, num_samples=10)(x)["obs"].shape
        torch.Size([10, N])
    """

    Config = RegressionConfig
    description = "heteroscedastic MLP regression with any likelihood (normal, studentt, ...)"
    tiny_config = {"hidden": 8}
    default_fit = {"epochs": 500, "lr": 3e-3, "batch_size": 256, "patience": 50}

    def __init__(self, config: RegressionConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        kwargs = {"homoscedastic": True} if c.homoscedastic else {}
        self.likelihood = make_likelihood(c.likelihood, c.target_dim, **kwargs)
        self.net = MLP(c.input_dim, self.likelihood.num_outputs, c.hidden, c.depth, c.activation)

    def predictive_distribution(self, x: Tensor):
        return self.likelihood(self.net(x))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        d = self.likelihood(self.net(x))
        with self.data_plate(x):
            return pyro.sample("obs", d, obs=y)


@dataclass
class MSEConfig(RegressionConfig):
    """Config of :class:`MSE`: a Normal likelihood with one learned scale."""

    homoscedastic: bool = True


class MSE(Regression):
    """The deterministic baseline: the same MLP, homoscedastic Normal (MSE up to a constant)."""

    Config = MSEConfig
    description = "deterministic MLP baseline: homoscedastic Normal (MSE up to a constant)"
