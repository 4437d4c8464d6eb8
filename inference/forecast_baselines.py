"""Baseline forecasters for backtests: seasonal naive, statsmodels ETS, a Pyro structural model.

Each follows the :class:`inference.backtest.Forecaster` protocol and returns ``[S, N, H]``
sample paths, so they are scored on the same windows and by the same metrics as any zoo model.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.contrib.forecast import Forecaster as PyroForecaster
from pyro.contrib.forecast import ForecastingModel
from pyro.infer.autoguide import init_to_median
from pyro.ops.tensor_utils import periodic_repeat
from torch import Tensor

__all__ = ["ETS", "LevelSeasonalModel", "PyroStructural", "SeasonalNaive"]


def _finish(paths: Tensor, kind: str) -> Tensor:
    """Count series get non-negative integer paths; others are left as drawn."""
    return paths.clamp(min=0).round() if kind == "count" else paths


class SeasonalNaive:
    """``y_{T+h} = y_{T+h-m}`` plus a bootstrap of the series' own seasonal differences.

    The paths are simulated recursively, ``y_t = y_{t-m} + e_t`` with ``e_t`` drawn from the
    in-sample residuals ``y_t - y_{t-m}`` of each series (centred, or a trend would turn it into
    a drift method), so the spread grows with each season
    ahead as the seasonal naive method's error does. The median path is the classic forecast.
    """

    def fit(self, history) -> SeasonalNaive:
        return self

    def sample(self, history, horizon, num_samples, future_covariates=None) -> Tensor:
        y = history.values
        m = history.period if y.shape[1] > history.period else 1
        resid = y[:, m:] - y[:, :-m]  # [N, T - m]
        # centred: the method forecasts no change from last season, so its errors have mean 0
        resid = resid - resid.mean(1, keepdim=True)
        idx = torch.randint(resid.shape[1], (num_samples, y.shape[0], horizon))
        noise = torch.gather(resid.expand(num_samples, -1, -1), 2, idx)
        path = y[:, -m:].expand(num_samples, -1, -1).clone()
        for h in range(horizon):
            path = torch.cat([path, path[:, :, -m : -m + 1 or None] + noise[:, :, h : h + 1]], 2)
        return _finish(path[:, :, m:], history.kind)


class ETS:
    """statsmodels' ``ETSModel`` per series, sampled with ``simulate(H, anchor="end")``.

    ``spec="auto"`` takes ETS(M,A,M) for positive series (multiplicative error and
    seasonality, additive trend: AirPassengers-like data), and ETS(A,A,A) when a series has a
    zero or a negative value (multiplicative terms need positive data). Seasonality is dropped
    when a history has fewer than two full periods. Give ``spec=("add", "add", "mul")`` etc. for
    one fixed (error, trend, seasonal) triple; ``damped`` damps the trend.
    """

    def __init__(self, spec: str | tuple[str, str | None, str | None] = "auto", damped=False):
        self.spec = spec
        self.damped = damped
        self.fits: list = []
        self.specs: list[tuple] = []
        self.warnings: list[str] = []

    def _spec(self, y: Tensor, period: int) -> tuple:
        if self.spec != "auto":
            return tuple(self.spec)
        seasonal_ok = len(y) >= 2 * period and period > 1
        if (y > 0).all():
            return "mul", "add", "mul" if seasonal_ok else None
        return "add", "add", "add" if seasonal_ok else None

    def fit(self, history) -> ETS:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel, ETSResults

        # statsmodels 0.15 renamed simulate's random_state to rng
        params = inspect.signature(ETSResults.simulate).parameters
        self._rng_arg = "rng" if "rng" in params else "random_state"
        self.fits, self.specs = [], []
        for y in history.values.double():
            error, trend, seasonal = self._spec(y, history.period)
            model = ETSModel(
                y.numpy(),
                error=error,
                trend=trend,
                seasonal=seasonal,
                seasonal_periods=history.period if seasonal else None,
                damped_trend=self.damped and trend is not None,
            )
            # statsmodels warns on non-convergence; record the messages instead of stopping
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.fits.append(model.fit(disp=False))
            self.warnings += [str(w.message) for w in caught]
            self.specs.append((error, trend, seasonal))
        return self

    def sample(self, history, horizon, num_samples, future_covariates=None) -> Tensor:
        paths = []
        for fitted in self.fits:
            rng = np.random.default_rng(int(torch.randint(2**31 - 1, ())))  # follows torch's seed
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sim = fitted.simulate(
                    horizon, repetitions=num_samples, anchor="end", **{self._rng_arg: rng}
                )
            self.warnings += [str(w.message) for w in caught]
            sim = torch.as_tensor(sim.reshape(horizon, num_samples), dtype=torch.float32)
            paths.append(sim.T)
        out = torch.stack(paths, 1)
        # a multiplicative path can blow up; keep the draws finite for the sample scores
        out = torch.nan_to_num(out, nan=0.0, posinf=torch.finfo(torch.float32).max / 4)
        return _finish(out, history.kind)


class LevelSeasonalModel(ForecastingModel):
    """Pyro's forecasting pattern: linear trend + random-walk level + seasonal profile + Student-t.

    Works on standardized (and, for positive data, log) values of ``[T, N]``; every series has
    its own bias, level scale, seasonal profile and noise scale.
    """

    def __init__(self, period: int):
        super().__init__()
        self.period = period

    def model(self, zero_data, covariates):
        duration, dim = zero_data.shape[-2:]  # data [T, N]: one column per series
        bias = pyro.sample("bias", dist.Normal(0.0, 3.0).expand([dim]).to_event(1))
        drift = pyro.sample("drift", dist.Normal(0.0, 0.1).expand([dim]).to_event(1))
        level_scale = pyro.sample(
            "level_scale", dist.LogNormal(-4.0, 1.0).expand([dim]).to_event(1)
        )
        with self.time_plate:
            step = pyro.sample("step", dist.Normal(zero_data + drift, level_scale).to_event(1))
        with pyro.plate("season_plate", self.period, dim=-1):
            season = pyro.sample("season", dist.Normal(0.0, 1.0).expand([dim]).to_event(1))
        season = periodic_repeat(season - season.mean(-2, keepdim=True), duration, dim=-2)
        df = pyro.sample("df", dist.LogNormal(1.5, 0.5).expand([dim]).to_event(1))
        scale = pyro.sample("noise_scale", dist.LogNormal(-2.0, 1.0).expand([dim]).to_event(1))
        prediction = bias + step.cumsum(-2) + season
        self.predict(dist.StudentT(df, 0.0, scale).to_event(1), prediction)


class PyroStructural:
    """``pyro.contrib.forecast.Forecaster`` on :class:`LevelSeasonalModel`, one joint fit.

    Series are standardized (after a log when all values are positive) with the history's
    statistics, and the paths mapped back.
    """

    def __init__(self, num_steps: int = 400, learning_rate: float = 0.05, log: str = "auto"):
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.log = log
        self.forecaster = None

    def _transform(self, y: Tensor) -> Tensor:
        return y.log() if self.use_log else y

    def fit(self, history) -> PyroStructural:
        y = history.values.T  # [T, N]: Pyro's time dimension is -2
        self.use_log = bool((y > 0).all()) if self.log == "auto" else self.log == "yes"
        z = self._transform(y)
        self.mean, self.std = z.mean(0), z.std(0).clamp(min=1e-6)
        z = (z - self.mean) / self.std
        # the guide's parameters live in the Forecaster module, never in Pyro's global store
        with pyro.settings.context(module_local_params=True):
            self.forecaster = self._make(z, history.period)
        self.z = z
        return self

    def _make(self, z: Tensor, period: int) -> PyroForecaster:
        return PyroForecaster(
            LevelSeasonalModel(period),
            z,
            torch.zeros(len(z), 0),
            init_loc_fn=init_to_median,  # a flat level, no noise: random draws start far off
            time_reparam="dct",
            learning_rate=self.learning_rate,
            num_steps=self.num_steps,
            log_every=0,
        )

    def sample(self, history, horizon, num_samples, future_covariates=None) -> Tensor:
        z = (self._transform(history.values.T) - self.mean) / self.std
        cov = torch.zeros(len(z) + horizon, 0)
        with pyro.settings.context(module_local_params=True):
            pred = self.forecaster(z, cov, num_samples=num_samples)  # [S, H, N]
        # an unconverged random walk can wander far in a few paths; 10 history standard
        # deviations bound them (in the log scale, before exp) without touching the bulk
        out = pred.clamp(-10, 10) * self.std + self.mean
        out = out.exp() if self.use_log else out
        return _finish(out.transpose(1, 2), history.kind)
