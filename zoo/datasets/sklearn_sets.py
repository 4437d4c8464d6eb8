"""scikit-learn's bundled data sets (no download), standardized with training statistics."""

from __future__ import annotations

import numpy as np
import torch

from .base import Dataset, Split, split_indices, standardize

__all__ = ["load_diabetes", "load_breast_cancer", "load_wine", "load_iris"]


def load_diabetes(seed: int = 0, test_fraction: float = 0.1, val_fraction: float = 0.1):
    """Diabetes progression (442 rows, 10 features); x and y standardized on the training split.

    Metrics are in standardized units of y; ``info["y_std"]`` converts them back.
    """
    from sklearn.datasets import load_diabetes as sk_load

    x_np, y_np = sk_load(return_X_y=True)
    x = torch.as_tensor(x_np, dtype=torch.float32)
    y = torch.as_tensor(y_np, dtype=torch.float32)
    tr, va, te = split_indices(len(x), (val_fraction, test_fraction), seed)
    (x_tr, x_va, x_te), _, _ = standardize(x[tr], x[va], x[te])
    (y_tr, y_va, y_te), y_mean, y_std = standardize(y[tr], y[va], y[te])
    info = {"y_mean": float(y_mean), "y_std": float(y_std), "source": "sklearn.datasets"}
    return Dataset(
        "diabetes", "regression", Split(x_tr, y_tr), Split(x_va, y_va), Split(x_te, y_te), info=info
    )


def _classification(name: str, x_np, y_np, seed: int, val_fraction: float, test_fraction: float):
    x = torch.as_tensor(x_np, dtype=torch.float32)
    y = torch.as_tensor(y_np, dtype=torch.long)
    tr, va, te = _stratified_split(y, (val_fraction, test_fraction), seed)
    (x_tr, x_va, x_te), _, _ = standardize(x[tr], x[va], x[te])
    num_classes = int(y.max()) + 1
    return Dataset(
        name,
        "classification",
        Split(x_tr, y[tr]),
        Split(x_va, y[va]),
        Split(x_te, y[te]),
        num_classes=num_classes,
        info={"source": "sklearn.datasets"},
    )


def _stratified_split(y: torch.Tensor, fractions: tuple[float, float], seed: int):
    """Seeded stratified train / val / test indices (scikit-learn's ``train_test_split``), so
    every class appears in every split of a small data set.

    The val and test sizes are the sums over classes of ``round(fraction * class count)``, the
    sizes these loaders have always had (digits: 1259 / 179 / 359).
    """
    from sklearn.model_selection import train_test_split

    labels = y.numpy()
    counts = torch.bincount(y).tolist()
    n_val, n_test = (sum(int(round(f * c)) for c in counts) for f in fractions)
    index = np.arange(len(labels))
    empty = np.zeros(0, dtype=np.int64)
    rest, test = (
        train_test_split(index, test_size=n_test, stratify=labels, random_state=seed)
        if n_test
        else (index, empty)
    )
    train, val = (
        train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed + 1)
        if n_val
        else (rest, empty)
    )
    return tuple(torch.as_tensor(part, dtype=torch.long) for part in (train, val, test))


def load_breast_cancer(seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1):
    """Breast cancer (569 rows, 30 features, 2 classes), standardized, stratified split."""
    from sklearn.datasets import load_breast_cancer as sk_load

    x, y = sk_load(return_X_y=True)
    return _classification("breast_cancer", x, y, seed, val_fraction, test_fraction)


def load_wine(seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1):
    """Wine (178 rows, 13 features, 3 classes), standardized, stratified split."""
    from sklearn.datasets import load_wine as sk_load

    x, y = sk_load(return_X_y=True)
    return _classification("wine", x, y, seed, val_fraction, test_fraction)


def load_iris(seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1):
    """Iris (150 rows, 4 features, 3 classes), standardized, stratified split."""
    from sklearn.datasets import load_iris as sk_load

    x, y = sk_load(return_X_y=True)
    return _classification("iris", x, y, seed, val_fraction, test_fraction)
