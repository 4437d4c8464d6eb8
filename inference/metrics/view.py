"""One view of a predictive distribution or a sample set: quantiles, CDF, moments, CRPS."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, StudentT

from .crps import _has_closed_crps, _student_t_cdf, crps
from .sorting import _crps_sorted, _quantiles_sorted, _sorted_rows
from .validation import PredictiveLike, _dist, _no_nan, _samples

__all__: list[str] = []


class _PredictiveView:
    """A distribution or a sample set seen through one interface (quantiles, CDF, moments).

    Distribution methods that torch does not implement (icdf of mixtures, Student-t, ...) fall
    back to `num_samples` draws, sorted once and shared by every metric.
    """

    def __init__(self, pred: PredictiveLike, y: Tensor, num_samples: int = 1000) -> None:
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
