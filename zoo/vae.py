"""Variational autoencoder: MLP encoder q(z | x), MLP decoder p(x | z), prior N(0, I)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import Tensor, nn

from .base import DataError, MetricKind, ZooModel, check_inputs
from .nets import MLP

__all__ = ["VAEConfig", "VAE", "PixelBernoulli"]


class PixelBernoulli(dist.Bernoulli):
    """Bernoulli log-likelihood of pixel intensities in [0, 1] (the binary cross-entropy).

    The usual likelihood of VAEs on grey-scale MNIST (Pyro's own example uses it): for an
    intensity v it scores ``v log p + (1 - v) log(1 - p)``. Its support is widened from
    {0, 1} to [0, 1] so that Pyro's validation stays on and still rejects pixels outside
    [0, 1] (0-255 images, standardized images); samples are binary images.
    """

    support = constraints.unit_interval


@dataclass
class VAEConfig:
    """Config of :class:`VAE`.

    Arguments:
        input_dim: pixels per image (rows of ``x`` are flattened images with values in [0, 1]).
        latent_dim: size of z.
        hidden: width of each hidden layer of the encoder and of the decoder.
        depth: hidden layers of the encoder and of the decoder.
        activation: relu, tanh, silu, gelu, softplus or elu.
        likelihood: ``bernoulli`` (cross-entropy on intensities), ``continuous_bernoulli``
            (normalized on [0, 1]) or ``normal`` (one learned scale per pixel).
        binarize: dynamic binarization: while training, observe a fresh Bernoulli draw of
            the pixels at every step (the encoder sees the intensities).
        kl_warmup: fraction of the epochs over which the weight of the KL term rises
            linearly from 0 to 1 (0: no warm-up).
        iwae_samples: importance samples K of the IWAE bound in evaluation.
    """

    input_dim: int = 784
    latent_dim: int = 50
    hidden: int = 512
    depth: int = 2
    activation: str = "elu"
    likelihood: Literal["bernoulli", "continuous_bernoulli", "normal"] = "bernoulli"
    binarize: bool = False
    kl_warmup: float = 0.0
    iwae_samples: int = 1000

    def validate(self) -> None:
        if min(self.input_dim, self.latent_dim, self.hidden, self.iwae_samples) < 1:
            raise ValueError("input_dim, latent_dim, hidden and iwae_samples must be >= 1")
        if self.depth < 0 or not 0.0 <= self.kl_warmup < 1.0:
            raise ValueError("depth must be >= 0 and kl_warmup in [0, 1)")
        if self.binarize and self.likelihood != "bernoulli":
            raise ValueError("binarize=true needs likelihood=bernoulli")


class VAE(ZooModel):
    """A VAE as a Pyro model/guide pair: latent site ``z``, observed site ``obs``.

    ``forward(x, y)`` is the generative model (z ~ N(0, I), y ~ p(y | z)); ``guide(x, y)``
    encodes x. The trainer passes y = x. Without a guide, ``Predictive`` samples the prior
    (x only sets how many images); with it, it reconstructs x.

    Arguments:
        config: a :class:`VAEConfig`; keyword overrides are applied on top.

    Example:
        >>> vae = VAE(input_dim=64, latent_dim=8)
        >>> Predictive(vae, guide=vae.guide, num_samples=3)(x)["obs"].shape  # reconstructions
        torch.Size([3, N, 64])
        >>> vae.log_weights(x, k=100).shape  # IWAE: logsumexp over dim 0 minus log 100
        torch.Size([100, N])
    """

    Config = VAEConfig
    description = "variational autoencoder: MLP encoder/decoder, N(0, I) prior, ELBO and IWAE"
    target_is_input = True
    default_dataset = "digits"
    # tuned on MNIST [0, 9000) (benchmarks/vae.py); also fine on 8x8 digits
    default_fit = {"epochs": 50, "lr": 3e-3, "schedule": "cosine", "batch_size": 128}
    tiny_config = {"input_dim": 16, "latent_dim": 2, "hidden": 8, "iwae_samples": 10}

    def __init__(self, config: VAEConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.encoder = MLP(c.input_dim, 2 * c.latent_dim, c.hidden, c.depth, c.activation)
        self.decoder = MLP(c.latent_dim, c.input_dim, c.hidden, c.depth, c.activation)
        if c.likelihood == "normal":
            self.raw_pixel_scale = nn.Parameter(torch.zeros(c.input_dim))
        self.register_buffer("prior_loc", torch.zeros(c.latent_dim))
        self.register_buffer("prior_scale", torch.ones(c.latent_dim))
        self.kl_weight = 1.0

    @property
    def metric_kind(self) -> MetricKind:
        return "density"

    @property
    def iwae_samples(self) -> int:
        return int(self.config.iwae_samples)

    # --- networks ------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Location and scale of q(z | x), each ``[..., N, latent_dim]``."""
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        return loc, F.softplus(raw) + 1e-4

    def decode(self, z: Tensor) -> dist.TorchDistribution:
        """p(x | z): a distribution with event shape ``[input_dim]``."""
        out = self.decoder(z)
        kind = self.config.likelihood
        if kind == "bernoulli":
            d = PixelBernoulli(logits=out)
        elif kind == "continuous_bernoulli":
            d = dist.ContinuousBernoulli(logits=out)
        else:
            d = dist.Normal(out, F.softplus(self.raw_pixel_scale) + 1e-3)
        return d.to_event(1)

    def prior(self) -> dist.TorchDistribution:
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    # --- the Pyro program ----------------------------------------------------------------
    def set_epoch(self, epoch: int, epochs: int) -> None:
        """KL warm-up: the KL term's weight rises linearly over the first epochs (1-based)."""
        ramp = self.config.kl_warmup * epochs
        self.kl_weight = 1.0 if ramp < 1 else min(1.0, epoch / ramp)

    def _kl_scale(self):
        # the same scale on z in model and guide weights the whole KL term
        if self.training and self.kl_weight < 1.0:
            return poutine.scale(scale=self.kl_weight)
        return contextlib.nullcontext()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is not None and self.training and self.config.binarize:
            y = torch.bernoulli(y)
        with self.data_plate(x):
            with self._kl_scale():
                z = pyro.sample("z", self.prior())
            return pyro.sample("obs", self.decode(z), obs=y)

    def guide(self, x: Tensor, y: Tensor | None = None) -> None:
        loc, scale = self.encode(x)
        with self.data_plate(x), self._kl_scale():
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # --- evaluation ----------------------------------------------------------------------
    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """Importance log-weights ``log p(x, z_k) - log q(z_k | x)``, ``[k, N]``, z_k ~ q.

        Their mean over k is the ELBO, ``logsumexp(0) - log k`` the IWAE bound on log p(x).
        """
        rows = max(1, 2**24 // (k * x.shape[-1]))  # bounds memory to ~k * rows * pixels
        if len(x) > rows:
            return torch.cat([self.log_weights(c, k) for c in x.split(rows)], -1)
        loc, scale = self.encode(x)
        q = dist.Normal(loc, scale).to_event(1)
        z = q.rsample((k,))
        return self.prior().log_prob(z) + self.decode(z).log_prob(x) - q.log_prob(z)

    def val_score(self, x: Tensor, y: Tensor | None = None) -> float:
        """Negative ELBO per image (one draw of z per image)."""
        return float(-self.log_weights(x, 1).mean())

    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        check_inputs(x, "x", self.input_dim, self._float_dtype())
        if self.config.likelihood != "normal" and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"pixels must lie in [0, 1] for likelihood={self.config.likelihood}; got values "
                f"in [{float(x.min()):.3g}, {float(x.max()):.3g}] (divide 8-bit images by 255)"
            )
        return x, y

    def example_inputs(self, n: int = 8) -> Tensor:
        return torch.rand(n, self.input_dim)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean reconstruction E[x | z = E q(z | x)] (for figures)."""
        return self.decode(self.encode(x)[0]).mean

    @torch.no_grad()
    def sample_images(self, n: int) -> Tensor:
        """Means of p(x | z) for n draws z from the prior (smoother than binary samples)."""
        return self.decode(self.prior().sample((n,))).mean

    # --- figures -------------------------------------------------------------------------
    @torch.no_grad()
    def figures(self, dataset: Any) -> dict[str, tuple[str, dict[str, Any]]]:
        """Reconstructions beside originals, prior samples, and a 2-D map of the latent means."""
        if dataset.image_shape is None:
            return {}
        device = self.prior_loc.device
        test = dataset.test
        x = test.x[:10].to(device)
        pairs = torch.stack([x, self.reconstruct(x)], 0).reshape(-1, x.shape[-1])
        shape = dataset.image_shape
        figs: dict[str, tuple[str, dict[str, Any]]] = {
            "reconstructions": (
                "image_grid",
                {
                    "images": pairs.cpu(),
                    "image_shape": shape,
                    "ncols": len(x),
                    "title": "originals (top) and reconstructions (bottom)",
                },
            ),
            "samples": (
                "image_grid",
                {"images": self.sample_images(64).cpu(), "image_shape": shape, "ncols": 8},
            ),
        }
        n = min(len(test.x), 2000)
        loc = self.encode(test.x[:n].to(device))[0].cpu()
        if loc.shape[1] > 2:  # the plane of largest variance (PCA)
            loc = loc - loc.mean(0)
            loc = loc @ torch.linalg.svd(loc, full_matrices=False)[2][:2].T
            labels = ("PC 1 of E[z | x]", "PC 2 of E[z | x]")
        else:
            loc = torch.cat([loc, torch.zeros(n, 2 - loc.shape[1])], 1)
            labels = ("z 1", "z 2")
        figs["latent_map"] = (
            "scatter_2d",
            {
                "points": loc,
                "labels": None if test.y is None else test.y[:n].cpu(),
                "title": "latent means of test images",
                "xlabel": labels[0],
                "ylabel": labels[1],
            },
        )
        return figs
