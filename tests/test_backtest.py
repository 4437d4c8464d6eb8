"""Rolling-origin backtests: windows, shapes, seeds, the baselines' reference figures, adapters."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule

import zoo
from inference.backtest import (
    Forecaster,
    ModelForecaster,
    WindowStore,
    backtest,
    forecast_origins,
)
from inference.forecast_baselines import ETS, PyroStructural, SeasonalNaive
from zoo.base import ZooModel
from zoo.datasets import SeriesData, load_dataset
from zoo.io import CheckpointError


def periodic(n=3, t=60, period=6, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = 10 + torch.sin(torch.arange(t) * 2 * torch.pi / period) * torch.arange(1, n + 1)[:, None]
    values = base + noise * torch.randn(n, t, generator=g)
    time = np.datetime64("2000-01", "M") + np.arange(t)
    return SeriesData("periodic", values, period, "M", period, "continuous", list("abc")[:n], time)


def test_origins_tile_the_end_and_refuse_too_little_training_data():
    assert forecast_origins(100, 10, 3) == [70, 80, 90]
    assert forecast_origins(100, 10, 3, stride=1) == [88, 89, 90]
    with pytest.raises(ValueError, match="leave -50 training steps.*use fewer windows"):
        forecast_origins(100, 30, 5)
    with pytest.raises(ValueError, match="needs at least 25"):
        forecast_origins(100, 30, 3, min_train=25)


def test_backtest_windows_hold_out_the_future_and_repeat_with_a_seed():
    data = periodic()
    seen = []

    class Spy(SeasonalNaive):
        def fit(self, history):
            seen.append(len(history))
            return self

    a = backtest(data, Spy(), num_windows=3, keep_samples=True)
    assert [w["t1"] for w in a.windows] == [42, 48, 54] and seen == [42, 48, 54]
    assert [w["t2"] - w["t1"] for w in a.windows] == [6, 6, 6]
    assert a.samples[0].shape == (200, 3, 6) and len(a.per_horizon["crps"]) == 6
    b = backtest(data, SeasonalNaive, num_windows=3)  # a class is a factory, called per window
    assert a.overall == b.overall  # same seeds, same windows
    assert 0.75 < a.overall["coverage_90"] <= 1.0 and a.overall["mase"] < 1.5
    once = backtest(data, Spy(), num_windows=3, refit=False)
    assert seen[3:] == [42] and once.overall["crps"] > 0


def test_a_window_store_reads_finished_windows_back_and_refits_only_the_rest(tmp_path):
    data = periodic()
    fits = []

    class Spy(ETS):
        def fit(self, history):
            fits.append(len(history))
            return super().fit(history)

    path = tmp_path / "backtest"
    straight = backtest(data, Spy(), num_windows=3, keep_samples=True)
    # a backtest stopped in its third window: the first two are in the store
    with pytest.raises(KeyboardInterrupt):

        class Stopped(Spy):
            def fit(self, history):
                if len(history) == 54:
                    raise KeyboardInterrupt
                return super().fit(history)

        backtest(data, Stopped(), num_windows=3, store=WindowStore(path).view("ets"))
    fits.clear()
    resumed = backtest(
        data, Spy(), num_windows=3, keep_samples=True, store=WindowStore(path).view("ets")
    )
    assert fits == [54]  # only the window it was in is fitted again
    assert WindowStore(path).count() == {"ets": 3}  # a file per window

    def scores(w):  # but for the clock
        return {k: v for k, v in w.items() if not k.endswith("walltime")}

    assert resumed.overall == straight.overall
    assert [scores(w) for w in resumed.windows] == [scores(w) for w in straight.windows]
    for a, b in zip(resumed.samples, straight.samples, strict=True):
        assert torch.equal(a, b)
    fits.clear()
    again = backtest(data, Spy(), num_windows=3, store=WindowStore(path).view("ets"))
    assert fits == [] and again.overall == straight.overall
    # another forecaster's name, other options (tag), other data or paths: nothing reused
    store = WindowStore(path)
    backtest(data, Spy(), num_windows=3, store=store.view("ets", tag="damped"))
    backtest(periodic(seed=1), Spy(), num_windows=3, store=store.view("ets"))
    backtest(data, Spy(), num_windows=3, num_samples=100, store=store.view("ets"))
    backtest(data, Spy(), num_windows=3, store=store.view("other"))
    assert len(fits) == 12
    # refit=False needs the first window's fit for the later ones: the store is not used
    fits.clear()
    backtest(data, Spy(), num_windows=3, refit=False, store=WindowStore(path).view("ets"))
    assert fits == [42]


def test_a_window_store_that_is_not_one_is_refused_in_one_line(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file, not a backtest store .*delete it"):
        WindowStore(tmp_path / "file")
    data = periodic()
    store = WindowStore(tmp_path / "store")
    backtest(data, SeasonalNaive(), num_windows=1, store=store.view("naive"))
    (window,) = (tmp_path / "store").iterdir()
    view = WindowStore(tmp_path / "store").view("naive")

    def read_back():
        return backtest(data, SeasonalNaive(), num_windows=1, store=view)

    fmt = WindowStore.FORMAT
    for blob in [
        {"format": "something else"},
        {"format": fmt},  # the right format string, the wrong contents
        {"format": fmt, "name": "naive", "key": {}, "window": {}, "paths": 3},
        [1, 2],
    ]:
        torch.save(blob, window)
        with pytest.raises(CheckpointError, match="is not a pyro-zoo backtest window; delete it"):
            read_back()
    window.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match=r"cannot be read .*delete it to redo the window"):
        read_back()
    # a type weights_only refuses: torch's message runs to a page; the line names the cause
    torch.save({"format": fmt, "paths": Path("x")}, window)
    with pytest.raises(CheckpointError) as e:
        read_back()
    text = str(e.value)
    assert "\n" not in text and "\x1b" not in text and len(text) < 320, text
    assert text.startswith(f"{window} cannot be read (UnpicklingError: ")
    assert text.endswith("delete it to redo the window")
    window.unlink()
    assert read_back().overall["crps"] > 0  # a deleted window is redone


def test_a_forecaster_returning_the_wrong_shape_is_named():
    class Bad:
        def fit(self, history):
            return self

        def sample(self, history, horizon, num_samples, future_covariates=None):
            return torch.zeros(num_samples, horizon, history.num_series)

    assert isinstance(Bad(), Forecaster)
    with pytest.raises(ValueError, match=r"Bad.sample returned shape \[200, 6, 3\].*\[200, 3, 6\]"):
        backtest(periodic(), Bad())


def test_future_covariates_reach_the_forecaster():
    data = load_dataset("seatbelts")
    got = []

    class Cov(SeasonalNaive):
        def sample(self, history, horizon, num_samples, future_covariates=None):
            got.append(future_covariates)
            return super().sample(history, horizon, num_samples)

    backtest(data, Cov(), num_windows=2)
    torch.testing.assert_close(got[1], data.covariates[:, -12:])
    assert got[0].shape == (1, 12, 1)


def test_seasonal_naive_and_ets_reproduce_the_airpassengers_reference():
    data = load_dataset("airpassengers")  # last 36 months held out
    naive = backtest(data, SeasonalNaive(), num_samples=500).overall
    assert naive["mape"] == pytest.approx(0.132, abs=0.003)
    assert naive["mase"] == pytest.approx(1.97, abs=0.03)
    ets = ETS()
    res = backtest(data, ets, num_samples=1000).overall
    assert ets.specs == [("mul", "add", "mul")]
    assert res["mape"] == pytest.approx(0.065, abs=0.005)
    assert res["mase"] == pytest.approx(0.96, abs=0.05)
    assert res["crps"] == pytest.approx(19.2, rel=0.1)
    assert 0.85 <= res["coverage_90"] <= 0.97
    assert res["crps"] < naive["crps"] and res["wql"] < naive["wql"]


def test_ets_falls_back_to_additive_terms_for_series_with_zeros():
    data = periodic(n=2)
    data.values[1, 5] = 0.0
    ets = ETS().fit(data.slice(0, 54))
    assert ets.specs == [("mul", "add", "mul"), ("add", "add", "add")]
    assert ets.sample(data.slice(0, 54), 6, 50).shape == (50, 2, 6)


def test_pyro_structural_baseline_forecasts_every_series():
    data = periodic(n=2, t=36)
    f = PyroStructural(num_steps=30)
    res = backtest(data, f, num_samples=50, keep_samples=True)
    losses = f.forecaster.losses
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])  # SVI moved the guide
    assert res.samples[0].shape == (50, 2, 6) and torch.isfinite(res.samples[0]).all()
    assert np.isfinite(res.overall["crps"])


@dataclass
class LinearConfig:
    context: int = 6
    horizon: int = 6


class DirectLinear(ZooModel):
    """A tiny model with the SupportsForecast hooks: y[t:t+H] ~ Normal(W x[t-C:t] + b, s)."""

    Config = LinearConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.net = torch.nn.Linear(self.config.context, self.config.horizon)
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    @property
    def input_dim(self):
        return self.config.context

    def forward(self, x, y=None):
        loc = self.net(x)
        with self.data_plate(x):
            return pyro.sample("obs", dist.Normal(loc, self.log_scale.exp()).to_event(1), obs=y)

    def training_windows(self, series):
        c, h = self.config.context, self.config.horizon
        w = series.values.unfold(1, c + h, 1).reshape(-1, c + h)
        return w[:, :c], w[:, c:]

    def forecast_inputs(self, series, horizon, future_covariates=None):
        assert horizon == self.config.horizon
        return series.values[:, -self.config.context :]


def test_model_forecaster_fits_a_zoo_model_on_windows_and_samples_paths():
    assert isinstance(DirectLinear(), PyroModule)
    data = periodic(noise=0.05)
    f = ModelForecaster(lambda s: DirectLinear(), epochs=120, lr=0.05, batch_size=64)
    res = backtest(data, f, num_windows=2, num_samples=100, keep_samples=True)
    assert res.samples[1].shape == (100, 3, 6)

    class Climatology(SeasonalNaive):  # each series' mean, with its spread: no dynamics
        def sample(self, history, horizon, num_samples, future_covariates=None):
            v = history.values
            return v.mean(1)[:, None] + v.std(1)[:, None] * torch.randn(
                num_samples, *v.shape[:1], horizon
            )

    flat = backtest(data, Climatology(), num_windows=2, num_samples=100)
    assert res.overall["mase"] < 0.5 * flat.overall["mase"], (res.overall, flat.overall)
    assert res.overall["crps"] < 0.5 * flat.overall["crps"]
    losses = f.history.column("loss")
    assert len(losses) == 120 and losses[-1] < losses[0]
    with pytest.raises(TypeError, match="has no training_windows"):
        ModelForecaster(lambda s: torch.nn.Linear(1, 1)).fit(data)


@pytest.mark.skipif("forecast" not in zoo.MODELS, reason="the forecast family is not registered")
def test_model_forecaster_backtests_the_zoo_forecaster_end_to_end():
    cls = zoo.MODELS["forecast"]
    data = load_dataset("visnights").select([0, 1, 2])

    def build(series):
        return zoo.build("forecast", **{**cls.data_overrides(series), **cls.tiny_config})

    f = ModelForecaster(build, epochs=3, batch_size=64)
    res = backtest(data, f, num_windows=2, num_samples=40, keep_samples=True)
    assert [s.shape for s in res.samples] == [(40, 3, 8)] * 2
    assert all(torch.isfinite(s).all() for s in res.samples)
    assert np.isfinite(res.overall["crps"]) and len(res.per_horizon["wql"]) == 8


def test_forecast_tune_compares_variants_on_earlier_windows(capsys):
    # the README's tuning rows come from this command: it must run and print each variant
    from benchmarks.forecast_tune import main

    tiny = "hidden=4;layers=1;context_length=12"
    variants = [f"value:{tiny};log_target=false", f"log:{tiny};log_target=true"]
    args = ["airpassengers", "--drop", "1", "--seeds", "1", "--no-calibration"]
    main(args + [a for v in variants for a in ("--variant", v)])
    out = capsys.readouterr().out
    assert "108 steps after dropping 1 horizon(s)" in out
    rows = [line for line in out.splitlines() if line.startswith(("value", "log"))]
    assert len(rows) == 2 and all("crps" in r and "nan" not in r for r in rows)
    assert rows[0].split("crps ")[1] != rows[1].split("crps ")[1]  # the variants differ


def test_forecast_benchmark_merge_checks_the_targets_of_two_parts(tmp_path, capsys):
    # the two parts run in parallel processes; --merge judges their --out files together
    from benchmarks.forecast import ZOO, main

    def row(wql, crps):
        return {"overall": {"wql": wql, "crps": crps}}

    tables = {
        "visnights": {ZOO: row(0.08, 0.29), "seasonal naive": row(0.09, 0.3)},
        "airpassengers": {ZOO: row(0.05, 21.0), "ETS": row(0.05, 19.1)},
    }
    tables["visnights"]["ETS"] = row(0.09, 0.3)
    sweep = {"a": {ZOO: {"coverage_90": 0.9}}, "b": {ZOO: {"coverage_90": 0.86}}}
    a, b = tmp_path / "t.json", tmp_path / "c.json"
    a.write_text(json.dumps({"tables": tables, "coverage": {}, "passed": None}))
    b.write_text(json.dumps({"tables": {}, "coverage": sweep, "passed": None}))
    assert main(["--merge", str(a), str(b)]) == 0
    sweep["b"][ZOO]["coverage_90"] = 0.84  # one set outside 0.85-0.95 fails, and is named
    b.write_text(json.dumps({"tables": {}, "coverage": sweep, "passed": None}))
    assert main(["--merge", str(b), str(a)]) == 1
    assert "everywhere: False (b 0.840)" in capsys.readouterr().out
    tables["airpassengers"][ZOO] = row(0.05, 21.1)  # more than 10% above ETS's 19.1
    sweep["b"][ZOO]["coverage_90"] = 0.9
    a.write_text(json.dumps({"tables": tables, "coverage": {}, "passed": None}))
    b.write_text(json.dumps({"tables": {}, "coverage": sweep, "passed": None}))
    assert main(["--merge", str(a), str(b)]) == 1
    tables["airpassengers"][ZOO] = row(0.05, 21.0)
    tables["visnights"][ZOO] = row(0.0905, 0.29)  # wQL behind seasonal naive's 0.09
    a.write_text(json.dumps({"tables": tables, "coverage": {}, "passed": None}))
    assert main(["--merge", str(a), str(b)]) == 1
    assert "seasonal naive and ETS: False" in capsys.readouterr().out
    assert main(["--merge", str(a), str(a)]) == 2  # two tables runs: no coverage to judge
    assert "needs the output of a tables run and of a coverage run" in capsys.readouterr().err
    b.write_text(json.dumps({"tables": {}, "coverage": sweep, "passed": None, "quick": True}))
    assert main(["--merge", str(a), str(b)]) == 2
    assert "full runs only" in capsys.readouterr().err
    # a run of one dataset (--dataset) is not judged either
    b.write_text(json.dumps({"tables": {}, "coverage": sweep, "datasets": ["airpassengers"]}))
    assert main(["--merge", str(a), str(b)]) == 2
    assert "--dataset" in capsys.readouterr().err


def test_forecast_benchmark_runs_one_dataset_end_to_end(tmp_path):
    # every row of both parts on AirPassengers, quick; a run of one dataset judges no target
    from benchmarks.forecast import RAW, ZOO, main

    out = tmp_path / "ap.json"
    assert main(["--quick", "--dataset", "airpassengers", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["tables"]) == ["airpassengers"] and list(result["coverage"]) == [
        "airpassengers"
    ]
    table = result["tables"]["airpassengers"]
    assert {"seasonal naive", "ETS", "Pyro structural", ZOO, RAW} <= set(table)
    for row in table.values():
        assert all(math.isfinite(row["overall"][k]) for k in ("wql", "crps", "coverage_90"))
    assert result["passed"] is None and result["datasets"] == ["airpassengers"]
