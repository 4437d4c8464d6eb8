"""Proper scoring rules, calibration and sharpness metrics for predictive distributions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from pyro.distributions import Delta
from torch import Tensor
from torch.distributions import Distribution, Laplace, MixtureSameFamily, Normal, StudentT

__all__ = [
    "DEFAULT_LEVELS",
    "nll",
    "nll_from_log_likelihoods",
    "crps",
    "crps_normal",
    "crps_laplace",
    "crps_student_t",
    "crps_normal_mixture",
    "crps_samples",
    "predictive_quantiles",
    "central_intervals",
    "interval_coverage",
    "pit_values",
    "calibration_proportions",
    "mean_absolute_calibration_error",
    "root_mean_squared_calibration_error",
    "miscalibration_area",
    "interval_score",
    "pinball_loss",
    "regression_metrics",
    "accuracy",
    "log_loss",
    "brier_score",
    "reliability_data",
    "expected_calibration_error",
    "classwise_ece",
    "adaptive_ece",
    "classification_metrics",
    "bits_per_dim",
    "elbo_from_log_weights",
    "iwae_from_log_weights",
    "iwae_bound",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
_PINBALL_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95
_PROB_TOL = 1e-4
# Elements per chunk when sorting samples (32 MiB of float64 per buffer): each chunk costs
# about ten parallel regions of torch's intra-op threads, and on a shared machine every region
# can stall on a descheduled thread, so chunks are large; memory stays bounded all the same.
_CHUNK_ELEMS = 1 << 22

Predictive = Distribution | Tensor


# ----------------------------------------------------------------------------- validation


def _shape(t: Tensor | torch.Size) -> str:
    return "[" + ", ".join(str(s) for s in (t.shape if isinstance(t, Tensor) else t)) + "]"


def _target(y: Tensor) -> Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.numel() == 0:
        raise ValueError(f"y has shape {_shape(y)}; expected a non-empty 1-D tensor [N]")
    if not y.is_floating_point():
        y = y.to(torch.get_default_dtype())
    if torch.isnan(y).any():
        raise ValueError("y contains NaN; expected finite targets")
    return y


def _samples(samples: Tensor, y: Tensor, check_nan: bool = True) -> Tensor:
    samples = torch.as_tensor(samples)
    if samples.ndim != 2 or samples.shape[1] != y.shape[0] or samples.shape[0] == 0:
        raise ValueError(
            f"samples has shape {_shape(samples)} but y has shape {_shape(y)}; "
            "expected samples [S, N] with S >= 1 and N = len(y)"
        )
    if check_nan and torch.isnan(samples).any():
        raise ValueError("samples contains NaN; expected finite predictive samples")
    return samples.to(torch.promote_types(samples.dtype, y.dtype))


def _dist(dist: Distribution, y: Tensor) -> Distribution:
    if dist.batch_shape != y.shape or dist.event_shape != torch.Size():
        raise ValueError(
            f"dist has batch_shape {_shape(dist.batch_shape)} and event_shape "
            f"{_shape(dist.event_shape)} but y has shape {_shape(y)}; "
            "expected batch_shape [N] and event_shape []"
        )
    return dist


def _no_nan(t: Tensor, what: str) -> Tensor:
    if torch.isnan(t).any():
        raise ValueError(f"{what} contains NaN; expected finite predictions")
    return t


def _check_levels(levels: Sequence[float], name: str = "levels") -> Tensor:
    lv = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
    if lv.numel() == 0 or (lv <= 0).any() or (lv >= 1).any():
        raise ValueError(f"{name} is {list(levels)}; expected values strictly between 0 and 1")
    return lv


# ----------------------------------------------------------------------------- sorting


_INT_VIEW = {torch.float64: (torch.int64, 63), torch.float32: (torch.int32, 31)}


class _ChunkSorter:
    """Sorts chunks of samples [S, N] -> [n, S] along S, in buffers reused across chunks.

    Rows are sorted along their contiguous dim (sorting along a strided dim is several times
    slower). Buffers are reused because fresh CPU allocations of this size page-fault on every
    chunk. On CPU, floats are sorted as integers: torch compares integers faster (no NaN
    ordering), and flipping the magnitude bits of negative numbers is an exact order-preserving
    map to integers that is its own inverse (NaNs have no place in it: callers reject them).
    """

    def __init__(self, samples: Tensor) -> None:
        self.samples = samples
        S, N = samples.shape
        self.step = max(1, min(N, _CHUNK_ELEMS // S))
        self.as_int = samples.device.type == "cpu" and samples.dtype in _INT_VIEW
        self.itype, self.bit = _INT_VIEW.get(samples.dtype, (samples.dtype, 0))
        kw = {"dtype": samples.dtype, "device": samples.device}
        self.key, self.tmp, self.out = (torch.empty(self.step, S, **kw) for _ in range(3))
        self.idx = torch.empty(self.step, S, dtype=torch.long, device=samples.device)
        self.copy: Tensor | None = None

    def load(self, i: int) -> Tensor:
        """Points [i, i + step) as an [n, S] tensor with contiguous rows (a view if possible)."""
        chunk = self.samples[:, i : i + self.step].T
        if chunk.is_contiguous():
            return chunk
        if self.copy is None:
            self.copy = torch.empty_like(self.key)
        return self.copy[: chunk.shape[0]].copy_(chunk)

    def sort(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """Sort the rows of x [n, S] into out [n, S] (default: an internal buffer)."""
        n = x.shape[0]
        out = self.out[:n] if out is None else out
        if not self.as_int:
            return torch.sort(x, dim=-1, out=(out, self.idx[:n]))[0]
        key, t, o = (b.view(self.itype) for b in (self.key[:n], self.tmp[:n], out))
        mask = (1 << self.bit) - 1
        # key = x ^ ((x >> bit) & mask), then the same map back on the sorted keys
        torch.bitwise_right_shift(x.view(self.itype), self.bit, out=key).bitwise_and_(mask)
        key.bitwise_xor_(x.view(self.itype))
        torch.sort(key, dim=-1, out=(o, self.idx[:n]))
        torch.bitwise_right_shift(o, self.bit, out=t).bitwise_and_(mask)
        o.bitwise_xor_(t)
        return out


def _sorted_rows(samples: Tensor) -> Tensor:
    """Samples [S, N] -> sorted rows [N, S], chunked over N."""
    sorter = _ChunkSorter(samples)
    out = torch.empty(samples.shape[::-1], dtype=samples.dtype, device=samples.device)
    for i in range(0, samples.shape[1], sorter.step):
        x = sorter.load(i)
        sorter.sort(x, out[i : i + x.shape[0]])
    return out


def _gini_weights(S: int, like: Tensor) -> Tensor:
    # (2i - S - 1) / S^2 for 1-based ranks i: the y-independent half of the sample CRPS.
    return (torch.arange(1, S + 1, dtype=like.dtype, device=like.device) * 2 - (S + 1)) / S**2


def _crps_sorted(sorted_rows: Tensor, y: Tensor) -> Tensor:
    """Sample CRPS from sorted rows [N, S]; chunked so the |x - y| temporary stays small."""
    N, S = sorted_rows.shape
    w = _gini_weights(S, sorted_rows)
    out = torch.empty(N, dtype=sorted_rows.dtype, device=sorted_rows.device)
    step = max(1, _CHUNK_ELEMS // S)
    for i in range(0, N, step):
        x = sorted_rows[i : i + step]
        out[i : i + step] = (x - y[i : i + step, None]).abs_().mean(1) - x @ w
    return out


def _quantiles_sorted(sorted_rows: Tensor, probs: Tensor) -> Tensor:
    """Linear-interpolation quantiles (numpy's default) of sorted rows [N, S] -> [Q, N]."""
    S = sorted_rows.shape[1]
    pos = probs.to(sorted_rows.dtype) * (S - 1)
    lo = pos.floor().long().clamp_(0, S - 1)
    hi = (lo + 1).clamp_(max=S - 1)
    frac = (pos - lo).to(sorted_rows.dtype)
    a, b = sorted_rows[:, lo], sorted_rows[:, hi]
    return (a + (b - a) * frac).T


# ----------------------------------------------------------------------------- predictive view


class _Predictive:
    """A distribution or a sample set seen through one interface (quantiles, CDF, moments).

    Distribution methods that torch does not implement (icdf of mixtures, Student-t, ...) fall
    back to `num_samples` draws, sorted once and shared by every metric.
    """

    def __init__(self, pred: Predictive, y: Tensor, num_samples: int = 1000) -> None:
        self.y = y
        self.num_samples = num_samples
        self.dist: Distribution | None = None
        self._sorted: Tensor | None = None
        if isinstance(pred, Distribution):
            self.dist = _dist(pred, y)
        else:
            self._sorted = _sorted_rows(_samples(pred, y))
            self.y = y.to(self._sorted.dtype)

    @property
    def sorted(self) -> Tensor:
        if self._sorted is None:
            with torch.no_grad():
                draws = self.dist.sample((self.num_samples,))
            self._sorted = _sorted_rows(_no_nan(draws.to(self.y.dtype), "dist samples"))
        return self._sorted

    def _try(self, fn: Callable[[], Tensor]) -> Tensor | None:
        if self.dist is None:
            return None
        try:
            return fn().to(self.y.dtype)
        except NotImplementedError:
            return None

    def quantiles(self, probs: Tensor) -> Tensor:
        p = probs.to(self.y.device, self.y.dtype)
        q = self._try(lambda: self.dist.icdf(p[:, None].expand(-1, self.y.shape[0])))
        return _no_nan(q if q is not None else _quantiles_sorted(self.sorted, p), "quantiles")

    def cdf(self) -> Tensor:
        if isinstance(self.dist, StudentT):
            c = _student_t_cdf((self.y - self.dist.loc) / self.dist.scale, self.dist.df)
        else:
            c = self._try(lambda: self.dist.cdf(self.y))
        if c is None:
            s = self.sorted
            c = torch.searchsorted(s, self.y[:, None].contiguous(), right=True)[:, 0] / s.shape[1]
        return _no_nan(c.to(self.y.dtype), "pit")

    def mean(self) -> Tensor:
        m = self._try(lambda: self.dist.mean)
        return _no_nan(m if m is not None else self.sorted.mean(1), "mean")

    def median(self) -> Tensor:
        return self.quantiles(torch.tensor([0.5]))[0]

    def stddev(self) -> Tensor:
        s = self._try(lambda: self.dist.stddev)
        return _no_nan(s if s is not None else self.sorted.std(1, correction=0), "stddev")

    def crps(self) -> Tensor:
        if self.dist is not None and _has_closed_crps(self.dist):
            return crps(self.dist, self.y)
        return _crps_sorted(self.sorted, self.y)


# ----------------------------------------------------------------------------- continuous scores


def nll(dist: Distribution, y: Tensor) -> Tensor:
    """Mean negative log predictive density, -mean_n log p(y_n).

    Args:
        dist: predictive distribution with batch_shape [N] and event_shape [].
        y: targets [N].

    Returns:
        Scalar tensor.
    """
    y = _target(y)
    return _no_nan(-_dist(dist, y).log_prob(y).mean(), "dist.log_prob(y)")


def nll_from_log_likelihoods(log_lik: Tensor) -> Tensor:
    """NLL of the posterior-mean likelihood: -mean_n log(mean_s p(y_n | theta_s)).

    Args:
        log_lik: log p(y_n | theta_s) for S posterior samples, shape [S, N].

    Returns:
        Scalar tensor.
    """
    log_lik = torch.as_tensor(log_lik)
    if log_lik.ndim != 2 or 0 in log_lik.shape:
        raise ValueError(f"log_lik has shape {_shape(log_lik)}; expected a non-empty [S, N]")
    _no_nan(log_lik, "log_lik")
    return -(torch.logsumexp(log_lik, 0) - math.log(log_lik.shape[0])).mean()


def crps_normal(loc: Tensor, scale: Tensor, y: Tensor) -> Tensor:
    """Closed-form CRPS of Normal(loc, scale) at y, elementwise."""
    z = (y - loc) / scale
    std = Normal(torch.zeros_like(z), torch.ones_like(z), validate_args=False)
    return scale * (z * (2 * std.cdf(z) - 1) + 2 * std.log_prob(z).exp() - 1 / math.sqrt(math.pi))


def crps_laplace(loc: Tensor, scale: Tensor, y: Tensor) -> Tensor:
    """Closed-form CRPS of Laplace(loc, scale) at y, elementwise."""
    z = ((y - loc) / scale).abs()
    return scale * (z + torch.exp(-z) - 0.75)


def _betainc(a: Tensor, b: Tensor, x: Tensor, xc: Tensor, max_iter: int = 2000) -> Tensor:
    """Regularized incomplete beta I_x(a, b), xc = 1 - x (Lentz continued fraction, NR 6.4)."""
    # The fraction converges fast only for x < (a + 1) / (a + b + 2); use I_x(a,b) = 1 - I_xc(b,a).
    flip = x > (a + 1) / (a + b + 2)
    a, b, x, xc = (torch.where(flip, u, v) for u, v in ((b, a), (a, b), (xc, x), (x, xc)))
    eps, tiny = torch.finfo(x.dtype).eps, torch.finfo(x.dtype).tiny / torch.finfo(x.dtype).eps
    log_front = torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b) + a * x.log() + b * xc.log()
    c = torch.ones_like(x)
    d = 1 - (a + b) * x / (a + 1)
    d = 1 / torch.where(d.abs() < tiny, tiny, d)
    h = d.clone()
    for m in range(1, max_iter + 1):
        for aa in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + aa * d
            d = 1 / torch.where(d.abs() < tiny, tiny, d)
            c = 1 + aa / c
            c = torch.where(c.abs() < tiny, tiny, c)
            delta = c * d
            h = h * delta
        if m % 8 == 0 and bool(((delta - 1).abs() < 4 * eps).all()):  # one sync per 8 steps
            break
    out = torch.exp(log_front) * h / a
    return torch.where(flip, 1 - out, out)


def _student_t_cdf(z: Tensor, df: Tensor) -> Tensor:
    """CDF of the standard Student-t with `df` degrees of freedom (torch has none)."""
    df = torch.as_tensor(df, dtype=z.dtype, device=z.device).expand_as(z)
    z2 = z * z
    tail = 0.5 * _betainc(df / 2, torch.full_like(z, 0.5), df / (df + z2), z2 / (df + z2))
    return torch.where(z > 0, 1 - tail, tail)


def crps_student_t(df: Tensor, loc: Tensor, scale: Tensor, y: Tensor) -> Tensor:
    """Closed-form CRPS of the location-scale Student-t (df > 1) at y, elementwise."""
    y = torch.as_tensor(y)
    args = (torch.as_tensor(t, dtype=y.dtype, device=y.device) for t in (df, loc, scale, y))
    df, loc, scale, y = torch.broadcast_tensors(*args)
    if (df <= 1).any():
        raise ValueError(
            f"df has minimum {df.min().item():g}; expected df > 1 (else CRPS is infinite)"
        )
    z = (y - loc) / scale
    pdf = StudentT(df, validate_args=False).log_prob(z).exp()
    # 2 sqrt(df) B(1/2, df - 1/2) / ((df - 1) B(1/2, df / 2)^2), with B via lgamma
    lg = torch.lgamma
    log_ratio = (
        lg(df - 0.5) - lg(df) - 2 * (lg(df / 2) - lg(df / 2 + 0.5)) - 0.5 * math.log(math.pi)
    )
    const = 2 * df.sqrt() * torch.exp(log_ratio) / (df - 1)
    cdf = _student_t_cdf(z, df)
    return scale * (z * (2 * cdf - 1) + 2 * pdf * (df + z * z) / (df - 1) - const)


def crps_normal_mixture(weights: Tensor, locs: Tensor, scales: Tensor, y: Tensor) -> Tensor:
    """Closed-form CRPS of a Gaussian mixture (Grimit et al. 2006), elementwise over N.

    CRPS = sum_k w_k A(y - mu_k, s_k^2) - 1/2 sum_kl w_k w_l A(mu_k - mu_l, s_k^2 + s_l^2),
    with A(m, v) = m (2 Phi(m / sqrt v) - 1) + 2 sqrt(v) phi(m / sqrt v).

    Args:
        weights: mixture weights [N, K] (rows sum to 1).
        locs: component means [N, K].
        scales: component standard deviations [N, K].
        y: targets [N].
    """

    def A(m: Tensor, v: Tensor) -> Tensor:
        s = v.sqrt()
        std = Normal(torch.zeros_like(m), torch.ones_like(m), validate_args=False)
        return m * (2 * std.cdf(m / s) - 1) + 2 * s * std.log_prob(m / s).exp()

    var = scales**2
    first = (weights * A(y[:, None] - locs, var)).sum(-1)
    pair = A(locs[:, :, None] - locs[:, None, :], var[:, :, None] + var[:, None, :])
    second = torch.einsum("nk,nkl,nl->n", weights, pair, weights)
    return first - 0.5 * second


def _has_closed_crps(dist: Distribution) -> bool:
    if isinstance(dist, MixtureSameFamily):
        return isinstance(dist.component_distribution, Normal)
    return isinstance(dist, (Normal, Laplace, StudentT, Delta))


def crps_samples(samples: Tensor, y: Tensor) -> Tensor:
    """CRPS of the empirical distribution of samples (properscoring's `crps_ensemble`).

    Uses the sorted-sample form, O(S log S) per point:
    CRPS = (1/S) sum_i |x_i - y| - (1/S^2) sum_i (2i - S - 1) x_(i), with 1-based ranks i.
    The second term depends only on the sorted samples. Work is chunked over N, sorting each
    chunk along its contiguous dim, so temporaries stay in cache and memory stays bounded.

    Args:
        samples: predictive samples [S, N].
        y: targets [N].

    Returns:
        Per-point CRPS [N].
    """
    y = _target(y)
    # NaN samples make their point's score NaN: checking the [N] result saves a pass over [S, N]
    samples = _samples(samples, y, check_nan=False)
    S, N = samples.shape
    if samples.device.type == "cpu" and not samples.requires_grad:
        out = _crps_samples_cpu(samples, y)
        if torch.isnan(out).any():
            raise ValueError("samples contains NaN (or +inf and -inf); expected finite samples")
        return out
    w = _gini_weights(S, samples)
    out = torch.empty(N, dtype=samples.dtype, device=samples.device)
    sorter = _ChunkSorter(samples)
    for i in range(0, N, sorter.step):
        x = sorter.load(i)
        n = x.shape[0]
        first = torch.sub(x, y[i : i + n, None], out=sorter.tmp[:n]).abs_().mean(1)
        out[i : i + n] = first - sorter.sort(x) @ w
    if torch.isnan(out).any():
        raise ValueError("samples contains NaN (or +inf and -inf); expected finite samples")
    return out


def _crps_samples_cpu(samples: Tensor, y: Tensor, chunk: int = 2048) -> Tensor:
    """The sorted-sample CRPS on the CPU: numpy sorts chunks of rows on torch's threads.

    numpy's in-place row sort needs no index array and is several times faster than
    ``torch.sort`` on the CPU; it releases the GIL, so chunks sort in parallel threads.
    Results are exact to rounding (the same formula as the torch path).
    """
    x_all = samples.detach().numpy()  # a view: no copy
    y_np = y.detach().to(samples.dtype).numpy()
    S, N = x_all.shape
    w = _gini_weights(S, samples).numpy()
    out = np.empty(N, dtype=x_all.dtype)

    def work(i: int) -> None:
        # a fresh [n, S] copy with contiguous rows: the sort below must not touch the input
        x = np.array(x_all[:, i : i + chunk].T, order="C", copy=True)
        first = np.abs(x - y_np[i : i + chunk, None]).mean(1)
        x.sort(axis=1)
        out[i : i + chunk] = first - x @ w

    threads = max(1, min(torch.get_num_threads(), (N + chunk - 1) // chunk))
    if threads == 1:
        for i in range(0, N, chunk):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(0, N, chunk)))
    return torch.from_numpy(out)


def crps(pred: Predictive, y: Tensor, num_samples: int = 1000) -> Tensor:
    """Per-point CRPS of a predictive distribution or of predictive samples.

    Closed forms for Normal, Laplace, Student-t (df > 1), mixtures of Normals and point masses
    (`pyro.distributions.Delta`: |v - y|); any other distribution is scored through
    `num_samples` draws with the sample estimator.

    Args:
        pred: distribution with batch_shape [N], or samples [S, N].
        y: targets [N].
        num_samples: draws for distributions without a closed form.

    Returns:
        Per-point CRPS [N] (take `.mean()` for the usual summary).
    """
    y = _target(y)
    if not isinstance(pred, Distribution):
        return crps_samples(pred, y)
    d = _dist(pred, y)
    if isinstance(d, Delta):
        out = (d.v - y).abs()
    elif isinstance(d, Normal):
        out = crps_normal(d.loc, d.scale, y)
    elif isinstance(d, Laplace):
        out = crps_laplace(d.loc, d.scale, y)
    elif isinstance(d, StudentT):
        out = crps_student_t(d.df, d.loc, d.scale, y)
    elif isinstance(d, MixtureSameFamily) and isinstance(d.component_distribution, Normal):
        comp = d.component_distribution
        w = d.mixture_distribution.probs
        out = crps_normal_mixture(w, comp.loc.expand_as(w), comp.scale.expand_as(w), y)
    else:
        with torch.no_grad():
            draws = d.sample((num_samples,))
        return crps_samples(_no_nan(draws, "dist samples"), y)
    return _no_nan(out, "crps of dist")


# ------------------------------------------------------------------- intervals, calibration


def predictive_quantiles(
    pred: Predictive, y: Tensor, probs: Sequence[float] | Tensor, num_samples: int = 1000
) -> Tensor:
    """Predictive quantiles [Q, N] at levels `probs`.

    From a distribution via `icdf` when implemented, else from `num_samples` draws; from samples
    by linear interpolation between order statistics (numpy's and torch.quantile's default).
    `y` only fixes N, the device and the dtype.
    """
    y = _target(y)
    p = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
    if ((p < 0) | (p > 1) | torch.isnan(p)).any():
        raise ValueError(f"probs is {p.tolist()}; expected quantile levels in [0, 1]")
    return _Predictive(pred, y, num_samples).quantiles(p)


def _enough_samples(view: _Predictive, levels: Tensor) -> None:
    if view.dist is None:
        S = view.sorted.shape[1]
        need = math.ceil(2 / (1 - levels.max().item()) - 1e-9)
        if S < need:
            raise ValueError(
                f"samples has {S} draws per point; expected at least {need} for a "
                f"{levels.max().item():g} central interval (2 / (1 - level))"
            )


def _intervals(view: _Predictive, levels: Tensor) -> tuple[Tensor, Tensor]:
    _enough_samples(view, levels)
    q = view.quantiles(torch.cat([(1 - levels) / 2, (1 + levels) / 2]))
    return q[: len(levels)], q[len(levels) :]


def central_intervals(
    pred: Predictive, y: Tensor, levels: Sequence[float] = DEFAULT_LEVELS, num_samples: int = 1000
) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds [L, N] of the central intervals [q((1 - l) / 2), q((1 + l) / 2)].

    From samples, each level l needs S >= 2 / (1 - l) samples. `y` only fixes N, device, dtype.
    """
    y = _target(y)
    return _intervals(_Predictive(pred, y, num_samples), _check_levels(levels))


def interval_coverage(
    pred: Predictive, y: Tensor, levels: Sequence[float] = DEFAULT_LEVELS, num_samples: int = 1000
) -> tuple[Tensor, Tensor]:
    """Observed coverage and mean width of central prediction intervals.

    Args:
        pred: distribution with batch_shape [N], or samples [S, N] (S >= 2 / (1 - max level)).
        y: targets [N].
        levels: nominal coverages in (0, 1).
        num_samples: draws for distributions without `icdf`.

    Returns:
        (coverage [L], mean width [L]); y on a bound counts as covered.
    """
    y = _target(y)
    lv = _check_levels(levels)
    lo, hi = _intervals(_Predictive(pred, y, num_samples), lv)
    inside = (y >= lo) & (y <= hi)
    return inside.to(y.dtype).mean(1), (hi - lo).mean(1)


def pit_values(pred: Predictive, y: Tensor, num_samples: int = 1000) -> Tensor:
    """Probability integral transform F(y) [N]; for samples the fraction of samples <= y."""
    y = _target(y)
    return _Predictive(pred, y, num_samples).cdf()


def _proportions(view: _Predictive, num_bins: int, prop_type: str) -> tuple[Tensor, Tensor]:
    if prop_type not in ("interval", "quantile"):
        raise ValueError(f"prop_type is {prop_type!r}; expected 'interval' or 'quantile'")
    y = view.y
    expected = torch.linspace(0, 1, num_bins, dtype=torch.float64)
    if prop_type == "interval":
        q = view.quantiles(torch.cat([0.5 - expected / 2, 0.5 + expected / 2]))
        hit = (y >= q[:num_bins]) & (y <= q[num_bins:])
    else:
        hit = y <= view.quantiles(expected)
    return expected.to(y.device, y.dtype), hit.to(y.dtype).mean(1)


def calibration_proportions(
    pred: Predictive,
    y: Tensor,
    num_bins: int = 100,
    prop_type: str = "interval",
    num_samples: int = 1000,
) -> tuple[Tensor, Tensor]:
    """Expected vs observed proportions, as uncertainty-toolbox's `get_proportion_lists`.

    Expected proportions are p = linspace(0, 1, num_bins). With prop_type="interval" (the
    toolbox default) the observed proportion is the fraction of y inside the central interval
    [q(0.5 - p/2), q(0.5 + p/2)], bounds included; with "quantile" it is the fraction of
    y <= q(p). (The toolbox's own "quantile" variant counts y >= q(1 - p), which has the same
    expectation.) From samples, p = 1 is the range of the samples, so its observed proportion
    is about 1 - 2 / (S + 1) rather than 1.

    Returns:
        (expected [num_bins], observed [num_bins]).
    """
    y = _target(y)
    return _proportions(_Predictive(pred, y, num_samples), num_bins, prop_type)


def mean_absolute_calibration_error(expected: Tensor, observed: Tensor) -> Tensor:
    """Mean |observed - expected| over the quantile levels (toolbox's MACE / "ECE")."""
    return (observed - expected).abs().mean()


def root_mean_squared_calibration_error(expected: Tensor, observed: Tensor) -> Tensor:
    """Root mean squared (observed - expected) over the quantile levels (toolbox's RMSCE)."""
    return (observed - expected).pow(2).mean().sqrt()


def miscalibration_area(expected: Tensor, observed: Tensor) -> Tensor:
    """Area between the calibration curve and the diagonal.

    The toolbox measures the polygons between the piecewise-linear curve and the diagonal; this
    is the same area computed segment by segment (a segment that crosses the diagonal
    contributes two triangles).
    """
    d = observed - expected
    d0, d1, dx = d[:-1], d[1:], expected[1:] - expected[:-1]
    a0, a1 = d0.abs(), d1.abs()
    same = d0 * d1 >= 0
    crossing = (d0**2 + d1**2) / (2 * (a0 + a1)).clamp_min(torch.finfo(d.dtype).tiny)
    return (torch.where(same, (a0 + a1) / 2, crossing) * dx).sum()


def interval_score(lower: Tensor, upper: Tensor, y: Tensor, level: float) -> Tensor:
    """Interval score of a central (level) interval, Gneiting & Raftery (2007) eq. 43, [N].

    (u - l) + (2 / alpha) (l - y) 1{y < l} + (2 / alpha) (y - u) 1{y > u}, alpha = 1 - level.
    """
    alpha = 1 - level
    return (upper - lower) + (2 / alpha) * ((lower - y).clamp_min(0) + (y - upper).clamp_min(0))


def pinball_loss(quantiles: Tensor, y: Tensor, probs: Tensor) -> Tensor:
    """Pinball (check) loss [Q, N] of predicted quantiles [Q, N] at levels probs [Q]."""
    diff = y - quantiles
    tau = probs.to(quantiles)[:, None]
    return torch.maximum(tau * diff, (tau - 1) * diff)


def _level_key(level: float) -> str:
    return f"{100 * level:g}"


def regression_metrics(
    y: Tensor,
    dist: Distribution | None = None,
    samples: Tensor | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    log_lik: Tensor | None = None,
    num_samples: int = 1000,
    num_bins: int = 100,
) -> dict[str, float | str]:
    """All continuous-target metrics at once, as Python floats.

    Args:
        y: targets [N].
        dist: predictive distribution (batch_shape [N]); give exactly one of dist and samples.
        samples: predictive samples [S, N] (mixtures, posterior predictives, flows).
        levels: central-interval levels for coverage, width and interval score.
        log_lik: optional [S, N] per-posterior-sample log-likelihoods of y; used for "nll" when
            there is no dist.
        num_samples: draws for distribution methods without a closed form (e.g. icdf).
        num_bins: number of expected proportions on the calibration curve.

    Returns:
        Keys: nll and nll_kind ("exact" from dist, "posterior_mean_likelihood" from log_lik;
        absent with neither), crps, rmse, mae (predictive mean), rmse_median, mae_median,
        coverage_{L} and width_{L} and interval_score_{L} per level (L in percent, e.g.
        coverage_90), sharpness_std (mean predictive sd), ece_quantile (mean absolute
        calibration error), rms_calibration_error, miscalibration_area (interval-based, as
        uncertainty-toolbox), pinball (mean over levels 0.05, 0.10, ..., 0.95).
    """
    y = _target(y)
    if (dist is None) == (samples is None):
        raise ValueError("dist and samples are both given or both None; expected exactly one")
    lv = _check_levels(levels)
    view = _Predictive(dist if dist is not None else samples, y, num_samples)
    y = view.y  # promoted to the samples' dtype
    out: dict[str, Tensor | str] = {}
    if dist is not None:
        out["nll"], out["nll_kind"] = nll(dist, y), "exact"
    elif log_lik is not None:
        if log_lik.shape[-1] != y.shape[0]:
            raise ValueError(
                f"log_lik has shape {_shape(log_lik)}; expected [S, N] with N = {len(y)}"
            )
        out["nll"], out["nll_kind"] = nll_from_log_likelihoods(log_lik), "posterior_mean_likelihood"
    out["crps"] = view.crps().mean()
    mean, median = view.mean(), view.median()
    out["rmse"] = (mean - y).pow(2).mean().sqrt()
    out["mae"] = (mean - y).abs().mean()
    out["rmse_median"] = (median - y).pow(2).mean().sqrt()
    out["mae_median"] = (median - y).abs().mean()
    lo, hi = _intervals(view, lv)
    for k, level in enumerate(lv.tolist()):
        key = _level_key(level)
        out[f"coverage_{key}"] = ((y >= lo[k]) & (y <= hi[k])).to(y.dtype).mean()
        out[f"width_{key}"] = (hi[k] - lo[k]).mean()
        out[f"interval_score_{key}"] = interval_score(lo[k], hi[k], y, level).mean()
    out["sharpness_std"] = view.stddev().mean()
    expected, observed = _proportions(view, num_bins, "interval")
    out["ece_quantile"] = mean_absolute_calibration_error(expected, observed)
    out["rms_calibration_error"] = root_mean_squared_calibration_error(expected, observed)
    out["miscalibration_area"] = miscalibration_area(expected, observed)
    taus = torch.tensor(_PINBALL_LEVELS, dtype=torch.float64)
    out["pinball"] = pinball_loss(view.quantiles(taus), y, taus).mean()
    return {k: v if isinstance(v, str) else float(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- classification


def _labels(y: Tensor, n: int, num_classes: int) -> Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y has shape {_shape(y)}; expected integer labels [N] with N = {n}")
    if y.is_floating_point() and (torch.isnan(y).any() or (y != y.round()).any()):
        raise ValueError("y has non-integer or NaN values; expected integer class labels")
    y = y.long()
    if ((y < 0) | (y >= num_classes)).any():
        raise ValueError(f"y has labels outside [0, {num_classes - 1}]; expected class indices")
    return y


def _probs(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate probs [N] (binary) or [N, C] and labels; return (probs [N, C], labels [N])."""
    probs = torch.as_tensor(probs)
    if probs.ndim not in (1, 2) or probs.shape[0] == 0:
        raise ValueError(f"probs has shape {_shape(probs)}; expected [N] or [N, C]")
    if not probs.is_floating_point():
        probs = probs.to(torch.get_default_dtype())
    if torch.isnan(probs).any():
        raise ValueError("probs contains NaN; expected probabilities in [0, 1]")
    if ((probs < 0) | (probs > 1)).any():
        raise ValueError("probs has values outside [0, 1]; expected probabilities")
    if probs.ndim == 1:
        probs = torch.stack([1 - probs, probs], -1)
    elif ((probs.sum(-1) - 1).abs() > _PROB_TOL).any():
        raise ValueError(
            f"probs rows do not sum to 1 (tolerance {_PROB_TOL:g}); expected [N, C] probabilities"
        )
    return probs, _labels(y, probs.shape[0], probs.shape[1])


def accuracy(probs: Tensor, y: Tensor) -> Tensor:
    """Fraction of argmax predictions equal to y (binary probs [N]: class 1 when p > 0.5)."""
    p, y = _probs(probs, y)
    return (p.argmax(-1) == y).to(p.dtype).mean()


def log_loss(probs: Tensor, y: Tensor, *, logits: bool = False) -> Tensor:
    """Mean negative log-likelihood of the labels (log loss, nats).

    Args:
        probs: probabilities [N] (of class 1) or [N, C]; or logits of the same shapes when
            `logits=True` (then computed stably with log_softmax / logsigmoid).
        y: integer labels [N].
        logits: whether `probs` holds logits.
    """
    if logits:
        z = torch.as_tensor(probs)
        if z.ndim not in (1, 2) or torch.isnan(z).any():
            raise ValueError(f"logits has shape {_shape(z)} or NaN; expected finite [N] or [N, C]")
        z = torch.stack([torch.zeros_like(z), z], -1) if z.ndim == 1 else z
        y = _labels(y, z.shape[0], z.shape[1])
        return -torch.log_softmax(z, -1).gather(1, y[:, None]).mean()
    p, y = _probs(probs, y)
    # Clamp as scikit-learn does so that a confident mistake costs a large but finite loss.
    return -p.gather(1, y[:, None]).clamp_min(torch.finfo(p.dtype).eps).log().mean()


def brier_score(probs: Tensor, y: Tensor) -> Tensor:
    """Brier score. Binary probs [N]: mean (p - y)^2 in [0, 1]. Probs [N, C]: mean over points of
    sum over classes (p_c - onehot_c)^2 in [0, 2] (scikit-learn's multiclass convention).
    """
    binary = torch.as_tensor(probs).ndim == 1
    p, y = _probs(probs, y)
    sq = (p - torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)).pow(2).sum(-1)
    return (sq / 2 if binary else sq).mean()


def _binned(
    conf: Tensor, correct: Tensor, bins: Tensor, n_bins: int
) -> tuple[Tensor, Tensor, Tensor]:
    count = torch.zeros(n_bins, dtype=conf.dtype, device=conf.device).index_add_(
        0, bins, torch.ones_like(conf)
    )
    s_conf = torch.zeros_like(count).index_add_(0, bins, conf)
    s_acc = torch.zeros_like(count).index_add_(0, bins, correct)
    return count, s_conf, s_acc


def _ece(count: Tensor, s_conf: Tensor, s_acc: Tensor, n: int) -> Tensor:
    # sum_b (n_b / N) |acc_b - conf_b| = sum_b |sum acc - sum conf| / N, empty bins adding 0
    return (s_acc - s_conf).abs().sum() / n


def _equal_width_bins(conf: Tensor, n_bins: int) -> Tensor:
    # Bins (lo, hi] as in Guo et al. (2017); confidence 0 goes to the first bin.
    return (torch.ceil(conf * n_bins) - 1).clamp_(0, n_bins - 1).long()


def reliability_data(probs: Tensor, y: Tensor, n_bins: int = 15) -> dict[str, Tensor]:
    """Top-label reliability diagram data over equal-width confidence bins.

    Returns:
        Dict of tensors: bin_edges [n_bins + 1], confidence, accuracy (NaN in empty bins) and
        count [n_bins].
    """
    p, y = _probs(probs, y)
    conf, pred = p.max(-1)
    count, s_conf, s_acc = _binned(
        conf, (pred == y).to(p.dtype), _equal_width_bins(conf, n_bins), n_bins
    )
    return {
        "bin_edges": torch.linspace(0, 1, n_bins + 1, dtype=p.dtype, device=p.device),
        "confidence": s_conf / count,
        "accuracy": s_acc / count,
        "count": count,
    }


def expected_calibration_error(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    """Top-label ECE: sum_b (n_b / N) |accuracy_b - confidence_b| over equal-width bins."""
    p, y = _probs(probs, y)
    conf, pred = p.max(-1)
    stats = _binned(conf, (pred == y).to(p.dtype), _equal_width_bins(conf, n_bins), n_bins)
    return _ece(*stats, len(y))


def classwise_ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    """Classwise ECE: per class c, bin p_c and compare with the frequency of y = c; mean over c."""
    p, y = _probs(probs, y)
    N, C = p.shape
    onehot = torch.nn.functional.one_hot(y, C).to(p.dtype)
    # One index_add over class-offset bins instead of a Python loop over classes.
    bins = (_equal_width_bins(p, n_bins) + n_bins * torch.arange(C, device=p.device)).reshape(-1)
    count, s_conf, s_acc = _binned(p.reshape(-1), onehot.reshape(-1), bins, C * n_bins)
    return _ece(count, s_conf, s_acc, N) / C


def adaptive_ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    """Top-label ECE over equal-mass bins (bin b holds the points of confidence rank
    floor(b N / n_bins) to floor((b + 1) N / n_bins) - 1)."""
    p, y = _probs(probs, y)
    conf, pred = p.max(-1)
    N = len(y)
    rank = torch.empty_like(y).scatter_(
        0, conf.argsort(stable=True), torch.arange(N, device=p.device)
    )
    stats = _binned(conf, (pred == y).to(p.dtype), (rank * n_bins) // N, n_bins)
    return _ece(*stats, N)


def classification_metrics(
    probs: Tensor | None, y: Tensor, n_bins: int = 15, *, logits: Tensor | None = None
) -> dict[str, float]:
    """All classification metrics at once, as Python floats.

    Args:
        probs: probabilities [N] (binary, of class 1) or [N, C]; may be None if logits given.
        y: integer labels [N].
        n_bins: number of confidence bins for the ECEs.
        logits: optional logits (same shape); used for nll, and for probs when probs is None.

    Returns:
        accuracy, nll (log loss, nats), brier (binary: mean (p - y)^2; multiclass: mean over
        points of the sum over classes, range [0, 2]), ece (top-label, equal width), ece_classwise,
        ece_adaptive (equal mass), mce (max calibration gap over non-empty bins).
    """
    if probs is None:
        if logits is None:
            raise ValueError("probs and logits are both None; expected one of them")
        logits = torch.as_tensor(logits)
        probs = torch.sigmoid(logits) if logits.ndim == 1 else torch.softmax(logits, -1)
    rel = reliability_data(probs, y, n_bins)
    gap = (rel["accuracy"] - rel["confidence"]).abs()
    out = {
        "accuracy": accuracy(probs, y),
        "nll": log_loss(logits, y, logits=True) if logits is not None else log_loss(probs, y),
        "brier": brier_score(probs, y),
        "ece": expected_calibration_error(probs, y, n_bins),
        "ece_classwise": classwise_ece(probs, y, n_bins),
        "ece_adaptive": adaptive_ece(probs, y, n_bins),
        "mce": gap[rel["count"] > 0].max(),
    }
    return {k: float(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- density models


def bits_per_dim(nll_nats: float | Tensor, num_dims: int) -> float | Tensor:
    """Convert a per-example NLL in nats to bits per dimension: nll / (num_dims ln 2)."""
    return nll_nats / (num_dims * math.log(2))


def _log_weights(log_weights: Tensor) -> Tensor:
    log_weights = torch.as_tensor(log_weights)
    if log_weights.ndim != 2 or 0 in log_weights.shape:
        raise ValueError(
            f"log_weights has shape {_shape(log_weights)}; expected a non-empty [K, N]"
        )
    return _no_nan(log_weights, "log_weights")


def elbo_from_log_weights(log_weights: Tensor) -> Tensor:
    """ELBO estimate [N]: mean over K of log p(x, z_k) - log q(z_k | x), from [K, N]."""
    return _log_weights(log_weights).mean(0)


def iwae_from_log_weights(log_weights: Tensor) -> Tensor:
    """Importance-weighted bound [N]: logsumexp over K of the log weights [K, N] minus log K."""
    lw = _log_weights(log_weights)
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


@torch.no_grad()
def iwae_bound(
    log_weight_fn: Callable[[Tensor, int], Tensor],
    x: Tensor,
    num_samples: int = 1000,
    chunk_size: int = 100,
) -> Tensor:
    """Importance-weighted lower bound on log p(x) [N] with K = num_samples, in chunks.

    A running logsumexp over chunks of at most `chunk_size` samples keeps memory at
    O(chunk_size N) whatever K is. Evaluation only: runs under no_grad.

    Args:
        log_weight_fn: (x, k) -> log p(x, z_k) - log q(z_k | x) for k fresh draws, shape [k, N].
        x: data batch (passed through to log_weight_fn).
        num_samples: total number of importance samples K.
        chunk_size: draws per call of log_weight_fn.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples={num_samples}, chunk_size={chunk_size}; expected both >= 1")
    total: Tensor | None = None
    done = 0
    while done < num_samples:
        k = min(chunk_size, num_samples - done)
        lw = _log_weights(log_weight_fn(x, k))
        if lw.shape[0] != k or (total is not None and lw.shape != (k, total.shape[0])):
            raise ValueError(f"log_weight_fn returned shape {_shape(lw)}; expected [{k}, N]")
        chunk = torch.logsumexp(lw, 0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
        done += k
    return total - math.log(num_samples)
