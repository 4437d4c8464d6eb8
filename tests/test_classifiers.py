"""Bernoulli and categorical classifiers: probabilities, logits-only stability, temperature
scaling (a known answer), bad labels, the command line and the MNIST loader's errors."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Predictive, Trace_ELBO

import zoo
from inference import evaluate, fit
from inference.calibrate import check_temperature_model, fit_temperature
from zoo.datasets import Split, load_dataset
from zoo.likelihoods import TargetError

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def linear(name: str, weight: torch.Tensor, **config) -> zoo.ZooModel:
    """A depth-0 classifier (logistic / softmax regression) with the given weight [out, in]."""
    model = zoo.build(name, input_dim=weight.shape[1], depth=0, **config)
    with torch.no_grad():
        model.net[0].weight.copy_(weight)
        model.net[0].bias.zero_()
    return model.eval()


def model_and_inputs(name: str, n: int = 6):
    config = {"num_classes": 4} if name == "categorical" else {}
    model = zoo.build(name, input_dim=3, hidden=16, **config).eval()
    return model, 2 * torch.randn(n, 3)


# --- probabilities ---------------------------------------------------------------------------
@torch.no_grad()
@pytest.mark.parametrize("name", ["bernoulli", "categorical"])
def test_class_probs_are_probabilities_matching_the_likelihood(name):
    model, x = model_and_inputs(name, n=50)
    p = model.class_probs(x)
    d = model.predictive_distribution(x)
    if name == "bernoulli":
        assert p.shape == (50,)
        assert ((p > 0) & (p < 1)).all()
        torch.testing.assert_close(p, d.probs)
        assert model.val_score(x, (p > 0.5).float()) == pytest.approx(
            float(F.binary_cross_entropy_with_logits(model.logits(x), (p > 0.5).float())),
            rel=1e-5,
        )
    else:
        assert p.shape == (50, 4)
        torch.testing.assert_close(p.sum(-1), torch.ones(50))
        torch.testing.assert_close(p, d.probs)
        y = p.argmax(-1)
        assert model.val_score(x, y) == pytest.approx(
            float(F.cross_entropy(model.logits(x), y)), rel=1e-5
        )


@pytest.mark.parametrize("name", ["bernoulli", "categorical"])
def test_huge_logits_give_a_finite_loss_and_gradients(name):
    out = 1 if name == "bernoulli" else 3
    config = {"num_classes": 3} if name == "categorical" else {}
    weight = 1e4 * torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.5, 0.5]])[:out]
    model = linear(name, weight, **config).train()
    x = torch.tensor([[40.0, -40.0], [-30.0, 30.0]])  # logits of magnitude ~1e6
    z = model.logits(x)
    assert z.abs().max() > 1e5
    # the labels the model is surest are wrong: a probability would round to 0 and its log to -inf
    if name == "bernoulli":
        y = (z < 0).float()
    else:
        y = z.argmin(-1)
    loss = Trace_ELBO()(model, model.guide)(x, y)
    assert torch.isfinite(loss) and loss > 1e5
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    m = evaluate(model.eval(), Split(x, y))
    assert np.isfinite(m["nll"]) and m["nll"] > 1e5  # the exact log loss, from logits


@pytest.mark.parametrize("name", ["bernoulli", "categorical"])
def test_predictive_label_frequencies_match_class_probs(name):
    model, x = model_and_inputs(name)
    s = 20000
    labels = Predictive(model, guide=model.guide, num_samples=s, parallel=True)(x)["obs"]
    assert labels.shape == (s, len(x))
    p = model.class_probs(x)
    if name == "bernoulli":
        assert set(labels.unique().tolist()) <= {0.0, 1.0}
        freq = labels.mean(0)
    else:
        assert labels.dtype == torch.long
        freq = F.one_hot(labels, 4).float().mean(0)
    # 5 standard errors of a frequency from 20000 draws is at most 0.018
    torch.testing.assert_close(freq, p, atol=0.018, rtol=0)


# --- temperature scaling ---------------------------------------------------------------------
def synthetic(num_classes: int, n: int, seed: int, w: torch.Tensor | None = None):
    """Labels drawn from a known linear softmax model: its logits are calibrated by design."""
    g = torch.Generator().manual_seed(seed)
    out = 1 if num_classes == 2 else num_classes
    w = torch.randn(out, 5, generator=g) if w is None else w
    x = torch.randn(n, 5, generator=g)
    z = x @ w.T
    if num_classes == 2:
        y = torch.bernoulli(torch.sigmoid(z[:, 0]), generator=g)
    else:
        y = torch.multinomial(torch.softmax(z, -1), 1, generator=g)[:, 0]
    return w, Split(x, y)


@pytest.mark.parametrize(("name", "num_classes"), [("bernoulli", 2), ("categorical", 4)])
def test_temperature_scaling_recovers_a_known_overconfidence(name, num_classes, tmp_path):
    w, val = synthetic(num_classes, 6000, seed=1)
    config = {"num_classes": num_classes} if name == "categorical" else {}
    model = linear(name, 3.0 * w, **config)  # logits three times too large: overconfident
    acc_before = evaluate(model, val)["accuracy"]
    result = fit_temperature(model, val)
    assert result.temperature == pytest.approx(3.0, rel=0.1)
    assert float(model.temperature) == pytest.approx(result.temperature)
    assert result.nll_after < result.nll_before - 0.05
    after = evaluate(model, val)
    assert after["accuracy"] == acc_before  # T > 0 never changes the argmax
    assert after["nll"] == pytest.approx(result.nll_after, rel=1e-4)
    # the temperature is a buffer: it is saved and comes back with the checkpoint
    zoo.save(model, tmp_path)
    loaded = zoo.load(tmp_path)
    assert float(loaded.temperature) == pytest.approx(result.temperature)
    torch.testing.assert_close(loaded.class_probs(val.x), model.class_probs(val.x))


def test_temperature_scaling_lowers_the_nll_of_an_overfitted_network():
    w, train = synthetic(3, 150, seed=2)
    _, val = synthetic(3, 2000, seed=3, w=w)
    model = zoo.build("categorical", input_dim=5, num_classes=3, hidden=64)
    fit(model, train, epochs=100, lr=1e-2, batch_size=150, patience=None, quiet=True)
    before = evaluate(model, val)
    result = fit_temperature(model, val)
    after = evaluate(model, val)
    assert result.temperature > 1.5  # an overfitted network is overconfident
    assert after["nll"] < before["nll"] - 0.1
    assert after["accuracy"] == before["accuracy"]


def test_temperature_is_left_alone_when_the_validation_split_has_no_mistakes():
    w, val = synthetic(4, 500, seed=4)
    x = val.x
    model = linear("categorical", w, num_classes=4)
    perfect = Split(x, model.logits(x).argmax(-1))  # the NLL falls without end as T -> 0
    result = fit_temperature(model, perfect)
    assert not result.applied and "left at 1.000" in result.summary
    assert float(model.temperature) == 1.0 and result.nll_after == result.nll_before


def test_temperature_scaling_refuses_models_without_logits():
    with pytest.raises(ValueError, match="applies to classifiers; Regression"):
        check_temperature_model(zoo.build("regression"))
    model = zoo.build("categorical", input_dim=2)
    with pytest.raises(ValueError, match="labelled, non-empty validation split"):
        fit_temperature(model, Split(torch.randn(0, 2), torch.zeros(0, dtype=torch.long)))


# --- bad labels ------------------------------------------------------------------------------
BAD_LABELS = [
    ("categorical", torch.tensor([0, 1, 2, 10]), TargetError, r"integer class labels in \[0, 9\]"),
    ("categorical", torch.tensor([0, 1, -1, 2]), TargetError, r"in \[0, 9\]; row 2 has -1"),
    ("categorical", torch.tensor([0.0, 1.5, 2.0, 3.0]), TargetError, "row 1 has 1.5"),
    ("categorical", torch.zeros(4, 3, dtype=torch.long), TargetError, r"shape \[4\]"),
    ("categorical", torch.eye(10)[:4], zoo.DataError, "one-hot"),
    ("categorical", torch.tensor([0, 1, 2]), zoo.DataError, "x has 4 rows but y has 3"),
    ("categorical", torch.tensor([0.0, float("nan"), 1.0, 2.0]), TargetError, "NaN"),
    ("categorical", np.array(["a", "b", "c", "d"]), zoo.DataError, "labels must be numbers"),
    ("bernoulli", torch.tensor([0, 1, 0.5, 1]), TargetError, "must be 0 or 1; row 2 has 0.5"),
    ("bernoulli", torch.tensor([0, 1, 2, 1]), TargetError, "use the categorical model"),
    ("bernoulli", torch.tensor([-1, 1, 1, -1]), TargetError, "must be 0 or 1; row 0"),
    ("bernoulli", torch.zeros(4, 3), TargetError, r"shape \[4\]"),
    ("bernoulli", torch.zeros(4, 2), zoo.DataError, "one-hot"),
]


@pytest.mark.parametrize(("name", "y", "error", "message"), BAD_LABELS)
def test_bad_labels_are_refused_before_pyro_runs(name, y, error, message):
    config = {"num_classes": 10} if name == "categorical" else {}
    model = zoo.build(name, input_dim=2, **config)
    with pytest.raises(error, match=message):
        fit(model, (torch.randn(4, 2), y), epochs=1, quiet=True)


def test_a_class_missing_from_training_is_named():
    model = zoo.build("categorical", input_dim=2, num_classes=10)
    y = torch.tensor([c for c in range(10) if c not in (3, 7)] * 3)
    x = torch.randn(len(y), 2)
    with pytest.raises(zoo.DataError, match=r"classes 3, 7 never appear in the training labels"):
        fit(model, (x, y), epochs=1, quiet=True)
    with pytest.raises(zoo.DataError, match="class 1 never appears"):
        fit(zoo.build("bernoulli", input_dim=2), (x, torch.zeros(len(y))), epochs=1, quiet=True)
    # only the training split must hold every class: a validation split may miss some
    full = torch.arange(30) % 10
    fit(model, (torch.randn(30, 2), full), (x, y), epochs=1, quiet=True)


def test_shift_augmentation_moves_images_in_training_only():
    with pytest.raises(zoo.ConfigError, match="shift=2 needs image inputs"):
        zoo.build("categorical", input_dim=64, shift=2)
    model = zoo.build("categorical", input_dim=64, shift=2, image_shape=(8, 8))
    img = torch.zeros(500, 8, 8)
    img[:, 3:5, 3:5] = 1.0  # a blob that stays inside the frame for any shift of 2 pixels
    x = img.reshape(500, 64)
    shifted = model.augment(x)
    torch.testing.assert_close(shifted.sum(-1), x.sum(-1))
    moved = (shifted != x).any(-1).float().mean()
    assert 0.8 < float(moved) < 1.0  # 24 of 25 offsets move the blob
    assert torch.equal(model.eval().augment(x), x)


# --- command line ----------------------------------------------------------------------------
def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("name", "dataset"), [("bernoulli", "breast_cancer"), ("categorical", "digits")]
)
def test_cli_trains_evaluates_and_scales_the_temperature(name, dataset, tmp_path):
    out = tmp_path / "run"
    r = run("--model", name, "--dataset", dataset, "--epochs", "1", "--quiet",
            "--temperature-scaling", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"{name} on {dataset}: NLL" in r.stdout and "temperature" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "nll", "brier", "ece"):
        assert 0 <= m[key] < 10 and 0 <= m[f"{key}_before_ts"] < 10
    assert m["accuracy"] == m["accuracy_before_ts"]
    assert m["val_nll_after_ts"] <= m["val_nll_before_ts"] + 1e-9
    assert (out / "reliability.png").stat().st_size > 1000
    assert (out / "confusion_matrix.png").is_file() == (name == "categorical")
    assert float(zoo.load(out).temperature) == pytest.approx(m["temperature"])


BAD_CLI = [
    (["--model", "regression", "--temperature-scaling"], "applies to classifiers"),
    (["--model", "bernoulli", "--dataset", "wine"], "use the categorical model"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CLI)
def test_cli_bad_usage_is_one_line(args, message, tmp_path):
    r = run(*args, "--epochs", "1", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


# --- MNIST loader ----------------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, images: bytes, labels: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)  # one plain, one gzipped: both work
    return folder


GOOD_IMAGES = idx_bytes(np.zeros((20, 28, 28)))
GOOD_LABELS = idx_bytes(np.arange(20) % 10)
BAD_MNIST = {
    "missing": (None, None, FileNotFoundError, "expected t10k-images-idx3-ubyte, t10k-labels"),
    "truncated": (GOOD_IMAGES[:-100], GOOD_LABELS, ValueError, "header promises"),
    "bad magic": (GOOD_IMAGES, b"\x08\x01" + GOOD_LABELS[2:], ValueError, "bad magic number"),
    "no header": (GOOD_IMAGES, GOOD_LABELS[:6], ValueError, "truncated"),
    "truncated gzip": (GOOD_IMAGES, GOOD_LABELS, ValueError, "cannot be read as an IDX file"),
    "mismatch": (GOOD_IMAGES, idx_bytes(np.arange(19) % 10), ValueError, "matching images"),
    "too few images": (GOOD_IMAGES, GOOD_LABELS, ValueError, "holds 20 images, too few"),
}


def bad_mnist(case: str, tmp_path: Path) -> Path:
    images, labels, _, _ = BAD_MNIST[case]
    if images is None:
        (tmp_path / "mnist").mkdir()
        return tmp_path / "mnist"
    folder = write_mnist(tmp_path / "mnist", images, labels)
    if case == "truncated gzip":
        gz = folder / "t10k-images-idx3-ubyte.gz"
        gz.write_bytes(gz.read_bytes()[:-50])
    return folder


@pytest.mark.parametrize("case", list(BAD_MNIST))
def test_mnist_loader_names_the_problem(case, tmp_path):
    folder = bad_mnist(case, tmp_path)
    _, _, error, message = BAD_MNIST[case]
    with pytest.raises(error, match=message):
        load_dataset("mnist", data_dir=folder)


@pytest.mark.parametrize("case", ["missing", "truncated", "bad magic"])
def test_mnist_errors_on_the_command_line_are_one_line(case, tmp_path):
    folder = bad_mnist(case, tmp_path)
    r = run("--model", "categorical", "--dataset", "mnist", "--data-dir", str(folder),
            "--out", str(tmp_path / "r"), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert BAD_MNIST[case][3] in lines[0] and "Traceback" not in r.stderr


@pytest.mark.skipif(not MNIST.is_dir(), reason="no MNIST files in ../shared/data/mnist")
def test_mnist_benchmark_split():
    d = load_dataset("mnist", data_dir=MNIST)
    assert (len(d.train), len(d.val), len(d.test)) == (8000, 1000, 1000)
    assert d.input_dim == 784 and d.num_classes == 10 and d.image_shape == (28, 28)
    counts = torch.bincount(torch.cat([d.train.y, d.val.y, d.test.y]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert float(d.train.x.min()) >= 0 and float(d.train.x.max()) <= 1
