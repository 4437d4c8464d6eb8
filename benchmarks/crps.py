"""Sample CRPS speed: inference.metrics.crps_samples against properscoring and scoringrules.

    python -m benchmarks.crps                   # S = 1,000 samples for N = 100,000 points
    python -m benchmarks.crps --n 20000 --s 500 # smaller

All methods score the same float64 draws: one [N, S] array (ensemble on the contiguous last
axis, the layout both references sort fastest), which ours reads as a zero-copy [S, N] view;
ours is also timed on an [S, N] contiguous copy (the layout `dist.sample((S,))` gives). Each
method runs once on a small slice first (numba compiles lazily), then `--repeats` rounds are
timed with the method order rotated each round; the table shows the best and the median
round, with the process CPU seconds of the best round (ours counts both of torch's threads,
including time spent waiting at barriers). torch uses its default intra-op threads; numpy
and numba run on one thread. On a shared machine the load average is printed for context.
Target: ours faster than every reference, agreeing with each to 1e-10.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import properscoring as ps
import properscoring._crps as ps_crps
import scoringrules as sr
import torch

from inference.metrics import crps_samples

__all__ = ["run", "main"]

TOLERANCE = 1e-10


def _methods(X: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    """name -> zero-argument callable returning per-point CRPS [N] as numpy."""
    X_sn = torch.from_numpy(X).T  # [S, N] view of the same memory
    X_sn_contig = X_sn.contiguous()
    y_t = torch.from_numpy(y)
    return {
        "ours": lambda: crps_samples(X_sn, y_t).numpy(),
        "ours, [S, N] contiguous": lambda: crps_samples(X_sn_contig, y_t).numpy(),
        "properscoring": lambda: ps.crps_ensemble(y, X),
        "scoringrules": lambda: sr.crps_ensemble(y, X),  # default estimator "qd" (not fair)
        "scoringrules numba": lambda: sr.crps_ensemble(y, X, estimator="qd", backend="numba"),
    }


def run(args: argparse.Namespace) -> dict:
    """Time each method on the same arrays; print a table; return seconds, ratios, diffs."""
    quick = getattr(args, "quick", False)
    n = getattr(args, "n", None) or (5_000 if quick else 100_000)
    s = getattr(args, "s", None) or (200 if quick else 1_000)
    repeats = getattr(args, "repeats", None) or (1 if quick else 3)
    rng = np.random.default_rng(getattr(args, "seed", 0))
    X = rng.standard_normal((n, s)) * rng.uniform(0.5, 2.0, size=(n, 1))
    y = rng.standard_normal(n) * 1.5

    small = _methods(np.ascontiguousarray(X[:64]), y[:64])
    for fn in small.values():  # compile numba gufuncs, touch torch's kernels
        fn()
    methods = _methods(X, y)
    names = list(methods)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, np.ndarray] = {}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = methods[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            print(f"  round {r + 1}: {name:<26}{times[name][-1]:8.2f} s", flush=True)

    ours = "ours"
    best = {name: min(t) for name, t in times.items()}
    diff = {name: float(np.abs(results[name] - results[ours]).max()) for name in names}
    rows = {
        name: {
            "best_s": best[name],
            "median_s": statistics.median(times[name]),
            "cpu_s_of_best": cpu[name][times[name].index(best[name])],
            "ratio_to_ours": best[name] / best[ours],
            "max_abs_diff": diff[name],
        }
        for name in names
    }
    numba_path = ps_crps._crps_ensemble_core is not ps_crps._crps_ensemble_vectorized
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"\nsample CRPS, N = {n:,} points x S = {s:,} samples, float64; load average {load}; "
        f"torch threads "
        f"{torch.get_num_threads()}; properscoring numba fast path: {numba_path}; "
        f"best / median of {repeats}"
    )
    print(f"{'method':<26}{'best s':>9}{'median s':>10}{'cpu s':>8}{'x ours':>9}{'max |diff|':>12}")
    for name, row in rows.items():
        print(
            f"{name:<26}{row['best_s']:>9.2f}{row['median_s']:>10.2f}{row['cpu_s_of_best']:>8.2f}"
            f"{row['ratio_to_ours']:>9.2f}{row['max_abs_diff']:>12.1e}"
        )
    refs = [name for name in names if not name.startswith("ours")]
    agree = all(rows[name]["max_abs_diff"] <= TOLERANCE for name in names)
    faster = all(best[ours] < best[name] for name in refs)
    print(
        f"target: ours faster than every reference and within {TOLERANCE:g} of each: "
        f"{'met' if agree and faster else 'MISSED'} (faster: {faster}, agree: {agree})"
    )
    return {
        "n": n,
        "s": s,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "properscoring_numba": numba_path,
        "rows": rows,
        "passed": (agree and faster) if not quick else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="points (default 100,000)")
    p.add_argument("--s", type=int, default=None, help="samples per point (default 1,000)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    result = run(p.parse_args(argv))
    return 1 if result["passed"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
