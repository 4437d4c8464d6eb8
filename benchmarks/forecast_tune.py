"""Config variants of the zoo forecaster on earlier windows: how its defaults were chosen.

    python -m benchmarks.forecast_tune airpassengers --drop 1 --seeds 3 \\
        --variant base --variant log:log_target=true
    python -m benchmarks.forecast_tune visnights --drop 1 --windows 3 --seeds 2 --variant ...
    python -m benchmarks.forecast_tune elecdemand --drop 1 --sweep --variant ...

``--drop K`` removes the last ``K`` horizons of the data first, so the windows scored are
earlier than the benchmark's (the final windows stay out of the choice). Each variant is the
registered ``forecast`` family with ``key=value`` config overrides on top of its
``data_overrides``, fitted as ``scripts/train.py`` fits it (early stopping and interval
calibration on the validation forecast) and backtested on the same windows for every seed;
``--sweep`` uses the benchmark's coverage-sweep windows (20 periods of history each). Prints
the mean over seeds of wQL, CRPS, MASE and 90% coverage, and each seed's CRPS.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo
from benchmarks.forecast import SWEEP_PERIODS, _sweep_windows, _zoo_forecaster
from inference.backtest import backtest
from inference.forecasting import BEYOND_GROWTH, CALIBRATION_POINTS
from zoo.datasets import load_dataset

KEYS = ("wql", "crps", "mase", "coverage_90")


def _variant(text: str) -> tuple[str, dict]:
    label, _, rest = text.partition(":")
    return label, zoo.parse_overrides([kv for kv in rest.split(";") if kv])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset")
    p.add_argument("--drop", type=int, default=1, help="horizons removed from the end first")
    p.add_argument("--horizon", type=int, help="steps per window (default: the data's)")
    p.add_argument("--windows", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--sweep", action="store_true", help="the coverage sweep's windows")
    p.add_argument("--members", type=int, default=1, help="a deep ensemble of this many")
    p.add_argument("--no-calibration", action="store_true")
    p.add_argument("--calibration-points", type=int, default=CALIBRATION_POINTS)
    p.add_argument("--calibration-growth", type=float, default=BEYOND_GROWTH)
    p.add_argument("--sweep-periods", type=int, default=SWEEP_PERIODS, help="history per window")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument(
        "--variant",
        action="append",
        type=_variant,
        required=True,
        help="LABEL or LABEL:key=value;key=value (config overrides)",
    )
    args = p.parse_args(argv)
    if not 0 <= args.calibration_growth <= 2:  # NaN fails too
        p.error(f"--calibration-growth must lie in [0, 2]; got {args.calibration_growth}")
    data = load_dataset(args.dataset)
    if args.drop:
        data = data.slice(0, len(data) - data.horizon * args.drop)
    if args.horizon:
        data = dataclasses.replace(data, horizon=args.horizon)
    plan = {"num_windows": args.windows}
    if args.sweep:
        windows = _sweep_windows(data)
        plan = {"num_windows": windows, "train_window": args.sweep_periods * data.period}
    print(f"{args.dataset}: {len(data)} steps after dropping {args.drop} horizon(s), {plan}")
    for label, over in args.variant:
        start, runs = time.perf_counter(), []
        for seed in range(args.first_seed, args.first_seed + args.seeds):

            def make(seed=seed, over=over):
                return _zoo_forecaster(
                    False, seed, not args.no_calibration, data.horizon, over, args.members,
                    args.calibration_points, args.calibration_growth,
                )  # fmt: skip

            runs.append(backtest(data, make, num_samples=500, seed=seed, **plan).overall)
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in KEYS}
        cells = "  ".join(f"{k} {v:.4g}" for k, v in mean.items())
        per = ", ".join(f"{r['crps']:.4g}" for r in runs)
        print(f"{label:<16}{cells}  CRPS per seed [{per}]  {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
