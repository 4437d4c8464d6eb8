"""Checkpoints: ``config.json`` + ``model.pt`` (a state_dict and its description), atomically."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "fingerprint",
    "save",
    "load",
    "read_config",
]

FORMAT = "pyro-zoo/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or does not fit the model; the message names the file."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_failure(e: BaseException, limit: int = 160) -> str:
    """``Type: message`` of an error reading a file, cut to its first line (torch's pickle
    errors run to a page, with terminal escapes): for a one-line error message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[: limit - 3].rstrip() + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; a run's files get the user's usual permissions, as plots do
        os.fchmod(fd, 0o666 & ~_umask())
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


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of a state_dict's names and shapes (not of its values)."""
    spec = ";".join(f"{k}:{list(v.shape)}" for k, v in sorted(state.items()))
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def describe(model: Any) -> dict[str, Any]:
    """What a checkpoint records about its model: family, config, likelihood, fingerprint."""
    from . import family_name

    config = json.loads(json.dumps(model.config_dict()))  # tuples as lists, as in config.json
    return {
        "model": family_name(model),
        "config": config,
        "likelihood": config.get("likelihood"),
        "fingerprint": fingerprint(model.state_dict()),
    }


def save(model: Any, run_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Saves ``config.json`` (family, config, likelihood, fingerprint) and ``model.pt``.

    ``model.pt`` holds the state_dict and the same description, so a config.json that names
    another family or likelihood is caught at load time. The config goes first, then the
    weights, both atomically: a crash at any point leaves the previous complete checkpoint,
    the new one, or (on the first save) a config.json without weights, which :func:`load`
    reports as "no checkpoint"; a failed first save removes its config.json.
    """
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {**describe(model), **(extra or {})}
    config_path, weights_path = run_dir / "config.json", run_dir / "model.pt"
    first = not weights_path.exists()
    atomic_write_text(config_path, json.dumps(meta, indent=2) + "\n")
    try:
        payload = {"format": FORMAT, "meta": meta, "state_dict": state}
        _atomic(weights_path, lambda f: torch.save(payload, f))
    except BaseException:
        if first:
            config_path.unlink(missing_ok=True)
        raise
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


def _differences(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    out = []
    for key in keys:
        if key == "config":
            ca, cb = a.get("config") or {}, b.get("config") or {}
            out += [
                f"config.{k}: {ca.get(k)!r} in config.json, {cb.get(k)!r} in model.pt"
                for k in sorted(set(ca) | set(cb))
                if ca.get(k) != cb.get(k)
            ]
        elif a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} in config.json, {b.get(key)!r} in model.pt")
    return out


def load(run_dir: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Rebuilds the model saved in ``run_dir`` and loads its weights (``weights_only=True``).

    The family, likelihood, config and parameter fingerprint recorded in ``model.pt`` must
    match ``config.json`` and the model it builds; a mismatch is a :class:`CheckpointError`
    naming every difference.

    Arguments:
        run_dir: a folder holding ``config.json`` and ``model.pt``.
        map_location: where to put the weights (the model is moved there too).

    Example:
        >>> model = zoo.load("runs/vae")
        >>> Predictive(model, guide=model.guide, num_samples=100)(x)["obs"]
    """
    from . import build

    meta = read_config(run_dir)
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: no checkpoint was written to {run_dir} (the run stopped before "
            "its first checkpoint)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"{path} cannot be read ({load_failure(e)})") from None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        state, saved = payload["state_dict"], payload["meta"]
        diff = _differences(meta, saved, ("model", "likelihood", "config", "fingerprint"))
        if diff:
            raise CheckpointError(
                f"{path} does not match the model in config.json: {'; '.join(diff)}; the "
                "folder mixes two runs: restore its config.json or retrain"
            )
    else:  # a plain state_dict (written before the description was recorded)
        state, saved = payload, {}
    try:
        model = build(meta["model"], **meta["config"])
    except ValueError as e:
        raise CheckpointError(f"{Path(run_dir) / 'config.json'}: {e}") from None
    model.init_lazy()
    built = fingerprint(model.state_dict())
    if saved.get("fingerprint") not in (None, built):
        detail = _state_differences(model.state_dict(), state)
        raise CheckpointError(
            f"{path} does not match the model in config.json ({detail}); the code or the "
            "config changed since it was saved"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).strip().splitlines())
        raise CheckpointError(f"{path} does not match the model in config.json: {detail}") from None
    return model.to(map_location).eval()


def _state_differences(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    shapes = [
        f"{k} {list(got[k].shape)} vs {list(want[k].shape)}"
        for k in sorted(set(want) & set(got))
        if got[k].shape != want[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected)}")
    if shapes:
        parts.append(f"shapes saved vs built: {', '.join(shapes)}")
    return "; ".join(parts) or "the same names and shapes"
