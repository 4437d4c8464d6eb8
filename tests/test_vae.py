"""The VAE family: importance weights, ELBO vs IWAE, KL estimators, scaling, binarization, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

import zoo
from inference import fit
from inference.evaluate import model_figures
from inference.metrics import iwae_bound
from zoo.base import data_size
from zoo.vae import VAE, PixelBernoulli

ROOT = Path(__file__).resolve().parents[1]


def small(**kw) -> VAE:
    return zoo.build("vae", **{"input_dim": 16, "latent_dim": 3, "hidden": 16, **kw})


def images(n: int = 32, d: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, d, generator=g)


def test_log_weights_shape_and_elbo_below_iwae_growing_with_k():
    model, x = small().eval(), images(64)
    with torch.no_grad():
        model.decoder[-1].weight.mul_(8)  # a sharp posterior that q(z | x) misses: a clear gap
        assert model.log_weights(x, 7).shape == (7, 64)
        lw = model.log_weights(x, 1000)
        bounds = [iwae_bound(model.log_weights, x, num_samples=k).mean() for k in (1, 10, 100)]
    elbo, stderr = float(lw.mean()), float(lw.std(0).mean()) / math.sqrt(len(x))
    # IWAE with K = 1 is the ELBO (up to the noise of one draw per image); more samples
    # tighten the bound (Burda et al., Theorem 1): here by ~1.7 and ~0.4 nats
    assert abs(float(bounds[0]) - elbo) < 4 * stderr
    assert elbo + 0.3 < float(bounds[1]) < float(bounds[2])
    assert all(torch.isfinite(b) for b in bounds)


def test_log_weights_match_pyros_trace_elbo():
    """The direct log weights and Pyro's Trace_ELBO on the model/guide pair agree."""
    model, x = small().eval(), images(16)
    pyro.set_rng_seed(0)
    loss = Trace_ELBO(num_particles=4000, vectorize_particles=True).loss(model, model.guide, x, x)
    with torch.no_grad():
        elbo = float(model.log_weights(x, 4000).mean(0).sum())
    assert loss == pytest.approx(-elbo, rel=2e-3)


def test_analytic_and_sampled_kl_losses_agree():
    model, x = small().eval(), images(16)
    pyro.set_rng_seed(0)
    kw = {"num_particles": 4000, "vectorize_particles": True, "max_plate_nesting": 1}
    sampled = Trace_ELBO(**kw).loss(model, model.guide, x, x)
    analytic = TraceMeanField_ELBO(**kw).loss(model, model.guide, x, x)
    assert analytic == pytest.approx(sampled, rel=2e-3)


def test_reconstructions_and_prior_samples():
    model, x = small().eval(), images(5)
    rec = Predictive(model, guide=model.guide, num_samples=3)(x)
    assert rec["obs"].shape == (3, 5, 16)
    assert set(rec["obs"].unique().tolist()) <= {0.0, 1.0}  # Bernoulli draws: binary images
    prior = Predictive(model, num_samples=400, return_sites=["z", "obs"])(x)
    assert prior["obs"].shape == (400, 5, 3 * 0 + 16)
    z = prior["z"]  # from N(0, I) whatever x is: x only sets the batch size
    assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1.0) < 0.1
    assert model.reconstruct(x).shape == (5, 16) and model.sample_images(4).shape == (4, 16)


@pytest.mark.parametrize("warmup", [0.0, 0.5])
def test_minibatch_scaling_and_kl_warmup(warmup):
    model, x = small(kl_warmup=warmup), images(8)
    model.set_epoch(1, 10)  # with warm-up over 5 of 10 epochs the KL weight is 1/5
    kl = 0.2 if warmup else 1.0
    with data_size(80):
        guide_tr = poutine.trace(model.guide).get_trace(x, x)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, x)
    assert float(guide_tr.nodes["z"]["scale"]) == pytest.approx(10 * kl)
    assert float(model_tr.nodes["z"]["scale"]) == pytest.approx(10 * kl)
    assert float(model_tr.nodes["obs"]["scale"]) == pytest.approx(10.0)
    model.set_epoch(5, 10)
    assert model.kl_weight == 1.0
    # the scaled loss on a batch is num_data / n times the unscaled one (same draws)
    pyro.set_rng_seed(3)
    with data_size(80):
        scaled = Trace_ELBO().loss(model, model.guide, x, x)
    pyro.set_rng_seed(3)
    assert scaled == pytest.approx(10 * Trace_ELBO().loss(model, model.guide, x, x), rel=1e-5)


def test_dynamic_binarization_resamples_observed_pixels_in_training_only():
    model, x = small(binarize=True), images(8)
    model.train()
    seen = [poutine.trace(model).get_trace(x, x).nodes["obs"]["value"] for _ in range(2)]
    for v in seen:
        assert set(v.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(seen[0], seen[1])  # a fresh draw every step
    # in expectation the binary pixels are the intensities
    draws = torch.stack(
        [poutine.trace(model).get_trace(x, x).nodes["obs"]["value"] for _ in range(400)]
    )
    assert torch.allclose(draws.mean(0), x, atol=0.12)
    model.eval()
    assert torch.equal(poutine.trace(model).get_trace(x, x).nodes["obs"]["value"], x)
    with pytest.raises(zoo.ConfigError, match="binarize"):
        zoo.build("vae", binarize=True, likelihood="normal")


def test_pixel_bernoulli_scores_intensities_and_rejects_bad_pixels():
    logits = torch.randn(4, 16)
    x = images(4)
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(PixelBernoulli(logits=logits).log_prob(x), expected)
    with pytest.raises(ValueError):
        PixelBernoulli(logits=logits).log_prob(x * 255)
    with pytest.raises(zoo.DataError, match="divide 8-bit images by 255"):
        fit(small(), (x * 255, None), epochs=1, quiet=True, device="cpu")


@pytest.mark.parametrize("likelihood", ["continuous_bernoulli", "normal"])
def test_other_likelihoods_train_and_weigh(likelihood):
    model, x = small(likelihood=likelihood), images(16)
    history = fit(model, (x, None), epochs=3, batch_size=8, quiet=True, device="cpu")
    assert math.isfinite(history.rows[-1]["loss"])
    with torch.no_grad():
        assert torch.isfinite(model.log_weights(x, 5)).all()


def test_training_on_digits_improves_the_elbo_and_draws_figures(tmp_path):
    data = zoo.datasets.load_dataset("digits")
    model = zoo.build("vae", **VAE.data_overrides(data), hidden=32, latent_dim=2, iwae_samples=50)
    with torch.no_grad():
        before = model.val_score(data.val.x)
    fit(model, data.train, data.val, epochs=10, batch_size=256, lr=1e-2, quiet=True, device="cpu")
    with torch.no_grad():
        after = model.val_score(data.val.x)
    assert after < before - 10  # nats per image: about 45 -> 27
    paths = model_figures(model, data, tmp_path)
    assert {p.name for p in paths} == {"reconstructions.png", "samples.png", "latent_map.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_cli_smoke_run(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts/train.py"), "--model", "vae", "--epochs", "1"]
    cmd += ["--quiet", "--out", str(out), "--set", "iwae_samples=20", "hidden=32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ELBO" in proc.stdout and "IWAE" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iwae_samples"] == 20 and metrics["kind"] == "density"
    assert metrics["iwae"] >= metrics["elbo"] - 1.0
    for name in ("reconstructions", "samples", "latent_map", "training_curve"):
        assert (out / f"{name}.png").is_file()
    loaded = zoo.load(out)
    assert loaded.config.hidden == 32 and loaded.prior_scale.shape == (loaded.config.latent_dim,)


MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST IDX files not found in {MNIST}")
def test_a_loaded_vae_traced_by_pyro_gives_the_held_out_elbo_of_metrics_json(tmp_path):
    # train.py trains on 8,000 MNIST images in batches of 128 and writes the held-out ELBO per
    # image; the user's own Pyro code on the loaded model must find the same number, not one
    # scaled by the training set size over the batch
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts/train.py"), "--model", "vae", "--dataset"]
    cmd += ["mnist", "--data-dir", str(MNIST), "--epochs", "1", "--batch-size", "128"]
    cmd += ["--quiet", "--out", str(out), "--set", "hidden=64", "latent_dim=8", "iwae_samples=5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    reported = json.loads((out / "metrics.json").read_text())["elbo"]

    model = zoo.load(out)
    x = zoo.datasets.load_dataset("mnist", data_dir=MNIST).test.x  # the same 1,000 images
    assert len(x) == 1000
    with torch.no_grad():
        elbo = -Trace_ELBO().loss(model, model.guide, x, x) / len(x)
        # both are one-draw Monte Carlo means over the images: the tolerance is their noise
        var = model.log_weights(x, 16).var(0).mean()
    tolerance = 5 * math.sqrt(2 * float(var) / len(x))
    assert abs(elbo - reported) < tolerance, (elbo, reported, tolerance)
    assert reported < -50  # a real ELBO of 784 pixels (about -200 nats after one epoch)
