"""The Bayesian neural network: known answers (Bayesian linear regression), shapes, scaling."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

import zoo
from inference import evaluate, fit, log_likelihood
from inference.uncertainty import predictive_uncertainty
from zoo.base import data_size


def blr_problem(n=20, d=2, prior=0.3, noise=1.0, seed=0):
    """Data and the closed-form posterior of y = w.x + b + noise * eps, w, b ~ N(0, prior^2).

    The prior is strong against the data (prior precision ~11, data precision ~20 per weight)
    so that a wrongly weighted KL term moves the answer far beyond the tolerance.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + 0.5 + noise * torch.randn(n, generator=g)
    phi = torch.cat([x, torch.ones(n, 1)], 1).double()
    precision = phi.T @ phi / noise**2 + torch.eye(d + 1, dtype=torch.float64) / prior**2
    mean = torch.linalg.solve(precision, phi.T @ y.double() / noise**2)
    return x, y, mean, precision


def linear_bnn(**overrides):
    config = dict(input_dim=2, depth=0, noise="fixed", noise_scale=1.0, prior_scale=0.3)
    return zoo.build("bnn", prior_fan_in=False, init_scale=0.05, **config, **overrides)


@pytest.mark.parametrize("seed", [0])
def test_mean_field_posterior_matches_bayesian_linear_regression(seed):
    x, y, mean, precision = blr_problem(seed=seed)
    model = linear_bnn()
    # minibatches of half the data: the KL keeps its weight only if the data term is scaled
    fit(
        model,
        (x, y),
        epochs=200,
        batch_size=10,
        lr=0.05,
        elbo="meanfield",
        num_particles=16,
        schedule="cosine",
        patience=None,
        quiet=True,
        device="cpu",
        seed=seed,
    )
    trace = poutine.trace(model.guide).get_trace(x)
    q = [trace.nodes[f"net.0.{k}"]["fn"].base_dist for k in ("weight", "bias")]
    loc = torch.cat([d.loc.reshape(-1) for d in q]).double()
    scale = torch.cat([d.scale.reshape(-1) for d in q]).double()
    # the mean-field optimum of a Gaussian posterior: exact means, sd = 1/sqrt(diag(precision))
    mf_scale = precision.diagonal().rsqrt()
    assert (loc - mean).abs().max() < 0.03  # posterior sd is ~0.18
    assert ((scale / mf_scale) - 1).abs().max() < 0.06
    # the test can fail: a prior twice as strong moves the answer well past the tolerances
    _, _, mean2, precision2 = blr_problem(seed=seed, prior=0.3 / 2**0.5)
    assert (mean2 - mean).abs().max() > 0.1
    assert ((precision2.diagonal().rsqrt() / mf_scale) - 1).abs().max() > 0.12


def test_low_rank_posterior_matches_the_full_covariance():
    x, y, mean, precision = blr_problem(seed=2)
    model = linear_bnn(guide="lowrank", guide_rank=3)
    fit(
        model,
        (x, y),
        epochs=200,
        batch_size=10,
        lr=0.05,
        num_particles=16,
        schedule="cosine",
        patience=None,
        quiet=True,
        device="cpu",
        seed=2,
    )
    posterior = model.guide.get_posterior()  # latent order: weight (2), bias (1)
    assert (posterior.loc.double() - mean).abs().max() < 0.03
    cov = posterior.covariance_matrix.double()
    assert (cov @ precision - torch.eye(3, dtype=torch.float64)).abs().max() < 0.15


def test_minibatch_elbo_averages_to_the_full_batch_elbo():
    # with the guide's draws fixed by the seed, the mean of the minibatch losses is the full
    # loss only if each batch's data term is scaled by N / n and the KL is not
    x, y, _, _ = blr_problem(n=24)
    model = linear_bnn()
    loss_fn = Trace_ELBO()(model, model.guide)

    def loss(xb, yb, num_data):
        pyro.set_rng_seed(7)
        with torch.no_grad(), data_size(num_data):
            return float(loss_fn(xb, yb))

    full = loss(x, y, None)
    batches = [loss(x[i : i + 6], y[i : i + 6], 24) for i in range(0, 24, 6)]
    assert sum(batches) / 4 == pytest.approx(full, rel=1e-5)
    with data_size(24):
        tr = poutine.trace(model).get_trace(x[:6], y[:6])
    assert float(tr.nodes["obs"]["scale"]) == pytest.approx(4.0)
    assert tr.nodes["net.0.weight"]["scale"] == 1.0


@pytest.mark.parametrize(
    "overrides, y_shape",
    [
        ({}, ()),
        ({"noise": "prior", "target_dim": 2, "guide": "lowrank"}, (2,)),
        ({"homoscedastic": False, "activation": "relu"}, ()),
        ({"likelihood": "categorical", "num_classes": 3}, ()),
        ({"likelihood": "bernoulli", "depth": 0}, ()),
        ({"likelihood": "poisson"}, ()),
    ],
)
def test_predictive_parallel_and_sequential_agree(overrides, y_shape):
    model = zoo.build("bnn", input_dim=3, hidden=8, **overrides)
    x = torch.randn(6, 3)
    shapes = []
    for parallel in (True, False):
        out = Predictive(model, guide=model.guide, num_samples=5, parallel=parallel)(x)
        shapes.append(out["obs"].shape)
        assert out["net.0.weight"].shape[0] == 5
    assert shapes[0] == shapes[1] == (5, 6, *y_shape)
    d = model.predictive_components(x, 4)
    assert tuple(d.batch_shape) == (4, 6) and tuple(d.event_shape) == y_shape
    y = out["obs"][0]
    assert log_likelihood(model, x, y, 4).shape == (4, 6)
    assert torch.isfinite(torch.tensor(model.val_score(x, y)))


def test_parallel_predictive_draws_the_same_distribution_as_sequential():
    model = zoo.build("bnn", hidden=8, init_scale=0.5, noise_scale=0.05)
    x = torch.linspace(-2, 2, 4)[:, None]
    pyro.set_rng_seed(0)
    a = Predictive(model, guide=model.guide, num_samples=4000, parallel=True)(x)["obs"]
    b = Predictive(model, guide=model.guide, num_samples=400, parallel=False)(x)["obs"]
    assert a.std(0).min() > 0.1  # the weights' spread dominates the noise
    se = a.std(0) / 400**0.5  # standard error of the sequential mean
    assert ((a.mean(0) - b.mean(0)).abs() < 4 * se).all()
    torch.testing.assert_close(a.std(0), b.std(0), atol=0, rtol=0.2)


@pytest.mark.parametrize("likelihood, num_classes", [("categorical", 4), ("bernoulli", 2)])
def test_class_probs_are_probabilities_averaged_over_weights(likelihood, num_classes):
    model = zoo.build("bnn", input_dim=2, likelihood=likelihood, num_classes=num_classes)
    x = torch.randn(50, 2)
    with torch.no_grad():
        probs = model.class_probs(x, num_samples=30)
    if likelihood == "categorical":
        assert probs.shape == (50, 4)
        torch.testing.assert_close(probs.sum(-1), torch.ones(50))
    else:
        assert probs.shape == (50,)
    assert (probs >= 0).all() and (probs <= 1).all()
    assert model.metric_kind == "class"
    metrics = evaluate(model, zoo.datasets.Split(x, torch.randint(0, num_classes, (50,))))
    assert 0 <= metrics["accuracy"] <= 1


def test_class_probs_refuses_a_regression_likelihood():
    with pytest.raises(ValueError, match="class likelihood"):
        zoo.build("bnn").class_probs(torch.randn(3, 1))


def test_guide_parameters_exist_before_any_call_and_survive_a_load(tmp_path):
    model = zoo.build("bnn", hidden=8, noise="prior")
    keys = set(model.state_dict())
    assert {
        "guide.locs.net.0.weight_unconstrained",
        "guide.scales.noise_scale_unconstrained",
    } <= keys
    x = torch.randn(40, 1)
    y = torch.sin(2 * x[:, 0])
    fit(model, (x, y), epochs=3, batch_size=20, quiet=True, device="cpu")
    zoo.save(model, tmp_path)
    loaded = zoo.load(tmp_path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    # the training-set size is not part of the model: a trace of 6 points is unscaled
    assert "num_data" not in (tmp_path / "config.json").read_text()
    assert float(poutine.trace(loaded).get_trace(x[:6], y[:6]).nodes["obs"]["scale"]) == 1.0
    pyro.set_rng_seed(1)
    a = loaded.predictive_components(x, 5).mean
    pyro.set_rng_seed(1)
    b = model.predictive_components(x, 5).mean
    torch.testing.assert_close(a, b)


def test_prior_constants_are_buffers_that_follow_the_module(device):
    model = zoo.build("bnn", hidden=4, prior_scale=2.0, noise="prior").to(device)
    layer = model.net[0]
    assert layer.weight_scale.device.type == device.type
    assert float(layer.weight_scale) == pytest.approx(2.0)  # fan_in 1
    assert float(model.net[2].weight_scale) == pytest.approx(1.0)  # 2 / sqrt(4)
    assert model.noise_prior_scale.device.type == device.type
    x = torch.randn(5, 1, device=device)
    out = Predictive(model, guide=model.guide, num_samples=3)(x)["obs"]
    assert out.device.type == device.type


def test_meanfield_elbo_uses_the_closed_form_kl():
    model = zoo.build("bnn", hidden=8, noise="prior")
    x, y = torch.randn(10, 1), torch.randn(10)
    # the KL of the weights is exact: two different guide draws differ only in the data term
    # and the noise site, so the loss barely moves compared with a Monte Carlo KL
    losses = {}
    for name, elbo in (("mf", TraceMeanField_ELBO()), ("mc", Trace_ELBO())):
        loss_fn = elbo(model, model.guide)
        with torch.no_grad():
            losses[name] = torch.tensor([float(loss_fn(x, y)) for _ in range(20)])
    assert losses["mf"].std() < 0.2 * losses["mc"].std()


def test_bad_configs_name_the_problem():
    with pytest.raises(zoo.ConfigError, match="noise=prior needs likelihood=normal"):
        zoo.build("bnn", noise="prior", likelihood="studentt")
    with pytest.raises(zoo.ConfigError, match="prior_scale"):
        zoo.build("bnn", prior_scale=0.0)
    with pytest.raises(zoo.ConfigError, match="guide must be one of"):
        zoo.build("bnn", guide="flow")


def test_epistemic_uncertainty_grows_in_the_gap():
    # tanh units and the noise known, as in the benchmark; over data seeds 0-3 the ratio of
    # epistemic sd (gap centre / data) was 1.5 to 3.7 (a model blind to the gap gives ~1)
    data = zoo.datasets.load_dataset("gap", n_train=200)
    model = zoo.build(
        "bnn", hidden=20, activation="tanh", noise="fixed", noise_scale=0.1, prior_scale=3.0
    )
    fit(
        model,
        data.train,
        epochs=300,
        batch_size=200,
        lr=0.03,
        elbo="meanfield",
        schedule="cosine",
        patience=None,
        quiet=True,
        device="cpu",
    )
    u_gap = predictive_uncertainty(model, torch.tensor([[0.0]]), 500)
    u_data = predictive_uncertainty(model, data.test.x[:200], 500)
    assert float(u_gap.epistemic_std[0]) > 1.3 * float(u_data.epistemic_std.mean())
    torch.testing.assert_close(u_data.aleatoric_std, torch.full((200,), 0.1))


def test_gap_data_leave_the_gap_empty_and_know_their_density():
    data = zoo.datasets.load_dataset("gap", n_train=500)
    x = torch.cat([data.train.x, data.val.x, data.test.x])[:, 0]
    assert ((x.abs() >= 1) & (x.abs() <= 4)).all()
    assert (x < 0).any() and (x > 0).any()
    lp = data.true_log_prob(data.test.x, data.test.y)
    want = torch.distributions.Normal(torch.sin(data.test.x[:, 0]) + 0.3 * data.test.x[:, 0], 0.1)
    torch.testing.assert_close(lp.float(), want.log_prob(data.test.y), atol=1e-4, rtol=0)
    assert data.info["gap"] == (-1.0, 1.0)
    with pytest.raises(ValueError, match="gap < extent"):
        zoo.datasets.load_dataset("gap", gap=5.0)
