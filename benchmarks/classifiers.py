"""Classifier targets on real data: accuracy, NLL, Brier and ECE before and after temperature
scaling, for the Bernoulli model on breast cancer and the categorical model on digits and MNIST.

MNIST trains on images [0, 9000) of the t10k file minus 1000 held out for validation (early
stopping and the temperature), and tests on [9000, 10000).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyro

import zoo
from inference import evaluate, fit
from inference.calibrate import fit_temperature

__all__ = ["run", "CASES"]

KEYS = ("accuracy", "nll", "brier", "ece")
# (label, model, dataset, config overrides, fit overrides, accuracy target, ECE target after TS)
CASES = [
    ("breast cancer", "bernoulli", "breast_cancer", {}, {}, 0.95, None),
    ("digits", "categorical", "digits", {}, {}, 0.96, 0.03),
    (
        "MNIST 9k",
        "categorical",
        "mnist",
        {"hidden": 512, "depth": 2, "shift": 2},
        {"epochs": 20, "schedule": "onecycle", "lr": 2e-3, "patience": None},
        0.96,
        0.03,
    ),
    # the same MLP without shifted copies of the images: for comparison, no target
    (
        "MNIST no shift",
        "categorical",
        "mnist",
        {"hidden": 512, "depth": 2},
        {"epochs": 20, "schedule": "onecycle", "lr": 2e-3, "patience": None},
        None,
        None,
    ),
]


def _one(args, model_name, dataset, config, fit_opts) -> dict:
    kwargs = {"data_dir": args.data_dir} if dataset == "mnist" else {}
    data = zoo.datasets.load_dataset(dataset, seed=args.seed, **kwargs)
    cls = zoo.MODELS[model_name]
    pyro.set_rng_seed(args.seed)  # the initial weights too
    model = zoo.build(model_name, **{**cls.data_overrides(data), **config})
    opts = dict(fit_opts)  # on top of the model's default_fit, which fit merges
    if args.quick:
        opts.update(epochs=2, patience=None)
        if dataset == "mnist":  # a tenth of the images, to check the code path
            data.train.x, data.train.y = data.train.x[:800], data.train.y[:800]
    start = time.perf_counter()
    history = fit(
        model, data.train, data.val, quiet=True, seed=args.seed, device=args.device, **opts
    )
    seconds = time.perf_counter() - start
    before = evaluate(model, data.test)
    ts = fit_temperature(model, data.val)
    after = evaluate(model, data.test)
    return {
        "n_train": len(data.train),
        "n_test": len(data.test),
        "epochs": len(history.rows),
        "seconds": seconds,
        "temperature": ts.temperature,
        "ts_applied": ts.applied,
        "before": {k: before[k] for k in KEYS},
        "after": {k: after[k] for k in KEYS},
    }


def _have_mnist(folder: str) -> bool:
    return any((Path(folder) / f"t10k-labels-idx1-ubyte{gz}").is_file() for gz in ("", ".gz"))


def run(args) -> dict:
    rows, passed = {}, True
    for label, model_name, dataset, config, fit_opts, acc_target, ece_target in CASES:
        if acc_target is None and args.quick:
            continue
        if dataset == "mnist" and not _have_mnist(args.data_dir):
            print(f"{label}: skipped, no MNIST files in {args.data_dir} (target not checked)")
            passed = False
            continue
        r = _one(args, model_name, dataset, config, fit_opts)
        ok = acc_target is None or r["after"]["accuracy"] >= acc_target
        if ece_target is not None:
            ok = ok and r["after"]["ece"] <= ece_target
        r.update(accuracy_target=acc_target, ece_target=ece_target, met=ok)
        rows[label] = r
        passed = passed and ok
    print(
        f"{'data':<15}{'train':>6}{'test':>6}{'epochs':>7}{'sec':>6}{'T':>7}{'acc':>8}"
        f"{'NLL':>8}{'NLL TS':>8}{'Brier':>8}{'Brier TS':>9}{'ECE':>8}{'ECE TS':>8}"
    )
    for label, r in rows.items():
        b, a = r["before"], r["after"]
        print(
            f"{label:<15}{r['n_train']:>6}{r['n_test']:>6}{r['epochs']:>7}{r['seconds']:>6.1f}"
            f"{r['temperature']:>6.3f}{' ' if r['ts_applied'] else '*'}"
            f"{a['accuracy']:>8.4f}{b['nll']:>8.4f}{a['nll']:>8.4f}"
            f"{b['brier']:>8.4f}{a['brier']:>9.4f}{b['ece']:>8.4f}{a['ece']:>8.4f}"
        )
    print("TS: after temperature scaling on the validation split (accuracy does not change)")
    if not all(r["ts_applied"] for r in rows.values()):
        print("*: not applied, the validation NLL only falls as T -> 0 (no confident mistakes)")
    if args.quick:
        print("quick run: two epochs, too short for the targets, which are not checked")
    for label, r in rows.items():
        if r["accuracy_target"] is None or args.quick:
            continue
        target = f"accuracy >= {r['accuracy_target']}"
        if r["ece_target"] is not None:
            target += f" and ECE after TS <= {r['ece_target']}"
        print(f"target {label}: {target}: {'met' if r['met'] else 'MISSED'}")
    return {"rows": rows, "passed": passed if not args.quick else None}
