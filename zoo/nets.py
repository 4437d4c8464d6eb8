"""The one MLP that regression, classifiers, MDN and BNN share."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class MLP(nn.Sequential):
    """A fully connected network ``in_dim -> hidden x depth -> out_dim``.

    Arguments:
        in_dim: input features.
        out_dim: outputs.
        hidden: width of each hidden layer.
        depth: number of hidden layers (0 gives a linear model).
        activation: one of ``ACTIVATIONS``.

    Example:
        >>> MLP(3, 2, hidden=16, depth=2)(torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int = 64, depth: int = 2, activation: str = "relu"
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - same as nn.Sequential
        return super().forward(x)
