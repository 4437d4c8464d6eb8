"""Post-hoc temperature scaling: one temperature, fitted on held-out data, for any logit model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.base import DataError, HasTemperature, ZooModel
from zoo.config import ConfigError

__all__ = [
    "TemperatureFit",
    "check_temperature_model",
    "fit_temperature",
    "raw_logits",
    "scaled_nll",
    "before_after",
]

_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass
class TemperatureFit:
    """The fitted temperature and the held-out NLL (nats per point) before and after.

    ``applied`` is False when the held-out NLL kept falling down to the smallest temperature
    searched (every held-out point classified with growing confidence): the data then say
    nothing about how sharp the model may be, and the temperature is left as it was.
    """

    temperature: float
    nll_before: float
    nll_after: float
    applied: bool = True

    @property
    def summary(self) -> str:
        nll = f"validation NLL {self.nll_before:.4f} -> {self.nll_after:.4f}"
        if self.applied:
            return f"temperature {self.temperature:.3f} ({nll})"
        return (
            f"temperature left at {self.temperature:.3f}: the validation NLL only falls as T -> 0 "
            "(no confident mistakes to calibrate on)"
        )


def check_temperature_model(model) -> None:
    """Raises ConfigError unless ``model`` classifies and has ``logits(x)`` and a ``temperature``.

    The contract: ``model.logits(x)`` returns logits already divided by ``model.temperature``
    (a scalar buffer, so it is saved in the checkpoint): ``[N]`` for binary models (the
    logit of class 1) or ``[N, C]``.
    """
    name = type(model).__name__
    if not isinstance(model, ZooModel) or model.metric_kind != "class":
        raise ConfigError(f"temperature scaling applies to classifiers; {name} does not classify")
    t = model.temperature if isinstance(model, HasTemperature) else None
    if not torch.is_tensor(t) or t.numel() != 1:
        raise ConfigError(
            f"temperature scaling needs model.logits(x) and a scalar model.temperature buffer; "
            f"{name} lacks them"
        )


@torch.no_grad()
def raw_logits(model, x: Tensor, chunk_size: int = 10000) -> Tensor:
    """The model's logits at temperature 1 (its own temperature is left as it was)."""
    was_training, saved = model.training, model.temperature.clone()
    model.eval()
    model.temperature.fill_(1.0)
    try:
        return torch.cat(
            [model.logits(x[i : i + chunk_size]) for i in range(0, len(x), chunk_size)]
        )
    finally:
        model.temperature.copy_(saved)
        model.train(was_training)


def scaled_nll(logits: Tensor, y: Tensor, temperature: float | Tensor) -> Tensor:
    """Mean NLL of labels ``y`` under ``logits / temperature`` (``[N]`` binary or ``[N, C]``)."""
    z = logits / temperature
    if z.dim() == 1:
        return F.binary_cross_entropy_with_logits(z, y.to(z.dtype))
    return F.cross_entropy(z, y.long())


@torch.no_grad()
def fit_temperature(
    model, split, *, bounds: tuple[float, float] = (0.01, 100.0), tol: float = 1e-5
) -> TemperatureFit:
    """Fits ``model.temperature`` to minimize the NLL of a held-out split (usually validation).

    The NLL of ``softmax(z / T)`` is convex in ``1 / T``, hence unimodal in ``log T``: a
    golden-section search over ``log T`` in ``bounds`` finds the minimum without gradients,
    and a model that is perfect on the split stops at the bound instead of running to T = 0;
    such a fit is not applied (see :class:`TemperatureFit`). Argmax, hence accuracy, does not
    change with ``T > 0``.

    Arguments:
        model: a classifier with ``logits(x)`` and a ``temperature`` buffer (see
            :func:`check_temperature_model`).
        split: held-out data with ``.x`` and ``.y`` (or an ``(x, y)`` pair), not the training
            data, on which a model is overconfident by construction.
        bounds: the range of temperatures searched.
        tol: the search stops when the bracket in ``log T`` is narrower than this.

    Example:
        >>> fit(model, data.train, data.val)
        >>> fit_temperature(model, data.val).temperature
        1.7
    """
    check_temperature_model(model)
    x, y = (split.x, split.y) if hasattr(split, "x") else split
    if y is None or len(y) == 0:
        raise DataError("temperature scaling needs a labelled, non-empty validation split")
    device = model.temperature.device
    x, y = model.check_data(x.to(device), torch.as_tensor(y).to(device))
    z = raw_logits(model, x).double()

    def nll(log_t: float) -> float:
        return float(scaled_nll(z, y, math.exp(log_t)))

    before = float(scaled_nll(z, y, float(model.temperature)))
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > tol:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(b)
    log_t = (lo + hi) / 2
    if log_t - math.log(bounds[0]) < 1e-3:
        return TemperatureFit(float(model.temperature), before, before, applied=False)
    model.temperature.fill_(math.exp(log_t))
    return TemperatureFit(math.exp(log_t), before, nll(log_t))


def before_after(before: dict[str, Any], fitted: TemperatureFit) -> dict[str, Any]:
    """Metrics to add to a run's ``metrics.json``: the ones measured before temperature scaling
    with a ``_before_ts`` suffix, the temperature and the validation NLL before and after."""
    out = {f"{k}_before_ts": v for k, v in before.items() if isinstance(v, float)}
    out.update(
        temperature=fitted.temperature,
        temperature_applied=fitted.applied,
        val_nll_before_ts=fitted.nll_before,
        val_nll_after_ts=fitted.nll_after,
    )
    return out
