"""Forecast metrics against independent numpy transcriptions of GluonTS / sktime / properscoring."""

from __future__ import annotations

import numpy as np
import properscoring
import pytest
import torch

from inference.metrics.forecast import (
    QUANTILES,
    crps_paths,
    exceedance_brier,
    forecast_metrics,
    interval_coverage_width,
    mean_weighted_quantile_loss,
    seasonal_scale,
    weighted_quantile_loss,
)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(7)
    samples = rng.gamma(3.0, 10.0, size=(301, 4, 6))  # odd S: the median is one sample
    y = rng.gamma(3.0, 10.0, size=(4, 6))
    history = rng.gamma(3.0, 10.0, size=(4, 30)) + np.arange(30)
    return samples, y, history


def gluonts_mean_wql(samples, y, quantiles):
    """GluonTS: quantile_loss = 2 * sum(|(q_forecast - target) * ((target <= q_forecast) - q)|),
    wQuantileLoss[q] = quantile_loss / abs_target_sum, mean_wQuantileLoss = mean over q."""
    losses = []
    for q in quantiles:
        forecast = np.quantile(samples, q, axis=0)
        loss = 2 * np.sum(np.abs((forecast - y) * ((y <= forecast) - q)))
        losses.append(loss / np.sum(np.abs(y)))
    return np.mean(losses), losses


def sktime_mase(y_true, y_pred, y_train, sp):
    """sktime's MeanAbsoluteScaledError per series: mean|e| / mean|y_t - y_{t-sp}| in sample."""
    naive = np.mean(np.abs(y_train[sp:] - y_train[:-sp]))
    return np.mean(np.abs(y_true - y_pred)) / naive


def test_wql_matches_the_gluonts_definition(arrays):
    samples, y, _ = arrays
    want, per_q = gluonts_mean_wql(samples, y, QUANTILES)
    s, t = torch.tensor(samples), torch.tensor(y)
    assert float(mean_weighted_quantile_loss(s, t)) == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(weighted_quantile_loss(s, t).numpy(), per_q, rtol=1e-10)
    per_h = mean_weighted_quantile_loss(s, t, dim=(0,)).numpy()
    for h in range(y.shape[1]):
        want_h, _ = gluonts_mean_wql(samples[:, :, h], y[:, h], QUANTILES)
        assert per_h[h] == pytest.approx(want_h, rel=1e-10)


def test_mase_matches_sktime_and_uses_the_median_point(arrays):
    samples, y, history = arrays
    median = np.median(samples, axis=0)
    want = np.mean([sktime_mase(y[i], median[i], history[i], 4) for i in range(len(y))])
    scale = seasonal_scale(torch.tensor(history), 4)
    np.testing.assert_allclose(
        scale.numpy(), np.abs(history[:, 4:] - history[:, :-4]).mean(1), rtol=1e-12
    )
    got = forecast_metrics(torch.tensor(samples), torch.tensor(y), scale)
    assert got["overall"]["mase"] == pytest.approx(want, rel=1e-10)
    mape = np.mean(np.abs(y - median) / np.abs(y))
    assert got["overall"]["mape"] == pytest.approx(mape, rel=1e-10)
    assert len(got["per_horizon"]["mase"]) == 6


def test_crps_coverage_and_brier_match_direct_computations(arrays):
    samples, y, _ = arrays
    s, t = torch.tensor(samples), torch.tensor(y)
    want = properscoring.crps_ensemble(y, np.moveaxis(samples, 0, -1))
    np.testing.assert_allclose(crps_paths(s, t).numpy(), want, rtol=1e-8)
    covered, width = interval_coverage_width(s, t, 0.9)
    lo, hi = np.quantile(samples, [0.05, 0.95], axis=0)
    np.testing.assert_array_equal(covered.numpy(), ((y >= lo) & (y <= hi)).astype(float))
    np.testing.assert_allclose(width.numpy(), hi - lo, rtol=1e-12)
    thr = np.array([[20.0], [30.0], [25.0], [40.0]])
    brier = (np.mean(samples > thr, 0) - (y > thr)) ** 2
    np.testing.assert_allclose(exceedance_brier(s, t, torch.tensor(thr)).numpy(), brier)


def test_forecasts_from_the_true_distribution_are_calibrated():
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(400, 5, generator=g) * 3
    samples = loc + torch.randn(1000, 400, 5, generator=g)
    y = loc + torch.randn(400, 5, generator=g)
    m = forecast_metrics(samples, y, torch.ones(400), threshold=loc[:, :1])
    assert 0.88 < m["overall"]["coverage_90"] < 0.92
    assert m["overall"]["width_90"] == pytest.approx(2 * 1.6449, rel=0.03)
    assert m["overall"]["crps"] == pytest.approx(1 / np.sqrt(np.pi), rel=0.05)  # E CRPS, N(0, 1)
    wide = forecast_metrics(loc + 3 * (samples - loc), y, torch.ones(400))
    assert wide["overall"]["coverage_90"] > 0.99 and wide["overall"]["crps"] > m["overall"]["crps"]


def test_bad_shapes_and_nan_samples_are_refused():
    with pytest.raises(ValueError, match=r"expected sample paths \[S, N, H\] and truth \[N, H\]"):
        crps_paths(torch.zeros(10, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        crps_paths(torch.full((10, 2, 3), float("nan")), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="no naive error"):
        seasonal_scale(torch.zeros(2, 1), 4)
