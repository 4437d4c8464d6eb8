"""scikit-learn's bundled data sets (no download), standardized with training statistics."""

from __future__ import annotations

import torch

from .base import Dataset, Split, split_indices, standardize

__all__ = ["load_diabetes"]


def load_diabetes(seed: int = 0, test_fraction: float = 0.1, val_fraction: float = 0.1, **_):
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
