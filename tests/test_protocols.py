"""Optional model hooks are declared Protocols; plots a model asks for come from one registry."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import torch

import zoo
from inference.figures import PLOTS, model_figures
from zoo import base

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {
    base.HasClassProbs: "class_probs",
    base.HasLogits: "logits",
    base.HasLogProb: "log_prob",
    base.HasLogWeights: "log_weights",
    base.HasIWAESamples: "iwae_samples",
    base.HasFigures: "figures",
    base.HasPredictiveComponents: "predictive_components",
    base.ChecksTrainingData: "check_training_data",
    base.HasEpochSchedule: "set_epoch",
    base.HasPredictiveDistribution: "predictive_distribution",
    base.HasQuasiLikelihood: "quasi_likelihood",
}


def test_each_family_offers_the_hooks_it_defines_and_only_those():
    expected = {
        "vae": {"log_weights", "iwae_samples", "figures", "set_epoch"},
        "flow": {"log_prob", "figures"},
        "cflow": {"figures"},
        "bnn": {"class_probs", "predictive_components", "figures"},
        "bernoulli": {"class_probs", "logits", "check_training_data"},
        "categorical": {"class_probs", "logits", "check_training_data"},
        "mdn": set(),
        "regression": set(),
        "mse": set(),
        "forecast": {"quasi_likelihood"},
    }
    assert set(expected) == set(zoo.MODELS)
    for name, cls in zoo.MODELS.items():
        model = zoo.build(name, **cls.tiny_config)
        offered = {hook for proto, hook in HOOKS.items() if isinstance(model, proto)}
        # every model has the base's predictive_distribution (None where there is no closed form)
        assert offered - {"predictive_distribution"} == expected[name], name
        assert isinstance(model, base.DeclaresPlateNesting)
        assert model.metric_kind in typing.get_args(base.MetricKind)
    forecast = zoo.build("forecast", **zoo.MODELS["forecast"].tiny_config)
    assert isinstance(forecast, base.SupportsForecast) and isinstance(forecast, base.NeedsHistory)
    assert not isinstance(zoo.build("mdn"), base.SupportsForecast)
    assert all(
        isinstance(zoo.build(n, **c.tiny_config), base.ChecksData) for n, c in zoo.MODELS.items()
    )
    temp = zoo.build("categorical", input_dim=3, num_classes=3, hidden=4)
    assert isinstance(temp, base.HasTemperature)
    assert not isinstance(zoo.build("mdn"), base.HasTemperature)


def test_every_likelihood_kind_is_a_metric_kind():
    from zoo.likelihoods import LIKELIHOODS

    kinds = {cls.kind for cls in LIKELIHOODS.values()}
    assert kinds == {"continuous", "count", "class"}
    assert kinds <= set(typing.get_args(base.MetricKind))


class _Asks(torch.nn.Module):
    def __init__(self, plot):
        super().__init__()
        self.plot = plot

    def figures(self, dataset):
        return {"fig": (self.plot, {"pit": torch.rand(50)})}


def test_figures_come_from_the_registry_and_unknown_names_are_an_error(tmp_path):
    assert all(callable(fn) for fn in PLOTS.values())
    (path,) = model_figures(_Asks("pit_histogram"), None, tmp_path)
    assert path == tmp_path / "fig.png" and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(KeyError, match="unknown plot 'no_such_plot'.*PLOTS"):
        model_figures(_Asks("no_such_plot"), None, tmp_path)
    assert model_figures(torch.nn.Linear(1, 1), None, tmp_path) == []  # no hook: no figures


def test_figure_names_the_families_use_are_registered():
    # the plot names in the families' figures() sources are keys of the registry
    for path in (ROOT / "zoo").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "figures":
                for t in ast.walk(node):
                    if isinstance(t, ast.Tuple) and len(t.elts) == 2:
                        first = t.elts[0]
                        if isinstance(first, ast.Constant) and isinstance(first.value, str):
                            if isinstance(t.elts[1], ast.Dict | ast.Name):
                                assert first.value in PLOTS, (path.name, first.value)


def test_inference_and_scripts_never_guess_hooks_with_hasattr_or_getattr():
    found = []
    for path in [*(ROOT / "inference").glob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in ("model", "self.model", "m")
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, f"hooks guessed by name: {found}; declare a Protocol in zoo/base.py"
