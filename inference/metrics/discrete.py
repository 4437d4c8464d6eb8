"""Integer-valued predictives: exact CDFs, the randomized PIT and its calibration curve.

For a predictive with CDF F on the integers and an observed count y, the randomized PIT
(Czado, Gneiting & Held 2009) is U = F(y - 1) + V (F(y) - F(y - 1)) with V ~ Uniform(0, 1):
under the true model U is exactly Uniform(0, 1), as the PIT of a continuous predictive is.
Given y, U is uniform on [F(y - 1), F(y)], so its CDF at u is
G(u | y) = clamp((u - F(y - 1)) / (F(y) - F(y - 1)), 0, 1), the "non-randomized PIT" of the
same paper; averages of G are the expected values of the randomized quantities, so curves and
coverages computed from G have no randomization noise.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

__all__ = ["is_discrete", "randomized_pit"]


def is_discrete(dist: Distribution) -> bool:
    """Whether ``dist`` lives on the integers (its support says so, e.g. Poisson)."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    try:
        return bool(dist.support.is_discrete)
    except NotImplementedError:
        return False


def _cdf_table(
    dist: Distribution, y: Tensor, tail: float | None = None, max_elems: int = 1 << 24
) -> Tensor | None:
    """The CDF F(k) [K, N] for k = 0, ..., K - 1 (float64), by cumulating the pmf.

    K is the first multiple of 256 beyond max(y) at which every point's tail mass 1 - F(K - 1)
    is below `tail` (default 1e-12 for float64 parameters, 1e-6 for float32 ones, whose pmf
    sums to 1 only to about that precision). None if the support is not the non-negative
    integers or the table would pass `max_elems` entries (then callers fall back to samples).
    """
    base = dist
    while isinstance(base, Independent):
        base = base.base_dist
    try:
        support = base.support
    except NotImplementedError:
        return None
    lower = getattr(support, "lower_bound", None)
    if not (support.is_discrete and lower is not None and float(lower) == 0 and base is dist):
        return None
    n, block = y.shape[0], 256
    if tail is None:
        tail = 1e-12 if dist.mean.dtype == torch.float64 else 1e-6
    rows, last = [], torch.zeros(n, dtype=torch.float64, device=y.device)
    y_max = float(y.max())
    while True:
        k = torch.arange(len(rows) * block, (len(rows) + 1) * block, device=y.device)
        with torch.no_grad():
            lp = dist.log_prob(k[:, None].to(y.dtype).expand(-1, n))
        rows.append((last + lp.to(torch.float64).exp().cumsum(0)).clamp_max(1.0))
        last = rows[-1][-1]
        if len(rows) * block > y_max and bool((1 - last < tail).all()):
            return torch.cat(rows)
        if len(rows) * block * n > max_elems:
            return None


def _table_cdf(table: Tensor, k: Tensor) -> Tensor:
    """F(k) [Q, N] at integer-valued k [Q, N] from a CDF table [K, N]."""
    idx = torch.floor(k).long()
    f = table.gather(0, idx.clamp(0, table.shape[0] - 1))
    return torch.where(idx < 0, 0.0, torch.where(idx >= table.shape[0], 1.0, f))


def _table_quantiles(table: Tensor, p: Tensor) -> Tensor:
    """Smallest k with F(k) >= p, [Q, N], from a CDF table [K, N] and levels p [Q]."""
    cols = table.T.contiguous()
    pp = p.to(cols)[None, :].expand(cols.shape[0], -1).contiguous()
    idx = torch.searchsorted(cols, pp, right=False).clamp_max(cols.shape[1] - 1)
    return idx.T.to(torch.float64)


def _pit_cdf(lo: Tensor, hi: Tensor, u: Tensor) -> Tensor:
    """G(u | y) [U, N] for PIT bounds lo = F(y - 1), hi = F(y) [N] and levels u [U]."""
    u = u.to(lo)[:, None]
    width = hi - lo
    ramp = ((u - lo) / width.clamp_min(torch.finfo(lo.dtype).tiny)).clamp(0, 1)
    return torch.where(width > 0, ramp, (u >= hi).to(lo))


def randomized_pit(lo: Tensor, hi: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Randomized PIT values [N]: uniform draws in [F(y - 1), F(y)] (lo, hi given [N])."""
    v = torch.rand(lo.shape, generator=generator, dtype=lo.dtype, device="cpu").to(lo.device)
    return lo + v * (hi - lo)


def _interval_hits(lo: Tensor, hi: Tensor, levels: Tensor) -> Tensor:
    """Expected indicator [L, N] that the randomized PIT is in [(1 - l) / 2, (1 + l) / 2]."""
    levels = levels.to(lo)
    return _pit_cdf(lo, hi, (1 + levels) / 2) - _pit_cdf(lo, hi, (1 - levels) / 2)
