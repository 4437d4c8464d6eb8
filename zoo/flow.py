"""Normalizing flows from pyro.distributions.transforms: density p(x) and conditional p(y | x)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, ConditionalDenseNN, DenseNN
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import ReshapeTransform

from .base import DataError, MetricKind, ZooModel, check_inputs
from .nets import ACTIVATIONS

__all__ = ["Permutation", "FlowConfig", "Flow", "ConditionalFlowConfig", "ConditionalFlow"]

Transform = Literal["spline_coupling", "spline_autoregressive", "affine_autoregressive",
                    "affine_coupling", "spline"]  # fmt: skip
ConditionalTransform = Literal["spline", "spline_autoregressive", "affine_autoregressive",
                               "affine_coupling"]  # fmt: skip


class Permutation(TransformModule):
    """A fixed permutation of the last dimension, kept as a buffer so ``.to(device)`` moves it.

    Pyro's ``Permute`` holds a plain tensor and caches its inverse, so both would stay on the
    device they were made on; here the permutation and its inverse are buffers.

    Arguments:
        permutation: a permutation of ``range(D)``.

    Example:
        >>> Permutation(torch.tensor([1, 0]))(torch.tensor([[1.0, 2.0]]))
        tensor([[2., 1.]])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    volume_preserving = True

    def __init__(self, permutation: Tensor):
        super().__init__(cache_size=0)
        self.register_buffer("permutation", permutation.long())
        self.register_buffer("inverse", torch.argsort(permutation).long())

    def _call(self, x: Tensor) -> Tensor:
        return x.index_select(-1, self.permutation)

    def _inverse(self, y: Tensor) -> Tensor:
        return y.index_select(-1, self.inverse)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return x.new_zeros(x.shape[:-1])


class _MAF(T.AffineAutoregressive):
    """Pyro's AffineAutoregressive whose sequential inverse keeps the dtype of its input.

    Pyro 1.9.2 starts the inversion from float32 zeros, which fails for a float64 model.
    """

    def _inverse(self, y: Tensor) -> Tensor:
        x = torch.zeros_like(y)
        for _ in range(y.size(-1)):  # autoregressive: dimension i is exact after i + 1 passes
            mean, log_scale = self.arn(x)
            log_scale = clamp_preserve_gradients(
                log_scale, self.log_scale_min_clip, self.log_scale_max_clip
            )
            x = (y - mean) * torch.exp(-log_scale)
        self._cached_log_scale = log_scale
        return x


class _ConditionalMAF(T.ConditionalAffineAutoregressive):
    def condition(self, context: Tensor) -> _MAF:
        return _MAF(super().condition(context).arn, **self.kwargs)


# Pyro's autoregressive transforms compute their forward map in one pass and their inverse in D
# passes; a density needs the inverse (data -> base), so these enter the flow inverted (MAF).
_AUTOREGRESSIVE = (T.AffineAutoregressive, T.SplineAutoregressive)
_CONDITIONAL_AUTOREGRESSIVE = (T.ConditionalAffineAutoregressive, T.ConditionalSplineAutoregressive)


def _bijectors(modules: nn.ModuleList, context: Tensor | None = None) -> list:
    """The transforms of a stack, conditioned on ``context``, in the base -> data direction."""
    out = []
    for m in modules:
        if isinstance(m, ConditionalTransformModule):
            t = m.condition(context)  # a fresh transform: no stale cache
            out.append(t.inv if isinstance(m, _CONDITIONAL_AUTOREGRESSIVE) else t)
        else:
            m.clear_cache()  # a cached (x, y) pair from before an optimizer step would be stale
            out.append(m.inv if isinstance(m, _AUTOREGRESSIVE) else m)
    return out


def _permutation(dim: int, layer: int) -> Tensor:
    """A seeded random permutation for layer ``layer``, never the identity (reversal instead)."""
    perm = torch.randperm(dim, generator=torch.Generator().manual_seed(1000 + layer))
    return perm.flip(0) if bool((perm == torch.arange(dim)).all()) else perm


def _layer(kind: str, dim: int, context: int, hidden: list[int], bins: int, bound: float, act):
    """One Pyro transform module on ``dim`` variables (conditional on ``context`` inputs if > 0).

    The networks are built here rather than by Pyro's helpers so that they take ``act``;
    autoregressive networks get the identity order (the permutations between layers mix).
    """
    split = dim // 2  # coupling: the first half conditions the second
    rest = dim - split
    order = torch.arange(dim)
    spline_params = [bins, bins, bins - 1, bins]
    if kind == "spline":
        if context == 0:
            return T.Spline(dim, count_bins=bins, bound=bound)
        net = DenseNN(context, hidden, [dim * p for p in spline_params], nonlinearity=act)
        return T.ConditionalSpline(net, dim, bins, bound=bound)
    if kind == "spline_coupling":  # unconditional only (Pyro has no conditional one)
        net = DenseNN(split, hidden, [rest * p for p in spline_params], nonlinearity=act)
        return T.SplineCoupling(dim, split, net, bins, bound)
    if kind == "affine_coupling":
        if context == 0:
            return T.AffineCoupling(split, DenseNN(split, hidden, [rest, rest], nonlinearity=act))
        net = ConditionalDenseNN(split, context, hidden, [rest, rest], nonlinearity=act)
        return T.ConditionalAffineCoupling(split, net)
    params = spline_params if kind == "spline_autoregressive" else [1, 1]
    if context == 0:
        arn = AutoRegressiveNN(dim, hidden, params, permutation=order, nonlinearity=act)
    else:
        arn = ConditionalAutoRegressiveNN(
            dim, context, hidden, params, permutation=order, nonlinearity=act
        )
    if kind == "spline_autoregressive":
        cls = T.SplineAutoregressive if context == 0 else T.ConditionalSplineAutoregressive
        return cls(dim, arn, count_bins=bins, bound=bound)
    return _MAF(arn) if context == 0 else _ConditionalMAF(arn)


def _stack(c, dim: int, context: int) -> nn.ModuleList:
    """``c.num_layers`` transforms with a fixed permutation between two of them."""
    mods: list[nn.Module] = []
    for i in range(c.num_layers):
        act = ACTIVATIONS[c.activation]()
        mods.append(
            _layer(c.transform, dim, context, [c.hidden] * c.depth, c.count_bins, c.bound, act)
        )
        if c.permute and dim > 1 and i < c.num_layers - 1:
            mods.append(Permutation(_permutation(dim, i)))
    return nn.ModuleList(mods)


def _grid(points: Tensor, n: int = 160, pad: float = 0.15) -> tuple[Tensor, Tensor, Tensor]:
    """An ``n x n`` grid over the range of 2-D points: ``xs [n]``, ``ys [n]``, rows ``[n * n, 2]``.

    Rows run over x fastest, so values ``[n * n]`` reshape to ``[len(ys), len(xs)]``.
    """
    lo, hi = points.min(0).values.float(), points.max(0).values.float()
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    xs, ys = (torch.linspace(float(lo[i]), float(hi[i]), n) for i in range(2))
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def _check_structure(kind: str, dim: int, what: str, hidden: int, depth: int, act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    if dim < 2 and kind != "spline":
        raise ValueError(f"transform={kind} needs {what} >= 2; use transform=spline for 1-D data")
    if depth < 1 or hidden < 1:
        raise ValueError("hidden and depth must be >= 1 (the transforms' networks)")
    if "autoregressive" in kind and hidden < dim:
        raise ValueError(f"{kind} needs hidden >= {what} ({dim}); got hidden={hidden}")


@dataclass
class FlowConfig:
    """Config of :class:`Flow`.

    Arguments:
        input_dim: dimensions D of the data x.
        transform: spline_coupling (neural spline flow, coupling), spline_autoregressive,
            affine_autoregressive (MAF), affine_coupling (RealNVP) or spline (element-wise).
        num_layers: flow layers; a fixed seeded permutation sits between two layers.
        hidden: width of each transform's network.
        depth: hidden layers of each transform's network.
        count_bins: spline segments.
        bound: splines act on [-bound, bound] and are the identity outside.
        permute: permute the dimensions between layers.
        activation: the networks' nonlinearity (relu, tanh, silu, gelu, softplus or elu).
        shift, scale: the flow models ``(x - shift) / scale`` through a fixed affine map whose
            log-Jacobian is part of ``log_prob``, so the NLL stays in the units of x (filled
            from ``dataset.info`` when the dataset names them, e.g. dequantized pixels).
    """

    input_dim: int = 2
    transform: Transform = "spline_autoregressive"
    num_layers: int = 4
    hidden: int = 64
    depth: int = 2
    count_bins: int = 8
    bound: float = 4.0
    permute: bool = True
    activation: str = "relu"
    shift: float = 0.0
    scale: float = 1.0

    def validate(self) -> None:
        if self.input_dim < 1 or self.num_layers < 1 or self.count_bins < 2 or self.bound <= 0:
            raise ValueError("input_dim, num_layers >= 1, count_bins >= 2 and bound > 0 needed")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0; got {self.scale}")
        _check_structure(
            self.transform, self.input_dim, "input_dim", self.hidden, self.depth, self.activation
        )


class Flow(ZooModel):
    """A normalizing flow density p(x): a base Normal pushed through Pyro transforms.

    The Pyro model observes x at ``obs`` from the ``TransformedDistribution``; the guide is
    empty, so SVI is maximum likelihood. ``log_prob(x)`` is exact (inference reports NLL and
    bits per dimension). Called without targets, ``forward(x)`` draws ``len(x)`` new points.

    Arguments:
        config: a :class:`FlowConfig`; keyword overrides are applied on top.

    Example:
        >>> model = Flow(input_dim=2, transform="spline_coupling")
        >>> fit(model, data.train, data.val)
        >>> model.log_prob(data.test.x).mean()
        >>> Predictive(model, num_samples=4)(data.test.x)["obs"].shape  # [4, N, 2]
    """

    Config = FlowConfig
    description = "normalizing flow density p(x) (spline/affine coupling or autoregressive)"
    default_dataset = "moons"
    target_is_input = True
    default_fit = {"epochs": 100, "lr": 3e-3, "batch_size": 512, "patience": 20}
    tiny_config = {"num_layers": 2, "hidden": 8, "depth": 1}

    def __init__(self, config: FlowConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.register_buffer("base_loc", torch.zeros(c.input_dim))
        self.register_buffer("base_scale", torch.ones(c.input_dim))
        self.register_buffer("shift", torch.full((c.input_dim,), c.shift))
        self.register_buffer("scale", torch.full((c.input_dim,), c.scale))
        self.transforms = _stack(c, c.input_dim, 0)

    @classmethod
    def data_overrides(cls, dataset) -> dict[str, Any]:
        out = super().data_overrides(dataset)
        out.update({k: float(dataset.info[k]) for k in ("shift", "scale") if k in dataset.info})
        return out

    def distribution(self) -> dist.TransformedDistribution:
        """The flow's density p(x): event shape ``[D]``, batch shape ``[]``."""
        base = dist.Normal(self.base_loc, self.base_scale).to_event(1)
        unscale = T.AffineTransform(self.shift, self.scale, event_dim=1)
        return dist.TransformedDistribution(base, [*_bijectors(self.transforms), unscale])

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density ``[N]`` of rows of ``x`` (nats)."""
        return self.distribution().log_prob(x)

    def sample(self, n: int) -> Tensor:
        """``n`` draws ``[n, D]`` from the flow."""
        return self.distribution().sample((n,))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        with self.data_plate(x):
            return pyro.sample("obs", self.distribution(), obs=y)

    @property
    def metric_kind(self) -> MetricKind:
        return "density"

    def val_score(self, x: Tensor, y: Tensor | None = None) -> float:
        with torch.no_grad():
            return float(-self.log_prob(x).mean())

    @torch.no_grad()
    def figures(self, dataset) -> dict[str, tuple[str, dict[str, Any]]]:
        """2-D data: the learned (and true) density beside the data, and samples over it;
        images: a grid of samples."""
        data = dataset.test.x[:2000]
        if self.config.input_dim == 2:
            xs, ys, grid = _grid(data)
            shape = (len(ys), len(xs))
            maps = {"flow": self.log_prob(grid.to(self.base_loc)).exp().reshape(shape).cpu()}
            if dataset.true_log_prob is not None:
                maps["true"] = dataset.true_log_prob(grid).exp().reshape(shape)
            density = {"xs": xs, "ys": ys, "densities": maps, "points": data}
            samples = {"data": data, "samples": self.sample(len(data)).cpu()}
            return {
                "density": ("density_heatmaps", density),
                "samples": ("samples_over_data", samples),
            }
        if dataset.image_shape is not None:
            hi = float(dataset.info.get("pixel_range", (0, 1))[1])
            images = (self.sample(64).cpu() / hi).clamp(0, 1)
            return {
                "samples": ("image_grid", {"images": images, "image_shape": dataset.image_shape})
            }
        return {}


@dataclass
class ConditionalFlowConfig:
    """Config of :class:`ConditionalFlow`.

    Arguments:
        input_dim: features of x (the context every transform conditions on).
        target_dim: dimensions of y (1 for ``y`` of shape ``[N]``).
        transform: spline (element-wise, any target_dim), spline_autoregressive,
            affine_autoregressive or affine_coupling (these need target_dim >= 2).
        num_layers, hidden, depth, count_bins, bound, permute, activation: as in
            :class:`FlowConfig`.
    """

    input_dim: int = 1
    target_dim: int = 1
    transform: ConditionalTransform = "spline"
    num_layers: int = 2
    hidden: int = 64
    depth: int = 2
    count_bins: int = 8
    bound: float = 8.0
    permute: bool = True
    activation: str = "tanh"

    def validate(self) -> None:
        if self.input_dim < 1 or self.target_dim < 1 or self.num_layers < 1:
            raise ValueError("input_dim, target_dim and num_layers must be >= 1")
        if self.count_bins < 2 or self.bound <= 0:
            raise ValueError("count_bins >= 2 and bound > 0 needed")
        _check_structure(
            self.transform, self.target_dim, "target_dim", self.hidden, self.depth, self.activation
        )


class ConditionalFlow(ZooModel):
    """A conditional normalizing flow p(y | x): Pyro's conditional transforms, context x.

    ``predictive_distribution(x)`` is the conditioned ``TransformedDistribution`` (event shape
    ``[]`` for 1-D y, ``[target_dim]`` otherwise), so the regression metrics apply: the NLL is
    exact and CRPS comes from samples.

    Arguments:
        config: a :class:`ConditionalFlowConfig`; keyword overrides are applied on top.

    Example:
        >>> model = ConditionalFlow(input_dim=1, target_dim=1)
        >>> fit(model, data.train, data.val)
        >>> model.predictive_distribution(x).log_prob(y)  # [N]
    """

    Config = ConditionalFlowConfig
    description = "conditional normalizing flow p(y|x) (conditional splines, coupling, MAF)"
    # measured on the toy problem (benchmarks/flow.py): smooth units, 8 bins on [-8, 8] and a
    # one-cycle schedule generalize best from 2,000 points
    default_fit = {
        "epochs": 200,
        "lr": 1e-2,
        "batch_size": 256,
        "schedule": "onecycle",
        "patience": 40,
    }
    # one layer: the CLI test draws 1,000 samples per test point through it for CRPS
    tiny_config = {"num_layers": 1, "hidden": 8, "depth": 1, "count_bins": 4}

    def __init__(self, config: ConditionalFlowConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.register_buffer("base_loc", torch.zeros(c.target_dim))
        self.register_buffer("base_scale", torch.ones(c.target_dim))
        self.transforms = _stack(c, c.target_dim, c.input_dim)

    def predictive_distribution(self, x: Tensor) -> dist.TransformedDistribution:
        """p(y | x) for each row of x: batch shape ``[N]``."""
        parts = _bijectors(self.transforms, x)
        base = dist.Normal(self.base_loc, self.base_scale).to_event(1).expand(x.shape[:-1])
        if self.config.target_dim == 1:
            parts.append(ReshapeTransform((1,), ()))  # event shape [] like the other models
        return dist.TransformedDistribution(base, parts)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        d = self.predictive_distribution(x)
        with self.data_plate(x):
            return pyro.sample("obs", d, obs=y)

    @property
    def metric_kind(self) -> MetricKind:
        return "continuous"

    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        check_inputs(x, "x", self.input_dim, self._float_dtype())
        if y is None:
            return x, None
        y = torch.as_tensor(y)
        d = self.config.target_dim
        if y.dim() == 2 and d == 1 and y.shape[1] == 1:
            y = y[:, 0]
        want = [len(x)] if d == 1 else [len(x), d]
        if list(y.shape) != want:
            raise DataError(f"y must have shape {want} (x has {len(x)} rows); got {list(y.shape)}")
        if not y.is_floating_point():
            raise DataError(f"y must be a float tensor for a flow; got {y.dtype}")
        if not torch.isfinite(y).all():
            raise DataError("y contains NaN or inf; clean or impute it")
        return x, y.to(x.dtype)

    @torch.no_grad()
    def figures(self, dataset) -> dict[str, tuple[str, dict[str, Any]]]:
        """For 1-D x and y: the heat map of p(y | x) (and the true one) under the test data."""
        c = self.config
        if c.input_dim != 1 or c.target_dim != 1 or dataset.test.y is None:
            return {}
        x, y = dataset.test.x[:3000, 0], dataset.test.y[:3000].reshape(-1)
        xs, ys, grid = _grid(torch.stack([x, y], -1), pad=0.02)
        d = self.predictive_distribution(xs[:, None].to(self.base_loc))  # batch [W]
        values = d.log_prob(ys[:, None].expand(-1, len(xs)).to(self.base_loc)).exp()
        maps = {"flow p(y|x)": values.cpu()}
        if dataset.true_log_prob is not None:
            true = dataset.true_log_prob(grid[:, :1], grid[:, 1])
            maps["true p(y|x)"] = true.exp().reshape(len(ys), len(xs))
        spec = {"xs": xs, "ys": ys, "densities": maps, "points": (x, y)}
        return {"conditional_density": ("conditional_density_heatmaps", spec)}
