"""Epistemic and aleatoric uncertainty from per-draw predictive distributions (batch [S, N])."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, Independent

from zoo.base import HasPredictiveComponents

__all__ = [
    "RegressionUncertainty",
    "ClassUncertainty",
    "decompose",
    "regression_uncertainty",
    "class_uncertainty",
    "predictive_uncertainty",
    "uncertainty_1d",
]


@dataclass
class RegressionUncertainty:
    """The law of total variance over S parameter draws, per point (``[N]`` or ``[N, D]``).

    ``total = epistemic + aleatoric``: epistemic is the variance over draws of the predictive
    mean, aleatoric the mean over draws of the predictive variance (the noise).
    """

    mean: Tensor
    epistemic: Tensor
    aleatoric: Tensor

    @property
    def total(self) -> Tensor:
        return self.epistemic + self.aleatoric

    @property
    def std(self) -> Tensor:
        return self.total.sqrt()

    @property
    def epistemic_std(self) -> Tensor:
        return self.epistemic.sqrt()

    @property
    def aleatoric_std(self) -> Tensor:
        return self.aleatoric.sqrt()


@dataclass
class ClassUncertainty:
    """The entropy split of a mixture of categoricals, per point, in nats.

    ``total`` is the entropy of the mean probabilities; ``aleatoric`` (expected entropy) the
    mean entropy of each draw's probabilities; ``epistemic`` (mutual information between the
    label and the parameters) their difference, >= 0.
    """

    probs: Tensor
    total: Tensor
    aleatoric: Tensor

    @property
    def epistemic(self) -> Tensor:
        return (self.total - self.aleatoric).clamp_min(0.0)

    @property
    def mutual_information(self) -> Tensor:
        return self.epistemic

    @property
    def expected_entropy(self) -> Tensor:
        return self.aleatoric


def _entropy(probs: Tensor) -> Tensor:
    return -torch.special.xlogy(probs, probs).sum(-1)


def class_uncertainty(probs: Tensor) -> ClassUncertainty:
    """Splits the predictive entropy of class probabilities ``[S, N, C]`` over S draws."""
    if probs.dim() < 2:
        raise ValueError(f"probs must be [S, N, C] (or [S, N] for binary); got {list(probs.shape)}")
    if probs.dim() == 2:  # binary: the probability of class 1
        probs = torch.stack([1 - probs, probs], -1)
    mean = probs.mean(0)
    return ClassUncertainty(mean, _entropy(mean), _entropy(probs).mean(0))


def regression_uncertainty(d: Distribution) -> RegressionUncertainty:
    """Splits the variance of the mixture of ``d`` (batch ``[S, N]``) over its first dim."""
    means = d.mean
    if means.dim() < 2:
        raise ValueError(f"need a distribution with batch [S, N]; got {list(d.batch_shape)}")
    variances = d.variance
    s = means.shape[0]
    epistemic = means.var(0, unbiased=False) if s > 1 else torch.zeros_like(means[0])
    return RegressionUncertainty(means.mean(0), epistemic, variances.mean(0))


def _base(d: Distribution) -> Distribution:
    while isinstance(d, Independent):
        d = d.base_dist
    return d


def decompose(d: Distribution) -> RegressionUncertainty | ClassUncertainty:
    """The decomposition that fits ``d``: entropies for class labels, variances otherwise."""
    base = _base(d)
    if isinstance(base, Categorical | Bernoulli):
        return class_uncertainty(base.probs)
    return regression_uncertainty(d)


@torch.no_grad()
def predictive_uncertainty(
    model, x: Tensor, num_samples: int = 200
) -> RegressionUncertainty | ClassUncertainty:
    """Decomposes a model's predictive uncertainty at ``x`` over ``num_samples`` draws.

    The model exposes ``predictive_components(x, num_samples)``: the predictive distribution
    of each posterior draw, batch ``[S, N]``.

    Example:
        >>> u = predictive_uncertainty(model, x_grid, num_samples=500)
        >>> u.epistemic_std.shape, u.std.shape
    """
    if not isinstance(model, HasPredictiveComponents):
        raise TypeError(
            f"{type(model).__name__} has no predictive_components(x, num_samples); "
            "uncertainty decomposition needs per-draw predictive distributions"
        )
    return decompose(model.predictive_components(x, num_samples))


@torch.no_grad()
def uncertainty_1d(
    model,
    x_train: Tensor,
    y_train: Tensor,
    path: str | Path,
    *,
    grid: tuple[float, float] = (-6.0, 6.0),
    num_points: int = 400,
    num_samples: int = 500,
    shade: tuple[float, float] | None = None,
    truth=None,
) -> Path:
    """Plots the predictive mean with 2-sigma total and epistemic bands on a 1-D grid.

    Arguments:
        model: a model with ``predictive_components`` and one input feature.
        x_train, y_train: the training points to scatter.
        path: where to write the PNG.
        grid: the plotted input range.
        num_points, num_samples: grid size and posterior draws.
        shade: an input interval to shade (for example a gap without data).
        truth: optional callable ``f(x) -> y`` drawn as the true mean function.
    """
    from .plots import _save, _subplots

    device = next(iter(list(model.parameters()) + list(model.buffers()))).device
    xs = torch.linspace(*grid, num_points, device=device)[:, None]
    u = predictive_uncertainty(model, xs, num_samples)
    x, mean = xs[:, 0].cpu(), u.mean.cpu()
    total, epi = u.std.cpu(), u.epistemic_std.cpu()
    fig, ax = _subplots(figsize=(7, 4))
    if shade is not None:
        ax.axvspan(*shade, color="0.9", label="no data")
    ax.fill_between(x, mean - 2 * total, mean + 2 * total, alpha=0.25, label="total ±2σ")
    ax.fill_between(x, mean - 2 * epi, mean + 2 * epi, alpha=0.5, label="epistemic ±2σ")
    ax.plot(x, mean, lw=1.5, label="predictive mean")
    if truth is not None:
        ax.plot(x, truth(x), "k--", lw=1, label="true mean")
    ax.scatter(x_train.reshape(-1).cpu(), y_train.reshape(-1).cpu(), s=6, c="k", alpha=0.5)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
