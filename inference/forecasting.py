"""Forecasting runs for any model with the SupportsForecast hooks: holdout, fit, backtest, table.

Nothing here names a family: a model forecasts because it has ``training_windows`` and
``forecast_inputs`` (``zoo.base.SupportsForecast``); data is a ``SeriesData``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zoo.base import DataError, NeedsHistory
from zoo.datasets import Split

from .backtest import ModelForecaster, backtest
from .fit import FitConfig, History, fit

__all__ = [
    "holdout",
    "forecast_split",
    "fit_on_history",
    "EarlyStoppingForecaster",
    "run_backtests",
    "baseline_table",
]


def holdout(series, horizon: int | None = None):
    """``(history, future)``: the last ``horizon`` steps of every series held out."""
    h = series.horizon if horizon is None else int(horizon)
    if not 1 <= h < len(series):
        raise DataError(
            f"horizon {h} is longer than the data allows: the series have {len(series)} steps;"
            f" choose a horizon between 1 and {len(series) - 1}"
        )
    return series.slice(0, -h), series.slice(-h, None)


def forecast_split(model, history, future) -> Split:
    """A :class:`Split` whose ``x`` forecasts ``future`` from ``history`` and ``y`` is its truth."""
    cov = future.covariates
    x = model.forecast_inputs(history, len(future), cov)
    return Split(x, future.values)


def fit_on_history(
    model, history, config: FitConfig | None = None, *, on_improve=None, **overrides
) -> History:
    """Fits on windows of ``history``, early-stopping on forecasts of its last steps.

    The validation forecast covers the training windows' horizon at the end of the history;
    its steps are kept out of the training windows. When the history is too short to spare
    them, the model trains on all of it without validation.
    """
    x, y = model.training_windows(history)
    hv = y.shape[1]
    val = None
    if len(history) > hv:
        try:
            fit_part, val_part = holdout(history, hv)
            x, y = model.training_windows(fit_part)
            val = forecast_split(model, fit_part, val_part)
        except DataError:
            x, y = model.training_windows(history)
    return fit(model, (x, y), val, config, on_improve=on_improve, **overrides)


class EarlyStoppingForecaster(ModelForecaster):
    """:class:`inference.backtest.ModelForecaster` that early-stops like :func:`fit_on_history`."""

    def fit(self, history) -> EarlyStoppingForecaster:
        model = self.build(history)
        self.history = fit_on_history(model, history, **self.fit_options)
        self.model = model
        return self


def baselines(names: tuple[str, ...] = ("seasonal_naive", "ets")) -> dict[str, Callable]:
    """Baseline forecasters by name (fresh ones per window)."""
    from . import forecast_baselines as fb

    table = {
        "seasonal_naive": fb.SeasonalNaive,
        "ets": fb.ETS,
        "pyro_structural": fb.PyroStructural,
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {', '.join(table)}")
    return {n: table[n] for n in names}


def run_backtests(
    data,
    forecasters: dict[str, Any],
    *,
    num_windows: int = 3,
    num_samples: int = 200,
    seed: int = 0,
    min_train: int | None = None,
) -> dict[str, Any]:
    """The same rolling-origin windows for every forecaster: name -> ``Backtest``."""
    out = {}
    for name, f in forecasters.items():
        out[name] = backtest(
            data, f, num_windows=num_windows, num_samples=num_samples, seed=seed,
            min_train=min_train,
        )  # fmt: skip
    return out


def baseline_table(results: dict[str, Any], keys=("wql", "crps", "mase", "coverage_90")) -> str:
    """A Markdown table of each forecaster's pooled backtest scores."""
    lines = ["| forecaster | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in results.items():
        cells = [f"{r.overall.get(k, float('nan')):.4f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def holdout_paths(model, history, future, num_samples: int) -> torch.Tensor:
    """``[S, N, H]`` sample paths of ``future`` given ``history``."""
    from .predict import predictive_samples

    split = forecast_split(model, history, future)
    return predictive_samples(model, split.x, num_samples)["obs"]


def forecast_run(
    model,
    data,
    run_dir,
    build: Callable[[Any], Any],
    fit_config: FitConfig,
    *,
    checkpoint=None,
    num_samples: int = 200,
    backtest_windows: int = 3,
    baseline_names: tuple[str, ...] = ("seasonal_naive", "ets"),
    seed: int = 0,
) -> dict[str, Any]:
    """Trains on all but the last ``data.horizon`` steps, scores that holdout, backtests.

    Writes ``forecast.png`` (fan chart of the holdout), ``training_curve.png``, ``history.csv``
    and ``baselines.md`` into ``run_dir`` and returns the metrics: the holdout's scores
    (overall and ``per_horizon``) and, under ``backtest``, every forecaster's pooled
    rolling-origin scores on the same windows (``build(history)`` makes a fresh model).
    """
    from pathlib import Path

    from .cli import write_history
    from .evaluate import evaluate
    from .forecast_summary import fan_chart, summarize_paths
    from .metrics.forecast import forecast_metrics, seasonal_scale
    from .plots import training_curve

    run_dir = Path(run_dir)
    history, future = holdout(data)
    try:
        model.training_windows(history)
    except DataError as e:  # say which part of the data the holdout took
        raise DataError(
            f"{e}; the held-out horizon {data.horizon} leaves {len(history)} of {len(data)} steps"
        ) from None
    hist = fit_on_history(model, history, fit_config, on_improve=checkpoint)
    write_history(run_dir / "history.csv", hist.rows)
    if hist.rows:
        training_curve(hist.rows, run_dir / "training_curve.png")
    split = forecast_split(model, history, future)
    metrics = evaluate(model, split, num_samples=num_samples)
    paths = holdout_paths(model, history, future, num_samples).cpu()
    scale = seasonal_scale(history.values, data.period)
    thr = history.values[:, -data.period :].mean(-1, keepdim=True)
    metrics["mase"] = forecast_metrics(paths, future.values, scale, thr)["overall"]["mase"]
    metrics.update(
        train_seconds=hist.seconds,
        epochs_run=len(hist.rows),
        best_epoch=hist.best_epoch,
        stopped=hist.stopped,
    )
    summary = summarize_paths(paths)
    fan_chart(history.values, summary, run_dir / "forecast.png", truth=future.values,
              names=data.names)  # fmt: skip
    if backtest_windows > 0:
        forecasters = {"model": EarlyStoppingForecaster(build, parallel=True, config=fit_config)}
        forecasters.update({n: f() for n, f in baselines(baseline_names).items()})
        min_train = max(
            2 * data.period + 1, model.min_train_length if isinstance(model, NeedsHistory) else 1
        )
        # as many windows as the data holds, up to the number asked for
        fits = (len(data) - data.horizon - min_train) // data.horizon + 1
        backtest_windows = max(1, min(backtest_windows, fits))
        results = run_backtests(
            data, forecasters, num_windows=backtest_windows, num_samples=num_samples,
            seed=seed, min_train=min_train,
        )  # fmt: skip
        metrics["backtest"] = {
            "num_windows": backtest_windows,
            **{k: {"overall": r.overall, "per_horizon": r.per_horizon} for k, r in results.items()},
        }
        table = baseline_table(results)
        (run_dir / "baselines.md").write_text(table + "\n")
        metrics["baseline_table"] = table
    return metrics
