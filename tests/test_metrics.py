"""Cross-checks of inference.metrics against independent implementations and hand computations."""

from __future__ import annotations

import math

import numpy as np
import properscoring as ps
import pyro.distributions as pdist
import pytest
import scipy.stats as st
import scoringrules as sr
import torch
from scipy.special import logsumexp
from sklearn.metrics import accuracy_score, brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from inference import metrics as M

torch.set_num_threads(1)

F64 = torch.float64


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def normal_case(rng):
    n = 400
    mu, sd = rng.normal(size=n), rng.uniform(0.2, 2.0, size=n)
    y = mu + sd * rng.standard_t(4, size=n)
    return _t(y), _t(mu), _t(sd)


# ----------------------------------------------------------------------------- CRPS


def test_crps_normal_matches_properscoring_and_scoringrules(normal_case):
    y, mu, sd = normal_case
    ours = M.crps(pdist.Normal(mu, sd), y).numpy()
    np.testing.assert_allclose(
        ours, ps.crps_gaussian(y.numpy(), mu.numpy(), sd.numpy()), atol=1e-12
    )
    np.testing.assert_allclose(ours, sr.crps_normal(y.numpy(), mu.numpy(), sd.numpy()), atol=1e-12)


def test_crps_laplace_matches_scoringrules(normal_case):
    y, mu, sd = normal_case
    ours = M.crps(pdist.Laplace(mu, sd), y).numpy()
    ref = sr.crps_laplace(y.numpy(), location=mu.numpy(), scale=sd.numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("df", [1.05, 1.5, 2.0, 3.7, 10.0, 60.0])
def test_crps_student_t_matches_scoringrules(normal_case, df):
    y, mu, sd = normal_case
    y = 3 * y  # reach into the tails
    ours = M.crps(pdist.StudentT(torch.full_like(y, df), mu, sd), y).numpy()
    ref = sr.crps_t(y.numpy(), df, location=mu.numpy(), scale=sd.numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_student_t_cdf_matches_scipy(rng):
    z = _t(rng.standard_cauchy(size=300))
    for df in (0.5, 1.0, 2.5, 17.0, 400.0):
        ours = M._student_t_cdf(z, torch.tensor(df, dtype=F64)).numpy()
        np.testing.assert_allclose(ours, st.t.cdf(z.numpy(), df), atol=1e-12)


def test_crps_normal_mixture_matches_scoringrules(rng):
    n, k = 300, 5
    w = rng.dirichlet(np.ones(k), size=n)
    m, s = rng.normal(size=(n, k)) * 2, rng.uniform(0.1, 1.5, size=(n, k))
    y = rng.normal(size=n) * 2
    mix = pdist.MixtureSameFamily(pdist.Categorical(probs=_t(w)), pdist.Normal(_t(m), _t(s)))
    ours = M.crps(mix, _t(y)).numpy()
    np.testing.assert_allclose(ours, sr.crps_mixnorm(y, m, s, w), atol=1e-12)


def test_crps_point_mass_is_absolute_error(rng):
    v, y = _t(rng.normal(size=50)), _t(rng.normal(size=50))
    np.testing.assert_allclose(M.crps(pdist.Delta(v), y).numpy(), (v - y).abs().numpy(), atol=0)
    # ... and the sample estimator agrees when every sample sits on the point
    np.testing.assert_allclose(
        M.crps(v.expand(7, -1), y).numpy(), (v - y).abs().numpy(), atol=1e-15
    )


@pytest.mark.parametrize("S", [1, 2, 5, 64, 301])
def test_crps_samples_matches_properscoring_and_scoringrules(rng, S):
    n = 257
    x, y = rng.normal(size=(S, n)) * rng.uniform(0.1, 5, size=n), rng.normal(size=n) * 3
    ours = M.crps_samples(_t(x), _t(y)).numpy()
    np.testing.assert_allclose(ours, ps.crps_ensemble(y, x.T), rtol=0, atol=1e-10)
    # scoringrules' non-fair estimators: "qd" (quantile decomposition, its default) and "nrg"
    # (energy form; numpy backend is O(S^2) memory, so only on a slice)
    ref = sr.crps_ensemble(y, x, m_axis=0, estimator="qd")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    ref = sr.crps_ensemble(y[:40], x[:, :40], m_axis=0, estimator="nrg")
    np.testing.assert_allclose(ours[:40], ref, rtol=0, atol=1e-10)


def test_crps_samples_ties_signed_zeros_and_layouts(rng):
    # integer-valued samples (many ties), signed zeros and infinities-free extremes
    x = rng.integers(-3, 4, size=(40, 99)).astype(np.float64)
    x[0, :10], x[1, :10] = -0.0, 0.0
    x[2, :5] = 1e300
    x[3, 5:10] = -1e-310  # subnormal
    y = rng.integers(-3, 4, size=99).astype(np.float64)
    ref = ps.crps_ensemble(y, x.T)
    np.testing.assert_allclose(M.crps_samples(_t(x), _t(y)).numpy(), ref, rtol=1e-12, atol=1e-10)
    # a non-contiguous [S, N] view of [N, S] memory gives the same numbers
    xt = _t(np.ascontiguousarray(x.T)).T
    np.testing.assert_allclose(M.crps_samples(xt, _t(y)).numpy(), ref, rtol=1e-12, atol=1e-10)
    # float32 input
    ours32 = M.crps_samples(_t(x[:, 5:55]).float(), _t(y[5:55]).float())
    assert ours32.dtype == torch.float32
    np.testing.assert_allclose(ours32.numpy(), ref[5:55], rtol=1e-5, atol=1e-5)


def test_crps_samples_chunking_is_invisible(rng, monkeypatch):
    x, y = rng.normal(size=(30, 200)), rng.normal(size=200)
    full = M.crps_samples(_t(x), _t(y))
    monkeypatch.setattr(M.sorting, "_CHUNK_ELEMS", 30 * 7)  # 7 points per chunk, ragged last chunk
    np.testing.assert_allclose(M.crps_samples(_t(x), _t(y)).numpy(), full.numpy(), atol=1e-15)
    # the summary path sorts once into [N, S] rows (also chunked) and reuses them
    summary = M.regression_metrics(_t(y), samples=_t(x), levels=(0.5,))
    assert summary["crps"] == pytest.approx(full.mean().item(), abs=1e-14)
    sorted_rows = M._sorted_rows(_t(x))
    np.testing.assert_array_equal(sorted_rows.numpy(), np.sort(x.T, axis=1))


def test_integer_key_sort_matches_torch_sort(rng):
    vals = [0.0, -0.0, 1e-310, -1e-310, 1e308, -1e308, math.inf, -math.inf, 1.0, -1.0]
    x = torch.tensor(vals + list(rng.normal(size=90)), dtype=F64)[torch.randperm(100)]
    x = x.reshape(4, 25)
    for t in (x, x.float()):
        ours, ref = M._sorted_rows(t.T), torch.sort(t, -1).values
        assert torch.equal(ours, ref)  # -0.0 == 0.0, so their relative order is free


def test_crps_dispatch_falls_back_to_samples(rng):
    torch.manual_seed(0)
    y = _t(rng.gamma(2.0, size=6))
    g = pdist.Gamma(torch.full((6,), 2.0, dtype=F64), torch.ones(6, dtype=F64))
    ours = M.crps(g, y, num_samples=20000).numpy()
    ref = [ps.crps_quadrature(v, st.gamma(2.0)) for v in y.numpy()]
    np.testing.assert_allclose(ours, np.ravel(ref), atol=0.02)


def test_crps_nonnegative(rng, normal_case):
    y, mu, sd = normal_case
    mix = pdist.MixtureSameFamily(
        pdist.Categorical(probs=torch.full((len(y), 3), 1 / 3, dtype=F64)),
        pdist.Normal(mu[:, None] + torch.arange(3.0, dtype=F64), sd[:, None].expand(-1, 3)),
    )
    dists = [pdist.Normal(mu, sd), pdist.Laplace(mu, sd), mix]
    dists.append(pdist.StudentT(torch.full_like(y, 1.3), mu, sd))
    for d in dists:
        assert (M.crps(d, y) >= 0).all()
    assert (M.crps(_t(rng.normal(size=(9, len(y)))), y) >= 0).all()


# ----------------------------------------------------------------------------- NLL


def test_nll_exact_and_posterior_mean(normal_case, rng):
    y, mu, sd = normal_case
    ref = -st.norm.logpdf(y.numpy(), mu.numpy(), sd.numpy()).mean()
    assert M.nll(pdist.Normal(mu, sd), y).item() == pytest.approx(ref, abs=1e-12)
    ll = rng.normal(size=(50, 30)) * 5
    ref = -(logsumexp(ll, axis=0) - np.log(50)).mean()
    assert M.nll_from_log_likelihoods(_t(ll)).item() == pytest.approx(ref, abs=1e-12)


# ----------------------------------------------------------------------------- intervals, PIT


def test_coverage_width_and_pit_from_samples_match_numpy(rng):
    S, n = 200, 300
    x, y = rng.normal(size=(S, n)), rng.normal(size=n) * 1.3
    levels = (0.5, 0.8, 0.9, 0.95)
    cov, width = M.interval_coverage(_t(x), _t(y), levels)
    for k, lv in enumerate(levels):
        lo, hi = np.quantile(x, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
        assert cov[k].item() == pytest.approx(np.mean((y >= lo) & (y <= hi)), abs=1e-15)
        assert width[k].item() == pytest.approx(np.mean(hi - lo), abs=1e-12)
    q = M.predictive_quantiles(_t(x), _t(y), [0.0, 0.013, 0.5, 0.77, 1.0]).numpy()
    np.testing.assert_allclose(q, np.quantile(x, [0.0, 0.013, 0.5, 0.77, 1.0], axis=0), atol=1e-12)
    pit = M.pit_values(_t(x), _t(y)).numpy()
    np.testing.assert_allclose(pit, (x <= y).mean(0), atol=0)


def test_coverage_and_pit_from_distributions_match_scipy(normal_case):
    y, mu, sd = normal_case
    cov, width = M.interval_coverage(pdist.Normal(mu, sd), y, (0.5, 0.9))
    for k, lv in enumerate((0.5, 0.9)):
        lo, hi = st.norm.interval(lv, mu.numpy(), sd.numpy())
        assert cov[k].item() == pytest.approx(np.mean((y.numpy() >= lo) & (y.numpy() <= hi)))
        assert width[k].item() == pytest.approx(np.mean(hi - lo), abs=1e-12)
    pit = M.pit_values(pdist.Normal(mu, sd), y).numpy()
    np.testing.assert_allclose(pit, st.norm.cdf(y.numpy(), mu.numpy(), sd.numpy()), atol=1e-14)
    df = torch.full_like(y, 3.0)
    pit = M.pit_values(pdist.StudentT(df, mu, sd), y).numpy()
    ref = st.t.cdf(y.numpy(), 3.0, mu.numpy(), sd.numpy())
    np.testing.assert_allclose(pit, ref, atol=1e-12)


def test_interval_score_and_pinball_match_direct_formulas(rng):
    n = 200
    y, lo = rng.normal(size=n), rng.normal(size=n) - 1
    hi = lo + rng.uniform(0.1, 3, size=n)
    alpha = 0.1
    ref = (hi - lo) + 2 / alpha * ((lo - y) * (y < lo) + (y - hi) * (y > hi))
    ours = M.interval_score(_t(lo), _t(hi), _t(y), 0.9).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    taus = np.array([0.1, 0.5, 0.9])
    q = rng.normal(size=(3, n))
    ref = np.where(y >= q, taus[:, None] * (y - q), (1 - taus[:, None]) * (q - y))
    np.testing.assert_allclose(M.pinball_loss(_t(q), _t(y), _t(taus)).numpy(), ref, atol=1e-15)


# ----------------------------------------------------------------------------- calibration


def _toolbox_proportions(mu, sd, y, num_bins=100, prop_type="interval"):
    """uncertainty-toolbox's get_proportion_lists_vectorized, transcribed."""
    exp = np.linspace(0, 1, num_bins)
    r = ((mu - y) / sd).reshape(-1, 1)
    if prop_type == "interval":
        inside = (r >= st.norm.ppf(0.5 - exp / 2)) & (r <= st.norm.ppf(0.5 + exp / 2))
        return exp, inside.sum(0) / len(y)
    return exp, (r <= st.norm.ppf(exp)).sum(0) / len(y)


def test_calibration_matches_toolbox_definition(normal_case):
    y, mu, sd = normal_case
    exp, obs = M.calibration_proportions(pdist.Normal(mu, sd), y)
    ref_exp, ref_obs = _toolbox_proportions(mu.numpy(), sd.numpy(), y.numpy())
    np.testing.assert_allclose(exp.numpy(), ref_exp, atol=1e-15)
    np.testing.assert_allclose(obs.numpy(), ref_obs, atol=1e-15)
    d = ref_obs - ref_exp
    mace = M.mean_absolute_calibration_error(exp, obs).item()
    assert mace == pytest.approx(np.abs(d).mean(), abs=1e-15)
    rmsce = M.root_mean_squared_calibration_error(exp, obs).item()
    assert rmsce == pytest.approx(np.sqrt((d**2).mean()), abs=1e-15)
    # toolbox's "quantile" counts r <= z_p, i.e. y >= q(1 - p): same as ours at 1 - p, reversed
    _, obs_q = M.calibration_proportions(pdist.Normal(mu, sd), y, prop_type="quantile")
    _, ref_q = _toolbox_proportions(mu.numpy(), sd.numpy(), y.numpy(), prop_type="quantile")
    np.testing.assert_allclose(obs_q.numpy()[1:-1], 1 - ref_q[::-1][1:-1], atol=1e-15)


def test_miscalibration_area_is_area_between_curves(rng):
    exp = np.linspace(0, 1, 11)
    obs = np.clip(exp + rng.normal(size=11) * 0.1, 0, 1)
    grid = np.linspace(0, 1, 2_000_001)
    ref = np.abs(np.interp(grid, exp, obs - exp)).mean()  # fine Riemann sum of |piecewise lin|
    assert M.miscalibration_area(_t(exp), _t(obs)).item() == pytest.approx(ref, abs=1e-6)
    # hand example: d goes 0.1 -> -0.1 over [0, 1]: two triangles of area 0.5 * 0.5 * 0.1
    area = M.miscalibration_area(_t(np.array([0.0, 1.0])), _t(np.array([0.1, 0.9])))
    assert area.item() == pytest.approx(0.05, abs=1e-15)


def test_calibrated_predictive_has_vanishing_calibration_error():
    g = torch.Generator().manual_seed(3)
    errs = []
    for n in (300, 20000):
        mu = torch.randn(n, generator=g, dtype=F64)
        sd = torch.rand(n, generator=g, dtype=F64) + 0.5
        y = mu + sd * torch.randn(n, generator=g, dtype=F64)
        from_dist = M.regression_metrics(y, dist=pdist.Normal(mu, sd))
        samples = mu + sd * torch.randn(200, n, generator=g, dtype=F64)
        from_samples = M.regression_metrics(y, samples=samples)
        errs.append([from_dist["ece_quantile"], from_samples["ece_quantile"]])
        errs[-1] += [from_dist["miscalibration_area"], from_samples["rms_calibration_error"]]
        assert from_dist["coverage_90"] == pytest.approx(0.9, abs=4 / math.sqrt(n))
    small, large = np.array(errs)
    assert (large < small).all() and (large < 0.01).all()


def test_regression_metrics_keys_and_consistency(normal_case, rng):
    y, mu, sd = normal_case
    d = pdist.Normal(mu, sd)
    out = M.regression_metrics(y, dist=d)
    keys = {"nll", "nll_kind", "crps", "rmse", "mae", "rmse_median", "mae_median", "pinball"}
    keys |= {f"{k}_{p}" for k in ("coverage", "width", "interval_score") for p in (50, 80, 90, 95)}
    keys |= {"sharpness_std", "ece_quantile", "rms_calibration_error", "miscalibration_area"}
    assert keys <= out.keys() and out["nll_kind"] == "exact"
    assert all(isinstance(v, float) for k, v in out.items() if k != "nll_kind")
    assert out["crps"] == pytest.approx(M.crps(d, y).mean().item())
    assert out["rmse"] == pytest.approx(float(((mu - y) ** 2).mean().sqrt()))
    assert out["mae_median"] == pytest.approx(float((mu - y).abs().mean()))
    assert out["sharpness_std"] == pytest.approx(float(sd.mean()))
    lo, hi = st.norm.interval(0.9, mu.numpy(), sd.numpy())
    ref = np.mean(M.interval_score(_t(lo), _t(hi), y, 0.9).numpy())
    assert out["interval_score_90"] == pytest.approx(ref, rel=1e-12)
    x = _t(rng.normal(size=(100, len(y))))
    ll = _t(rng.normal(size=(100, len(y))))
    out = M.regression_metrics(y, samples=x, log_lik=ll)
    assert out["nll_kind"] == "posterior_mean_likelihood"
    assert out["nll"] == pytest.approx(M.nll_from_log_likelihoods(ll).item())
    assert out["crps"] == pytest.approx(ps.crps_ensemble(y.numpy(), x.numpy().T).mean(), abs=1e-12)
    assert out["rmse_median"] == pytest.approx(
        np.sqrt(((np.median(x.numpy(), 0) - y.numpy()) ** 2).mean())
    )
    assert "nll" not in M.regression_metrics(y, samples=x)


def test_regression_metrics_mixture_uses_closed_forms_and_samples():
    torch.manual_seed(1)
    n = 200
    mix = pdist.MixtureSameFamily(
        pdist.Categorical(probs=torch.tensor([0.3, 0.7], dtype=F64).expand(n, 2)),
        pdist.Normal(
            torch.tensor([-1.0, 2.0], dtype=F64).expand(n, 2), torch.ones(n, 2, dtype=F64)
        ),
    )
    y = mix.sample()
    out = M.regression_metrics(y, dist=mix, num_samples=4000)
    assert out["crps"] == pytest.approx(M.crps(mix, y).mean().item())
    assert out["nll"] == pytest.approx(-mix.log_prob(y).mean().item())
    assert out["coverage_90"] == pytest.approx(0.9, abs=0.08)


# ----------------------------------------------------------------------------- classification


@pytest.fixture
def multiclass(rng):
    n, c = 500, 4
    p = rng.dirichlet(np.ones(c) * 0.7, size=n)
    p = np.clip(p, 1e-6, None)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in p])
    return p, y


def test_classification_matches_sklearn(multiclass, rng):
    p, y = multiclass
    assert M.accuracy(_t(p), _t(y)).item() == pytest.approx(accuracy_score(y, p.argmax(1)))
    assert M.log_loss(_t(p), _t(y)).item() == pytest.approx(sk_log_loss(y, p), rel=1e-12)
    # sklearn >= 1.7: multiclass Brier is the unscaled sum over classes (scale_by_half=False)
    ref = brier_score_loss(y, p, scale_by_half=False)
    assert M.brier_score(_t(p), _t(y)).item() == pytest.approx(ref, rel=1e-12)
    logits = np.log(p) + 3.0
    assert M.log_loss(_t(logits), _t(y), logits=True).item() == pytest.approx(sk_log_loss(y, p))
    pb = rng.uniform(0.01, 0.99, size=300)
    yb = (rng.uniform(size=300) < pb).astype(int)
    assert M.brier_score(_t(pb), _t(yb)).item() == pytest.approx(brier_score_loss(yb, pb))
    assert M.log_loss(_t(pb), _t(yb)).item() == pytest.approx(sk_log_loss(yb, pb), rel=1e-12)
    assert M.accuracy(_t(pb), _t(yb)).item() == pytest.approx(accuracy_score(yb, pb > 0.5))
    zb = np.log(pb) - np.log1p(-pb)
    assert M.log_loss(_t(zb), _t(yb), logits=True).item() == pytest.approx(sk_log_loss(yb, pb))


def test_ece_worked_example():
    # 6 points, 5 bins of width 0.2 on top-label confidence
    probs = torch.tensor(
        [[0.90, 0.10], [0.85, 0.15], [0.30, 0.70], [0.35, 0.65], [0.45, 0.55], [0.10, 0.90]]
    )
    y = torch.tensor([0, 1, 1, 0, 1, 1])
    # confidences 0.90 0.85 0.70 0.65 0.55 0.90; correct 1 0 1 0 1 1
    # bin (0.4, 0.6]: {0.55} acc 1 -> |1 - 0.55| = 0.45, weight 1/6
    # bin (0.6, 0.8]: {0.70, 0.65} acc 0.5 conf 0.675 -> 0.175, weight 2/6
    # bin (0.8, 1.0]: {0.90, 0.85, 0.90} acc 2/3 conf 0.8833 -> 0.21667, weight 3/6
    hand = (0.45 * 1 + 0.175 * 2 + (0.88333333 - 2 / 3) * 3) / 6
    assert M.expected_calibration_error(probs, y, n_bins=5).item() == pytest.approx(hand, abs=1e-6)
    rel = M.reliability_data(probs, y, n_bins=5)
    np.testing.assert_array_equal(rel["count"].numpy(), [0, 0, 1, 2, 3])
    np.testing.assert_allclose(rel["accuracy"].numpy()[2:], [1, 0.5, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(rel["confidence"].numpy()[2:], [0.55, 0.675, 2.65 / 3], atol=1e-6)
    assert torch.isnan(rel["accuracy"][:2]).all()
    # binary [N] input of class-1 probabilities gives the same top-label ECE
    assert M.expected_calibration_error(probs[:, 1], y, 5).item() == pytest.approx(hand, abs=1e-6)
    summary = M.classification_metrics(probs, y, n_bins=5)
    assert summary["ece"] == pytest.approx(hand, abs=1e-6)
    assert summary["mce"] == pytest.approx(0.45, abs=1e-6)


def test_classwise_and_adaptive_ece_match_loops(multiclass):
    p, y = multiclass
    n, c = p.shape
    edges = np.linspace(0, 1, 11)
    ref = 0.0
    for k in range(c):
        b = np.clip(np.ceil(p[:, k] * 10) - 1, 0, 9)
        for j in range(10):
            m = b == j
            ref += abs((y[m] == k).sum() - p[m, k].sum()) / n / c
    assert M.classwise_ece(_t(p), _t(y), 10).item() == pytest.approx(ref, abs=1e-12)
    conf, correct = p.max(1), p.argmax(1) == y
    order = np.argsort(conf, kind="stable")
    ref = sum(abs(correct[idx].sum() - conf[idx].sum()) / n for idx in np.array_split(order, 10))
    assert M.adaptive_ece(_t(p), _t(y), 10).item() == pytest.approx(ref, abs=1e-12)
    assert len(edges) == 11


def test_calibrated_classifier_has_vanishing_ece():
    g = torch.Generator().manual_seed(5)
    eces = []
    for n in (300, 100000):
        p = torch.distributions.Dirichlet(torch.ones(3)).sample((n,))
        y = torch.multinomial(p, 1, generator=g)[:, 0]
        out = M.classification_metrics(p, y)
        eces.append([out["ece"], out["ece_classwise"], out["ece_adaptive"]])
    small, large = np.array(eces)
    assert (large < small).all() and (large < 0.01).all()


# ----------------------------------------------------------------------------- density models


def test_bits_per_dim():
    assert M.bits_per_dim(784 * math.log(2) * 3, 784) == pytest.approx(3.0)
    assert M.bits_per_dim(torch.tensor([math.log(2)]), 1).item() == pytest.approx(1.0)


def test_iwae_bound_chunks_equal_full_logsumexp(rng):
    lw = _t(rng.normal(size=(1000, 17)) * 3)
    calls = []

    def fn(x, k):
        start = sum(calls)
        calls.append(k)
        return lw[start : start + k]

    out = M.iwae_bound(fn, torch.zeros(17), num_samples=1000, chunk_size=96)
    assert calls == [96] * 10 + [40]
    np.testing.assert_allclose(out.numpy(), M.iwae_from_log_weights(lw).numpy(), atol=1e-12)
    ref = logsumexp(lw.numpy(), axis=0) - np.log(1000)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    assert (out >= M.elbo_from_log_weights(lw)).all()


def test_iwae_bound_is_exact_with_the_true_posterior():
    # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2) and p(z | x) = N(x / 2, 1 / 2)
    x = torch.linspace(-3, 3, 13, dtype=F64)
    post = pdist.Normal(x / 2, math.sqrt(0.5))

    def fn(x_, k):
        z = post.sample((k,))
        prior, lik = pdist.Normal(0.0, 1.0).log_prob(z), pdist.Normal(z, 1.0).log_prob(x_)
        return prior + lik - post.log_prob(z)

    out = M.iwae_bound(fn, x, num_samples=50, chunk_size=7)
    ref = st.norm.logpdf(x.numpy(), 0.0, math.sqrt(2.0))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)


# ----------------------------------------------------------------------------- bad input


def _raises(match: str):
    return pytest.raises(ValueError, match=match)


def test_bad_continuous_inputs(normal_case):
    y, mu, sd = normal_case
    n = len(y)
    with _raises(r"samples has shape \[100, 7\] but y has shape \[8\]; expected samples \[S, N\]"):
        M.crps(torch.zeros(100, 7), torch.zeros(8))
    with _raises("samples has shape"):
        M.regression_metrics(y, samples=torch.zeros(n))
    with _raises("y contains NaN"):
        M.crps(pdist.Normal(mu, sd), torch.where(y > 0, torch.nan, y))
    with _raises("samples contains NaN"):
        M.crps_samples(torch.full((5, n), torch.nan), y)
    with _raises("y has shape"):
        M.crps(pdist.Normal(mu, sd), y[:, None])
    with _raises(r"dist has batch_shape \[400\] .* expected batch_shape \[N\]"):
        M.crps(pdist.Normal(mu, sd), y[:10])
    bad = pdist.Normal(torch.where(mu > 0, torch.nan, mu), sd, validate_args=False)
    with _raises("NaN"):
        M.crps(bad, y)
    with _raises("NaN"):
        M.regression_metrics(y, dist=bad)
    with _raises("df .* expected df > 1"):
        M.crps(pdist.StudentT(torch.full_like(y, 0.9), mu, sd), y)
    with _raises("samples has 20 draws per point; expected at least 40"):
        M.interval_coverage(torch.randn(20, n, dtype=F64), y, (0.5, 0.95))
    with _raises("samples has 20 draws"):
        M.regression_metrics(y, samples=torch.randn(20, n, dtype=F64))
    with _raises("levels"):
        M.interval_coverage(pdist.Normal(mu, sd), y, (0.5, 1.0))
    with _raises(r"probs is \[0.5, 1.5\]; expected quantile levels in \[0, 1\]"):
        M.predictive_quantiles(pdist.Normal(mu, sd), y, [0.5, 1.5])
    with _raises("prop_type"):
        M.calibration_proportions(pdist.Normal(mu, sd), y, prop_type="both")
    with _raises("exactly one"):
        M.regression_metrics(y)
    with _raises("log_lik has shape"):
        M.regression_metrics(y, samples=torch.randn(50, n, dtype=F64), log_lik=torch.zeros(50, 3))
    with _raises("log_lik has shape"):
        M.nll_from_log_likelihoods(torch.zeros(5))
    with _raises("log_lik contains NaN"):
        M.nll_from_log_likelihoods(torch.full((2, 3), torch.nan))


def test_bad_classification_inputs():
    p = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    y = torch.tensor([1, 0])
    with _raises(r"probs has values outside \[0, 1\]"):
        M.accuracy(torch.tensor([1.2, -0.2]), y)
    with _raises("probs rows do not sum to 1"):
        M.brier_score(torch.tensor([[0.2, 0.7], [0.5, 0.5]]), y)
    M.brier_score(torch.tensor([[0.2, 0.80005], [0.5, 0.5]]), y)  # within tolerance 1e-4
    with _raises("probs contains NaN"):
        M.classification_metrics(torch.tensor([[torch.nan, 1.0], [0.5, 0.5]]), y)
    with _raises(r"y has shape \[3\]; expected integer labels \[N\] with N = 2"):
        M.log_loss(p, torch.tensor([0, 1, 1]))
    with _raises(r"y has labels outside \[0, 1\]"):
        M.expected_calibration_error(p, torch.tensor([0, 2]))
    with _raises("y has non-integer"):
        M.reliability_data(p, torch.tensor([0.5, 1.0]))
    with _raises("probs has shape"):
        M.classification_metrics(torch.zeros(2, 2, 2), y)
    with _raises("probs and logits are both None"):
        M.classification_metrics(None, y)


def test_bad_density_inputs():
    with _raises("log_weights has shape"):
        M.iwae_from_log_weights(torch.zeros(4))
    with _raises(r"log_weight_fn returned shape \[3, 2\]; expected \[5, N\]"):
        M.iwae_bound(lambda x, k: torch.zeros(3, 2), torch.zeros(2), num_samples=5)
    with _raises("num_samples"):
        M.iwae_bound(lambda x, k: torch.zeros(k, 2), torch.zeros(2), num_samples=0)
