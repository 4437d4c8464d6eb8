"""Output heads of the forecaster: network outputs and a series' scale to a step's distribution.

Every head undoes the series' mean scaling inside the distribution it returns (an
``AffineTransform`` for continuous likelihoods, the rate or the mean for counts, the quantiles
and bin edges themselves for the quantile and binned heads), so samples, log densities and
quantiles are all in the data's own units.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.transforms import AffineTransform, ExpTransform
from torch import Tensor, nn

from .likelihoods import NegativeBinomial, Normal, Poisson, StudentT, TargetError
from .mdn import GaussianMixture

__all__ = [
    "OUTPUTS",
    "LOG_OUTPUTS",
    "Head",
    "QuantileDistribution",
    "BinnedDistribution",
    "make_head",
]

OUTPUTS = ("normal", "studentt", "negbinomial", "poisson", "mixture", "quantile", "binned")
#: outputs with a location: the seasonal skip can shift them, and they can model the log
LOG_OUTPUTS = ("normal", "studentt", "mixture")
DEFAULT_LEVELS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975)


class Head(nn.Module):
    """Maps RNN outputs ``[..., num_outputs]`` and scales ``[...]`` to a per-step distribution.

    Arguments:
        name: one of :data:`OUTPUTS`.
        likelihood: the shared zoo likelihood behind ``normal``, ``studentt``, ``poisson``,
            ``negbinomial`` and ``mixture`` (None for the quantile and binned heads).
    """

    kind = "continuous"
    #: the per-step ``log_prob`` is a quasi-likelihood, not a density (the quantile head's)
    quasi_likelihood = False

    def __init__(self, name: str, likelihood: nn.Module | None = None, log: bool = False):
        super().__init__()
        self.name = name
        self.likelihood = likelihood
        self.log = log

    @property
    def num_outputs(self) -> int:
        return self.likelihood.num_outputs

    def forward(
        self, out: Tensor, scale: Tensor, offset: Tensor | None = None
    ) -> dist.Distribution:
        """The step distribution in data units: ``scale * (offset + base)``, where ``base`` is
        the likelihood's distribution of the scaled value (``offset``: the seasonal skip).

        With ``log`` the likelihood is over the log of the scaled value instead:
        ``scale * exp(offset + base)`` (``offset`` then a log too), a log-normal, log-Student-t
        or log-mixture whose samples stay positive."""
        base = self.likelihood(out)
        if self.log:
            shift = 0.0 if offset is None else offset
            steps = [AffineTransform(shift, 1.0), ExpTransform(), AffineTransform(0.0, scale)]
            return dist.TransformedDistribution(base, steps)
        loc = 0.0 if offset is None else offset * scale
        return dist.TransformedDistribution(base, AffineTransform(loc, scale))

    def check_support(self, y: Tensor) -> None:
        """Raises :class:`TargetError` naming the first row and step outside the support."""
        _require(~torch.isfinite(y), y, f"{self.name} targets must be finite")
        if self.log:
            what = f"log_target {self.name} targets must be positive (set log_target=False)"
            _require(y <= 0, y, what)


def _require(bad: Tensor, y: Tensor, what: str) -> None:
    if bad.any():
        row, step = (int(i) for i in bad.nonzero()[0])
        raise TargetError(f"{what}; row {row}, step {step} has {float(y[row, step])}")


class _CountHead(Head):
    kind = "count"

    def forward(self, out: Tensor, scale: Tensor, offset=None) -> dist.Distribution:
        d = self.likelihood(out)
        if isinstance(d, dist.Poisson):
            return dist.Poisson(d.rate * scale)
        # the mean total_count * exp(logits) is multiplied by the scale
        return dist.NegativeBinomial(total_count=d.total_count, logits=d.logits + scale.log())

    def check_support(self, y: Tensor) -> None:
        super().check_support(y)
        what = f"{self.name} targets must be non-negative integers (counts)"
        _require((y < 0) | (y != y.round()), y, what)


class QuantileDistribution(dist.TorchDistribution):
    """Predicted quantiles ``q [..., K]`` at ``levels``, as a distribution over one value.

    ``log_prob`` is the sum over levels of ``AsymmetricLaplace`` log densities whose asymmetry
    ``sqrt(tau / (1 - tau))`` and scale ``s / sqrt(tau (1 - tau))`` make each one
    ``-pinball_tau(y - q_tau) / s`` up to a constant: maximizing it is minimizing the pinball
    loss of every level in the series' scaled units (a quasi-likelihood, not a density).

    ``sample`` draws a level ``u ~ U(0, 1)`` and reads the quantile function at ``u``: linear
    between the predicted levels, with exponential (Laplace-like) tails beyond the outermost
    ones whose slope matches the outermost segment, so the tails are unbounded but light.
    """

    arg_constraints = {}
    support = constraints.real

    def __init__(self, quantiles: Tensor, levels: Tensor, scale: Tensor, validate_args=None):
        self.quantiles, self.levels = quantiles, levels
        self.scale = scale.unsqueeze(-1).expand_as(quantiles)
        super().__init__(quantiles.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        q = self.quantiles.expand(*shape, -1)
        return QuantileDistribution(q, self.levels, self.scale[..., 0].expand(shape))

    def log_prob(self, value: Tensor) -> Tensor:
        tau = self.levels
        asym = (tau / (1 - tau)).sqrt()
        scale = self.scale / (tau * (1 - tau)).sqrt()
        al = dist.AsymmetricLaplace(self.quantiles, scale, asym.expand_as(scale))
        return al.log_prob(value.unsqueeze(-1)).sum(-1)

    def icdf(self, u: Tensor) -> Tensor:
        """The interpolated quantile function at levels ``u`` (same shape as the batch)."""
        q, tau = self.quantiles, self.levels
        k = q.shape[-1]
        i = torch.searchsorted(tau, u.detach().contiguous()).clamp(1, k - 1)
        t0, t1 = tau[i - 1], tau[i]
        q0 = q.gather(-1, (i - 1).unsqueeze(-1)).squeeze(-1)
        q1 = q.gather(-1, i.unsqueeze(-1)).squeeze(-1)
        slope = (q1 - q0) / (t1 - t0)
        inner = q0 + slope * (u - t0)
        lo_slope = (q[..., 1] - q[..., 0]) / (tau[1] - tau[0])
        hi_slope = (q[..., -1] - q[..., -2]) / (tau[-1] - tau[-2])
        lower = q[..., 0] + lo_slope * tau[0] * torch.log(u / tau[0])
        upper = q[..., -1] - hi_slope * (1 - tau[-1]) * torch.log((1 - u) / (1 - tau[-1]))
        return torch.where(u < tau[0], lower, torch.where(u > tau[-1], upper, inner))

    def sample(self, sample_shape=()):
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.finfo(self.quantiles.dtype).eps
        u = torch.rand(shape, dtype=self.quantiles.dtype, device=self.quantiles.device)
        q = self.expand(shape)
        return q.icdf(u.clamp(eps, 1 - eps)).detach()


class _QuantileHead(Head):
    quasi_likelihood = True

    def __init__(self, levels: tuple[float, ...]):
        super().__init__("quantile")
        self.register_buffer("levels", torch.tensor(sorted(levels)))

    @property
    def num_outputs(self) -> int:
        return len(self.levels)

    def forward(self, out: Tensor, scale: Tensor, offset=None) -> dist.Distribution:
        # the lowest quantile plus positive increments: predicted quantiles never cross
        first, rest = out[..., :1], F.softplus(out[..., 1:]) + 1e-4
        q = torch.cat([first, first + rest.cumsum(-1)], -1)
        return QuantileDistribution(q * scale.unsqueeze(-1), self.levels, scale)


class BinnedDistribution(dist.TorchDistribution):
    """A histogram density: a categorical over bins of the scaled value, uniform within a bin.

    Values are divided by the series' scale and quantized into ``K`` equal bins on
    ``[low, high]`` (as Chronos does after mean scaling); values outside fall into the edge
    bins (clipped, as in Chronos). ``log_prob`` is the bin's log probability minus the log
    width of the bin in data units, so it is a density comparable with continuous heads.
    """

    arg_constraints = {}
    support = constraints.real

    def __init__(self, logits: Tensor, edges: Tensor, scale: Tensor, validate_args=None):
        self.logits, self.edges, self.scale = logits, edges, scale
        super().__init__(logits.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return BinnedDistribution(
            self.logits.expand(*shape, -1), self.edges, self.scale.expand(shape)
        )

    def _width(self) -> Tensor:
        return self.edges[1] - self.edges[0]

    def bin_of(self, value: Tensor) -> Tensor:
        k = self.logits.shape[-1]
        z = (value / self.scale - self.edges[0]) / self._width()
        return z.floor().clamp(0, k - 1).long()

    def log_prob(self, value: Tensor) -> Tensor:
        logp = self.logits.log_softmax(-1)
        idx = self.bin_of(value).unsqueeze(-1)
        logp = logp.expand(*idx.shape[:-1], -1).gather(-1, idx).squeeze(-1)
        return logp - (self._width() * self.scale).log()

    def sample(self, sample_shape=()):
        idx = dist.Categorical(logits=self.logits).sample(sample_shape)
        u = torch.rand(idx.shape, dtype=self.logits.dtype, device=self.logits.device)
        return ((self.edges[0] + (idx + u) * self._width()) * self.scale).detach()


class _BinnedHead(Head):
    def __init__(self, num_bins: int, low: float, high: float):
        super().__init__("binned")
        self.register_buffer("edges", torch.linspace(low, high, num_bins + 1))

    @property
    def num_outputs(self) -> int:
        return len(self.edges) - 1

    def forward(self, out: Tensor, scale: Tensor, offset=None) -> dist.Distribution:
        return BinnedDistribution(out, self.edges, scale)


def make_head(
    name: str,
    *,
    num_components: int = 3,
    levels: tuple[float, ...] = DEFAULT_LEVELS,
    num_bins: int = 200,
    bin_range: tuple[float, float] = (-5.0, 5.0),
    log: bool = False,
) -> Head:
    """The head for output ``name``; an unknown name lists the valid ones. ``log``: the
    likelihood is over the log of the scaled value (``normal``, ``studentt``, ``mixture``)."""
    if log and name not in LOG_OUTPUTS:
        raise ValueError(f"a log likelihood needs one of {', '.join(LOG_OUTPUTS)}; got {name!r}")
    if name == "normal":
        return Head(name, Normal(), log)
    if name == "studentt":
        return Head(name, StudentT(), log)
    if name == "mixture":
        return Head(name, GaussianMixture(1, num_components), log)
    if name == "poisson":
        return _CountHead(name, Poisson())
    if name == "negbinomial":
        return _CountHead(name, NegativeBinomial())
    if name == "quantile":
        return _QuantileHead(levels)
    if name == "binned":
        return _BinnedHead(num_bins, *bin_range)
    raise ValueError(f"unknown output {name!r}; choose one of {', '.join(OUTPUTS)}")


def quantile_levels_ok(levels: tuple[float, ...]) -> bool:
    """Two or more distinct levels strictly inside (0, 1)."""
    return len(set(levels)) == len(levels) >= 2 and all(0 < t < 1 for t in levels)
