"""The fast training path: LeanTrace_ELBO gives Trace_ELBO's loss and gradients exactly."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule, PyroParam, PyroSample

import zoo
from inference import FitConfig, TrainingDiverged, fit
from inference.elbo import LeanTrace_ELBO
from inference.fit import TrainStep, make_elbo
from zoo.base import data_size


@pytest.fixture(autouse=True)
def _local_params():
    # the plain PyroModules below are a user's own: like Pyro's svi_torch.py, the "user" turns
    # module-local parameters on around building and training them (zoo models need no call)
    with pyro.settings.context(module_local_params=True):
        yield


class Latent(PyroModule):
    """A global latent, a local latent under a subsampled plate, a mask and a constrained param."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 3)
        self.prior_loc = torch.nn.Parameter(torch.zeros(3))
        self.q_loc = torch.nn.Parameter(0.1 * torch.randn(3))
        self.q_scale = PyroParam(0.5 * torch.ones(3), constraint=dist.constraints.positive)
        self.q_local = torch.nn.Linear(2, 1)

    def forward(self, x, y):
        w = pyro.sample("w", dist.Normal(self.prior_loc, 1.0).to_event(1))
        with pyro.plate("data", 100, subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with poutine.mask(mask=x[:, 0] > -1):
                pyro.sample("obs", dist.Normal((self.net(x) * w).sum(-1) + z, 0.5), obs=y)

    def guide(self, x, y):
        pyro.sample("w", dist.Normal(self.q_loc, self.q_scale).to_event(1))
        with pyro.plate("data", 100, subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(self.q_local(x).squeeze(-1), 0.3))


class Discrete(Latent):
    """A non-reparameterizable latent in the guide: the score-function surrogate is needed."""

    def forward(self, x, y):
        super().forward(x, y)
        pyro.sample("b", dist.Bernoulli(0.3))

    def guide(self, x, y):
        super().guide(x, y)
        pyro.sample("b", dist.Bernoulli(torch.sigmoid(self.q_loc.sum())))


class Bayesian(PyroModule):
    """Weights with priors (PyroSample) and an AutoNormal guide, as the BNN family does."""

    def __init__(self):
        super().__init__()
        self.layer = PyroModule[torch.nn.Linear](2, 1)
        self.layer.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 2]).to_event(2))
        self.layer.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

    def forward(self, x, y):
        loc = self.layer(x).squeeze(-1)  # the weights are drawn outside the data plate
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(loc, 0.5), obs=y)


def _mdn():
    model = zoo.build("mdn", hidden=8, components=3)
    return model


def _loss_and_grads(elbo_cls, make, x, y, **elbo_kwargs):
    torch.manual_seed(0)
    model = make()
    if isinstance(model, Bayesian):
        model.autoguide = AutoNormal(model)  # a submodule: its parameters live in the module
        guide = model.autoguide
    else:
        guide = model.guide
    loss_fn = elbo_cls(**elbo_kwargs)(model, guide)
    with data_size(1000):  # a minibatch: the data term of zoo models is scaled
        pyro.set_rng_seed(1)
        loss_fn(x, y)  # lazy parameters
        pyro.set_rng_seed(2)
        loss = loss_fn(x, y)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in loss_fn.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize(
    "make",
    [_mdn, Latent, Discrete, Bayesian],
    ids=["empty_guide_mdn", "latents_plate_mask", "score_function", "autonormal"],
)
def test_same_loss_and_gradients_as_trace_elbo(make):
    x, y = torch.randn(10, 2), torch.randn(10)
    if make is _mdn:
        x = x[:, :1]
    loss0, grads0 = _loss_and_grads(Trace_ELBO, make, x, y)
    loss1, grads1 = _loss_and_grads(LeanTrace_ELBO, make, x, y)
    assert torch.equal(loss0, loss1), (float(loss0), float(loss1))
    assert grads0.keys() == grads1.keys() and grads0
    for k in grads0:
        assert torch.equal(grads0[k], grads1[k]), k


def test_several_particles_take_trace_elbos_path():
    x, y = torch.randn(10, 2), torch.randn(10)
    kw = {"num_particles": 3, "vectorize_particles": True, "max_plate_nesting": 1}
    loss0, grads0 = _loss_and_grads(Trace_ELBO, Latent, x, y, **kw)
    loss1, grads1 = _loss_and_grads(LeanTrace_ELBO, Latent, x, y, **kw)
    assert torch.equal(loss0, loss1)
    assert all(torch.equal(grads0[k], grads1[k]) for k in grads0)


def test_validation_errors_are_still_raised():
    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(torch.zeros(len(x) + 1), 1.0), obs=x)

    def guide(x):
        pass

    for elbo in (Trace_ELBO(), LeanTrace_ELBO()):
        with pytest.raises(ValueError, match="Shape mismatch inside plate"):
            elbo.differentiable_loss(model, guide, torch.zeros(4))

    def guide_with_extra_site(x):
        pyro.sample("extra", dist.Normal(0.0, 1.0))

    def model_ok(x):
        pyro.sample("obs", dist.Normal(0.0, 1.0).expand([len(x)]).to_event(1), obs=x)

    for elbo in (Trace_ELBO(), LeanTrace_ELBO()):  # warnings are errors in the tests
        with pytest.warns(UserWarning, match="vars in guide but not model"):
            elbo.differentiable_loss(model_ok, guide_with_extra_site, torch.zeros(4))


def test_model_param_sites_are_kept_for_other_handlers():
    model = _mdn()
    x, y = torch.randn(6, 1), torch.randn(6)
    trace = poutine.trace(model).get_trace(x, y)
    assert {"net$$$0.weight", "net$$$2.bias"} <= set(trace.param_nodes)  # pyro.module names


def test_fit_uses_the_lean_elbo_and_reads_losses_once_per_epoch():
    assert isinstance(make_elbo("trace"), LeanTrace_ELBO)
    assert type(make_elbo("pyro_trace")) is Trace_ELBO
    model = _mdn()
    x, y = torch.randn(40, 1), torch.randn(40)
    loss_fn = make_elbo()(model, model.guide)
    loss_fn(x, y)
    step = TrainStep(loss_fn, 40, FitConfig(lr=1e-2), total_steps=3)
    before = [p.detach().clone() for p in step.params]
    out = step(x, y)
    assert not out.requires_grad and out.dim() == 0 and torch.isfinite(out)
    assert any(not torch.equal(a, b) for a, b in zip(before, step.params, strict=True))


def test_divergence_without_validation_is_found_at_the_epoch_end():
    pyro.enable_validation(False)  # NaN then flows into the loss instead of a ValueError
    try:
        model = zoo.build("mdn", hidden=8)
        x = torch.linspace(-2, 2, 64)[:, None]
        y = torch.sin(x[:, 0])
        calls = {"n": 0}

        class Poison(torch.nn.Module):
            def forward(self, h):
                calls["n"] += 1
                return h * (math.nan if calls["n"] > 7 else 1.0)

        model.net.append(Poison())
        with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 2"):
            fit(model, (x, y), (x, y), epochs=5, batch_size=16, quiet=True)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    finally:
        pyro.enable_validation(True)


def _zoo_example(model, n: int = 12):
    x = model.example_inputs(n)
    if model.target_is_input:
        return x, x
    with torch.no_grad():
        return x, pyro.infer.Predictive(model, guide=model.guide, num_samples=1)(x)["obs"][0]


@pytest.mark.parametrize("lift", [False, True], ids=["plain", "lifted"])
@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_registered_model_gets_trace_elbos_loss_and_gradients(name, lift):
    # the same Pyro program under every handler stack: poutine.lift turns each parameter into a
    # sample site from the prior, and LeanTrace_ELBO must see exactly what Trace_ELBO sees
    if lift:  # a scalar prior for every parameter: shapes inside plates are not validated
        pyro.enable_validation(False)
    out = []
    for elbo in (Trace_ELBO(), LeanTrace_ELBO()):
        torch.manual_seed(0)
        model = zoo.build(name, **zoo.MODELS[name].tiny_config)
        x, y = _zoo_example(model)
        program = poutine.lift(model, prior=dist.Normal(0.0, 1.0)) if lift else model
        with data_size(100):  # a minibatch: the data term is scaled
            pyro.set_rng_seed(1)
            loss = elbo.differentiable_loss(program, model.guide, x, y)
        loss.backward()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        out.append((loss.detach(), grads))
    (loss0, grads0), (loss1, grads1) = out
    assert torch.equal(loss0, loss1), (float(loss0), float(loss1))
    assert grads0.keys() == grads1.keys() and grads0
    for k in grads0:
        assert torch.equal(grads0[k], grads1[k]), k
