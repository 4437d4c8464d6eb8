"""Density-estimation data: 2-D moons, rings and a Gaussian mixture with their true log densities,
and the 8x8 digits dequantized."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .base import Dataset, Split

__all__ = [
    "moons_sample",
    "moons_log_prob",
    "rings_sample",
    "rings_log_prob",
    "mixture_sample",
    "mixture_log_prob",
    "load_moons",
    "load_rings",
    "load_gaussian_mixture",
    "load_digits_dequantized",
    "DIGITS_LEVELS",
]

_LOG_2PI = math.log(2 * math.pi)
MOONS_NOISE = 0.1
RINGS_RADII = (0.5, 1.25, 2.0)
RINGS_NOISE = 0.08
# A 2-D mixture of five correlated Gaussians: overlapping modes of different shapes.
MIX_WEIGHTS = (0.3, 0.2, 0.2, 0.15, 0.15)
MIX_LOCS = ((-1.2, -0.8), (1.3, -1.0), (0.2, 1.4), (-0.3, 0.1), (1.2, 0.9))
MIX_TRILS = (  # lower Cholesky factors of the covariances
    ((0.5, 0.0), (0.3, 0.3)),
    ((0.35, 0.0), (-0.2, 0.4)),
    ((0.6, 0.0), (0.0, 0.25)),
    ((0.25, 0.0), (0.0, 0.25)),
    ((0.3, 0.0), (0.25, 0.2)),
)
DIGITS_LEVELS = 17  # sklearn's digits have intensities 0..16


# --- two moons ---------------------------------------------------------------------------
def _moon_points(theta: Tensor, upper: Tensor) -> Tensor:
    """Points on the upper or lower arc (sklearn's make_moons shape), centred at the origin."""
    c, s = torch.cos(theta), torch.sin(theta)
    x = torch.where(upper, c, 1 - c) - 0.5
    y = torch.where(upper, s, 0.5 - s) - 0.25
    return torch.stack([x, y], -1)


def moons_sample(n: int, generator: torch.Generator) -> Tensor:
    """Two moons: a moon at random, an angle uniform on [0, pi], plus N(0, 0.1^2 I) noise."""
    upper = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    theta = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    noise = MOONS_NOISE * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (_moon_points(theta, upper) + noise).float()


def moons_log_prob(x: Tensor, nodes: int = 128, chunk: int = 4096) -> Tensor:
    """log p(x) of :func:`moons_sample`: the angle integrated out by Gauss-Legendre quadrature.

    The integrand is smooth on the scale of the noise (0.1), so ``nodes`` = 128 points per moon
    give the log density to better than 1e-6 nats (checked against a 16k-point midpoint rule);
    float64, shape ``[N]``.
    """
    import numpy as np

    t, w = np.polynomial.legendre.leggauss(nodes)  # on [-1, 1]
    theta = torch.as_tensor((t + 1) * math.pi / 2).repeat(2)
    upper = torch.arange(2 * nodes) < nodes
    centres = _moon_points(theta, upper)  # [2 * nodes, 2]
    # p(x) = sum over moons of 1/2 * (1/pi) * integral_0^pi N(x; c(theta)) dtheta
    log_w = torch.as_tensor(np.log(w / 4)).repeat(2)
    out = []
    for part in x.double().split(chunk):
        sq = ((part[:, None, :] - centres) ** 2).sum(-1)
        lp = -0.5 * sq / MOONS_NOISE**2 - 2 * math.log(MOONS_NOISE) - _LOG_2PI
        out.append(torch.logsumexp(lp + log_w, -1))
    return torch.cat(out)


# --- concentric rings --------------------------------------------------------------------
def _ring_weights() -> Tensor:
    r = torch.tensor(RINGS_RADII, dtype=torch.float64)
    return r / r.sum()  # points evenly spread along the total arc length


def rings_sample(n: int, generator: torch.Generator) -> Tensor:
    """Rings: radius r_k + 0.08 eps for a ring k drawn with weight prop. to r_k, angle uniform."""
    k = torch.multinomial(_ring_weights(), n, replacement=True, generator=generator)
    r = torch.tensor(RINGS_RADII, dtype=torch.float64)[k]
    r = r + RINGS_NOISE * torch.randn(n, generator=generator, dtype=torch.float64)
    theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], -1).float()


def rings_log_prob(x: Tensor) -> Tensor:
    """Exact log p(x) of :func:`rings_sample`, shape ``[N]`` (float64).

    A point at distance rho comes from (r, theta) = (rho, phi) or (-rho, phi + pi), with
    Jacobian |r|: p(x) = sum_k w_k [N(rho; r_k, s) + N(-rho; r_k, s)] / (2 pi rho).
    """
    rho = x.double().norm(dim=-1, keepdim=True).clamp_min(1e-300)
    r = torch.tensor(RINGS_RADII, dtype=torch.float64)
    norm = -math.log(RINGS_NOISE) - 0.5 * _LOG_2PI
    lp_pos = -0.5 * ((rho - r) / RINGS_NOISE) ** 2 + norm
    lp_neg = -0.5 * ((rho + r) / RINGS_NOISE) ** 2 + norm
    lp = torch.logaddexp(lp_pos, lp_neg) + _ring_weights().log()
    return torch.logsumexp(lp, -1) - torch.log(2 * math.pi * rho[:, 0])


# --- Gaussian mixture --------------------------------------------------------------------
def _mixture():
    import pyro.distributions as dist

    weights = torch.tensor(MIX_WEIGHTS, dtype=torch.float64)
    comps = dist.MultivariateNormal(
        torch.tensor(MIX_LOCS, dtype=torch.float64),
        scale_tril=torch.tensor(MIX_TRILS, dtype=torch.float64),
    )
    return dist.MixtureSameFamily(dist.Categorical(probs=weights), comps)


def mixture_sample(n: int, generator: torch.Generator) -> Tensor:
    """Draws from the five-component Gaussian mixture (seeded by ``generator``)."""
    k = torch.multinomial(
        torch.tensor(MIX_WEIGHTS, dtype=torch.float64), n, True, generator=generator
    )
    eps = torch.randn(n, 2, 1, generator=generator, dtype=torch.float64)
    tril = torch.tensor(MIX_TRILS, dtype=torch.float64)[k]
    return (torch.tensor(MIX_LOCS, dtype=torch.float64)[k] + (tril @ eps)[..., 0]).float()


def mixture_log_prob(x: Tensor) -> Tensor:
    """Exact log p(x) of the mixture, shape ``[N]`` (float64)."""
    return _mixture().log_prob(x.double())


# --- loaders -----------------------------------------------------------------------------
def _density2d(name, sample, log_prob, seed, n_train, n_val, n_test) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    train, val, test = (Split(sample(n, g)) for n in (n_train, n_val, n_test))
    info = {"true_log_prob": "exact" if name != "moons" else "quadrature over the angle"}
    return Dataset(name, "density", train, val, test, true_log_prob=log_prob, info=info)


def _loader(name: str, sample: Callable, log_prob: Callable) -> Callable[..., Dataset]:
    def load(
        seed: int = 0,
        n_train: int = 10000,
        n_val: int = 2000,
        n_test: int = 20000,
    ) -> Dataset:
        return _density2d(name, sample, log_prob, seed, n_train, n_val, n_test)

    load.__name__ = f"load_{name}"
    load.__doc__ = f"{name}: independent seeded train / val / test draws; y is None."
    return load


load_moons = _loader("moons", moons_sample, moons_log_prob)
load_rings = _loader("rings", rings_sample, rings_log_prob)
load_gaussian_mixture = _loader("gaussian_mixture", mixture_sample, mixture_log_prob)


def load_digits_dequantized(
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> Dataset:
    """The 8x8 digits as a 64-D density, uniformly dequantized: x = v + u, v in 0..16, u ~ U[0, 1).

    Convention: x stays in units of the 17 intensity levels, so a density q(x) gives the
    discrete model P(v) = integral of q over the unit cube at v, and E_u[-log q(v + u)] is an
    upper bound on -log P(v): the NLL in nats and its bits per dimension ``nll / (64 log 2)``
    (between 0 and log2(17) = 4.09 for any sensible model) are those of the 17-level pixels.
    A model that rescales x must count the Jacobian (the flow does: ``info["shift"]`` and
    ``info["scale"]`` map x to [-2, 2) inside it). Labels are y; the split is the one of
    ``digits``, the noise is seeded.
    """
    from .images import load_digits

    data = load_digits(seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)
    g = torch.Generator().manual_seed(seed)
    splits = []
    for s in (data.train, data.val, data.test):
        v = torch.round(s.x.double() * (DIGITS_LEVELS - 1))  # back to the integer levels 0..16
        u = torch.rand(v.shape, generator=g, dtype=torch.float64)
        splits.append(Split((v + u).float(), s.y))
    info = {
        "source": "sklearn.datasets.load_digits",
        "levels": DIGITS_LEVELS,
        "pixel_range": [0, DIGITS_LEVELS],
        "shift": DIGITS_LEVELS / 2,
        "scale": DIGITS_LEVELS / 4,
        "convention": "x = v + U[0,1) in level units; bits/dim = nll / (64 ln 2), 17 levels",
    }
    return Dataset(
        "digits_dequantized", "density", *splits, num_classes=10, image_shape=(8, 8), info=info
    )
