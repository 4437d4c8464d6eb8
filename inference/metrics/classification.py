"""Classification metrics: accuracy, log loss, Brier score, reliability data and ECEs."""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import _PROB_TOL, _shape

__all__ = [
    "accuracy",
    "log_loss",
    "brier_score",
    "reliability_data",
    "expected_calibration_error",
    "classwise_ece",
    "adaptive_ece",
    "classification_metrics",
]


def _labels(y: Tensor, n: int, num_classes: int) -> Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y has shape {_shape(y)}; expected integer labels [N] with N = {n}")
    if y.is_floating_point() and (torch.isnan(y).any() or (y != y.round()).any()):
        raise ValueError("y has non-integer or NaN values; expected integer class labels")
    y = y.long()
    if ((y < 0) | (y >= num_classes)).any():
        raise ValueError(f"y has labels outside [0, {num_classes - 1}]; expected class indices")
    return y


def _probs(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate probs [N] (binary) or [N, C] and labels; return (probs [N, C], labels [N])."""
    probs = torch.as_tensor(probs)
    if probs.ndim not in (1, 2) or probs.shape[0] == 0:
        raise ValueError(f"probs has shape {_shape(probs)}; expected [N] or [N, C]")
    if not probs.is_floating_point():
        probs = probs.to(torch.get_default_dtype())
    if torch.isnan(probs).any():
        raise ValueError("probs contains NaN; expected probabilities in [0, 1]")
    if ((probs < 0) | (probs > 1)).any():
        raise ValueError("probs has values outside [0, 1]; expected probabilities")
    if probs.ndim == 1:
        probs = torch.stack([1 - probs, probs], -1)
    elif ((probs.sum(-1) - 1).abs() > _PROB_TOL).any():
        raise ValueError(
            f"probs rows do not sum to 1 (tolerance {_PROB_TOL:g}); expected [N, C] probabilities"
        )
    return probs, _labels(y, probs.shape[0], probs.shape[1])


def accuracy(probs: Tensor, y: Tensor) -> Tensor:
    """Fraction of argmax predictions equal to y (binary probs [N]: class 1 when p > 0.5)."""
    p, y = _probs(probs, y)
    return (p.argmax(-1) == y).to(p.dtype).mean()


def log_loss(probs: Tensor, y: Tensor, *, logits: bool = False) -> Tensor:
    """Mean negative log-likelihood of the labels (log loss, nats).

    Args:
        probs: probabilities [N] (of class 1) or [N, C]; or logits of the same shapes when
            `logits=True` (then computed stably with log_softmax / logsigmoid).
        y: integer labels [N].
        logits: whether `probs` holds logits.
    """
    if logits:
        z = torch.as_tensor(probs)
        if z.ndim not in (1, 2) or torch.isnan(z).any():
            raise ValueError(f"logits has shape {_shape(z)} or NaN; expected finite [N] or [N, C]")
        z = torch.stack([torch.zeros_like(z), z], -1) if z.ndim == 1 else z
        y = _labels(y, z.shape[0], z.shape[1])
        return -torch.log_softmax(z, -1).gather(1, y[:, None]).mean()
    p, y = _probs(probs, y)
    # Clamp as scikit-learn does so that a confident mistake costs a large but finite loss.
    return -p.gather(1, y[:, None]).clamp_min(torch.finfo(p.dtype).eps).log().mean()


def brier_score(probs: Tensor, y: Tensor) -> Tensor:
    """Brier score. Binary probs [N]: mean (p - y)^2 in [0, 1]. Probs [N, C]: mean over points of
    sum over classes (p_c - onehot_c)^2 in [0, 2] (scikit-learn's multiclass convention).
    """
    binary = torch.as_tensor(probs).ndim == 1
    p, y = _probs(probs, y)
    sq = (p - torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)).pow(2).sum(-1)
    return (sq / 2 if binary else sq).mean()


def _binned(
    conf: Tensor, correct: Tensor, bins: Tensor, n_bins: int
) -> tuple[Tensor, Tensor, Tensor]:
    count = torch.zeros(n_bins, dtype=conf.dtype, device=conf.device).index_add_(
        0, bins, torch.ones_like(conf)
    )
    s_conf = torch.zeros_like(count).index_add_(0, bins, conf)
    s_acc = torch.zeros_like(count).index_add_(0, bins, correct)
    return count, s_conf, s_acc


def _ece(count: Tensor, s_conf: Tensor, s_acc: Tensor, n: int) -> Tensor:
    # sum_b (n_b / N) |acc_b - conf_b| = sum_b |sum acc - sum conf| / N, empty bins adding 0
    return (s_acc - s_conf).abs().sum() / n


def _equal_width_bins(conf: Tensor, n_bins: int) -> Tensor:
    # Bins (lo, hi] as in Guo et al. (2017); confidence 0 goes to the first bin.
    return (torch.ceil(conf * n_bins) - 1).clamp_(0, n_bins - 1).long()


def reliability_data(probs: Tensor, y: Tensor, n_bins: int = 15) -> dict[str, Tensor]:
    """Top-label reliability diagram data over equal-width confidence bins.

    Returns:
        Dict of tensors: bin_edges [n_bins + 1], confidence, accuracy (NaN in empty bins) and
        count [n_bins].
    """
    p, y = _probs(probs, y)
    conf, pred = p.max(-1)
    count, s_conf, s_acc = _binned(
        conf, (pred == y).to(p.dtype), _equal_width_bins(conf, n_bins), n_bins
    )
    return {
        "bin_edges": torch.linspace(0, 1, n_bins + 1, dtype=p.dtype, device=p.device),
        "confidence": s_conf / count,
        "accuracy": s_acc / count,
        "count": count,
    }


def expected_calibration_error(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    """Top-label ECE: sum_b (n_b / N) |accuracy_b - confidence_b| over equal-width bins."""
    p, y = _probs(probs, y)
    conf, pred = p.max(-1)
    stats = _binned(conf, (pred == y).to(p.dtype), _equal_width_bins(conf, n_bins), n_bins)
    return _ece(*stats, len(y))


def classwise_ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    """Classwise ECE: per class c, bin p_c and compare with the frequency of y = c; mean over c."""
    p, y = _probs(probs, y)
    N, C = p.shape
    onehot = torch.nn.functional.one_hot(y, C).to(p.dtype)
    # One index_add over class-offset bins instead of a Python loop over classes.
    bins = (_equal_width_bins(p, n_bins) + n_bins * torch.arange(C, device=p.device)).reshape(-1)
    count, s_conf, s_acc = _binned(p.reshape(-1), onehot.reshape(-1), bins, C * n_bins)
    return _ece(count, s_conf, s_acc, N) / C


def adaptive_ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    """Top-label ECE over equal-mass bins (bin b holds the points of confidence rank
    floor(b N / n_bins) to floor((b + 1) N / n_bins) - 1)."""
    p, y = _probs(probs, y)
    conf, pred = p.max(-1)
    N = len(y)
    rank = torch.empty_like(y).scatter_(
        0, conf.argsort(stable=True), torch.arange(N, device=p.device)
    )
    stats = _binned(conf, (pred == y).to(p.dtype), (rank * n_bins) // N, n_bins)
    return _ece(*stats, N)


def classification_metrics(
    probs: Tensor | None, y: Tensor, n_bins: int = 15, *, logits: Tensor | None = None
) -> dict[str, float]:
    """All classification metrics at once, as Python floats.

    Args:
        probs: probabilities [N] (binary, of class 1) or [N, C]; may be None if logits given.
        y: integer labels [N].
        n_bins: number of confidence bins for the ECEs.
        logits: optional logits (same shape); used for nll, and for probs when probs is None.

    Returns:
        accuracy, nll (log loss, nats), brier (binary: mean (p - y)^2; multiclass: mean over
        points of the sum over classes, range [0, 2]), ece (top-label, equal width), ece_classwise,
        ece_adaptive (equal mass), mce (max calibration gap over non-empty bins).
    """
    if probs is None:
        if logits is None:
            raise ValueError("probs and logits are both None; expected one of them")
        logits = torch.as_tensor(logits)
        probs = torch.sigmoid(logits) if logits.ndim == 1 else torch.softmax(logits, -1)
    rel = reliability_data(probs, y, n_bins)
    gap = (rel["accuracy"] - rel["confidence"]).abs()
    out = {
        "accuracy": accuracy(probs, y),
        "nll": log_loss(logits, y, logits=True) if logits is not None else log_loss(probs, y),
        "brier": brier_score(probs, y),
        "ece": expected_calibration_error(probs, y, n_bins),
        "ece_classwise": classwise_ece(probs, y, n_bins),
        "ece_adaptive": adaptive_ece(probs, y, n_bins),
        "mce": gap[rel["count"] > 0].max(),
    }
    return {k: float(v) for k, v in out.items()}
