"""Foundation targets: heteroscedastic regression and the MSE baseline on the toy problem."""

from __future__ import annotations

import time

import zoo
from inference import evaluate, fit

__all__ = ["run"]


def run(args) -> dict:
    n_test = 5_000 if args.quick else 100_000
    data = zoo.datasets.load_toy(seed=args.seed, n_test=n_test)
    true_nll = data.true_nll()
    rows = {}
    for label, name, overrides in (
        ("regression (normal)", "regression", {}),
        ("regression (studentt)", "regression", {"likelihood": "studentt"}),
        ("mse", "mse", {}),
    ):
        model = zoo.build(name, **overrides)
        opts = {"epochs": 5} if args.quick else {}  # fit merges the model's default_fit
        start = time.perf_counter()
        fit(model, data.train, data.val, quiet=True, seed=args.seed, device=args.device, **opts)
        seconds = time.perf_counter() - start
        m = evaluate(model, data.test, true_log_prob=data.true_log_prob)
        rows[label] = {**{k: m[k] for k in ("nll", "nll_gap", "rmse", "coverage_90", "crps")},
                       "seconds": seconds}  # fmt: skip
    print(
        f"toy problem: {len(data.train)} training points, {n_test} held out; "
        f"true NLL {true_nll:.3f}"
    )
    print(f"{'model':<24}{'NLL':>8}{'gap':>8}{'RMSE':>8}{'cov90':>8}{'CRPS':>8}{'sec':>8}")
    for label, r in rows.items():
        print(
            f"{label:<24}{r['nll']:>8.3f}{r['nll_gap']:>8.3f}{r['rmse']:>8.3f}"
            f"{r['coverage_90']:>8.3f}{r['crps']:>8.3f}{r['seconds']:>8.1f}"
        )
    normal = rows["regression (normal)"]
    passed = normal["nll"] <= 0.975 and 0.87 <= normal["coverage_90"] <= 0.94
    print(
        f"target: regression (normal) NLL <= 0.975 and 90% coverage in [0.87, 0.94]: "
        f"{'met' if passed else 'MISSED'}"
    )
    return {"true_nll": true_nll, "rows": rows, "passed": passed if not args.quick else None}
