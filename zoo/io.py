"""Checkpoints: ``config.json`` + ``model.pt`` (a state_dict), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_write_text", "save", "load"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or does not fit the model; the message names the file."""


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path``, then renames it over ``path``."""
    _atomic(Path(path), lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(model: Any, run_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Saves ``config.json`` (family name + config) and ``model.pt`` (state_dict) into run_dir.

    The weights go first, then the config, both atomically, so a crash at any point leaves the
    previous complete checkpoint or the new one, never a torn file.
    """
    from . import family_name

    run_dir = Path(run_dir)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic(run_dir / "model.pt", lambda f: torch.save(state, f))
    meta = {"model": family_name(model), "config": model.config_dict(), **(extra or {})}
    atomic_write_text(run_dir / "config.json", json.dumps(meta, indent=2) + "\n")
    return run_dir


def read_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: is {run_dir} a run folder written by train.py?")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}); the run folder is damaged"
        ) from None
    if not isinstance(meta, dict) or "model" not in meta or "config" not in meta:
        raise CheckpointError(f"{path} lacks the 'model' and 'config' entries of a zoo checkpoint")
    return meta


def load(run_dir: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Rebuilds the model saved in ``run_dir`` and loads its weights (``weights_only=True``).

    Arguments:
        run_dir: a folder holding ``config.json`` and ``model.pt``.
        map_location: where to put the weights (the model is moved there too).

    Example:
        >>> model = zoo.load("runs/vae")
        >>> Predictive(model, guide=model.guide, num_samples=100)(x)["obs"]
    """
    from . import build

    meta = read_config(run_dir)
    model = build(meta["model"], **meta["config"])
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; the run did not finish saving its weights")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    model.init_lazy()
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not match the model in config.json: {first}") from None
    return model.to(map_location).eval()
