"""Time series loaders: shapes, periods, no NaN, covariates aligned, bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zoo
from zoo.datasets import SERIES_DATASETS, SeriesData, load_dataset

EXPECTED = {  # name: (N, T, period, freq, horizon, kind)
    "airpassengers": (1, 144, 12, "M", 36, "continuous"),
    "visnights": (20, 76, 4, "Q", 8, "continuous"),
    "us_employment": (22, 969, 12, "M", 24, "continuous"),
    "elecdemand": (1, 8760, 24, "h", 24, "continuous"),
    "bank_calls": (1, 2296, 14, "h", 14, "count"),
    "seatbelts": (1, 192, 12, "M", 12, "count"),
}


def test_every_registered_series_set_is_checked_here():
    assert set(SERIES_DATASETS) == set(EXPECTED)


@pytest.mark.parametrize("name", SERIES_DATASETS)
def test_series_sets_have_their_shapes_periods_and_no_nan(name):
    d = load_dataset(name)
    n, t, period, freq, horizon, kind = EXPECTED[name]
    assert isinstance(d, SeriesData) and d.name == name
    assert d.values.shape == (n, t) and d.values.dtype == torch.float32 and len(d) == t
    assert (d.period, d.freq, d.horizon, d.kind) == (period, freq, horizon, kind)
    assert torch.isfinite(d.values).all()
    assert len(d.names) == n and len(set(d.names)) == n and len(d.time) == t
    steps = np.diff(np.asarray(d.time))
    if freq not in ("h",) or name == "elecdemand":  # bank_calls skips nights and weekends
        assert (steps == steps[0]).all(), "time labels are evenly spaced"
    if kind == "count":
        assert (d.values >= 0).all() and torch.equal(d.values, d.values.round())
    if d.covariates is not None:
        assert d.covariates.shape == (n, t, len(d.covariate_names))
        assert torch.isfinite(d.covariates).all()


def test_airpassengers_and_visnights_values_are_the_published_ones():
    air = load_dataset("airpassengers")
    assert air.values[0, :3].tolist() == [112, 118, 132] and air.values[0, -1] == 432
    assert str(air.time[0]) == "1949-01" and str(air.time[-1]) == "1960-12"
    vis = load_dataset("visnights")
    assert vis.names[0] == "NSWMetro" and str(vis.time[-1]) == "2016-10"
    assert float(vis.values[0, 0]) == pytest.approx(9.047095, abs=1e-5)


def test_elecdemand_aggregates_keep_the_covariates_aligned():
    half = load_dataset("elecdemand", freq="30min")
    hour = load_dataset("elecdemand")
    day = load_dataset("elecdemand", freq="D")
    assert half.values.shape == (1, 17520) and day.values.shape == (1, 365)
    assert (half.period, hour.period, day.period) == (48, 24, 7)
    torch.testing.assert_close(hour.values[0], half.values[0].reshape(-1, 2).mean(1))
    temp_h = half.covariates[0, :, 0].reshape(-1, 2).mean(1)
    torch.testing.assert_close(hour.covariates[0, :, 0], temp_h)
    torch.testing.assert_close(
        day.covariates[0, :, 0], half.covariates[0, :, 0].reshape(-1, 48).amax(1)
    )
    torch.testing.assert_close(day.values[0], hour.values[0].reshape(-1, 24).mean(1))
    work = hour.covariates[0, :, 1].reshape(-1, 24)
    assert (work == work[:, :1]).all(), "WorkDay is constant within each day"
    assert set(work[:, 0].tolist()) == {0.0, 1.0}
    assert int(work[:, 0].sum()) < 365 * 5 / 7 + 1  # weekends and holidays are not workdays
    assert hour.covariate_names == ["Temperature", "WorkDay"]


def test_bank_calls_hourly_and_daily_counts_agree():
    hour, day = load_dataset("bank_calls"), load_dataset("bank_calls", freq="D")
    assert day.values.shape == (1, 164) and day.period == 5
    per_day = hour.values[0].reshape(164, 14).sum(1)
    assert (per_day <= day.values[0]).all()  # daily totals also hold the lone 21:00 slot
    assert float((day.values[0] - per_day).sum()) / float(day.values.sum()) < 0.01
    hours = (hour.time - hour.time.astype("datetime64[D]")).astype(int)
    assert hours.min() == 7 and hours.max() == 20


def test_seatbelts_law_covariate_switches_on_in_february_1983():
    d = load_dataset("seatbelts")
    law = d.covariates[0, :, 0]
    first = int(law.nonzero()[0, 0])
    assert str(d.time[first]) == "1983-02" and (law[first:] == 1).all()


def test_us_employment_refuses_gaps_with_their_position_unless_imputing():
    gappy = ["CEU4245210001"]  # department stores: discontinued in 2018
    with pytest.raises(
        zoo.DataError, match=r"NaN or inf values at position 336 \(2018-01\).*impute"
    ):
        load_dataset("us_employment", start="1990-01", series=gappy)
    d = load_dataset("us_employment", start="1990-01", series=gappy, impute=True)
    assert torch.isfinite(d.values).all() and str(d.time[0]) == "1990-01"
    assert d.values[0, 336:].unique().numel() == 1  # the end is carried forward
    later = load_dataset("us_employment", start="1990-01")
    assert later.num_series > 100 and torch.isfinite(later.values).all()


def test_unknown_arguments_and_bad_options_are_refused_naming_the_valid_ones():
    with pytest.raises(zoo.ConfigError, match="'visnights' takes no option 'foo'.* horizon \\(and"):
        load_dataset("visnights", foo=1)
    with pytest.raises(zoo.ConfigError, match="options are horizon, freq \\(and seed\\)"):
        load_dataset("elecdemand", data_dir="x")
    with pytest.raises(zoo.DataError, match="freq must be one of 30min, h, D"):
        load_dataset("elecdemand", freq="W")
    with pytest.raises(zoo.DataError, match="horizon 144 must be between 1 and"):
        load_dataset("airpassengers", horizon=144)


def _series(values, **kw):
    t = values.shape[-1]
    args = dict(period=2, freq="D", horizon=1, kind="continuous", time=np.arange(t))
    args["names"] = [f"s{i}" for i in range(values.shape[0])] if values.dim() == 2 else ["s0"]
    return SeriesData("x", values, **{**args, **kw})


def test_series_data_refuses_nan_bad_shapes_and_negative_counts():
    v = torch.arange(12.0).reshape(2, 6)
    with pytest.raises(zoo.DataError, match=r"series 's1' \(row 1\) has NaN.*position 4"):
        _series(torch.where((torch.arange(12) == 10).reshape(2, 6), math.nan, v))
    with pytest.raises(zoo.DataError, match=r"shape \[N, T\].*values\[None\]"):
        _series(v[0])
    with pytest.raises(zoo.DataError, match="count series 's0' has -1.0 at position 0"):
        _series(v - 1, kind="count")
    with pytest.raises(zoo.DataError, match="counts must be non-negative integers"):
        _series(v + 0.5, kind="count")
    with pytest.raises(
        zoo.DataError, match=r"covariates must have shape \[N, T, C\] = \[2, 6, C\]"
    ):
        _series(v, covariates=torch.zeros(2, 5, 1), covariate_names=["c"])
    with pytest.raises(zoo.DataError, match="3 names given for 2 series"):
        _series(v, names=["a", "b", "c"])


def test_slice_cuts_values_time_and_covariates_together():
    d = load_dataset("seatbelts")
    h = d.horizon
    past, future = d.slice(0, -h), d.slice(-h, None)
    assert len(past) + len(future) == len(d) and len(future) == h
    torch.testing.assert_close(torch.cat([past.values, future.values], 1), d.values)
    torch.testing.assert_close(torch.cat([past.covariates, future.covariates], 1), d.covariates)
    assert list(future.time) == list(d.time[-h:]) and future.period == d.period
    with pytest.raises(zoo.DataError, match="is empty"):
        d.slice(10, 10)
    vis = load_dataset("visnights").select([3, 0])
    assert vis.names[1] == "NSWMetro" and vis.values.shape == (2, 76)


def test_one_us_employment_series_id_is_one_series():
    # --data-args series=ID gives a string, not a list: it is one Series_ID, not its letters
    one = load_dataset("us_employment", series="CEU0500000001")
    assert one.values.shape == (1, 969) and one.names[0].startswith("CEU0500000001")
