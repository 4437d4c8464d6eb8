"""Importing the zoo changes no global state: Pyro's settings and matplotlib's backend stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import matplotlib, pyro, torch
from pyro.infer import Predictive, Trace_ELBO

def state():
    # the backend as configured (rcParams' raw entry: reading it through get_backend() would
    # resolve it), and whether pyplot, which picks a backend, was imported
    return [pyro.settings.get("module_local_params"), repr(dict.__getitem__(matplotlib.rcParams,
            "backend")), "matplotlib.pyplot" in sys.modules]

before = state()
import zoo, inference, inference.figures, inference.plots, inference.plots_density
import inference.plots_images, inference.uncertainty
after_import = state()

# a notebook user's own Pyro code on zoo models, with no call to any zoo setup first
out = {}
for name in ("vae", "bnn", "mdn"):
    model = zoo.build(name, **zoo.MODELS[name].tiny_config)
    x = model.example_inputs(5)
    y = x if model.target_is_input else None
    s = Predictive(model, guide=model.guide, num_samples=3)(x)["obs"]
    y = s[0] if y is None else y
    loss_fn = Trace_ELBO()(model, model.guide)
    loss = loss_fn(x, y)
    loss.backward()
    out[name] = [list(s.shape), bool(torch.isfinite(loss)),
                 all(p.grad is not None for p in loss_fn.parameters())]
print(json.dumps({"before": before, "after_import": after_import, "after_use": state(),
                  "store": list(pyro.get_param_store().keys()), "models": out}))
"""


def _run(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_zoo_changes_no_global_setting_and_user_pyro_code_works():
    out = _run(SCRIPT)
    before = out["before"]
    assert before[0] is False and before[2] is False
    assert out["after_import"] == before  # same Pyro setting, same backend, no pyplot
    assert out["after_use"] == before  # still the same after training and predicting
    assert out["store"] == []  # every parameter stayed in its module
    for name, (shape, finite, grads) in out["models"].items():
        assert shape[:2] == [3, 5] and finite and grads, name


def test_a_users_own_setting_is_left_as_it_was():
    code = SCRIPT.replace(
        "before = state()", "pyro.settings.set(module_local_params=True)\nbefore = state()"
    )
    out = _run(code)
    assert out["before"][0] is True
    assert out["after_use"] == out["before"]


def test_only_public_apis_of_pyro_and_torch():
    # private names of the libraries underneath break silently on upgrades; inference/elbo.py's
    # use of Trace_ELBO internals is the one pinned (pyro-ppl<1.10) and tested exception
    import re

    private = re.compile(r"_PYRO_STACK|torch\._foreach|torch\._[a-z]|from pyro[.\w]* import _")
    found = []
    for folder in ("zoo", "inference", "scripts", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if private.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, found
