"""The model contract, checked for every registered model at tiny sizes."""

from __future__ import annotations

import dataclasses

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO
from pyro.nn import PyroModule

import zoo
from inference import fit
from zoo.base import data_size

#: every registered model, and configs that change the Pyro program's structure
VARIANTS = {"forecast[members=3]": ("forecast", {"members": 3})}
NAMES = sorted(zoo.MODELS) + sorted(VARIANTS)


def tiny(name: str) -> zoo.ZooModel:
    name, extra = VARIANTS.get(name, (name, {}))
    return zoo.build(name, **{**zoo.MODELS[name].tiny_config, **extra})


def example(model: zoo.ZooModel, n: int = 16):
    """Inputs and targets drawn from the model's own prior predictive: valid for any likelihood."""
    x = model.example_inputs(n)
    if model.target_is_input:
        return x, x
    with torch.no_grad():
        y = Predictive(model, guide=model.guide, num_samples=1)(x)["obs"][0]
    return x, y


@pytest.mark.parametrize("name", NAMES)
def test_is_pyro_module_with_typed_config(name):
    model = tiny(name)
    assert isinstance(model, PyroModule)
    assert dataclasses.is_dataclass(model.config)
    assert callable(model.guide)
    assert model.description


@pytest.mark.parametrize("name", NAMES)
def test_one_svi_step_finite_and_every_parameter_gets_a_gradient(name):
    model = tiny(name)
    x, y = example(model)
    loss_fn = Trace_ELBO()(model, model.guide)
    loss_fn(x, y)  # creates lazy parameters
    params = list(loss_fn.parameters())
    assert params, "a model with no parameters cannot be trained"
    loss = loss_fn(x, y)
    assert torch.isfinite(loss)
    loss.backward()
    names = dict(loss_fn.named_parameters())
    missing = [k for k, p in names.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    assert not list(pyro.get_param_store().keys())
    # the user's own Trace_ELBO worked without any global setting (import zoo sets none)
    assert pyro.settings.get("module_local_params") is False


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("parallel", [True, False])
def test_predictive_shape(name, parallel):
    model = tiny(name)
    x, y = example(model, n=5)
    out = Predictive(model, guide=model.guide, num_samples=7, parallel=parallel)(x)
    assert out["obs"].shape[:2] == (7, 5)
    assert out["obs"].shape[2:] == y.shape[1:]


@pytest.mark.parametrize("name", NAMES)
def test_observed_site_is_obs_under_a_data_plate_scaled_on_minibatches(name):
    model = tiny(name)
    x, y = example(model, n=8)
    with data_size(80):  # what a training step on a set of 80 points says
        tr = poutine.trace(model).get_trace(x, y)
    site = tr.nodes["obs"]
    assert site["is_observed"]
    assert any(f.name == "data" for f in site["cond_indep_stack"])
    # 80 / 8 on top of the scale of the whole set (1 but for an ensemble's member weights)
    whole = float(poutine.trace(model).get_trace(x, y).nodes["obs"]["scale"])
    assert float(site["scale"]) == pytest.approx(10.0 * whole)
    assert whole == pytest.approx(1 / getattr(model, "members", 1))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_identical_predictions(name, tmp_path, device):
    model = tiny(name)
    x, y = example(model, n=12)
    fit(model, (x, y), epochs=2, batch_size=6, quiet=True, device="cpu")
    zoo.save(model, tmp_path)
    loaded = zoo.load(tmp_path)
    assert set(loaded.state_dict()) == set(model.state_dict())
    # the minibatch scale of training is gone: a trained or loaded model traced on 5 points
    # is the Pyro program of those 5 points (obs scale 1), and the checkpoint has no num_data
    assert "num_data" not in (tmp_path / "config.json").read_text()
    for m in (model, loaded):
        guide_tr = poutine.trace(m.guide).get_trace(x[:5], y[:5])
        tr = poutine.trace(poutine.replay(m, trace=guide_tr)).get_trace(x[:5], y[:5])
        assert float(tr.nodes["obs"]["scale"]) == pytest.approx(1 / getattr(m, "members", 1))

    def draw(m, dev):
        pyro.set_rng_seed(3)
        pred = Predictive(m.to(dev), guide=m.guide, num_samples=4)(x.to(dev))
        return pred["obs"].cpu()

    torch.testing.assert_close(draw(model, "cpu"), draw(loaded, "cpu"))
    # the same after a device move and back (a real GPU when the suite runs with --device cuda)
    moved = zoo.load(tmp_path, map_location=device)
    torch.testing.assert_close(draw(moved, device).shape, draw(model, "cpu").shape)
    torch.testing.assert_close(draw(moved.to("cpu"), "cpu"), draw(model, "cpu"))


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_is_in_the_module(name):
    model = tiny(name)
    x, y = example(model)
    loss_fn = Trace_ELBO()(model, model.guide)
    loss_fn(x, y)
    state = model.state_dict()
    for p in loss_fn.parameters():
        assert any(p is t or p.data_ptr() == t.data_ptr() for t in state.values())
    assert not list(pyro.get_param_store().keys())


def test_registry_is_a_plain_dict_and_build_checks_keys():
    assert isinstance(zoo.MODELS, dict)
    with pytest.raises(zoo.ConfigError, match="unknown model 'nope'"):
        zoo.build("nope")
    with pytest.raises(zoo.ConfigError, match="unknown config key 'nosuchkey'.*valid keys"):
        zoo.build("regression", nosuchkey=1)
    with pytest.raises(zoo.ConfigError, match="hidden must be an integer"):
        zoo.build("regression", hidden="wide")
