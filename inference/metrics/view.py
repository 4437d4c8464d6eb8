"""One view of a predictive distribution or a sample set: quantiles, CDF, moments, CRPS."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, StudentT

from .crps import _has_closed_crps, _student_t_cdf, crps
from .discrete import _cdf_table, _table_cdf, _table_quantiles, is_discrete
from .sorting import _crps_sorted, _quantiles_sorted, _sorted_rows
from .validation import PredictiveLike, _dist, _no_nan, _samples

__all__: list[str] = []


class _PredictiveView:
    """A distribution or a sample set seen through one interface (quantiles, CDF, moments).

    Distribution methods that torch does not implement (icdf of mixtures, Student-t, ...) fall
    back to `num_samples` draws, sorted once and shared by every metric.

    A discrete predictive (integer support; for samples, `discrete=True`) has integer
    quantiles, the smallest k with F(k) >= p, and PIT bounds F(y - 1), F(y) (`discrete`).
    """

    def __init__(
        self, pred: PredictiveLike, y: Tensor, num_samples: int = 1000, discrete: bool | None = None
    ) -> None:
        self.y = y
        self.num_samples = num_samples
        self.dist: Distribution | None = None
        self._sorted: Tensor | None = None
        self._table: Tensor | bool | None = None
        if isinstance(pred, Distribution):
            self.dist = _dist(pred, y)
            self.discrete = is_discrete(pred) if discrete is None else bool(discrete)
        else:
            self.discrete = bool(discrete)
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
        if self.discrete:
            return self._integer_quantiles(p)
        q = self._try(lambda: self.dist.icdf(p[:, None].expand(-1, self.y.shape[0])))
        return _no_nan(q if q is not None else _quantiles_sorted(self.sorted, p), "quantiles")

    @property
    def table(self) -> Tensor | None:
        """The exact CDF table of a discrete distribution on the non-negative integers."""
        if self._table is None and self.dist is not None and self.discrete:
            self._table = _cdf_table(self.dist, self.y)
            if self._table is None:
                self._table = False
        return self._table if self._table is not False else None

    def _integer_quantiles(self, p: Tensor) -> Tensor:
        """Smallest integer k with F(k) >= p, [Q, N]: exact from the CDF table, else from the
        sorted samples (the inverted empirical CDF, numpy's "inverted_cdf")."""
        if self.table is not None:
            return _table_quantiles(self.table, p).to(self.y.dtype)
        s = self.sorted
        idx = (torch.ceil(p * s.shape[1] - 1e-9) - 1).long().clamp_(0, s.shape[1] - 1)
        return s[:, idx].T

    def cdf_at(self, k: Tensor) -> Tensor:
        """F(k) [Q, N] at integer values k [Q, N] (float64): exact where known, else from
        samples (the fraction of samples <= k)."""
        if self.table is not None:
            return _table_cdf(self.table, k)
        s = self.sorted
        q = torch.searchsorted(s, k.T.to(s.dtype).contiguous(), right=True).T
        return q.to(torch.float64) / s.shape[1]

    def pit_bounds(self) -> tuple[Tensor, Tensor]:
        """F(y - 1) and F(y) [N] of a discrete predictive (float64)."""
        f = self.cdf_at(torch.stack([self.y - 1, self.y]))
        return f[0], f[1]

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
        if self.table is not None:  # exact: sum_k (F(k) - 1{y <= k})^2
            k = torch.arange(self.table.shape[0], dtype=self.table.dtype, device=self.y.device)
            hit = (self.y.to(self.table.dtype) <= k[:, None]).to(self.table.dtype)
            return (self.table - hit).pow(2).sum(0).to(self.y.dtype)
        if self.dist is not None and _has_closed_crps(self.dist):
            return crps(self.dist, self.y)
        return _crps_sorted(self.sorted, self.y)
