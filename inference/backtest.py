"""Rolling-origin backtests of any forecaster on ``SeriesData`` (after Pyro's ``backtest``).

A forecaster is anything with ``fit(history) -> self`` and ``sample(history, horizon,
num_samples, future_covariates=None) -> [S, N, H]`` (the :class:`Forecaster` protocol);
:class:`ModelForecaster` makes one of any zoo model with the ``SupportsForecast`` hooks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from timeit import default_timer
from typing import Any, Protocol, runtime_checkable

import pyro
import torch
from torch import Tensor

from zoo.base import SupportsForecast
from zoo.io import CheckpointError, _atomic, load_failure

from .metrics.forecast import forecast_metrics, seasonal_scale

__all__ = [
    "Backtest",
    "Forecaster",
    "ModelForecaster",
    "WindowStore",
    "backtest",
    "forecast_origins",
]


@runtime_checkable
class Forecaster(Protocol):
    """What a backtest needs: fit on a history, then sample paths of the next steps."""

    def fit(self, history: Any) -> Forecaster:
        """Fits on ``history`` (a ``SeriesData``) and returns itself."""
        ...

    def sample(
        self,
        history: Any,
        horizon: int,
        num_samples: int,
        future_covariates: Tensor | None = None,
    ) -> Tensor:
        """``[S, N, H]`` sample paths of the ``horizon`` steps after ``history``."""
        ...


def forecast_origins(
    length: int, horizon: int, num_windows: int = 1, stride: int | None = None, min_train: int = 1
) -> list[int]:
    """Forecast origins ``t1`` (first held-out step), the last at ``length - horizon``.

    Earlier origins step back by ``stride`` (default ``horizon``: the test windows tile the end
    of the data without overlap). An origin leaving fewer than ``min_train`` steps is an error.
    """
    if horizon < 1 or num_windows < 1:
        raise ValueError(f"horizon and num_windows must be >= 1; got {horizon}, {num_windows}")
    stride = horizon if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be >= 1; got {stride}")
    last = length - horizon
    origins = [last - k * stride for k in reversed(range(num_windows))]
    if origins[0] < min_train:
        raise ValueError(
            f"{num_windows} windows of horizon {horizon} (stride {stride}) leave"
            f" {origins[0]} training steps of {length} before the first origin; the forecaster"
            f" needs at least {min_train}: use fewer windows, a shorter horizon or stride"
        )
    return origins


@dataclass
class Backtest:
    """A backtest's result: one entry per window, and the scores over all windows.

    ``overall`` and ``per_horizon`` pool every window's points (wQL as a ratio of the pooled
    sums, the others as means), so they weigh each forecast point equally.
    """

    windows: list[dict]
    overall: dict[str, float]
    per_horizon: dict[str, list[float]]
    samples: list[Tensor] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {"overall": self.overall, "per_horizon": self.per_horizon, "windows": self.windows}


class WindowStore:
    """Finished backtest windows (scores and paths), one file each in a folder, so a stopped
    backtest redoes only the window it was in.

    Each window is written atomically (temp file + rename) as it ends, so a kill at any moment
    leaves the windows finished before it, and each write is one window's (a backtest's
    writes grow with its windows, not with their square). A window is kept under the
    forecaster's name with a key (its origins, seed, number of paths, a checksum of the data
    it saw and the caller's ``tag``, e.g. the forecaster's options); it is reused only where
    every part of the key matches, so a store from other data or options is recomputed, never
    mixed in.

    Example:
        >>> store = WindowStore(run_dir / "backtest")
        >>> backtest(data, forecaster, num_windows=3, store=store.view("model", tag=options))
    """

    FORMAT = "pyro-zoo-backtest/2"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(
                f"{self.path} is a file, not a backtest store (a folder); delete it to redo the"
                " backtest"
            )

    def view(self, name: str, tag: str = "") -> _StoreView:
        """The store of one forecaster, as :func:`backtest`'s ``store`` takes it."""
        return _StoreView(self, name, tag)

    def _file(self, name: str, key: dict) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        return self.path / f"{safe}@{key['t0']}-{key['t1']}-{key['t2']}.pt"

    def count(self) -> dict[str, int]:
        """Finished windows per forecaster (its name as the file names spell it)."""
        out: dict[str, int] = {}
        for f in sorted(self.path.glob("*@*.pt")) if self.path.is_dir() else []:
            name = f.name.rpartition("@")[0]
            out[name] = out.get(name, 0) + 1
        return out

    def get(self, name: str, key: dict) -> tuple[dict, Tensor] | None:
        path = self._file(name, key)
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # written atomically, so only a foreign file gets here
            raise CheckpointError(
                f"{path} cannot be read ({load_failure(e)}); delete it to redo the window"
            ) from None
        if not _is_window(saved, self.FORMAT):
            raise CheckpointError(
                f"{path} is not a pyro-zoo backtest window; delete it to redo the window"
            )
        if saved["name"] != name or saved["key"] != key:
            return None
        return saved["window"], saved["paths"]

    def put(self, name: str, key: dict, window: dict, paths: Tensor) -> None:
        blob = {"format": self.FORMAT, "name": name, "key": key, "window": window, "paths": paths}
        _atomic(self._file(name, key), lambda f: torch.save(blob, f))


def _is_window(saved: Any, fmt: str) -> bool:
    return (
        isinstance(saved, dict)
        and saved.get("format") == fmt
        and isinstance(saved.get("name"), str)
        and isinstance(saved.get("key"), dict)
        and isinstance(saved.get("window"), dict)
        and torch.is_tensor(saved.get("paths"))
    )


@dataclass
class _StoreView:
    store: WindowStore
    name: str
    tag: str

    def key(self, data, t0: int, t1: int, t2: int, seed: int, num_samples: int, **more) -> dict:
        """What a window's result depends on: a saved one is reused only if all of it agrees."""
        h = hashlib.sha256()
        for t in (data.values, data.covariates):
            if t is not None:  # what the window saw: its history, its truth, its covariates
                h.update(t[:, :t2].detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
        return {"t0": t0, "t1": t1, "t2": t2, "seed": seed, "num_samples": num_samples,
                "period": int(data.period), "data": h.hexdigest(), "tag": self.tag,
                "versions": f"torch {torch.__version__}, pyro {pyro.__version__}",
                **more}  # fmt: skip

    def get(self, key: dict) -> tuple[dict, Tensor] | None:
        return self.store.get(self.name, key)

    def put(self, key: dict, window: dict, paths: Tensor) -> None:
        self.store.put(self.name, key, window, paths)


def _threshold(history: Tensor, period: int) -> Tensor:
    """The default exceedance threshold: each series' mean over its last seasonal period."""
    return history[:, -period:].mean(-1, keepdim=True)


def backtest(
    data,
    forecaster: Forecaster | Callable[[], Forecaster],
    *,
    horizon: int | None = None,
    num_windows: int = 1,
    stride: int | None = None,
    train_window: int | None = None,
    min_train: int | None = None,
    num_samples: int = 200,
    refit: bool = True,
    seed: int = 0,
    level: float = 0.9,
    threshold: Callable[[Tensor, int], Tensor] | None = _threshold,
    keep_samples: bool = False,
    store: _StoreView | None = None,
) -> Backtest:
    """Fits and forecasts at several origins and scores each window's sample paths.

    Arguments:
        data: a ``SeriesData`` (values ``[N, T]``, ``period``, optional covariates).
        forecaster: a :class:`Forecaster`, or a function returning a fresh one per window.
        horizon: steps per window (default ``data.horizon``).
        num_windows, stride: the origins (:func:`forecast_origins`); the same arguments give
            every forecaster the same windows.
        train_window: fit on at most this many steps before each origin (default: all).
        min_train: the shortest allowed history (default ``2 * period + 1``).
        refit: fit at every origin; False fits once, at the first origin, and then only
            conditions on the longer histories (no look-ahead either way).
        seed: each window is seeded with ``seed + window``, so forecasters share their draws'
            seeds and a run repeats.
        threshold: ``threshold(history [N, T], period) -> [N, 1]`` for the exceedance Brier
            score (default: each series' mean over its last period); None leaves it out.
        keep_samples: also return each window's ``[S, N, H]`` paths.
        store: ``WindowStore(path).view(name, tag)``: each finished window is saved there, and
            a window already there with the same key (origins, seed, paths, data, tag) is
            read back instead of fitted and sampled again (with ``refit=True`` only: otherwise
            later windows need the first window's fit).

    Returns:
        A :class:`Backtest`: per-window ``t0, t1, t2``, wall times and metrics, and the scores
        pooled over all windows (see :func:`inference.metrics.forecast_metrics`).

    Example:
        >>> result = backtest(load_dataset("visnights"), SeasonalNaive(), num_windows=3)
        >>> result.overall["wql"]
    """
    horizon = data.horizon if horizon is None else int(horizon)
    min_train = 2 * data.period + 1 if min_train is None else min_train
    origins = forecast_origins(len(data), horizon, num_windows, stride, min_train)
    # a class has fit and sample too: only an instance is used as it is
    instance = isinstance(forecaster, Forecaster) and not isinstance(forecaster, type)
    make = (lambda: forecaster) if instance else forecaster
    fitted = None
    windows, all_samples, truths, scales, thresholds = [], [], [], [], []
    for k, t1 in enumerate(origins):
        t0 = 0 if train_window is None else max(0, t1 - train_window)
        t2 = t1 + horizon
        history = data.slice(t0, t1)
        future_cov = None if data.covariates is None else data.covariates[:, t1:t2]
        truth = data.values[:, t1:t2]
        scale = seasonal_scale(history.values, data.period)
        thr = None if threshold is None else threshold(history.values, data.period)
        key = None
        if store is not None and refit:
            thr_name = None if threshold is None else getattr(threshold, "__qualname__", "?")
            key = store.key(data, t0, t1, t2, seed + k, num_samples, level=level,
                            threshold=thr_name)  # fmt: skip
        done = None if key is None else store.get(key)
        if done is not None:  # every window is seeded on its own: the later ones are unchanged
            window, paths = done
        else:
            pyro.set_rng_seed(seed + k)
            start = default_timer()
            if refit or fitted is None:
                fitted = make().fit(history)
            train_s = default_timer() - start
            start = default_timer()
            with torch.no_grad():
                paths = fitted.sample(history, horizon, num_samples, future_covariates=future_cov)
            test_s = default_timer() - start
            paths = torch.as_tensor(paths).detach().to("cpu", torch.float32)
            expect = (num_samples, data.num_series, horizon)
            if tuple(paths.shape) != expect:
                raise ValueError(
                    f"{type(fitted).__name__}.sample returned shape {list(paths.shape)};"
                    f" expected [S, N, H] = {list(expect)}"
                )
            scores = forecast_metrics(paths, truth, scale, thr, level)
            window = {"t0": t0, "t1": t1, "t2": t2, "seed": seed + k, "train_walltime": train_s}
            window |= {"test_walltime": test_s, **scores["overall"]}
            if key is not None:
                store.put(key, window, paths)
        windows.append(window)
        all_samples.append(paths)
        truths.append(truth)
        scales.append(scale)
        thresholds.append(thr)
    pooled = forecast_metrics(
        torch.cat(all_samples, 1),
        torch.cat(truths),
        torch.cat(scales),
        None if threshold is None else torch.cat(thresholds),
        level,
    )
    return Backtest(
        windows, pooled["overall"], pooled["per_horizon"], all_samples if keep_samples else []
    )


class ModelForecaster:
    """A :class:`Forecaster` around a zoo model with the ``SupportsForecast`` hooks.

    ``fit`` builds a fresh model for the history, trains it with ``inference.fit`` on
    ``model.training_windows(history)``; ``sample`` draws
    ``Predictive(model, guide=model.guide, num_samples)(model.forecast_inputs(...))["obs"]``.

    Arguments:
        build: ``build(history) -> model`` (e.g. ``lambda s: zoo.build("forecast", ...)``).
        parallel: vectorize the predictive draws (``Predictive(parallel=True)``).
        **fit_options: passed to ``inference.fit`` (``epochs``, ``lr``, ``batch_size``, ...).

    Example:
        >>> f = ModelForecaster(lambda s: zoo.build("forecast"), epochs=20)
        >>> backtest(load_dataset("visnights"), f, num_windows=2).overall
    """

    def __init__(self, build: Callable[[Any], Any], *, parallel: bool = False, **fit_options):
        self.build = build
        self.parallel = parallel
        self.fit_options = fit_options
        self.model = None
        self.history = None

    def fit(self, history) -> ModelForecaster:
        from .fit import fit

        model = self.build(history)
        if not isinstance(model, SupportsForecast):
            raise TypeError(
                f"{type(model).__name__} has no training_windows() or forecast_inputs(): the"
                " SupportsForecast hooks ModelForecaster needs"
            )
        x, y = model.training_windows(history)
        self.history = fit(model, (x, y), **self.fit_options)
        self.model = model
        return self

    def sample(self, history, horizon: int, num_samples: int, future_covariates=None) -> Tensor:
        from .predict import predictive_samples

        if self.model is None:
            raise RuntimeError("call fit(history) before sample()")
        x = self.model.forecast_inputs(history, horizon, future_covariates)
        obs = predictive_samples(self.model, x, num_samples, parallel=self.parallel)["obs"]
        return obs
