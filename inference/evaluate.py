"""Scores a trained model on a split with the metrics that fit its likelihood, and plots them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.base import HasClassProbs, HasIWAESamples, HasLogits, HasLogProb, HasLogWeights

from .figures import model_figures
from .predict import log_likelihood, predictive_samples

__all__ = ["evaluate", "write_plots", "class_probs"]

LEVELS = (0.5, 0.8, 0.9, 0.95)


def class_probs(model, x: Tensor, num_samples: int = 100) -> Tensor:
    """Predictive class probabilities ``[N, C]`` (``[N]`` of class 1 for binary models)."""
    if isinstance(model, HasClassProbs):
        return model.class_probs(x, num_samples=num_samples)
    d = model.predictive_distribution(x)
    return d.probs


@torch.no_grad()
def evaluate(
    model,
    split,
    *,
    num_samples: int = 200,
    true_log_prob=None,
    chunk_size: int = 10000,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``split`` (``.x``, ``.y``), dispatched on ``model.metric_kind``.

    Continuous and count targets get NLL, CRPS, coverage, sharpness and calibration (exactly
    from the predictive distribution when the model has one, else from ``num_samples``
    posterior predictive samples); classes get accuracy, NLL, Brier and ECE; densities get
    NLL and bits per dimension, or the ELBO and an IWAE bound for latent-variable models.
    """
    from . import metrics

    model.eval()
    device = next(iter(list(model.parameters()) + list(model.buffers()))).device
    x = split.x.to(device)
    y = split.y.to(device) if split.y is not None else None
    kind = model.metric_kind
    out: dict[str, Any] = {"n": len(x), "kind": kind}
    if kind in ("continuous", "count"):
        x, y = model.check_data(x, y)
        dist = model.predictive_distribution(x)
        if dist is not None and y.dim() == 1:
            # what has no closed form (quantiles of a mixture or a flow) uses num_samples draws
            out.update(
                metrics.regression_metrics(y, dist=dist, levels=LEVELS, num_samples=num_samples)
            )
        else:
            s = predictive_samples(model, x, num_samples, chunk_size=chunk_size)["obs"]
            ll = log_likelihood(model, x, y, num_samples)
            out.update(metrics.regression_metrics(y, samples=s, log_lik=ll, levels=LEVELS))
        if true_log_prob is not None:
            out["true_nll"] = float(-true_log_prob(split.x, split.y).mean())
            out["nll_gap"] = out["nll"] - out["true_nll"]
    elif kind == "class":
        x, y = model.check_data(x, y)
        probs = class_probs(model, x, num_samples)
        # the exact log loss from logits where the model has them (probabilities get clamped)
        logits = model.logits(x) if isinstance(model, HasLogits) else None
        out.update(metrics.classification_metrics(probs, y.long(), logits=logits))
    elif kind == "density":
        # a model may set its own IWAE sample count K, else the default
        k = int(model.iwae_samples) if isinstance(model, HasIWAESamples) else 100
        out.update(model_density_metrics(model, x, true_log_prob=true_log_prob, iwae_samples=k))
    else:
        raise ValueError(f"unknown metric kind {kind!r}")
    return out


def model_density_metrics(model, x: Tensor, *, true_log_prob=None, iwae_samples: int = 100):
    """NLL / bits per dim from an exact ``log_prob``, or ELBO / IWAE from ``log_weights``."""
    from . import metrics

    out: dict[str, float] = {}
    dims = int(x.shape[1:].numel())
    if isinstance(model, HasLogProb):
        nll = float(-model.log_prob(x).mean())
        out["nll"] = nll
        out["bits_per_dim"] = metrics.bits_per_dim(nll, dims)
        if true_log_prob is not None:
            out["true_nll"] = float(-true_log_prob(x).mean())
            out["nll_gap"] = nll - out["true_nll"]
    if isinstance(model, HasLogWeights):
        elbo = model.log_weights(x, 1)[0]
        out["elbo"] = float(elbo.mean())
        iwae = metrics.iwae_bound(model.log_weights, x, num_samples=iwae_samples)
        out["iwae"] = float(iwae.mean())
        out["iwae_samples"] = iwae_samples
        out["nll"] = -out["iwae"]
        out["bits_per_dim"] = metrics.bits_per_dim(out["nll"], dims)
    return out


def _fmt(v: float) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)


@torch.no_grad()
def write_plots(model, dataset, run_dir: str | Path, history=None, num_samples: int = 200):
    """Writes the PNG figures that fit the model's kind into ``run_dir``; returns their paths."""
    from . import metrics, plots

    run_dir = Path(run_dir)
    paths = []
    if history is not None and history.rows:
        paths.append(plots.training_curve(history.rows, run_dir / "training_curve.png"))
    model.eval()
    device = next(iter(list(model.parameters()) + list(model.buffers()))).device
    test = dataset.test
    x = test.x.to(device)
    kind = model.metric_kind
    if kind in ("continuous", "count") and test.y is not None and test.y.dim() == 1:
        y = test.y.to(device)
        n = min(len(x), 5000)
        x, y = x[:n], y[:n]
        s = predictive_samples(model, x, num_samples)["obs"].float()
        pit = (s <= y).float().mean(0)
        expected = torch.linspace(0.01, 0.99, 99, device=device)
        observed = (pit[None, :] <= expected[:, None]).float().mean(1)
        paths.append(plots.calibration_curve(expected, observed, run_dir / "calibration.png"))
        paths.append(plots.pit_histogram(pit, run_dir / "pit_histogram.png"))
        if x.shape[1] == 1:
            order = x[:, 0].argsort()
            qs = torch.quantile(s[:, order], torch.tensor([0.05, 0.25, 0.75, 0.95]).to(s), dim=0)
            paths.append(
                plots.prediction_intervals(
                    x[order, 0],
                    y[order],
                    s[:, order].mean(0),
                    lower50=qs[1],
                    upper50=qs[2],
                    lower90=qs[0],
                    upper90=qs[3],
                    path=run_dir / "predictions.png",
                )
            )
    elif kind == "class" and test.y is not None:
        probs = class_probs(model, x, num_samples)
        y = test.y.to(device).long()
        rel = metrics.reliability_data(probs, y)
        paths.append(plots.reliability_diagram(rel, run_dir / "reliability.png"))
        if probs.dim() == 2 and probs.shape[1] > 2:
            pred = probs.argmax(-1)
            paths.append(
                plots.confusion_matrix(y, pred, probs.shape[1], run_dir / "confusion_matrix.png")
            )
    paths.extend(model_figures(model, dataset, run_dir))
    return paths
