"""Forecasting runs for any model with the SupportsForecast hooks: holdout, fit, backtest, table.

Nothing here names a family: a model forecasts because it has ``training_windows`` and
``forecast_inputs`` (``zoo.base.SupportsForecast``); data is a ``SeriesData``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import torch

from zoo.base import DataError, NeedsHistory, ZooModel
from zoo.datasets import Split

from . import distributed
from .backtest import ModelForecaster, WindowStore, backtest
from .fit import FitConfig, History, fit
from .forecast_calibration import (
    BEYOND_GROWTH,
    SpreadCalibration,
    fit_spread,
    spread_scores,
    widen_only,
)

__all__ = [
    "BEYOND_GROWTH",
    "CALIBRATION_POINTS",
    "holdout",
    "forecast_split",
    "fit_on_history",
    "validation_windows",
    "SpreadCalibration",
    "fit_spread",
    "pooled_paths",
    "calibrate_on_history",
    "EarlyStoppingForecaster",
    "run_backtests",
    "baseline_table",
    "holdout_scores",
]

#: validation points below which the calibration is cross-fitted (:func:`calibrate_on_history`)
CALIBRATION_POINTS = 100


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


def validation_windows(
    model, history, min_points: int = 0, max_fraction: float = 0.25, horizon: int | None = None
):
    """``(x, y, val)``: training windows and the validation forecasts :func:`fit_on_history` uses.

    The validation forecasts are the last ``k`` non-overlapping stretches of ``hv`` steps at the
    end of ``history``, each forecast from the true history before it; their steps are kept out
    of the training windows. ``hv`` is ``horizon`` (the horizon the forecasts are for) where it
    is at most ``max_fraction`` of the history, else the training windows' horizon. ``k`` is
    the fewest giving ``min_points`` held-out points over all series (default one stretch), at
    most ``max_fraction`` of the history, and fewer where the rest would be too short to train
    on.
    (Measured: holding 100 points of a single series out of the model itself cost it the most
    recent training data; :func:`calibrate_on_history` holds them out of a second model
    instead, fitted for the calibration alone; see the README.) ``val``
    stacks the ``k`` forecasts as rows and is None when the history cannot spare even one
    stretch (the windows then cover all of it).
    """
    x, y = model.training_windows(history)
    hv, n = y.shape[1], history.num_series
    if horizon is not None and hv < int(horizon) <= max_fraction * len(history):
        hv = int(horizon)
    if len(history) <= hv:
        return x, y, None
    most = max(1, min(math.ceil(min_points / (n * hv)), int(max_fraction * len(history)) // hv))
    for k in range(most, 0, -1):
        try:
            x2, y2 = model.training_windows(history.slice(0, len(history) - k * hv))
            splits = []
            for j in range(k, 0, -1):
                end = len(history) - (j - 1) * hv
                past, future = history.slice(0, end - hv), history.slice(end - hv, end)
                splits.append(forecast_split(model, past, future))
        except DataError:
            continue
        val = Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))
        return x2, y2, val
    return x, y, None


def fit_on_history(
    model,
    history,
    config: FitConfig | None = None,
    *,
    on_improve=None,
    val_horizon: int | None = None,
    **overrides,
) -> History:
    """Fits on windows of ``history``, early-stopping on forecasts of its last steps.

    The validation forecast covers the last ``val_horizon`` steps of the history where they are
    at most a quarter of it, else the training windows' horizon (:func:`validation_windows`);
    its steps are kept out of the training windows. When the history is too short to spare
    them, the model trains on all of it without validation.
    """
    x, y, val = validation_windows(model, history, horizon=val_horizon)
    return fit(model, (x, y), val, config, on_improve=on_improve, **overrides)


def pooled_paths(models, x, num_samples: int, parallel: bool = True) -> torch.Tensor:
    """``[S, N, H]`` paths of ``x`` from several models, ``num_samples`` split evenly among them."""
    from .predict import predictive_samples

    k = len(models)
    counts = [num_samples // k + (i < num_samples % k) for i in range(k)]
    with torch.no_grad():
        draws = [
            predictive_samples(m, x, c, parallel=parallel)["obs"]
            for m, c in zip(models, counts, strict=True)
            if c > 0
        ]
    return torch.cat(draws, 0)


def calibrate_on_history(
    models,
    history,
    level: float = 0.9,
    num_samples: int = 200,
    parallel: bool = True,
    val_horizon: int | None = None,
    *,
    min_points: int = 0,
    cross_fit: Callable[[], tuple[Any, dict]] | None = None,
    growth: float = BEYOND_GROWTH,
) -> SpreadCalibration:
    """The spread factor of ``models`` (fitted by :func:`fit_on_history` with the same
    ``val_horizon``) on their validation window: their pooled forecasts of the history's last
    steps (``num_samples`` per model) against the truth. Factor 1 (no points) when the history
    had no such window.

    Cross-fitting: where that window holds fewer than ``min_points`` points (one short series),
    ``cross_fit() -> (model, fit_options)`` gives a fresh model, which is fitted holding out as
    many stretches before the end as give ``min_points`` (:func:`validation_windows`, at most a
    quarter of the history) and early-stopped on them; its forecasts of those stretches add
    their conformity scores to the models' own, and the factor is the conformal quantile of
    them all where that is wider than the models' own window calls for (the most recent
    errors; a narrower pooled factor gave AirPassengers' 36-month holdout 62% coverage). The
    models themselves keep their training data (the most recent steps included); only the
    factor rests on more points. Forecasts longer than the validation window get the factor
    grown past it with ``growth`` (:class:`SpreadCalibration`).
    """
    models = list(models)
    _, _, val = validation_windows(models[0], history, horizon=val_horizon)
    if val is None:
        return SpreadCalibration(1.0, level, 0)
    paths = pooled_paths(models, val.x, num_samples * len(models), parallel)
    scores = [spread_scores(paths.cpu(), val.y.cpu(), level)]
    if cross_fit is not None and scores[0].numel() < min_points:
        model, options = cross_fit()
        x, y, more = validation_windows(model, history, min_points, horizon=val_horizon)
        if more is not None and more.y.numel() > val.y.numel():
            fit(model, (x, y), more, **options)
            paths = pooled_paths([model], more.x, num_samples, parallel)
            scores.append(spread_scores(paths.cpu(), more.y.cpu(), level))
    return widen_only(scores[0], scores[1:], level, steps=int(val.y.shape[-1]), growth=growth)


class EarlyStoppingForecaster(ModelForecaster):
    """:class:`inference.backtest.ModelForecaster` that early-stops like :func:`fit_on_history`,
    optionally an ensemble over seeds, with its intervals calibrated on the validation window.

    Arguments:
        build: ``build(history) -> model``.
        members: models fitted from different seeds (a deep ensemble, Lakshminarayanan et al.
            2017); their paths are pooled, ``num_samples`` split evenly among them. Member ``i``
            (from 0) is seeded with ``seed + 1000 * i`` before it is built and fitted (``seed``
            from the fit options, 0 when unset), member 0 as a single forecaster is.
        calibrate: widen or narrow the pooled paths by the split-conformal factor
            (:func:`fit_spread`) of their forecasts of the validation window (the history's
            last steps, ``val_horizon`` or the training windows' horizon, which the members
            were early-stopped on).
        level: the central interval the calibration targets.
        calibration_samples: paths per member for the validation forecast.
        val_horizon: the steps of the validation forecast, where the history can spare them
            (:func:`fit_on_history`); the horizon forecast later is the natural choice.
        calibration_points: with ``calibrate``, where the validation window holds fewer
            points, one more model (seeded as member ``members`` would be) is fitted holding
            out enough earlier stretches and its scores join the calibration
            (:func:`calibrate_on_history`); 0 never does. Default ``CALIBRATION_POINTS``.
        calibration_growth: how the factor grows past the validated steps when the forecast
            is longer (:class:`SpreadCalibration`; 0 keeps it flat). Default ``BEYOND_GROWTH``.
        **fit_options: as for :class:`ModelForecaster` (``config=FitConfig(...)`` or fields).
    """

    def __init__(
        self,
        build: Callable[[Any], Any],
        *,
        parallel: bool = False,
        members: int = 1,
        calibrate: bool = False,
        level: float = 0.9,
        calibration_samples: int = 200,
        val_horizon: int | None = None,
        calibration_points: int = CALIBRATION_POINTS,
        calibration_growth: float = BEYOND_GROWTH,
        **fit_options,
    ):
        if members < 1:
            raise ValueError(f"members must be >= 1; got {members}")
        super().__init__(build, parallel=parallel, **fit_options)
        self.members, self.calibrate, self.level = int(members), bool(calibrate), float(level)
        self.calibration_samples = int(calibration_samples)
        self.val_horizon = val_horizon
        self.calibration_points = int(calibration_points)
        self.calibration_growth = SpreadCalibration(growth=float(calibration_growth)).growth
        self.models: list = []
        self.histories: list[History] = []
        self.calibration = SpreadCalibration(1.0, self.level, 0)

    def _member_options(self, i: int) -> tuple[int | None, dict]:
        opts = dict(self.fit_options)
        if i == 0:
            return None, opts
        config = opts.get("config")
        base = opts.get("seed", config.seed if isinstance(config, FitConfig) else None) or 0
        seed = base + 1000 * i
        if isinstance(config, FitConfig) and "seed" not in opts:
            opts["config"] = dataclasses.replace(config, seed=seed)
        else:
            opts["seed"] = seed
        return seed, opts

    def fit(self, history) -> EarlyStoppingForecaster:
        from .fit import seed_everything

        self.models, self.histories = [], []
        for i in range(self.members):
            seed, opts = self._member_options(i)
            if seed is not None:
                seed_everything(seed)
            model = self.build(history)
            fitted = fit_on_history(model, history, val_horizon=self.val_horizon, **opts)
            self.histories.append(fitted)
            self.models.append(model)
        self.model, self.history = self.models[0], self.histories[0]
        self.calibration = SpreadCalibration(1.0, self.level, 0)
        if self.calibrate:
            self.calibration = calibrate_on_history(
                self.models, history, self.level, self.calibration_samples, self.parallel,
                self.val_horizon, min_points=self.calibration_points,
                cross_fit=lambda: self._cross_model(history), growth=self.calibration_growth,
            )  # fmt: skip
        return self

    def _cross_model(self, history):
        from .fit import seed_everything

        seed, opts = self._member_options(self.members)
        seed_everything(seed)
        return self.build(history), opts

    def sample_raw(self, history, horizon: int, num_samples: int, future_covariates=None):
        """The members' pooled paths before the calibration factor."""
        if not self.models:
            raise RuntimeError("call fit(history) before sample()")
        x = self.model.forecast_inputs(history, horizon, future_covariates)
        return pooled_paths(self.models, x, num_samples, self.parallel)

    def sample(self, history, horizon: int, num_samples: int, future_covariates=None):
        paths = self.sample_raw(history, horizon, num_samples, future_covariates)
        return self.calibration.apply(paths)


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


def _options_tag(*parts) -> str:
    """Options as canonical JSON (dataclasses as dicts, tuples as lists): the same for a model
    built from them and for one whose config came back from ``config.json``."""
    plain = [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts]
    return json.dumps(plain, sort_keys=True, default=str)


#: the folder of the backtest's finished windows in a run folder (:class:`WindowStore`)
BACKTEST_DIR = "backtest"


def run_backtests(
    data,
    forecasters: dict[str, Any],
    *,
    num_windows: int = 3,
    num_samples: int = 200,
    seed: int = 0,
    min_train: int | None = None,
    store: WindowStore | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The same rolling-origin windows for every forecaster: name -> ``Backtest``.

    With a :class:`WindowStore`, every finished window is saved under its forecaster's name
    (and ``tags[name]``, the options that make it what it is), and one saved already is read
    back instead of refitted: a backtest stopped midway redoes only the window it was in."""
    out = {}
    for name, f in forecasters.items():
        view = None if store is None else store.view(name, (tags or {}).get(name, ""))
        out[name] = backtest(
            data, f, num_windows=num_windows, num_samples=num_samples, seed=seed,
            min_train=min_train, store=view,
        )  # fmt: skip
    return out


def baseline_table(results: dict[str, Any], keys=("wql", "crps", "mase", "coverage_90")) -> str:
    """A Markdown table of each forecaster's pooled backtest scores."""
    lines = ["| forecaster | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in results.items():
        cells = [f"{r.overall.get(k, float('nan')):.4f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def holdout_scores(
    model, history, future, period: int, num_samples: int, calibration=None
) -> tuple[dict[str, Any], torch.Tensor]:
    """The scores of ``model``'s forecast of ``future`` from ``history``, and its paths.

    The metrics are :func:`inference.evaluate`'s (``Predictive`` paths as they are) plus the
    MASE; given a :class:`SpreadCalibration`, ``calibration`` holds its factor, ``calibrated``
    the scores of the same paths calibrated, and the paths returned are the calibrated ones.
    """
    from .evaluate import evaluate
    from .metrics.forecast import forecast_metrics, seasonal_scale
    from .predict import predictive_samples

    # one draw of paths for every score: the calibrated ones differ by the factor alone
    split = forecast_split(model, history, future)
    paths = predictive_samples(model, split.x, num_samples)["obs"].cpu()
    metrics = evaluate(model, split, num_samples=num_samples, samples=paths)
    scale = seasonal_scale(history.values, period)
    thr = history.values[:, -period:].mean(-1, keepdim=True)
    metrics["mase"] = forecast_metrics(paths, future.values, scale, thr)["overall"]["mase"]
    if calibration is not None:
        paths = calibration.apply(paths)
        scored = forecast_metrics(paths, future.values, scale, thr)
        metrics["calibration"] = calibration.as_dict()
        metrics["calibrated"] = {**scored["overall"], "per_horizon": scored["per_horizon"]}
    return metrics, paths


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
    calibrate: bool = True,
    calibration_points: int = CALIBRATION_POINTS,
    calibration_growth: float = BEYOND_GROWTH,
    fit_kwargs: dict[str, Any] | None = None,
    dist=None,
) -> dict[str, Any]:
    """Trains on all but the last ``data.horizon`` steps, scores that holdout, backtests.

    Writes ``forecast.png`` (fan chart of the holdout), ``training_curve.png``, ``history.csv``
    and ``baselines.md`` into ``run_dir`` and returns the metrics: the holdout's scores
    (overall and ``per_horizon``) and, under ``backtest``, every forecaster's pooled
    rolling-origin scores on the same windows (``build(history)`` makes a fresh model).

    With ``calibrate`` the model's forecasts are widened or narrowed by the split-conformal
    factor of its validation forecast (:func:`calibrate_on_history`): the holdout is scored both
    ways (``calibrated`` holds the calibrated scores, ``calibration`` the factor), the fan chart
    shows the calibrated paths and the backtest's ``model`` row is calibrated likewise. Where
    the validation forecast has fewer than ``calibration_points`` points, a second model
    (``build(history)``, seeded with the fit's seed + 1000) is fitted for the calibration
    alone (cross-fitting, :func:`calibrate_on_history`). Past the validated steps the factor
    grows with ``calibration_growth`` (:class:`SpreadCalibration`).
    Each finished backtest window (every forecaster's) is saved in ``run_dir/backtest/``
    (:class:`WindowStore`) and read back, not refitted, when the same window is asked for
    again: a run stopped in its backtest redoes only the window it was in. The caller removes
    the folder once the run's metrics are written (``scripts/train.py`` does).
    ``fit_kwargs`` go to :func:`fit` for the holdout fit only (``checkpoint``, ``resume``,
    ``should_stop``, ``on_epoch``, ...; the backtest refits are not checkpointed mid-fit); when
    ``should_stop`` stops it, nothing is scored and the metrics are ``stopped="interrupted"``.

    Under torchrun (``dist``, by default :func:`inference.distributed.context`) the holdout
    fit is data-parallel over the ranks; then the process group ends, the other ranks return
    ``{"stopped": ..., "rank": r}`` having written nothing, and rank 0 alone scores, calibrates
    and backtests, on one process (the calibration's second model and the backtest's refits
    are fitted on rank 0's device).
    """
    from pathlib import Path

    from zoo.io import atomic_write_text

    from .cli import write_history
    from .forecast_summary import fan_chart, summarize_paths
    from .plots import training_curve

    run_dir = Path(run_dir)
    history, future = holdout(data)
    try:
        model.training_windows(history)
    except DataError as e:  # say which part of the data the holdout took
        raise DataError(
            f"{e}; the held-out horizon {data.horizon} leaves {len(history)} of {len(data)} steps"
        ) from None
    ctx = distributed.context(fit_config.device) if dist is None else dist
    hist = fit_on_history(
        model,
        history,
        fit_config,
        on_improve=checkpoint,
        val_horizon=data.horizon,
        dist=ctx,
        **(fit_kwargs or {}),
    )
    if ctx.enabled:  # what follows is rank 0's alone: no collectives, so the group can end
        distributed.shutdown()
        if not ctx.is_rank0:
            return {"stopped": hist.stopped, "rank": ctx.rank}
    local = distributed.DistContext(device=ctx.device)  # every later fit: one process
    if hist.stopped == "interrupted":  # resumable from fit's checkpoint; nothing to score yet
        return {"stopped": "interrupted", "epochs_run": len(hist.rows),
                "best_epoch": hist.best_epoch, "train_seconds": hist.seconds}  # fmt: skip
    write_history(run_dir / "history.csv", hist.rows)
    if hist.rows:
        training_curve(hist.rows, run_dir / "training_curve.png")
    spread = None
    if calibrate:

        def cross_fit():
            from .fit import seed_everything

            seed_everything((fit_config.seed or 0) + 1000)  # as ensemble member 1 would be
            return build(history), {"config": fit_config, "dist": local}

        spread = calibrate_on_history(
            [model], history, num_samples=num_samples, val_horizon=data.horizon,
            min_points=calibration_points, cross_fit=cross_fit, growth=calibration_growth,
        )  # fmt: skip
    metrics, paths = holdout_scores(model, history, future, data.period, num_samples, spread)
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
        forecasters = {
            "model": EarlyStoppingForecaster(
                build,
                parallel=True,
                calibrate=calibrate,
                config=fit_config,
                val_horizon=data.horizon,
                calibration_points=calibration_points,
                calibration_growth=calibration_growth,
                dist=local,
            )  # fmt: skip
        }
        forecasters.update({n: f() for n, f in baselines(baseline_names).items()})
        min_train = max(
            2 * data.period + 1, model.min_train_length if isinstance(model, NeedsHistory) else 1
        )
        # as many windows as the data holds, up to the number asked for
        fits = (len(data) - data.horizon - min_train) // data.horizon + 1
        backtest_windows = max(1, min(backtest_windows, fits))
        # what makes the model's row what it is: a saved window is reused under the same only
        cfg = dataclasses.replace(fit_config, quiet=True)  # quiet changes nothing computed
        spec = model.config_dict() if isinstance(model, ZooModel) else type(model).__qualname__
        tag = _options_tag(
            spec, cfg, str(local.device), calibrate, calibration_points, calibration_growth
        )
        results = run_backtests(
            data, forecasters, num_windows=backtest_windows, num_samples=num_samples,
            seed=seed, min_train=min_train, store=WindowStore(run_dir / BACKTEST_DIR),
            tags={"model": tag},
        )  # fmt: skip
        metrics["backtest"] = {
            "num_windows": backtest_windows,
            **{k: {"overall": r.overall, "per_horizon": r.per_horizon} for k, r in results.items()},
        }
        table = baseline_table(results)
        atomic_write_text(run_dir / "baselines.md", table + "\n")
        metrics["baseline_table"] = table
    return metrics
