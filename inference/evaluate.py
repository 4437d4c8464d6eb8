"""Scores a trained model on a split with the metrics that fit its likelihood, and plots them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.base import (
    HasClassProbs,
    HasIWAESamples,
    HasLogits,
    HasLogProb,
    HasPredictiveComponents,
    HasPredictiveDistribution,
    HasQuasiLikelihood,
)

from .figures import model_figures
from .predict import _device_of, log_likelihood, predictive_samples

__all__ = ["evaluate", "write_plots", "class_probs", "uncertainty_split"]

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
    samples: Tensor | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``split`` (``.x``, ``.y``), dispatched on ``model.metric_kind``.

    Continuous and count targets get NLL, CRPS, coverage, sharpness and calibration (exactly
    from the predictive distribution when the model has one, else from ``num_samples``
    posterior predictive samples; count targets through the randomized PIT); targets of
    several dimensions the joint NLL, the energy score and marginal metrics per dimension;
    classes get accuracy, NLL, Brier and ECE; densities get NLL and bits per dimension, or the
    ELBO and an IWAE bound for latent-variable models. A model with parameter uncertainty
    (``predictive_components``) also reports its epistemic / aleatoric split.
    ``split`` is what :func:`inference.fit` takes: a split with ``.x`` and ``.y``, or an
    ``(x, y)`` pair (``y`` may be None only for density models). ``samples``: a forecaster's
    ``[S, N, H]`` paths of ``x`` drawn already, scored instead of fresh draws.
    """
    from zoo.base import DataError

    from . import metrics
    from .fit import _unpack

    x_in, y_in = _unpack(split)
    kind = model.metric_kind
    if y_in is None and kind != "density":
        raise DataError(f"evaluate needs targets y for a model of {kind} targets; got y=None")
    model.eval()
    device = _device_of(model)
    x = x_in.to(device) if torch.is_tensor(x_in) else x_in
    y = y_in.to(device) if torch.is_tensor(y_in) else y_in
    out: dict[str, Any] = {"n": len(x), "kind": kind}
    if samples is not None and kind != "forecast":
        raise ValueError(f"samples= is for forecast paths; this model's metrics are {kind!r}")
    if kind in ("continuous", "count"):
        x, y = model.check_data(x, y)
        discrete = kind == "count"
        dist = model.predictive_distribution(x)
        if y.dim() > 1:  # multi-output: the joint NLL, the energy score, marginals per dim
            s = predictive_samples(model, x, num_samples, chunk_size=chunk_size)["obs"]
            ll = None if dist is not None else log_likelihood(model, x, y, num_samples)
            out.update(
                metrics.multivariate_metrics(
                    y, s, dist=dist, log_lik=ll, levels=LEVELS, discrete=discrete
                )
            )
        elif dist is not None:
            # what has no closed form (quantiles of a mixture or a flow) uses num_samples draws
            out.update(
                metrics.regression_metrics(
                    y, dist=dist, levels=LEVELS, num_samples=num_samples, discrete=discrete
                )
            )
        else:
            s = predictive_samples(model, x, num_samples, chunk_size=chunk_size)["obs"]
            ll = log_likelihood(model, x, y, num_samples)
            out.update(
                metrics.regression_metrics(
                    y, samples=s, log_lik=ll, levels=LEVELS, discrete=discrete
                )
            )
        if true_log_prob is not None:
            out["true_nll"] = float(-true_log_prob(x_in, y_in).mean())
            out["nll_gap"] = out["nll"] - out["true_nll"]
        out.update(uncertainty_split(model, x, num_samples))
    elif kind == "class":
        x, y = model.check_data(x, y)
        probs = class_probs(model, x, num_samples)
        # the exact log loss from logits where the model has them (probabilities get clamped)
        logits = model.logits(x) if isinstance(model, HasLogits) else None
        out.update(metrics.classification_metrics(probs, y.long(), logits=logits))
        out.update(uncertainty_split(model, x, num_samples))
    elif kind == "forecast":
        out.update(forecast_path_metrics(model, x, y, num_samples, chunk_size, samples))
    elif kind == "density":
        # a model may set its own IWAE sample count K, else the default
        k = int(model.iwae_samples) if isinstance(model, HasIWAESamples) else 100
        x, _ = model.check_data(x, None)
        out.update(model_density_metrics(model, x, true_log_prob=true_log_prob, iwae_samples=k))
    else:
        raise ValueError(f"unknown metric kind {kind!r}")
    return out


def uncertainty_split(model, x: Tensor, num_samples: int = 200) -> dict[str, float]:
    """The epistemic / aleatoric split of a predictive with parameter uncertainty.

    Any model that declares ``predictive_components(x, S)`` (the predictive of each of S
    posterior draws) gets it: for class labels the mean mutual information between label and
    parameters and the mean expected entropy (nats); otherwise the mean epistemic and
    aleatoric standard deviations (law of total variance over the draws).
    """
    if not isinstance(model, HasPredictiveComponents):
        return {}
    from .uncertainty import ClassUncertainty, predictive_uncertainty

    u = predictive_uncertainty(model, x, num_samples)
    if isinstance(u, ClassUncertainty):
        return {
            "mutual_information": float(u.mutual_information.mean()),
            "expected_entropy": float(u.expected_entropy.mean()),
        }
    return {
        "epistemic_std": float(u.epistemic_std.mean()),
        "aleatoric_std": float(u.aleatoric_std.mean()),
    }


def forecast_path_metrics(
    model, x: Tensor, y: Tensor, num_samples: int, chunk_size: int = 10000, samples=None
):
    """Scores of sample paths ``[S, N, H]`` against ``y [N, H]``: overall and per horizon step.

    The paths are ``num_samples`` fresh ``Predictive`` draws of ``x`` (on the model's device),
    or ``samples``, paths of ``x`` drawn already (so that scores of the same draws, before and
    after a calibration, differ by the calibration alone). The point scores pool every series
    and step; ``per_horizon`` has one value per step; ``nll`` is the held-out negative log
    density per step (teacher-forced) where the model has a ``predictive_distribution`` over
    the path with a ``log_prob``; ``quasi_nll`` instead where that is a quasi-likelihood
    (``zoo.base.HasQuasiLikelihood``: the quantile head's asymmetric-Laplace pinball loss,
    comparable across fits of that head only).
    """
    from .metrics.forecast import forecast_metrics

    x, y = model.check_data(x, y)
    if samples is None:
        s = predictive_samples(model, x, num_samples, chunk_size=chunk_size)["obs"]
    else:
        s = torch.as_tensor(samples)
        if s.dim() != 3 or tuple(s.shape[1:]) != tuple(y.shape):
            raise ValueError(f"samples must be [S, {len(y)}, {y.shape[1]}]; got {list(s.shape)}")
    out: dict[str, Any] = {"horizon": int(y.shape[1])}
    for level in LEVELS:  # no MASE here: the split holds no history to scale by
        scores = forecast_metrics(s.cpu(), y.cpu(), torch.ones(len(y)), level=level)
        pct = f"{round(level * 100):d}"
        if level == 0.9:
            out.update({k: v for k, v in scores["overall"].items() if k != "mase"})
            per_h = {k: v for k, v in scores["per_horizon"].items() if k != "mase"}
        out[f"coverage_{pct}"] = scores["overall"][f"coverage_{pct}"]
        out[f"width_{pct}"] = scores["overall"][f"width_{pct}"]
    out["per_horizon"] = per_h
    # the held-out NLL per step under teacher forcing, from the path distribution; not
    # ``val_score``, which may be another early-stopping score (a forecaster's CRPS)
    if isinstance(model, HasPredictiveDistribution):
        with torch.no_grad():
            try:
                d = model.predictive_distribution(x)
                if d is not None:
                    quasi = isinstance(model, HasQuasiLikelihood) and model.quasi_likelihood
                    key = "quasi_nll" if quasi else "nll"
                    out[key] = float(-d.log_prob(y.to(x.device)).mean() / y.shape[1])
            except NotImplementedError:  # a path distribution without log_prob: no NLL
                pass
    return out


def model_density_metrics(model, x: Tensor, *, true_log_prob=None, iwae_samples: int = 100):
    """NLL / bits per dim from an exact ``log_prob``; else the ELBO and the IWAE bound.

    A latent-variable model (no exact ``log_prob``) is scored through Pyro's
    ``vectorized_importance_weights`` on ``model(x, x)`` (the model observes its input) and
    its guide: ``elbo`` and ``iwae`` are per-example lower bounds on log p(x) under the
    model's likelihood, and ``neg_iwae`` is -iwae. These are reported under their own names
    and not as ``nll`` / ``bits_per_dim``: with a Bernoulli likelihood on grey-level
    intensities (the usual MNIST VAE) p is not a normalized density of the data, so the bound
    is not a negative log-likelihood of it.
    """
    from . import metrics
    from .importance import importance_log_weights

    out: dict[str, float] = {}
    dims = int(x.shape[1:].numel())
    if isinstance(model, HasLogProb):
        nll = float(-model.log_prob(x).mean())
        out["nll"] = nll
        out["bits_per_dim"] = metrics.bits_per_dim(nll, dims)
        if true_log_prob is not None:
            # the reference density runs on the host in float64 (which MPS lacks)
            out["true_nll"] = float(-true_log_prob(x.cpu()).mean())
            out["nll_gap"] = nll - out["true_nll"]
        return out

    def log_weights(x: Tensor, k: int) -> Tensor:
        return importance_log_weights(model, x, k, x)

    out["elbo"] = float(log_weights(x, 1)[0].mean())
    iwae = metrics.iwae_bound(log_weights, x, num_samples=iwae_samples)
    out["iwae"] = float(iwae.mean())
    out["iwae_samples"] = iwae_samples
    out["neg_iwae"] = -out["iwae"]
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
    device = _device_of(model)
    test = dataset.test
    x = test.x.to(device)
    kind = model.metric_kind
    if kind in ("continuous", "count") and test.y is not None and test.y.dim() == 1:
        y = test.y.to(device)
        n = min(len(x), 5000)
        x, y = x[:n], y[:n]
        s = predictive_samples(model, x, num_samples)["obs"].float()
        # counts: the randomized PIT (uniform under the true model), seeded for repeatability
        gen = torch.Generator().manual_seed(0)
        pit = metrics.pit_values(s, y.float(), discrete=kind == "count", generator=gen)
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
