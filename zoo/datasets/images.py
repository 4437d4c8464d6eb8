"""Image data: scikit-learn's 8x8 digits and MNIST from IDX files; pixels in [0, 1], flattened."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..base import DataError
from .base import Dataset, Split

__all__ = ["load_digits", "load_mnist", "read_idx", "MNIST_FILES"]

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_digits(seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1):
    """Digits (1,797 8x8 images, 10 classes), pixels scaled to [0, 1], stratified seeded split."""
    from sklearn.datasets import load_digits as sk_load

    from .sklearn_sets import _stratified_split

    x_np, y_np = sk_load(return_X_y=True)
    x = torch.as_tensor(x_np / 16.0, dtype=torch.float32)
    y = torch.as_tensor(y_np, dtype=torch.long)
    tr, va, te = _stratified_split(y, (val_fraction, test_fraction), seed)
    return Dataset(
        "digits",
        "classification",
        Split(x[tr], y[tr]),
        Split(x[va], y[va]),
        Split(x[te], y[te]),
        num_classes=10,
        image_shape=(8, 8),
        info={"source": "sklearn.datasets.load_digits", "pixel_range": [0, 1]},
    )


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (gzipped or not); a malformed file raises a ValueError naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} cannot be read as an IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (no complete IDX header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path} has {len(data)} bytes but its header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def load_mnist(
    seed: int = 0,
    data_dir: str | Path | None = None,
    train_range: tuple[int, int] = (0, 9000),
    test_range: tuple[int, int] = (9000, 10000),
    val_size: int = 1000,
) -> Dataset:
    """MNIST from the official IDX files in ``data_dir`` (gzipped or not); nothing downloads.

    With only the 10,000-image test set present (``t10k-*``), the split is [0, 9000) for
    training (its last ``val_size`` images held out for validation, by a seeded permutation)
    and [9000, 10000) for testing. If the 60,000-image training files are there too, they are
    used for training and validation and the whole t10k set for testing.
    """
    if data_dir is None:
        raise FileNotFoundError("MNIST needs --data-dir DIR holding t10k-images-idx3-ubyte[.gz]")
    data_dir = Path(data_dir)
    stems = [s for pair in MNIST_FILES.values() for s in pair]
    test_files = [_find(data_dir, s) for s in MNIST_FILES["test"]]
    if None in test_files:
        raise FileNotFoundError(
            f"MNIST files not found in {data_dir}: expected {', '.join(stems[2:])} (optionally "
            f".gz, and optionally the train-* files) from the official MNIST distribution"
        )
    images = read_idx(test_files[0])
    labels = read_idx(test_files[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{test_files[0]} and {test_files[1]} do not hold matching images/labels")
    x_all = torch.as_tensor(images.reshape(len(images), -1) / 255.0, dtype=torch.float32)
    y_all = torch.as_tensor(labels.astype(np.int64))
    train_files = [_find(data_dir, s) for s in MNIST_FILES["train"]]
    if None not in train_files:
        x_tr = torch.as_tensor(read_idx(train_files[0]).reshape(-1, 784) / 255.0).float()
        y_tr = torch.as_tensor(read_idx(train_files[1]).astype(np.int64))
        x_te, y_te = x_all, y_all
    else:
        (a, b), (c, d) = train_range, test_range
        x_tr, y_tr, x_te, y_te = x_all[a:b], y_all[a:b], x_all[c:d], y_all[c:d]
    if len(x_tr) <= val_size or len(x_te) == 0:
        raise DataError(
            f"{test_files[0]} holds {len(x_all)} images, too few for training {train_range} "
            f"(of which {val_size} validate) and testing {test_range}: expected the official "
            "10,000-image MNIST test set"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x_tr), generator=g)
    va, tr = perm[:val_size], perm[val_size:]
    return Dataset(
        "mnist",
        "classification",
        Split(x_tr[tr], y_tr[tr]),
        Split(x_tr[va], y_tr[va]),
        Split(x_te, y_te),
        num_classes=10,
        image_shape=(28, 28),
        info={"source": str(data_dir), "pixel_range": [0, 1]},
    )
