"""Split-conformal spread calibration and seed ensembles of forecasters (inference.forecasting)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyro
import pytest
import torch

import zoo
from inference.fit import FitConfig
from inference.forecast_calibration import (
    BEYOND_GROWTH,
    spread_from_scores,
    spread_scores,
    widen_only,
)
from inference.forecasting import (
    EarlyStoppingForecaster,
    SpreadCalibration,
    calibrate_on_history,
    fit_spread,
    validation_windows,
)
from inference.metrics.forecast import sample_quantiles
from zoo.datasets import SeriesData


def gaussian_paths(n_series, horizon, sd, samples=400, seed=0):
    """Truth ~ N(mu, 1) and paths ~ N(mu, sd^2): too narrow for sd < 1, too wide for sd > 1."""
    g = torch.Generator().manual_seed(seed)
    mu = 10 * torch.randn(n_series, horizon, generator=g)
    truth = mu + torch.randn(n_series, horizon, generator=g)
    paths = mu + sd * torch.randn(samples, n_series, horizon, generator=g)
    return paths, truth


def coverage(paths, truth, level=0.9):
    lo, hi = np.quantile(np.asarray(paths), [(1 - level) / 2, (1 + level) / 2], axis=0)
    y = np.asarray(truth)
    return float(((y >= lo) & (y <= hi)).mean())


def numpy_conformal_factor(paths, truth, level):
    """The split-conformal factor written out from the definition, in numpy."""
    p, y = np.asarray(paths, np.float64), np.asarray(truth, np.float64)
    lo, med, hi = np.quantile(p, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    score = np.where(y > med, (y - med) / (hi - med), (med - y) / (med - lo)).ravel()
    n = score.size
    return np.sort(score)[math.ceil((n + 1) * level) - 1]


@pytest.mark.parametrize("sd, factor", [(0.5, 2.0), (1.0, 1.0), (2.0, 0.5)])
def test_conformal_factor_calibrates_new_points_both_ways(sd, factor):
    paths, truth = gaussian_paths(40, 10, sd, seed=1)
    cal = fit_spread(paths, truth, 0.9)
    assert cal.points == 400 and cal.steps == 10
    assert cal.factor == pytest.approx(factor, rel=0.15)
    assert cal.factor == pytest.approx(numpy_conformal_factor(paths, truth, 0.9), rel=1e-9)
    # fresh points from the same source: the widened (or narrowed) intervals cover ~90%
    test_paths, test_truth = gaussian_paths(100, 10, sd, seed=2)
    raw = coverage(test_paths, test_truth)
    fixed = coverage(cal.apply(test_paths), test_truth)
    se = math.sqrt(0.09 / 1000)
    assert abs(fixed - 0.9) < 4 * se + 0.02, (raw, fixed)
    if sd != 1.0:
        assert abs(raw - 0.9) > 0.05  # the control: the raw paths were miscalibrated


def test_calibration_keeps_the_median_integers_and_the_sign():
    g = torch.Generator().manual_seed(0)
    counts = torch.poisson(torch.full((300, 3, 5), 4.0), generator=g)
    out = SpreadCalibration(0.4).apply(counts)
    assert out.std() < 0.6 * counts.std()
    assert torch.equal(out, out.round()) and bool((out >= 0).all())
    assert torch.allclose(out.quantile(0.5, 0), counts.quantile(0.5, 0))
    wide = SpreadCalibration(3.0).apply(counts)
    assert bool((wide >= 0).all()) and wide.std() > counts.std()
    real = torch.randn(200, 2, 4, generator=g)
    assert torch.equal(SpreadCalibration(1.0).apply(real), real)
    twice = SpreadCalibration(2.0).apply(real)
    assert torch.allclose(twice - real.quantile(0.5, 0), 2 * (real - real.quantile(0.5, 0)))
    assert bool((twice < 0).any())  # real-valued paths are not clamped


def test_paths_beyond_the_validated_steps_are_only_widened_and_widen_as_a_random_walk():
    def full(n, v):
        return torch.full((n,), float(v), dtype=torch.float64)

    narrow, wide = SpreadCalibration(0.5, steps=6, growth=0.5), SpreadCalibration(2.0, steps=6)
    assert torch.equal(narrow.factors(6), full(6, 0.5)) and torch.equal(
        narrow.factors(3), full(3, 0.5)
    )
    h = torch.arange(7, 10, dtype=torch.float64)
    # a longer forecast: max(factor, 1) on the validated steps (never narrowed), then grown
    # from the factor and never below 1: 0.5 sqrt(h / 6) < 1 up to step 24, 1.05 at step 26
    assert torch.equal(narrow.factors(24), full(24, 1.0))
    assert narrow.factors(26)[-1] == pytest.approx(0.5 * math.sqrt(26 / 6))
    assert torch.equal(narrow.factors(9)[:6], full(6, 1.0))
    grown = dataclasses.replace(wide, growth=0.5)
    assert torch.equal(grown.factors(9)[:6], full(6, 2.0))
    assert torch.allclose(grown.factors(9)[6:], 2 * (h / 6).sqrt())
    real = torch.randn(200, 2, 6, generator=torch.Generator().manual_seed(3))
    assert narrow.apply(real).std() < real.std()
    longer = torch.randn(200, 2, 9, generator=torch.Generator().manual_seed(4))
    med = longer.quantile(0.5, 0)
    mild = SpreadCalibration(0.9, steps=6, growth=0.5)  # x 1 at steps 1-7, then 0.9 sqrt(h / 6)
    out = mild.apply(longer)
    assert torch.allclose(out[..., :7], longer[..., :7])
    grow = (0.9 * (h[1:] / 6).sqrt()).float()
    assert torch.allclose(out[..., 7:] - med[..., 7:], grow * (longer - med)[..., 7:])
    # growth 0 (and factors saved before it existed, which lack it): flat, max(factor, 1)
    old = SpreadCalibration(0.5, steps=6)
    assert old.growth == 0 and torch.equal(old.factors(9), full(9, 1.0))
    assert torch.equal(old.apply(longer), longer)
    assert torch.equal(wide.factors(9), full(9, 2.0))
    assert wide.apply(longer).std() > 1.5 * longer.std()
    assert fit_spread(torch.randn(50, 1, 3), torch.zeros(1, 3)).growth == BEYOND_GROWTH == 0.5
    for bad in (-0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="growth must be finite and >= 0"):
            SpreadCalibration(2.0, steps=6, growth=bad)


def test_growth_past_the_window_restores_coverage_of_paths_that_do_not_compound():
    """The case the growth is for: truth a random walk (variance h at step h), paths whose
    spread stays that of one step. Calibrated on 4 steps and applied to 16, the flat factor
    covers 0.59 of the later steps; the grown one 0.80, a little under 0.9 because the window's
    factor (1.6) is about that of its average step and grows from step 4: at step h the
    interval is 1.645 x 1.63 x sqrt(h / 4) against a spread of sqrt(h), P(|Z| < 1.34) = 0.82.
    The cost, also asserted: paths whose spread already grows as the truth's are over-covered
    there (0.99)."""
    g = torch.Generator().manual_seed(0)
    n, s, valid, ahead = 2000, 200, 4, 16

    def walk(h):
        return torch.randn(n, h, generator=g, dtype=torch.float64).cumsum(-1)

    for compounding in (False, True):
        sd = torch.arange(1, ahead + 1, dtype=torch.float64).sqrt() if compounding else 1.0
        paths = torch.randn(s, n, ahead, generator=g, dtype=torch.float64) * sd
        cal = fit_spread(paths[..., :valid], walk(valid))
        flat = dataclasses.replace(cal, growth=0.0)
        y = walk(ahead)

        def cover(c, paths=paths, y=y):  # of the steps past the window
            lo, hi = sample_quantiles(c.apply(paths), [0.05, 0.95])
            return float(((y >= lo) & (y <= hi))[:, valid:].double().mean())

        if not compounding:
            assert 1.5 < cal.factor < 2.0  # the window's own points need about x sqrt(2.5)
            assert cover(flat) < 0.65
            assert 0.78 < cover(cal) < 0.85
        else:
            assert 0.9 < cal.factor < 1.1  # these paths were right already
            assert 0.85 < cover(flat) < 0.95
            assert cover(cal) > 0.97


def test_the_factor_describes_itself_in_one_line():
    narrow = SpreadCalibration(0.5, points=36, steps=12)
    assert (
        narrow.describe(12)
        == "intervals x 0.500 (split conformal on 36 points up to 12 steps ahead)"
    )
    # a longer forecast is not narrowed: the line names the factor applied, and why
    assert narrow.describe(36) == (
        "intervals x 1.000 (split conformal on 36 points up to 12 steps ahead, whose x 0.500"
        " would narrow: a longer forecast is only widened)"
    )
    grows = dataclasses.replace(narrow, factor=2.0, growth=0.5)
    assert grows.describe(36) == (
        "intervals x 2.000 at steps 1-12, x 2.082 to x 3.464 at steps 13-36 (split conformal"
        " on 36 points up to 12 steps ahead; past them x max(2.000 (h / 12) ** 0.5, 1))"
    )
    assert grows.describe(13).startswith("intervals x 2.000 at steps 1-12, x 2.082 at step 13 (")
    assert SpreadCalibration(2.0, points=36, steps=12).describe(36).startswith("intervals x 2.000")
    assert SpreadCalibration(1.25, points=7).describe(5) == (
        "intervals x 1.250 (split conformal on 7 points)"
    )


def test_fit_spread_refuses_a_bad_level_and_ignores_nan_truth():
    paths, truth = gaussian_paths(5, 4, 1.0)
    with pytest.raises(ValueError, match="level"):
        fit_spread(paths, truth, 1.5)
    truth[0, 0] = float("nan")
    assert fit_spread(paths, truth).points == 19


def periodic(n=3, t=48, period=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(t, dtype=torch.float32)
    level = 5 + 3 * torch.rand(n, 1, generator=g)
    values = level * (1 + 0.3 * torch.sin(2 * math.pi * steps / period))
    values = values + 0.2 * torch.randn(n, t, generator=g)
    return SeriesData(
        "toy", values, period=period, freq="M", horizon=4, kind="continuous",
        names=[f"s{i}" for i in range(n)], time=np.datetime64("2000-01", "M") + np.arange(t),
    )  # fmt: skip


def test_ensemble_members_differ_pool_their_paths_and_calibrate_on_the_validation_window():
    data = periodic()
    cls = zoo.MODELS["forecast"]

    def build(series):
        return zoo.build("forecast", **{**cls.data_overrides(series), **cls.tiny_config})

    cfg = FitConfig(epochs=3, batch_size=16, seed=0)
    f = EarlyStoppingForecaster(
        build, parallel=True, members=3, calibrate=True, config=cfg, calibration_points=0
    )
    f.fit(data)
    assert len(f.models) == 3 and len(f.histories) == 3
    w = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in f.models]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    _, y, val = validation_windows(f.model, data)
    assert val is not None and f.calibration.points == val.y.numel()
    assert f.calibration.factor > 0
    paths = f.sample(data, 6, 31)
    assert paths.shape == (31, 3, 6) and bool(torch.isfinite(paths).all())
    single = EarlyStoppingForecaster(build, parallel=True, config=cfg).fit(data)
    assert single.calibration.factor == 1.0 and single.calibration.points == 0  # asked, not implied
    with pytest.raises(ValueError, match="members"):
        EarlyStoppingForecaster(build, members=0)


def ramp(n=1, t=120, period=4):
    """Values that name their own time step (1, 2, ...), so a leak is visible in the values."""
    values = torch.arange(1, t + 1, dtype=torch.float32).expand(n, t).clone()
    return SeriesData(
        "ramp", values, period=period, freq="M", horizon=4, kind="continuous",
        names=[f"s{i}" for i in range(n)], time=np.datetime64("2000-01", "M") + np.arange(t),
    )  # fmt: skip


@pytest.mark.parametrize("n", [1, 20, 40])
def test_validation_stretches_are_held_out_of_the_training_windows(n):
    data = ramp(n)
    model = zoo.build("forecast", **zoo.MODELS["forecast"].tiny_config, period=4)
    x, y, val = validation_windows(model, data, min_points=100)
    hv = y.shape[1]
    # the fewest stretches giving 100 points (1 series: capped at a quarter of 120 steps)
    stretches = {1: 10, 20: 2, 40: 1}[n]
    assert hv == 3 and val.y.shape == (n * stretches, hv)
    first_val = len(data) - stretches * hv + 1  # the value of the first held-out step
    assert float(y.max()) < first_val and float(x[..., 0].max()) < first_val
    assert sorted(val.y[:, 0].unique().tolist()) == [first_val + hv * j for j in range(stretches)]
    # each stretch is forecast from the true history just before it
    past = model.past_length
    assert torch.equal(val.x[:, past - 1, 0], val.y[:, 0] - 1)


def test_a_history_too_short_for_validation_trains_on_all_of_it():
    model = zoo.build("forecast", **zoo.MODELS["forecast"].tiny_config, period=4)
    data = ramp(1, t=model.past_length + 3 + 2)  # room for windows, not for a held-out stretch
    x, y, val = validation_windows(model, data, min_points=100)
    assert val is None and float(y.max()) == len(data)


def test_validation_is_one_stretch_by_default():
    model = zoo.build("forecast", **zoo.MODELS["forecast"].tiny_config, period=4)
    x, y, val = validation_windows(model, ramp(1))
    assert val.y.shape == (1, 3) and float(val.y[0, 0]) == 118 and float(y.max()) == 117


def test_validation_covers_the_forecast_horizon_where_the_history_can_spare_it():
    model = zoo.build("forecast", **zoo.MODELS["forecast"].tiny_config, period=4)
    _, y, val = validation_windows(model, ramp(1), horizon=6)  # 6 <= a quarter of 120 steps
    assert val.y.shape == (1, 6) and float(y.max()) == 114
    _, y, val = validation_windows(model, ramp(1), horizon=40)  # too much: the windows' 3
    assert val.y.shape == (1, 3) and float(y.max()) == 117


def test_pooled_scores_give_the_conformal_factor_of_all_their_points():
    (p1, y1), (p2, y2) = gaussian_paths(3, 4, 0.5, seed=3), gaussian_paths(5, 4, 2.0, seed=4)
    one = spread_scores(p1, y1)
    assert one.shape == (12,)
    assert fit_spread(p1, y1) == spread_from_scores(one, steps=4)
    pooled = spread_from_scores(torch.cat([one, spread_scores(p2, y2)]), 0.9, steps=4)
    both_paths = np.concatenate([np.asarray(p1), np.asarray(p2)], axis=1)
    both_truth = np.concatenate([np.asarray(y1), np.asarray(y2)])
    assert pooled.points == 32 and pooled.steps == 4
    assert pooled.factor == pytest.approx(numpy_conformal_factor(both_paths, both_truth, 0.9))
    assert spread_from_scores(torch.zeros(0)).factor == 1.0
    with pytest.raises(ValueError, match="level"):
        spread_from_scores(one, 1.0)


def test_cross_fitting_rests_the_factor_on_more_points_and_leaves_the_models_alone():
    data = periodic(n=1, t=120)
    cls = zoo.MODELS["forecast"]
    calls = []

    def build(series):
        calls.append(len(series))
        return zoo.build("forecast", **{**cls.data_overrides(series), **cls.tiny_config})

    cfg = FitConfig(epochs=3, batch_size=16, seed=0)
    plain = EarlyStoppingForecaster(build, calibrate=True, config=cfg, calibration_points=0)
    pyro.set_rng_seed(0)  # the models' initial weights
    plain.fit(data)
    _, _, own = validation_windows(plain.model, data)
    assert own.y.numel() == 3 and plain.calibration.points == 3 and len(calls) == 1

    crossed = EarlyStoppingForecaster(build, calibrate=True, config=cfg, calibration_points=30)
    pyro.set_rng_seed(0)
    crossed.fit(data)
    # one more model was built and fitted for the calibration: 10 stretches of 3 steps
    assert len(calls) == 3 and len(crossed.models) == 1
    assert crossed.calibration.points == 3 + 30 and crossed.calibration.steps == 3
    # the forecaster's own model is the one the plain forecaster fits (same seed, same data)
    for a, b in zip(plain.model.parameters(), crossed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert crossed.calibration.factor >= plain.calibration.factor  # it may only widen

    # enough points of its own: no second fit
    def refuse():
        raise AssertionError("cross-fitted although the validation window had enough points")

    cal = calibrate_on_history([plain.model], data, min_points=3, cross_fit=refuse)
    assert cal.points == 3


def test_more_points_may_widen_the_recent_windows_factor_but_never_narrow_it():
    recent = torch.tensor(
        [0.2, 0.5, 1.4], dtype=torch.float64
    )  # n = 3: the factor is the largest, 1.4
    calm, wild = torch.full((60,), 0.5).double(), torch.full((60,), 3.0).double()
    assert spread_from_scores(torch.cat([recent, calm])).factor == 0.5  # pooling would narrow
    kept = widen_only(recent, [calm], steps=3)
    assert kept.factor == 1.4 and kept.points == 63 and kept.steps == 3
    widened = widen_only(recent, [wild], steps=3)
    assert widened.factor == 3.0 and widened.points == 63
    assert widen_only(recent, [], steps=3) == spread_from_scores(recent, steps=3)


def test_a_holdouts_raw_and_calibrated_scores_come_from_the_same_paths():
    # a factor of 1 (or one that only narrows steps past a longer forecast) changes nothing
    from inference.fit import fit
    from inference.forecasting import holdout, holdout_scores

    data = periodic(n=2, t=60)
    model = zoo.build(
        "forecast",
        **{**zoo.MODELS["forecast"].data_overrides(data), **zoo.MODELS["forecast"].tiny_config},
    )
    history, future = holdout(data)
    fit(model, model.training_windows(history), None, FitConfig(epochs=2, batch_size=16, seed=0))
    for same in (SpreadCalibration(1.0, points=8, steps=4), SpreadCalibration(0.5, steps=2)):
        metrics, paths = holdout_scores(model, history, future, 4, 64, same)
        assert bool((same.factors(4) == 1.0).all())
        for key in ("crps", "wql", "coverage_90", "width_90", "mase"):
            assert metrics["calibrated"][key] == metrics[key], key
    metrics, paths = holdout_scores(model, history, future, 4, 64, SpreadCalibration(3.0, steps=4))
    assert metrics["calibrated"]["width_90"] > 2.5 * metrics["width_90"]
    assert metrics["calibrated"]["mase"] == pytest.approx(metrics["mase"], rel=1e-5)  # same median
