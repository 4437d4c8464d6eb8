"""Classifiers: the shared MLP's logits through a Bernoulli or Categorical likelihood."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyro
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DataError, ZooModel
from .likelihoods import Bernoulli, Categorical, Likelihood, TargetError
from .nets import ACTIVATIONS, MLP

__all__ = [
    "BernoulliConfig",
    "CategoricalConfig",
    "BernoulliClassifier",
    "CategoricalClassifier",
    "RandomShift",
]


@dataclass
class BernoulliConfig:
    """Config of :class:`BernoulliClassifier`.

    Arguments:
        input_dim: input features.
        hidden: width of each hidden layer.
        depth: number of hidden layers (0: logistic regression).
        activation: relu, tanh, silu, gelu, softplus or elu.
        shift: during training, translate image inputs by up to this many pixels at random
            (0: off); needs ``image_shape``, which ``scripts/train.py`` reads off the dataset.
        image_shape: ``(H, W)`` of the flattened image rows of ``x``; empty for tabular data.
    """

    input_dim: int = 2
    hidden: int = 64
    depth: int = 2
    activation: str = "relu"
    shift: int = 0
    image_shape: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.input_dim < 1 or self.hidden < 1 or self.depth < 0 or self.shift < 0:
            raise ValueError("input_dim and hidden must be >= 1, depth and shift >= 0")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        if self.shift and (len(self.image_shape) != 2 or _prod(self.image_shape) != self.input_dim):
            raise ValueError(
                f"shift={self.shift} needs image inputs: image_shape (H, W) with H * W = "
                f"input_dim = {self.input_dim}; got image_shape={self.image_shape}"
            )


@dataclass
class CategoricalConfig(BernoulliConfig):
    """Config of :class:`CategoricalClassifier`: :class:`BernoulliConfig` plus ``num_classes``."""

    hidden: int = 512
    depth: int = 1
    num_classes: int = 3

    def validate(self) -> None:
        super().validate()
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {self.num_classes}")


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


class RandomShift(nn.Module):
    """Translates flattened images by up to ``max_shift`` pixels (zero fill), in training only.

    Arguments:
        image_shape: ``(H, W)`` of each row of the input.
        max_shift: largest translation in pixels, drawn uniformly per image and axis.
    """

    def __init__(self, image_shape: tuple[int, ...], max_shift: int):
        super().__init__()
        self.image_shape, self.max_shift = tuple(image_shape), max_shift

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.max_shift == 0:
            return x
        (h, w), k, n = self.image_shape, self.max_shift, x.shape[0]
        img = F.pad(x.reshape(n, h, w), (k, k, k, k))
        offset = torch.randint(0, 2 * k + 1, (2, n, 1), device=x.device)
        rows = torch.arange(h, device=x.device) + offset[0]
        cols = torch.arange(w, device=x.device) + offset[1]
        batch = torch.arange(n, device=x.device)[:, None, None]
        return img[batch, rows[:, :, None], cols[:, None, :]].reshape(n, h * w)


class _Classifier(ZooModel):
    """Shared body: ``logits(x) = MLP(x) / temperature``; ``obs`` ~ the likelihood on them."""

    default_fit = {"epochs": 100, "lr": 2e-3, "batch_size": 128, "patience": 15}

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.likelihood = self._make_likelihood()
        self.net = MLP(c.input_dim, self.likelihood.num_outputs, c.hidden, c.depth, c.activation)
        self.augment = RandomShift(c.image_shape, c.shift) if c.shift else nn.Identity()
        # set by post-hoc temperature scaling (inference.calibrate); a buffer, so it is saved
        self.register_buffer("temperature", torch.ones(()))

    def _make_likelihood(self) -> Likelihood:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return int(self.likelihood.num_classes)

    @classmethod
    def data_overrides(cls, dataset: Any) -> dict[str, Any]:
        out = super().data_overrides(dataset)
        if dataset.image_shape is not None:
            out["image_shape"] = tuple(dataset.image_shape)
        return out

    # --- the Pyro program ----------------------------------------------------------------
    def logits(self, x: Tensor) -> Tensor:
        """Temperature-scaled logits: ``[N]`` (of class 1) for Bernoulli, ``[N, C]`` otherwise."""
        out = self.net(x) / self.temperature
        return out.squeeze(-1) if self.likelihood.num_outputs == 1 else out

    def _distribution(self, logits: Tensor) -> torch.distributions.Distribution:
        return self.likelihood(logits[..., None] if logits.dim() == 1 else logits)

    def predictive_distribution(self, x: Tensor) -> torch.distributions.Distribution:
        return self._distribution(self.logits(x))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        d = self._distribution(self.logits(self.augment(x)))
        with self.data_plate(x):
            return pyro.sample("obs", d, obs=y)

    def class_probs(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """Class probabilities: ``[N]`` of class 1 (Bernoulli) or ``[N, C]``.

        They are exact (there are no latent variables); ``num_samples`` is accepted for the
        signature that models with a posterior share.
        """
        z = self.logits(x)
        return torch.sigmoid(z) if z.dim() == 1 else torch.softmax(z, -1)

    # --- data checks ---------------------------------------------------------------------
    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if y is not None:
            try:
                y = torch.as_tensor(y)
            except (TypeError, ValueError, RuntimeError):
                raise DataError("labels must be numbers: integer class indices [N]") from None
            if y.dim() == 2 and y.shape[1] == self.num_classes and y.shape[1] > 1:
                raise DataError(
                    f"labels must be class indices of shape [N]; got {list(y.shape)} "
                    "(one-hot? pass y.argmax(-1))"
                )
            if y.is_complex():
                raise DataError(f"labels must be real class indices; got {y.dtype}")
        return super().check_data(x, y)

    def check_training_data(self, x: Tensor, y: Tensor | None) -> None:
        """Every class ``0..C-1`` must appear in the training labels."""
        if y is None:
            return
        counts = torch.bincount(y.long().reshape(-1), minlength=self.num_classes)
        missing = (counts == 0).nonzero()[:, 0].tolist()
        if missing:
            raise DataError(
                f"class{'es' if len(missing) > 1 else ''} {', '.join(map(str, missing))} never "
                f"appear{'' if len(missing) > 1 else 's'} in the training labels; every class "
                f"0..{self.num_classes - 1} must be present (check num_classes or the split)"
            )


class BernoulliClassifier(_Classifier):
    """Binary classifier: ``obs ~ Bernoulli(logits=MLP(x) / temperature)`` for labels 0/1.

    Arguments:
        config: a :class:`BernoulliConfig`; keyword overrides are applied on top.

    Example:
        >>> model = zoo.build("bernoulli", input_dim=30)
        >>> fit(model, data.train, data.val)
        >>> model.class_probs(x).shape  # P(y = 1 | x)
        torch.Size([N])
    """

    Config = BernoulliConfig
    description = "binary MLP classifier, Bernoulli on logits (temperature-scalable)"
    default_dataset = "breast_cancer"
    tiny_config = {"hidden": 8}

    def _make_likelihood(self) -> Likelihood:
        return Bernoulli()

    def check_data(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        try:
            return super().check_data(x, y)
        except TargetError as e:
            y = torch.as_tensor(y)
            if y.numel() and bool((y == y.round()).all()) and float(y.max()) > 1:
                hint = "; use the categorical model for more than two classes"
                raise TargetError(f"{e}{hint}") from None
            raise


class CategoricalClassifier(_Classifier):
    """Multiclass classifier: ``obs ~ Categorical(logits=MLP(x) / temperature)``.

    Arguments:
        config: a :class:`CategoricalConfig`; keyword overrides are applied on top.

    Example:
        >>> model = zoo.build("categorical", input_dim=64, num_classes=10)
        >>> fit(model, data.train, data.val)
        >>> Predictive(model, guide=model.guide, num_samples=100)(x)["obs"].shape
        torch.Size([100, N])
    """

    Config = CategoricalConfig
    description = "multiclass MLP classifier, Categorical on logits (temperature-scalable)"
    default_dataset = "digits"
    tiny_config = {"hidden": 8}

    def _make_likelihood(self) -> Likelihood:
        return Categorical(num_classes=self.config.num_classes)
