"""Evaluation plots (calibration, reliability, intervals, PIT, training, confusion) saved as PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = [
    "calibration_curve",
    "reliability_diagram",
    "prediction_intervals",
    "pit_histogram",
    "training_curve",
    "confusion_matrix",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _array(x: ArrayLike) -> np.ndarray:
    """A float64 numpy copy of a tensor (any device) or array, shape kept."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _np(x: ArrayLike) -> np.ndarray:
    """A float numpy copy of a tensor (any device) or array, flattened to 1-D."""
    return _array(x).reshape(-1)


def _subplots(*args: Any, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A ``matplotlib.figure.Figure`` and its axes, made without pyplot: no backend is chosen
    and no global figure list grows, so a notebook's own backend and figures are untouched."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` as a PNG (rendered by Agg whatever the session's backend is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def calibration_curve(expected: ArrayLike, observed: ArrayLike, path: str | Path) -> Path:
    """Observed vs expected proportion over quantile levels, with the ideal diagonal.

    Args:
        expected: expected proportions [B] (e.g. from `metrics.calibration_proportions`).
        observed: observed proportions [B].
        path: PNG file to write.

    Returns:
        The path written.
    """
    e, o = _np(expected), _np(observed)
    fig, ax = _subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="ideal")
    ax.plot(e, o, color="C0", label="model")
    ax.fill_between(e, e, o, color="C0", alpha=0.2, label="miscalibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="expected proportion", ylabel="observed proportion")
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    return _save(fig, path)


def reliability_diagram(data: Mapping[str, ArrayLike], path: str | Path) -> Path:
    """Accuracy vs confidence per bin, with the gap to the diagonal and the bin counts below.

    Args:
        data: `metrics.reliability_data` output: bin_edges [B + 1], confidence, accuracy and
            count [B] (empty bins, with NaN confidence and accuracy, are not drawn).
        path: PNG file to write.

    Returns:
        The path written.
    """
    edges, count = _np(data["bin_edges"]), _np(data["count"])
    conf, acc = _np(data["confidence"]), _np(data["accuracy"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    full = count > 0
    fig, (top, bottom) = _subplots(
        2, 1, figsize=(4.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="ideal")
    top.bar(centers[full], acc[full], width[full], edgecolor="k", color="C0", label="accuracy")
    gap = conf[full] - acc[full]
    top.bar(centers[full], gap, width[full], bottom=acc[full], color="C3", alpha=0.3, label="gap")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.set_title("Reliability diagram")
    top.legend(loc="upper left")
    bottom.bar(centers, count, width, edgecolor="k", color="C7")
    bottom.set(xlabel="confidence", ylabel="count")
    return _save(fig, path)


def prediction_intervals(
    x: ArrayLike,
    y: ArrayLike,
    mean: ArrayLike,
    lower50: ArrayLike,
    upper50: ArrayLike,
    lower90: ArrayLike,
    upper90: ArrayLike,
    path: str | Path,
    truth: ArrayLike | None = None,
) -> Path:
    """Predictive mean with 50% and 90% bands over a 1-D input, the data, and optionally the truth.

    Args:
        x: 1-D inputs [N] (need not be sorted).
        y: observed targets [N].
        mean: predictive mean [N].
        lower50, upper50: 50% central interval bounds [N].
        lower90, upper90: 90% central interval bounds [N].
        path: PNG file to write.
        truth: optional noise-free target function at x [N].

    Returns:
        The path written.
    """
    xs = _np(x)
    order = np.argsort(xs, kind="stable")
    xs = xs[order]
    fig, ax = _subplots(figsize=(7, 4))
    ax.fill_between(
        xs, _np(lower90)[order], _np(upper90)[order], alpha=0.2, color="C0", label="90%"
    )
    ax.fill_between(
        xs, _np(lower50)[order], _np(upper50)[order], alpha=0.4, color="C0", label="50%"
    )
    ax.plot(xs, _np(mean)[order], color="C0", label="mean")
    if truth is not None:
        ax.plot(xs, _np(truth)[order], "--", color="k", label="truth")
    ax.scatter(xs, _np(y)[order], s=6, color="C1", zorder=3, label="data")
    ax.set(xlabel="x", ylabel="y")
    ax.set_title("Predictive intervals")
    ax.legend(loc="best")
    return _save(fig, path)


def pit_histogram(pit: ArrayLike, path: str | Path, n_bins: int = 20) -> Path:
    """Histogram (density) of PIT values; a calibrated model is flat at 1.

    Args:
        pit: PIT values in [0, 1] [N].
        path: PNG file to write.
        n_bins: number of equal-width bins.

    Returns:
        The path written.
    """
    fig, ax = _subplots(figsize=(5, 3.5))
    ax.hist(_np(pit), bins=n_bins, range=(0, 1), density=True, color="C0", edgecolor="k")
    ax.axhline(1.0, ls="--", color="gray", label="uniform")
    ax.set(xlim=(0, 1), xlabel="PIT", ylabel="density")
    ax.set_title("PIT histogram")
    ax.legend(loc="upper right")
    return _save(fig, path)


def training_curve(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Training loss (and validation metric when present) per epoch.

    Args:
        history: one dict per epoch with keys "epoch", "loss" and optionally "val"
            (entries whose "val" is missing or None are skipped for the validation line).
        path: PNG file to write.

    Returns:
        The path written.
    """
    epochs = [float(h["epoch"]) for h in history]
    loss = [float(h["loss"]) for h in history]
    val = [(float(h["epoch"]), float(h["val"])) for h in history if h.get("val") is not None]
    fig, ax = _subplots(figsize=(6, 3.5))
    ax.plot(epochs, loss, marker=".", label="train loss")
    if val:
        # Validation is often on another scale (e.g. NLL vs ELBO loss): give it its own axis.
        twin = ax.twinx()
        twin.plot(*zip(*val, strict=True), marker=".", color="C1", label="val")
        twin.set_ylabel("val")
        twin.legend(loc="upper center")
    ax.set(xlabel="epoch", ylabel="loss")
    ax.set_title("Training curve")
    ax.legend(loc="upper right")
    return _save(fig, path)


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int, path: str | Path
) -> Path:
    """Confusion matrix of counts (rows: true class, columns: predicted class).

    Args:
        y_true: integer labels [N].
        y_pred: integer predicted labels [N].
        num_classes: number of classes C.
        path: PNG file to write.

    Returns:
        The path written.
    """
    t, p = _np(y_true).astype(np.int64), _np(y_pred).astype(np.int64)
    if t.shape != p.shape or t.min(initial=0) < 0 or p.min(initial=0) < 0:
        raise ValueError("y_true and y_pred must be non-negative labels of the same shape [N]")
    if max(t.max(initial=0), p.max(initial=0)) >= num_classes:
        raise ValueError(f"labels must be < num_classes={num_classes}")
    cm = np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, -1)
    size = 1.5 + 0.45 * num_classes
    fig, ax = _subplots(figsize=(min(size, 12), min(size, 12)))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if num_classes <= 20:  # beyond that the numbers no longer fit in the cells
        for i, j in np.ndindex(cm.shape):
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", xticks=range(num_classes), yticks=range(num_classes))
    ax.set_title("Confusion matrix")
    return _save(fig, path)
