"""Posterior predictive sampling through ``pyro.infer.Predictive``, vectorized and chunked."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive
from torch import Tensor

from zoo.base import ChecksData, plate_nesting

__all__ = ["Prediction", "predict", "predictive_samples", "log_likelihood"]

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class Prediction:
    """Samples of ``obs`` ``[S, N, *event]`` and their summary over the sample dimension."""

    samples: Tensor
    mean: Tensor
    std: Tensor
    quantiles: dict[float, Tensor] = field(default_factory=dict)


def _check(model, x: Tensor, num_samples: int) -> Tensor:
    from zoo.config import ConfigError

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"num_samples must be an integer >= 1; got {num_samples!r}")
    if isinstance(model, ChecksData):  # NaN, shape, width, dtype, empty: as fit refuses them
        x, _ = model.check_data(x, None)
    return x


def _device_of(model) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def predictive_samples(
    model,
    x: Tensor,
    num_samples: int = 100,
    *,
    parallel: bool = True,
    chunk_size: int | None = None,
    return_sites: tuple[str, ...] = ("obs",),
    use_guide: bool = True,
) -> dict[str, Tensor]:
    """``Predictive(model, guide=model.guide, num_samples)(x)``, in chunks of rows of ``x``.

    Chunking over data points bounds memory (``S x chunk`` values at a time); each site's
    samples are concatenated along the data dimension (dim 1). ``x`` is checked as
    :func:`inference.fit` checks it (a zoo model's ``check_data``).
    """
    x = _check(model, x, num_samples)
    was_training = model.training
    model.eval()
    x = x.to(_device_of(model))
    guide = model.guide if use_guide else None
    predictive = Predictive(
        model,
        guide=guide,
        num_samples=num_samples,
        parallel=parallel,
        return_sites=list(return_sites),
    )
    chunk = chunk_size or len(x)
    parts: dict[str, list[Tensor]] = {s: [] for s in return_sites}
    for start in range(0, len(x), chunk):
        out = predictive(x[start : start + chunk])
        for s in return_sites:
            parts[s].append(out[s])
    model.train(was_training)
    return {s: torch.cat(v, dim=1) if len(v) > 1 else v[0] for s, v in parts.items()}


def predict(
    model,
    x: Tensor,
    num_samples: int = 100,
    *,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
    parallel: bool = True,
    chunk_size: int | None = None,
) -> Prediction:
    """Posterior predictive samples of ``obs`` for inputs ``x`` and their summary.

    Arguments:
        model: a zoo model (or any PyroModule with ``forward(x, y=None)`` and ``.guide``).
        x: inputs ``[N, ...]``.
        num_samples: predictive samples S.
        quantiles: levels in (0, 1) summarized per data point.
        parallel: vectorize over samples with a plate (``Predictive(parallel=True)``).
        chunk_size: rows of ``x`` per Predictive call (bounds memory).

    Example:
        >>> pred = predict(model, x_test, num_samples=200)
        >>> pred.samples.shape, pred.quantiles[0.95].shape
    """
    s = predictive_samples(model, x, num_samples, parallel=parallel, chunk_size=chunk_size)
    samples = s["obs"]
    values = samples.float() if not samples.is_floating_point() else samples
    qs = torch.tensor(quantiles, dtype=values.dtype, device=values.device)
    q = torch.quantile(values, qs, dim=0) if quantiles else None
    return Prediction(
        samples=samples,
        mean=values.mean(0),
        std=values.std(0) if num_samples > 1 else torch.zeros_like(values[0]),
        quantiles={level: q[i] for i, level in enumerate(quantiles)} if q is not None else {},
    )


@torch.no_grad()
def log_likelihood(model, x: Tensor, y: Tensor, num_samples: int = 100) -> Tensor:
    """``log p(y_n | x_n, theta_s)`` for S draws theta_s of the guide: a ``[S, N]`` tensor.

    Works for any model/guide pair: the guide is run under a plate of S particles and the
    model replayed against it, so the observed site's per-point log density is read off the
    trace. For models without latent variables every row is the same.
    """
    was_training = model.training
    model.eval()
    nesting = plate_nesting(model)
    with pyro.plate("_particles", num_samples, dim=-(nesting + 1)):
        guide_trace = poutine.trace(model.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, y)
    site = model_trace.nodes["obs"]
    lp = site["fn"].log_prob(site["value"])
    model.train(was_training)
    return lp.expand(num_samples, *lp.shape[-1:]) if lp.dim() == 1 else lp.reshape(num_samples, -1)
