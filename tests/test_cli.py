"""The command lines, run as a user would: through subprocess, for every registered model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def tiny_set(name: str) -> list[str]:
    # sizes that come from the data (input_dim, ...) stay the dataset's own
    data_keys = {"input_dim", "target_dim", "num_classes"}
    tiny = zoo.MODELS[name].tiny_config
    items = [f"{k}={v}" for k, v in tiny.items() if k not in data_keys]
    return ["--set", *items] if items else []


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_train_then_evaluate_every_model(name, tmp_path):
    out = tmp_path / "run"
    train = ROOT / "scripts" / "train.py"
    r = run(str(train), "--model", name, "--epochs", "1", "--quiet", "--num-samples", "40",
            "--out", str(out), *tiny_set(name), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for f in ("config.json", "model.pt", "metrics.json", "history.csv", "training_curve.png"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1
    assert f"{name} on" in r.stdout
    r = run(str(ROOT / "scripts" / "evaluate.py"), str(out), "--num-samples", "40", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    again = json.loads((out / "metrics_eval.json").read_text())
    assert again["kind"] == metrics["kind"] and again["n"] == metrics["n"]


def test_regression_run_reports_the_gap_to_the_truth_and_writes_the_interval_plot(tmp_path):
    out = tmp_path / "run"
    r = run(str(ROOT / "scripts" / "train.py"), "--model", "regression", "--epochs", "2",
            "--quiet", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "gap to true NLL" in r.stdout and "90% coverage" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["nll_gap"] == pytest.approx(m["nll"] - m["true_nll"])
    assert (out / "predictions.png").stat().st_size > 1000


def test_list_prints_every_model(tmp_path):
    r = run(str(ROOT / "scripts" / "train.py"), "--list", cwd=tmp_path)
    assert r.returncode == 0
    for name in zoo.MODELS:
        assert name in r.stdout


BAD = [
    (["--model", "nope"], "unknown model 'nope'; choose one of"),
    (["--model", "regression", "--set", "nosuchkey=1"], "unknown config key 'nosuchkey'"),
    (["--model", "regression", "--set", "hidden=wide"], "hidden must be an integer"),
    (["--model", "regression", "--set", "likelihood=cauchy"], "not a regression likelihood"),
    (["--model", "regression", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["--model", "regression", "--epochs", "x"], "invalid int value"),
    (["--model", "regression", "--device", "tpu"], "unknown device 'tpu'"),
    (["--model", "regression", "--dataset", "mnist", "--data-dir", "/nonexistent"], "MNIST"),
    (["--model", "regression", "--set", "likelihood=poisson"], "poisson targets must be"),
    ([], "--model is required"),
    (["--model", "mse", "--num-samples", "10"], "--num-samples must be at least 40"),
    # repeated --set accumulate (the first was once dropped silently)
    (
        [
            "--model",
            "forecast",
            "--dataset",
            "airpassengers",
            "--set",
            "log_target=true",
            "--set",
            "output=poisson",
        ],
        "log_target needs one of the outputs",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_usage_exits_2_with_one_line(args, message, tmp_path):
    r = run(str(ROOT / "scripts" / "train.py"), *args, "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_corrupted_checkpoint_gives_a_clear_error(tmp_path):
    out = tmp_path / "run"
    r = run(str(ROOT / "scripts" / "train.py"), "--model", "mse", "--epochs", "1", "--quiet",
            "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    weights = out / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    r = run(str(ROOT / "scripts" / "evaluate.py"), str(out), cwd=tmp_path)
    assert r.returncode == 2
    assert "model.pt cannot be read" in r.stderr and "Traceback" not in r.stderr
    r = run(str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "missing"), cwd=tmp_path)
    assert r.returncode == 2 and "config.json not found" in r.stderr
