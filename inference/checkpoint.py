"""Resumable training state: what :func:`inference.fit` needs to continue a run exactly.

One file, ``train_state.pt``, written atomically (temp file + rename) and read with
``torch.load(weights_only=True)``: the current and best weights, the optimizer and scheduler
states, the position in the run (epoch, step, the epoch's permutation), the early-stopping
state, the history so far and every RNG state (torch, CUDA, Python, NumPy and the generator
of the epoch permutations). A run resumed from it ends where the uninterrupted run would.

``fit`` builds the state and hands it to a ``checkpoint`` callback; the caller decides where
(and on which process) it is written, e.g. ``save_training_state(run_dir, state)`` on rank 0.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.io import CheckpointError, _atomic, load_failure

__all__ = [
    "STATE_FILE",
    "capture_rng",
    "clone_tensors",
    "config_differences",
    "data_summary",
    "load_training_state",
    "restore_rng",
    "save_training_state",
]

FORMAT = "pyro-zoo-train/1"
STATE_FILE = "train_state.pt"
#: FitConfig fields that may differ on resume: they do not change what is computed.
RESUMABLE_CHANGES = ("quiet", "device")


def clone_tensors(obj: Any) -> Any:
    """A copy of nested dicts / lists / tuples with every tensor detached, cloned, on the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: clone_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(clone_tensors(v) for v in obj)
    return obj


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The states of torch's, CUDA's, Python's and NumPy's global RNGs (and ``generator``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global RNG users seed)
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # as a tensor: weights_only loading refuses NumPy arrays
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "generator": generator.get_state() if generator is not None else None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Sets the RNGs back to a :func:`capture_rng` state."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def data_summary(x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
    """Shape and two checksums of the training data, so a resume on other data is refused."""

    def sums(t: torch.Tensor) -> list[float]:
        d = t.detach().double()
        return [float(d.sum()), float((d * d).sum())]

    out: dict[str, Any] = {"x_shape": list(x.shape), "x_sums": sums(x)}
    if y is not None:
        out.update(y_shape=list(y.shape), y_sums=sums(y))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return all(_same(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def config_differences(saved: dict[str, Any], now: dict[str, Any], ignore=()) -> list[str]:
    """``key: saved -> now`` for every key whose value differs (floats to a relative 1e-6)."""
    return [
        f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
        for k in sorted(set(saved) | set(now))
        if k not in ignore and not _same(saved.get(k), now.get(k))
    ]


def save_training_state(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Writes ``state`` (from fit's ``checkpoint`` callback) to ``run_dir/train_state.pt``."""
    path = Path(run_dir) / STATE_FILE
    _atomic(path, lambda f: torch.save({"format": FORMAT, **state}, f))
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Reads a training state from a run folder or a ``train_state.pt`` file.

    Raises:
        CheckpointError: the file is missing, torn, or not a zoo training state.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; name a run folder written by train.py")
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: the run stopped before its first resumable checkpoint "
            "(start a new run instead)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"{path} cannot be read ({load_failure(e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-zoo training state ({FORMAT})")
    return state
