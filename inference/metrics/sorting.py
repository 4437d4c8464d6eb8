"""Sorting predictive samples per point: one chunked path shared by CRPS and quantiles."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

__all__: list[str] = []

# Elements per chunk of sorted rows (32 MiB of float64): temporaries stay bounded whatever N is.
_CHUNK_ELEMS = 1 << 22
# At most this many points per chunk, so that even a few thousand points give the CPU threads
# several chunks to share.
_CHUNK_POINTS = 2048


def _for_sorted_chunks(samples: Tensor, fn: Callable[[int, Tensor], None]) -> None:
    """Call ``fn(i, rows)`` for chunks of points: rows [n, S] are the sorted samples of points
    [i, i + n), a fresh tensor with contiguous rows that fn may keep or overwrite.

    On the CPU (no autograd) rows are sorted by numpy in threads: numpy's in-place row sort
    needs no index array, is several times faster than ``torch.sort`` on the CPU
    (``python -m benchmarks.crps``) and releases the GIL, so chunks sort in parallel; fn then
    runs on the same thread, so it must write only its own slice of any shared output.
    Elsewhere, or when samples require grad, ``torch.sort`` sorts each chunk on its device.
    """
    S, N = samples.shape
    step = max(1, min(N, _CHUNK_POINTS, _CHUNK_ELEMS // S))
    starts = range(0, N, step)
    if samples.device.type != "cpu" or samples.requires_grad:
        for i in starts:
            fn(i, torch.sort(samples[:, i : i + step].T, dim=-1).values)
        return
    x_all = samples.numpy()  # a view: no copy

    def work(i: int) -> None:
        # a fresh [n, S] copy with contiguous rows: the in-place sort must not touch the input
        x = np.array(x_all[:, i : i + step].T, order="C", copy=True)
        x.sort(axis=1)
        fn(i, torch.from_numpy(x))

    threads = max(1, min(torch.get_num_threads(), len(starts)))
    if threads == 1:
        for i in starts:
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, starts))


def _sorted_rows(samples: Tensor) -> Tensor:
    """Samples [S, N] -> sorted rows [N, S]."""
    out = torch.empty(samples.shape[::-1], dtype=samples.dtype, device=samples.device)

    def keep(i: int, rows: Tensor) -> None:
        out[i : i + rows.shape[0]] = rows

    _for_sorted_chunks(samples.detach(), keep)
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
