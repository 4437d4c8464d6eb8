"""Bayesian neural network: the shared MLP with Normal priors on its weights, any likelihood."""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import Tensor, nn
from torch.distributions import biject_to

from .base import LocalParams, ZooModel
from .likelihoods import LIKELIHOODS, make_likelihood
from .nets import MLP

__all__ = ["BNNConfig", "BNN", "BayesianLinear", "AutoMeanFieldNormal", "AutoLowRankNormal"]


@dataclass
class BNNConfig:
    """Config of :class:`BNN`.

    Arguments:
        input_dim: input features.
        target_dim: target dimensions (1 for ``y`` of shape ``[N]``).
        num_classes: classes of the categorical likelihood.
        hidden: width of each hidden layer.
        depth: number of hidden layers (0 gives Bayesian linear / logistic regression).
        activation: relu, tanh, silu, gelu, softplus or elu.
        likelihood: any name in ``zoo.likelihoods.LIKELIHOODS``.
        homoscedastic: one noise scale for all inputs instead of one from the net (applies to
            the normal likelihood only; the others take their parameters from the net).
        noise: for a homoscedastic normal, the noise scale is ``learned`` (a point estimate),
            has a HalfNormal ``prior`` (a latent site ``noise_scale`` in the guide) or is
            ``fixed``.
        noise_scale: the fixed noise, the HalfNormal prior's scale, or the learned initial value.
        prior_scale: standard deviation of the Normal(0, .) prior on weights and biases.
        prior_fan_in: divide the weights' prior scale by sqrt(fan_in) (biases keep prior_scale).
        guide: ``normal`` (mean field: :class:`AutoMeanFieldNormal`, an AutoNormal with
            closed-form KL under ``--elbo meanfield``) or ``lowrank``
            (AutoLowRankMultivariateNormal).
        guide_rank: rank of the low-rank guide (None: about sqrt of the number of weights).
        init_scale: initial standard deviation of the guide (its means start at the MLP's
            default initialization).
        val_samples: weight samples for the validation score (predictive NLL).
    """

    input_dim: int = 1
    target_dim: int = 1
    num_classes: int = 2
    hidden: int = 50
    depth: int = 2
    activation: str = "silu"
    likelihood: str = "normal"
    homoscedastic: bool = True
    noise: Literal["learned", "prior", "fixed"] = "learned"
    noise_scale: float = 1.0
    prior_scale: float = 1.0
    prior_fan_in: bool = True
    guide: Literal["normal", "lowrank"] = "normal"
    guide_rank: int | None = None
    init_scale: float = 0.02
    val_samples: int = 32

    def validate(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            names = ", ".join(LIKELIHOODS)
            raise ValueError(f"unknown likelihood {self.likelihood!r}; choose one of {names}")
        if self.noise != "learned" and not (self.likelihood == "normal" and self.homoscedastic):
            raise ValueError(f"noise={self.noise} needs likelihood=normal and homoscedastic=true")
        if self.input_dim < 1 or self.hidden < 1 or self.depth < 0 or self.val_samples < 1:
            raise ValueError("input_dim, hidden and val_samples must be >= 1 and depth >= 0")
        if min(self.noise_scale, self.prior_scale, self.init_scale) <= 0:
            raise ValueError("noise_scale, prior_scale and init_scale must be > 0")


class BayesianLinear(PyroModule[nn.Linear]):
    """An ``nn.Linear`` whose weight and bias are ``PyroSample`` sites with Normal priors.

    The prior constants are buffers (``.to(device)`` moves them). The forward broadcasts over
    leading sample dimensions of the weights: a weight ``[S, 1, out, in]`` drawn under a plate
    of S particles (at dim -2, beside the data plate at dim -1) maps ``x [N, in]`` or
    ``[S, N, in]`` to ``[S, N, out]``, which ``F.linear`` cannot do.
    """

    def make_bayesian(self, prior_scale: float, fan_in: bool) -> dict[str, Tensor]:
        """Replaces weight and bias by prior sites; returns their current values (for init)."""
        init = {"weight": self.weight.detach().clone(), "bias": self.bias.detach().clone()}
        w_scale = prior_scale / math.sqrt(self.in_features) if fan_in else prior_scale
        self.register_buffer("prior_loc", torch.zeros(()))
        self.register_buffer("weight_scale", torch.tensor(float(w_scale)))
        self.register_buffer("bias_scale", torch.tensor(float(prior_scale)))
        self.weight = PyroSample(BayesianLinear.weight_prior)
        self.bias = PyroSample(BayesianLinear.bias_prior)
        return init

    def weight_prior(self) -> dist.Distribution:
        shape = (self.out_features, self.in_features)
        return dist.Normal(self.prior_loc, self.weight_scale).expand(shape).to_event(2)

    def bias_prior(self) -> dist.Distribution:
        return dist.Normal(self.prior_loc, self.bias_scale).expand((self.out_features,)).to_event(1)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        if weight.dim() > 2 and weight.shape[-3] == 1:
            # a weight drawn under a particle plate is [S, 1, out, in]: the 1 is the data
            # plate's dim (Predictive's conditioned samples come without it: [S, out, in])
            weight, bias = weight.squeeze(-3), bias.squeeze(-2)
        if weight.dim() == 2:
            return F.linear(x, weight, bias)
        samples = weight.shape[:-2]
        w = weight.reshape(-1, *weight.shape[-2:])
        b = bias.reshape(w.shape[0], 1, -1)
        if x.dim() == 2:  # shared inputs [N, in]: one matmul against all the weight draws
            out = torch.einsum("ni,soi->sno", x, w) + b
        else:
            out = torch.baddbmm(b, x.reshape(w.shape[0], *x.shape[-2:]), w.transpose(-1, -2))
        return out.reshape(*samples, *out.shape[-2:])


class AutoMeanFieldNormal(LocalParams, AutoNormal):
    """AutoNormal whose sites are drawn from ``Normal(loc, scale)`` itself (pushed through the
    bijection to the support), not from a ``Delta`` beside an auxiliary site.

    Same parameters as AutoNormal; but ``TraceMeanField_ELBO`` now sees Normal guide sites and
    computes their KL to the Normal priors in closed form (lower-variance gradients). Its
    parameters are module-local on every call (:class:`zoo.base.LocalParams`).
    """

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            loc, scale = self._get_loc_and_scale(name)
            q = dist.Normal(loc, scale).to_event(self._event_dims[name])
            support = site["fn"].support
            while isinstance(support, constraints.independent):
                support = support.base_constraint
            if support is not constraints.real:
                q = dist.TransformedDistribution(q, biject_to(site["fn"].support).with_cache())
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                result[name] = pyro.sample(name, q)
        return result


class AutoLowRankNormal(LocalParams, AutoLowRankMultivariateNormal):
    """AutoLowRankMultivariateNormal whose parameters are module-local on every call."""


class BNN(ZooModel):
    """An MLP with Normal priors on every weight and bias, trained by variational inference.

    The weights are latent sites (``net.0.weight``, ``net.0.bias``, ...); the guide is an
    AutoNormal (or low-rank) submodule; the data term is scaled to the full data set on
    minibatches, so the KL keeps its weight. The predictive is a mixture over weight draws:
    ``predictive_components(x, S)`` returns the S per-draw predictive distributions.

    Arguments:
        config: a :class:`BNNConfig`; keyword overrides are applied on top.

    Example:
        >>> model = BNN(input_dim=1, hidden=50, depth=2)
        >>> fit(model, data.train, data.val, epochs=500, lr=1e-2)
        >>> Predictive(model, guide=model.guide, num_samples=100, parallel=True)(x)["obs"].shape
        torch.Size([100, N])
    """

    Config = BNNConfig
    description = "Bayesian MLP: Normal priors on the weights, AutoNormal guide, any likelihood"
    default_dataset = "gap"
    tiny_config = {"hidden": 8, "depth": 1}
    # closed-form KL (meanfield) and a cosine decay: the variational scales settle at the end
    default_fit = {
        "epochs": 300,
        "batch_size": 128,
        "lr": 1e-2,
        "elbo": "meanfield",
        "schedule": "cosine",
        "patience": None,
    }

    def __init__(self, config: BNNConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        kwargs: dict[str, Any] = {}
        if c.likelihood == "categorical":
            kwargs["num_classes"] = c.num_classes
        if c.likelihood == "normal" and c.homoscedastic and c.noise == "learned":
            kwargs.update(homoscedastic=True, init_scale=c.noise_scale)
        # with a latent or fixed noise the parameter-free (heteroscedastic) normal only checks
        # targets and names the metrics; the net then outputs the location alone
        self.likelihood = make_likelihood(c.likelihood, c.target_dim, **kwargs)
        outputs = c.target_dim if c.noise != "learned" else self.likelihood.num_outputs
        net = MLP(c.input_dim, outputs, c.hidden, c.depth, c.activation)
        to_pyro_module_(net)
        self.net = net  # names its sites net.0.weight, net.0.bias, ...
        init: dict[str, Tensor] = {}
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.__class__ = BayesianLinear
                values = layer.make_bayesian(c.prior_scale, c.prior_fan_in)
                init.update({f"{layer._pyro_name}.{k}": v for k, v in values.items()})
        shape = () if c.target_dim == 1 else (c.target_dim,)
        if c.noise == "prior":
            self.register_buffer("noise_prior_scale", torch.full(shape, c.noise_scale))
            self.noise_scale = PyroSample(BNN._noise_prior)
        elif c.noise == "fixed":
            self.register_buffer("fixed_noise_scale", torch.full(shape, c.noise_scale))
        # the guide never sees "obs", so it can be built and called without targets
        model = poutine.block(self, hide=["obs"])
        init_loc = init_to_value(values=init, fallback=init_to_median)
        if c.guide == "normal":
            self.guide = AutoMeanFieldNormal(model, init_loc_fn=init_loc, init_scale=c.init_scale)
        else:
            self.guide = AutoLowRankNormal(
                model, init_loc_fn=init_loc, init_scale=c.init_scale, rank=c.guide_rank
            )
        self.init_lazy()
        init.clear()  # the guide holds its initial values now: no second copy of the weights

    @classmethod
    def data_overrides(cls, dataset: Any) -> dict[str, Any]:
        """Sizes from the data set, and a label likelihood for a classification set."""
        out = super().data_overrides(dataset)
        if dataset.task == "classification":
            out["likelihood"] = "bernoulli" if dataset.num_classes == 2 else "categorical"
        return out

    @property
    def guide(self) -> PyroModule:  # type: ignore[override]
        """The AutoGuide submodule (a property: the base class's guide method would shadow it)."""
        try:
            return self._modules["guide"]
        except KeyError:  # before __init__ sets it (nn.Module.add_module asks hasattr)
            raise AttributeError("guide") from None

    def init_lazy(self) -> None:
        """Creates the guide's parameters (AutoGuides make them on their first call)."""
        if self.guide.prototype_trace is None:
            with torch.no_grad(), poutine.block():
                self.guide(self.example_inputs(2))

    def _noise_prior(self) -> dist.Distribution:
        d = dist.HalfNormal(self.noise_prior_scale)
        return d if self.config.target_dim == 1 else d.to_event(1)

    # --- the Pyro program ----------------------------------------------------------------
    def _obs_distribution(self, x: Tensor) -> dist.Distribution:
        """p(y | x, weights) for the weights drawn (or replayed) at this call; batch [..., N]."""
        out = self.net(x)
        if self.config.noise == "learned":
            return self.likelihood(out)
        scale = self.noise_scale if self.config.noise == "prior" else self.fixed_noise_scale
        if self.config.target_dim == 1:
            return dist.Normal(out.squeeze(-1), scale)
        if scale.dim() < out.dim():  # [D] or Predictive's [S, D]: add the data dim
            scale = scale.unsqueeze(-2)
        return dist.Normal(out, scale).to_event(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        d = self._obs_distribution(x)
        with self.data_plate(x):
            return pyro.sample("obs", d, obs=y)

    # --- predictions ---------------------------------------------------------------------
    def predictive_components(self, x: Tensor, num_samples: int = 100) -> dist.Distribution:
        """The predictive distributions for ``num_samples`` guide draws: batch ``[S, N]``.

        The posterior predictive is their equal-weight mixture; ``inference.uncertainty``
        splits its variance into epistemic and aleatoric parts.
        """
        dim = -(self.max_plate_nesting + 1)
        with poutine.block(), pyro.plate("_weight_samples", num_samples, dim=dim):
            guide_trace = poutine.trace(self.guide).get_trace(x)
            model_trace = poutine.trace(poutine.replay(self, trace=guide_trace)).get_trace(x)
        return model_trace.nodes["obs"]["fn"]

    @torch.no_grad()
    def val_score(self, x: Tensor, y: Tensor | None) -> float:
        """Posterior predictive NLL per point (log-mean-exp over ``val_samples`` weight draws)."""
        s = self.config.val_samples
        log_p = self.predictive_components(x, s).log_prob(y)
        return float(-(log_p.logsumexp(0) - math.log(s)).mean())

    def class_probs(self, x: Tensor, num_samples: int = 100) -> Tensor:
        """Mean over weight draws of the class probabilities: ``[N, C]`` (``[N]`` if binary)."""
        if self.metric_kind != "class":
            raise ValueError(f"class_probs needs a class likelihood, not {self.config.likelihood}")
        return self.predictive_components(x, num_samples).probs.mean(0)

    def figures(self, dataset: Any) -> dict[str, tuple[str, dict[str, Any]]]:
        """For one input and a scalar continuous target: mean, total and epistemic bands."""
        if self.input_dim != 1 or self.metric_kind != "continuous" or self.config.target_dim != 1:
            return {}
        x = dataset.train.x
        grid = dataset.info.get("grid") or (float(x.min()) - 2.0, float(x.max()) + 2.0)
        kwargs = {"model": self, "x_train": x, "y_train": dataset.train.y, "grid": grid}
        return {"uncertainty": ("uncertainty_1d", {**kwargs, "shade": dataset.info.get("gap")})}
