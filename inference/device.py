"""Device placement, in this one place: ``auto | cpu | cuda[:N] | mps``."""

from __future__ import annotations

import torch

__all__ = ["DeviceError", "resolve_device", "to_device"]


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turns ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` into a ``torch.device``.

    ``auto`` takes a CUDA GPU when there is one, then Apple's MPS, else the CPU. A device that
    is not there raises :class:`DeviceError` saying what is available.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' is not available here; use --device cpu or auto")
        return torch.device("mps")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but no CUDA GPU is visible; use cpu/auto")
        index = spec.partition(":")[2]
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                n = torch.cuda.device_count()
                raise DeviceError(
                    f"device {spec!r} does not exist; this machine has cuda:0..{n - 1}"
                )
        return torch.device(spec)
    raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def to_device(obj, device: torch.device):
    """Moves a tensor, or the tensors inside a tuple / list / dict, to ``device``."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple | list):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj
