"""What evaluate reports: multi-output targets, importance-weighted bounds of any latent model,
the epistemic / aleatoric split of models with parameter uncertainty."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule

import zoo
from inference import fit
from inference.evaluate import evaluate, model_density_metrics
from inference.importance import importance_log_weights

ROOT = Path(__file__).resolve().parent.parent


def _two_d_data(n: int = 120):
    x = torch.randn(n, 3)
    y = torch.stack([x[:, 0] + 0.3 * torch.randn(n), x[:, 1] * x[:, 2] + 0.3 * torch.randn(n)], -1)
    split = n * 3 // 4
    return SimpleNamespace(x=x[:split], y=y[:split]), SimpleNamespace(x=x[split:], y=y[split:])


@pytest.mark.parametrize("name", ["regression", "mdn", "cflow"])
def test_two_dimensional_targets_train_and_are_scored(name):
    train, test = _two_d_data()
    model = zoo.build(name, input_dim=3, target_dim=2, **zoo.MODELS[name].tiny_config)
    fit(model, train, test, epochs=2, quiet=True)
    m = evaluate(model, test, num_samples=60)
    assert m["target_dim"] == 2 and m["nll_kind"] == "exact"
    # the joint NLL is the model's own log density of the pairs
    with torch.no_grad():
        expected = -model.predictive_distribution(test.x).log_prob(test.y).mean()
    assert m["nll"] == pytest.approx(float(expected), rel=1e-5)
    for key in ("energy_score", "crps", "crps_dim0", "crps_dim1", "coverage_90_dim1", "rmse"):
        assert math.isfinite(m[key]), key
    assert m["crps"] == pytest.approx((m["crps_dim0"] + m["crps_dim1"]) / 2)
    assert m["energy_score"] > 0


# ----------------------------------------------------------------------------- IWAE


def test_vae_iwae_through_pyro_equals_the_vae_log_weights_on_a_fixed_seed():
    model = zoo.build("vae", **zoo.VAE.tiny_config).eval()
    x = torch.rand(30, model.input_dim)
    torch.manual_seed(3)
    ours = importance_log_weights(model, x, 7, x)
    torch.manual_seed(3)
    ref = model.log_weights(x, 7)
    assert ours.shape == (7, 30)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)


def test_density_metrics_of_a_vae_are_named_for_what_they_are():
    model = zoo.build("vae", **zoo.VAE.tiny_config).eval()
    x = torch.rand(20, model.input_dim)
    m = model_density_metrics(model, x, iwae_samples=10)
    assert {"elbo", "iwae", "neg_iwae", "iwae_samples"} <= set(m)
    assert "nll" not in m and "bits_per_dim" not in m
    assert m["neg_iwae"] == -m["iwae"] and m["iwae"] >= m["elbo"] - 1.0


class _Conjugate(PyroModule):
    """z_n ~ N(0, 1), x_n ~ N(z_n, 1): log p(x_n) = log N(x_n; 0, 2); the guide is the exact
    posterior N(x_n / 2, 1 / 2), so every importance weight equals p(x_n)."""

    max_plate_nesting = 1

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x[:, 0]), 1.0))
            pyro.sample("obs", dist.Normal(z, 1.0), obs=None if y is None else y[:, 0])

    def guide(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x[:, 0] / 2, math.sqrt(0.5)))


def test_importance_weights_work_for_any_latent_model_and_refuse_global_latents():
    model = _Conjugate()
    x = torch.randn(11, 1)
    lw = importance_log_weights(model, x, 5, x)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x[:, 0])
    torch.testing.assert_close(lw, exact.expand(5, -1), rtol=1e-5, atol=1e-5)
    chunked = importance_log_weights(model, x, 5, x, max_rows=4)  # rows in chunks of 4
    torch.testing.assert_close(chunked, lw, rtol=1e-5, atol=1e-5)
    m = model_density_metrics(model, x, iwae_samples=20)
    assert m["iwae"] == pytest.approx(float(exact.mean()), abs=1e-5)

    class Global(_Conjugate):
        def forward(self, x, y=None):
            w = pyro.sample("w", dist.Normal(0.0, 1.0))
            with pyro.plate("data", x.shape[0]):
                pyro.sample("obs", dist.Normal(w, 1.0), obs=y[:, 0])

        def guide(self, x, y=None):
            pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="outside the plate 'data'"):
        importance_log_weights(Global(), x, 3, x)


# ----------------------------------------------------------------------------- BNN split


def test_bnn_run_reports_its_epistemic_and_aleatoric_split(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--model", "bnn", "--epochs", "2"]
    cmd += ["--quiet", "--num-samples", "40", "--out", str(out), "--set", "hidden=8", "depth=1"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["epistemic_std"] > 0 and m["aleatoric_std"] > 0
    # the split is the law of total variance: both parts below the predictive sd
    assert m["epistemic_std"] < m["sharpness_std"] + 1e-6


def test_bnn_classifier_reports_mutual_information_and_expected_entropy():
    x = torch.randn(60, 2)
    y = (x[:, 0] > 0).long()
    data = SimpleNamespace(x=x, y=y)
    model = zoo.build("bnn", input_dim=2, likelihood="bernoulli", hidden=8, depth=1)
    fit(model, data, data, epochs=2, quiet=True)
    m = evaluate(model, data, num_samples=30)
    assert m["mutual_information"] >= 0 and 0 < m["expected_entropy"] <= math.log(2)
    # a model without parameter uncertainty reports no split
    mle = zoo.build("bernoulli", input_dim=2, **zoo.MODELS["bernoulli"].tiny_config)
    assert "mutual_information" not in evaluate(mle, data, num_samples=10)
