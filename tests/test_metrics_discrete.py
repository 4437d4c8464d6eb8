"""Count predictives (randomized PIT, integer intervals), closed-form CRPS, the true model of
every likelihood scoring nominal coverage and zero calibration error."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pyro.distributions as pdist
import pytest
import scipy.integrate as si
import scipy.stats as st
import scoringrules as sr
import torch

from inference import metrics as M
from zoo.likelihoods import LIKELIHOODS, make_likelihood

F64 = torch.float64
LEVELS = (0.5, 0.8, 0.9, 0.95)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(13)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=F64)


# ----------------------------------------------------------------------------- closed forms


def _params(rng, n=40):
    return rng.uniform(0.3, 4.0, n), rng.uniform(0.3, 4.0, n)


def test_crps_closed_forms_match_scoringrules_numpy(rng):
    a, b = _params(rng)
    counts = rng.poisson(3.0, a.shape).astype(float)
    pos = rng.gamma(2.0, 1.0, a.shape)
    unit = rng.uniform(0.01, 0.99, a.shape)
    p = rng.uniform(0.1, 0.9, a.shape)
    cases = [
        (pdist.Poisson(_t(a)), counts, sr.crps_poisson(counts, a, backend="numpy")),
        # torch's NB(r, p) counts successes of prob p; scipy's / scoringrules' p is 1 - p
        (
            pdist.NegativeBinomial(_t(a), probs=_t(p)),
            counts,
            sr.crps_negbinom(counts, a, 1 - p, backend="numpy"),
        ),
        (pdist.Gamma(_t(a), _t(b)), pos, sr.crps_gamma(pos, a, b, backend="numpy")),
        (pdist.LogNormal(_t(a - 2), _t(b / 3)), pos, sr.crps_lognormal(pos, a - 2, b / 3)),
        (pdist.Beta(_t(a), _t(b)), unit, sr.crps_beta(unit, a, b, backend="numpy")),
    ]
    for d, y, ref in cases:
        ours = M.crps(d, _t(y)).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-10, err_msg=type(d).__name__)


def _crps_by_integration(cdf, y, lo, hi):
    left = si.quad(lambda t: cdf(t) ** 2, lo, y, limit=200)[0]
    right = si.quad(lambda t: (1 - cdf(t)) ** 2, y, hi, limit=200)[0]
    return left + right


def test_crps_closed_forms_match_integrating_the_cdf():
    # an independent reference: CRPS = int (F(t) - 1{y <= t})^2 dt with scipy's CDFs
    cases = [
        (pdist.Gamma(_t([2.5]), _t([1.5])), st.gamma(2.5, scale=1 / 1.5), 1.7, 0, 60),
        (pdist.LogNormal(_t([0.2]), _t([0.6])), st.lognorm(0.6, scale=math.exp(0.2)), 0.8, 0, 80),
        (pdist.Beta(_t([2.0]), _t([0.7])), st.beta(2.0, 0.7), 0.35, 0, 1),
    ]
    for d, ref, y, lo, hi in cases:
        expected = _crps_by_integration(ref.cdf, y, lo, hi)
        assert M.crps(d, _t([y])).item() == pytest.approx(expected, rel=1e-6)
    # integer CDFs are step functions: the integral is the sum over unit steps
    for d, ref in (
        (pdist.Poisson(_t([3.2])), st.poisson(3.2)),
        (pdist.NegativeBinomial(_t([1.5]), probs=_t([0.7])), st.nbinom(1.5, 0.3)),
    ):
        for y in (0.0, 2.0, 9.0):
            k = np.arange(0, 400)
            expected = np.sum((ref.cdf(k) - (y <= k)) ** 2)
            assert M.crps(d, _t([y])).item() == pytest.approx(expected, rel=1e-8, abs=1e-12)


def test_integer_quantiles_and_pit_bounds_match_scipy(rng):
    rate, r, p = rng.uniform(0.2, 9, 30), rng.uniform(0.5, 5, 30), rng.uniform(0.1, 0.9, 30)
    probs = [0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975]
    for d, ref in (
        (pdist.Poisson(_t(rate)), st.poisson(rate)),
        (pdist.NegativeBinomial(_t(r), probs=_t(p)), st.nbinom(r, 1 - p)),
    ):
        y = _t(ref.rvs(random_state=1))
        q = M.predictive_quantiles(d, y, probs).numpy()
        np.testing.assert_array_equal(q, np.stack([ref.ppf(pr) for pr in probs]))
        # the randomized PIT lies in [F(y - 1), F(y)]
        u = M.pit_values(d, y, generator=torch.Generator().manual_seed(0)).numpy()
        lo, hi = ref.cdf(y.numpy() - 1), ref.cdf(y.numpy())
        assert np.all(u >= lo - 1e-9) and np.all(u <= hi + 1e-9)


def test_sample_quantiles_of_counts_are_integers_inverted_cdf(rng):
    s = rng.poisson(2.5, size=(301, 7)).astype(float)
    y = _t(rng.poisson(2.5, size=7))
    q = M.predictive_quantiles(_t(s), y, [0.1, 0.5, 0.9], discrete=True).numpy()
    ref = np.quantile(s, [0.1, 0.5, 0.9], axis=0, method="inverted_cdf")
    np.testing.assert_array_equal(q, ref)


# ----------------------------------------------------------------------------- true models


def _true_model(name: str, n: int):
    """The predictive of a likelihood at random network outputs, and data drawn from it."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    lik = make_likelihood(name)
    out = 0.5 * torch.randn(n, lik.num_outputs, generator=gen) + 0.5
    with torch.no_grad():
        d = lik(out)
    torch.manual_seed(1)
    return d, d.sample()


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


SCALAR = [n for n, cls in LIKELIHOODS.items() if cls.kind != "class"]


@pytest.mark.parametrize("name", SCALAR)
def test_the_true_model_of_every_likelihood_is_calibrated(name):
    n = 4000
    d, y = _true_model(name, n)
    m = M.regression_metrics(y, dist=d, levels=LEVELS, num_samples=2000)
    # each observed proportion is a mean of N indicators (or their expectations): 4 s.e.
    for level in LEVELS:
        key = f"{100 * level:g}"
        assert abs(m[f"coverage_{key}"] - level) <= 4 * _se(level, n), (key, m)
    # mean |observed - expected| over the curve, each term within 4 s.e. <= 4 * 0.5 / sqrt(N)
    assert m["ece_quantile"] <= 2 / math.sqrt(n), m["ece_quantile"]
    pit = M.pit_values(d, y, num_samples=2000, generator=torch.Generator().manual_seed(0))
    assert abs(pit.mean().item() - 0.5) <= 4 * math.sqrt(1 / 12 / n)
    hist = torch.histc(pit.double(), bins=10, min=0, max=1) / n
    assert (hist - 0.1).abs().max() <= 4 * _se(0.1, n)
    if LIKELIHOODS[name].kind == "count":
        for level in LEVELS:
            key = f"{100 * level:g}"
            mass = m[f"int_mass_{key}"]
            assert mass >= level - 1e-9  # the integer central interval holds at least L
            assert abs(m[f"int_coverage_{key}"] - mass) <= 4 * _se(mass, n)


@pytest.mark.parametrize("name", [n for n in SCALAR if LIKELIHOODS[n].kind == "count"])
def test_count_samples_of_the_true_model_are_calibrated_too(name):
    n, s = 3000, 4000
    d, y = _true_model(name, n)
    samples = d.sample((s,))
    m = M.regression_metrics(y, samples=samples, levels=LEVELS, discrete=True)
    # the empirical CDF of S draws adds an error of order 1 / sqrt(S) per point
    for level in LEVELS:
        key = f"{100 * level:g}"
        assert abs(m[f"coverage_{key}"] - level) <= 4 * _se(level, n) + 1 / math.sqrt(s)
    assert m["ece_quantile"] <= 2 / math.sqrt(n) + 1 / math.sqrt(s)


def test_poisson_before_the_fix_reproduces_the_issue_and_now_scores_nominal():
    torch.manual_seed(0)
    n = 20000
    d = pdist.Poisson(torch.full((n,), 3.0))
    y = d.sample()
    # the step CDF of the continuous path: what evaluate reported before (issue 13, point 1)
    old = M.regression_metrics(y, samples=d.sample((1000,)), discrete=False)
    assert old["coverage_50"] > 0.6 and old["ece_quantile"] > 0.1
    new = M.regression_metrics(y, dist=d)
    assert abs(new["coverage_50"] - 0.5) <= 4 * _se(0.5, n)
    assert new["ece_quantile"] <= 2 / math.sqrt(n)
    assert new["int_coverage_50"] == pytest.approx(new["int_mass_50"], abs=4 * _se(0.6, n))


# ----------------------------------------------------------------------------- energy score


def _energy_numpy(x, y):
    # direct transcription: x [S, N, D], y [N, D]
    S = x.shape[0]
    out = []
    for i in range(y.shape[0]):
        first = np.mean([np.linalg.norm(x[s, i] - y[i]) for s in range(S)])
        pair = sum(np.linalg.norm(x[s, i] - x[t, i]) for s in range(S) for t in range(S))
        out.append(first - pair / (2 * S * S))
    return np.array(out)


def test_energy_score_matches_numpy_and_scoringrules(rng, monkeypatch):
    x, y = rng.normal(size=(25, 9, 3)), rng.normal(size=(9, 3))
    ours = M.energy_score(_t(x), _t(y)).numpy()
    np.testing.assert_allclose(ours, _energy_numpy(x, y), rtol=1e-12)
    ref = sr.es_ensemble(y, np.moveaxis(x, 0, 1), m_axis=-2, v_axis=-1, backend="numpy")
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    # chunked over points, and equal to the sample CRPS in one dimension
    monkeypatch.setattr(M.multivariate, "_PAIR_ELEMS", 25 * 25 * 2)
    np.testing.assert_allclose(M.energy_score(_t(x), _t(y)).numpy(), ours, rtol=1e-12)
    one = M.energy_score(_t(x[..., :1]), _t(y[:, :1])).numpy()
    np.testing.assert_allclose(one, M.crps_samples(_t(x[..., 0]), _t(y[:, 0])), rtol=1e-10)


def test_multivariate_metrics_shape_errors_are_one_line():
    with pytest.raises(ValueError, match="expected samples"):
        M.multivariate_metrics(torch.zeros(5, 2), torch.zeros(10, 5, 3))


def test_run_folder_pit_plots_of_a_count_model_use_the_randomized_pit(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import zoo
    from inference import plots
    from inference.evaluate import write_plots

    model = zoo.build("regression", likelihood="poisson", hidden=4)
    last = model.net[-1]
    with torch.no_grad():  # the true model: rate softplus(b) + 1e-6 = 3 whatever x is
        last.weight.zero_()
        last.bias.fill_(math.log(math.expm1(3.0 - 1e-6)))
    n = 2000
    x = torch.randn(n, 1)
    y = torch.poisson(torch.full((n,), 3.0))
    seen = {}
    monkeypatch.setattr(plots, "pit_histogram", lambda pit, path: seen.setdefault("pit", pit))
    monkeypatch.setattr(
        plots, "calibration_curve", lambda e, o, path: seen.setdefault("curve", (e, o))
    )
    data = SimpleNamespace(test=SimpleNamespace(x=x, y=y))
    write_plots(model, data, tmp_path, num_samples=1000)
    pit = seen["pit"]
    assert abs(pit.mean().item() - 0.5) <= 4 * math.sqrt(1 / 12 / n) + 1 / math.sqrt(1000)
    expected, observed = seen["curve"]
    assert (observed - expected).abs().max() <= 4 * 0.5 / math.sqrt(n) + 1 / math.sqrt(1000)
