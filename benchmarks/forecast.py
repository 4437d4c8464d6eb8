"""Forecasting: rolling-origin backtests of the zoo forecaster beside statistical baselines.

    python scripts/benchmark.py --only forecast          # ~10-20 min on 2 busy CPU cores
    python scripts/benchmark.py --only forecast --quick  # code paths only

Every forecaster is scored on the same windows by ``inference.backtest``: AirPassengers with
the last 36 months held out (the issue's reference figures), visnights over 3 rolling origins
of 8 quarters, and the 90% coverage of each on every registered series set (at most 20
periods of training history per window there, so ETS stays fast on the hourly sets).
The zoo forecaster runs twice: as train.py runs it (intervals calibrated by split conformal on
the validation forecast) and uncalibrated. Targets (the calibrated row): on visnights mean
wQL and CRPS below seasonal naive and ETS; on AirPassengers CRPS within 10% of ETS; 90%
coverage within 0.85-0.95 on every set.

The zoo rows of the two tables are the mean over ``TABLE_SEEDS`` seeds (seed, seed + 1, ...;
the fits of one window differ by more than the gaps between forecasters), printed with each
seed's CRPS; the targets are checked on those means. The coverage sweep uses one seed.
"""

from __future__ import annotations

import math
import time

import zoo
from inference.backtest import backtest
from inference.forecast_baselines import ETS, PyroStructural, SeasonalNaive
from inference.forecasting import EarlyStoppingForecaster
from zoo.datasets import SERIES_DATASETS, load_dataset

__all__ = ["run", "TABLE_PLANS", "forecasters"]

KEYS = ("wql", "crps", "mase", "mape", "coverage_90", "width_90")
#: dataset -> backtest options for the side-by-side table
TABLE_PLANS = {
    "airpassengers": {"num_windows": 1},  # horizon 36: the last three years held out
    "visnights": {"num_windows": 3},  # horizon 8, origins 52, 60, 68
}
ZOO = "zoo forecast"
RAW = "zoo, uncalibrated"
#: seeds of the zoo rows in the tables (one with --quick)
TABLE_SEEDS = 3


def _zoo_forecaster(
    quick: bool,
    seed: int,
    calibrate: bool = True,
    val_horizon=None,
    overrides: dict | None = None,
    members: int = 1,
):
    """The registered ``forecast`` family, fitted as ``scripts/train.py`` fits it (early stopping
    on the last horizon of each history, intervals calibrated on it unless ``calibrate`` is
    False), or None before the family exists. ``overrides`` go on top of its data overrides;
    ``members`` > 1 makes it a deep ensemble."""
    cls = zoo.MODELS.get("forecast")
    if cls is None or not all(hasattr(cls, h) for h in ("training_windows", "forecast_inputs")):
        return None
    tiny = dict(getattr(cls, "tiny_config", {})) if quick else {}
    options = {**getattr(cls, "default_fit", {}), "seed": seed}
    if quick:
        options["epochs"] = 2

    def build(series):
        return zoo.build("forecast", **{**cls.data_overrides(series), **tiny, **(overrides or {})})

    return EarlyStoppingForecaster(
        build, parallel=True, calibrate=calibrate, val_horizon=val_horizon, members=members,
        **options,
    )  # fmt: skip


def forecasters(quick: bool, seed: int = 0, with_zoo: bool = True) -> dict:
    """The rows of the table: ``make(data)`` gives a fresh forecaster for a window of ``data``."""
    rows = {
        "seasonal naive": lambda data: SeasonalNaive(),
        "ETS": lambda data: ETS(),
        "Pyro structural": lambda data: PyroStructural(num_steps=20 if quick else 400),
    }
    if with_zoo and _zoo_forecaster(quick, seed) is not None:
        # validated on the horizon it forecasts, as train.py does
        rows[RAW] = lambda data: _zoo_forecaster(quick, seed, False, data.horizon)
        rows[ZOO] = lambda data: _zoo_forecaster(quick, seed, True, data.horizon)
    return rows


#: held-out points the coverage sweep aims for on each set (a 12-point window's coverage has a
#: sampling s.e. of 0.09 even for a calibrated forecaster, too coarse for a 0.85-0.95 target)
SWEEP_POINTS = 100


def _sweep_windows(data) -> int:
    """Rolling windows giving ``SWEEP_POINTS`` points, as many as the data holds for the zoo."""
    cls = zoo.MODELS["forecast"]
    model = zoo.build("forecast", **cls.data_overrides(data))
    # each window's history must hold the zoo's training windows and a validation stretch
    need = max(2 * data.period + 1, model.min_train_length + model.config.horizon)
    most = max(1, (len(data) - need) // data.horizon)
    return min(most, math.ceil(SWEEP_POINTS / (data.num_series * data.horizon)))


def _table(title: str, results: dict) -> None:
    print(title)
    print(f"{'model':<20}" + "".join(f"{k:>12}" for k in KEYS) + f"{'seconds':>10}")
    for name, r in results.items():
        cells = "".join(f"{r['overall'].get(k, math.nan):>12.4f}" for k in KEYS)
        print(f"{name:<20}{cells}{r['seconds']:>10.1f}")


def _run_one(data, make, plan, num_samples, seed) -> dict:
    start = time.perf_counter()
    res = backtest(data, lambda: make(data), num_samples=num_samples, seed=seed, **plan)
    return {**res.as_dict(), "seconds": time.perf_counter() - start}


def _mean_over_seeds(runs: list[dict]) -> dict:
    """One row from runs of several seeds: the mean of each overall score, the total time."""
    keys = runs[0]["overall"]
    overall = {k: sum(r["overall"][k] for r in runs) / len(runs) for k in keys}
    return {
        "overall": overall,
        "per_seed": [r["overall"] for r in runs],
        "seconds": sum(r["seconds"] for r in runs),
    }


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    seed = getattr(args, "seed", 0)
    num_samples = 100 if quick else 500
    rows = forecasters(quick, seed)
    if ZOO not in rows:
        print("(the zoo forecaster is not registered yet: baselines only)")
    tables = {}
    for name, plan in TABLE_PLANS.items():
        data = load_dataset(name)
        plan = {**plan, "num_windows": 1} if quick else plan
        seeds = [seed] if quick else [seed + k for k in range(TABLE_SEEDS)]
        tables[name] = {}
        for label, make in rows.items():
            if label not in (ZOO, RAW):
                tables[name][label] = _run_one(data, make, plan, num_samples, seed)
                continue
            runs = [
                _run_one(data, forecasters(quick, s)[label], plan, num_samples, s) for s in seeds
            ]
            tables[name][label] = _mean_over_seeds(runs)
        _table(f"\n{name}: H={data.horizon}, {plan['num_windows']} window(s)", tables[name])
        for label in (ZOO, RAW):
            if label in tables[name]:
                crps = ", ".join(f"{r['crps']:.4g}" for r in tables[name][label]["per_seed"])
                print(f"  {label}: mean of seeds {seeds}; CRPS per seed {crps}")

    # 90% coverage of each forecaster on every registered set (the Pyro model only where short)
    sweep = {}
    sweep_rows = {"seasonal naive": rows["seasonal naive"]} if quick else rows
    print(
        f"\n90% interval coverage (target 0.85-0.95) over the last windows of each set, at least"
        f" {SWEEP_POINTS} held-out points where the data holds them (s.e.: a calibrated"
        " forecaster's binomial sampling error at that many points)"
    )
    head = f"{'dataset':<16}{'windows':>8}{'points':>7}{'s.e.':>6}"
    print(head + "".join(f"{n:>19}" for n in sweep_rows))
    for name in SERIES_DATASETS:
        data = load_dataset(name)
        if quick and data.num_series > 1:
            data = data.select([0])
        windows = 1 if quick else _sweep_windows(data)
        plan = {"num_windows": windows, "train_window": 20 * data.period}
        sweep[name] = {}
        for label, make in sweep_rows.items():
            if label == "Pyro structural" and len(data) > 2000:
                continue  # its time-local latents make hourly sets slow; ETS covers them
            r = _run_one(data, make, plan, num_samples, seed)
            sweep[name][label] = {k: r["overall"][k] for k in ("coverage_90", "width_90", "crps")}
        cells = "".join(
            f"{sweep[name][n]['coverage_90']:>19.3f}" if n in sweep[name] else f"{'-':>19}"
            for n in sweep_rows
        )
        points = windows * data.num_series * data.horizon
        se = math.sqrt(0.09 / points)
        print(f"{name:<16}{windows:>8}{points:>7}{se:>6.3f}{cells}", flush=True)
        sweep[name]["points"] = points

    passed = None
    if ZOO in rows and not quick:
        vis, air = tables["visnights"], tables["airpassengers"]
        beats = all(
            vis[ZOO]["overall"][k] < vis[b]["overall"][k]
            for k in ("wql", "crps")
            for b in ("seasonal naive", "ETS")
        )
        close = air[ZOO]["overall"]["crps"] <= 1.1 * air["ETS"]["overall"]["crps"]
        covered = all(0.85 <= s[ZOO]["coverage_90"] <= 0.95 for s in sweep.values())
        passed = beats and close and covered
        print(
            f"\ntargets: visnights wQL and CRPS below seasonal naive and ETS: {beats}; "
            f"AirPassengers CRPS within 10% of ETS: {close}; coverage 0.85-0.95 everywhere: "
            f"{covered}"
        )
    return {"tables": tables, "coverage": sweep, "passed": passed}
