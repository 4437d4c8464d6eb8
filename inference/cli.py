"""Shared pieces of the command lines: one-line errors, run folders, summaries."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from zoo.io import atomic_write_text

__all__ = [
    "Parser",
    "fail",
    "run_cli",
    "write_history",
    "write_json",
    "summary_line",
    "USER_ERRORS",
]


def _user_errors() -> tuple[type[BaseException], ...]:
    from zoo import CheckpointError, ConfigError, DataError
    from zoo.likelihoods import TargetError

    from .device import DeviceError

    # OSError: a missing file, an unwritable --out, a full disk (the message names the path)
    return (ConfigError, DataError, TargetError, DeviceError, CheckpointError, OSError)


#: The project's own errors about the user's input, files and disk: one line, exit code 2.
#: Anything else is a bug and shows its traceback.
USER_ERRORS = _user_errors()


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        fail(f"{message} (see --help)")


def fail(message: str, code: int = 2):
    """Prints ``error: message`` on one line and exits with ``code``."""
    print(f"error: {message}".replace("\n", " "), file=sys.stderr)
    raise SystemExit(code)


def write_json(path: Path, obj: Any) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(w) for k, w in v.items()}
        if isinstance(v, list | tuple):
            return [clean(w) for w in v]
        return v

    atomic_write_text(path, json.dumps(clean(obj), indent=2) + "\n")


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def summary_line(m: dict[str, Any]) -> str:
    """The few numbers a person wants after a run, by metric kind."""
    keys = [
        ("nll", "NLL"),
        ("quasi_nll", "quasi-NLL"),
        ("nll_gap", "gap to true NLL"),
        ("rmse", "RMSE"),
        ("coverage_90", "90% coverage"),
        ("crps", "CRPS"),
        ("energy_score", "energy score"),
        ("wql", "wQL"),
        ("mase", "MASE"),
        ("accuracy", "accuracy"),
        ("ece", "ECE"),
        ("brier", "Brier"),
        ("elbo", "ELBO"),
        ("iwae", "IWAE"),
        ("bits_per_dim", "bits/dim"),
    ]
    parts = [f"{label} {m[k]:.4f}" for k, label in keys if isinstance(m.get(k), float)]
    return ", ".join(parts)


def run_cli(main) -> None:
    """Runs ``main()`` and exits with its code.

    A user's mistake (:data:`USER_ERRORS`) is one line and exit code 2, a diverged training
    one line and exit code 1, a second Ctrl-C exit code 130; real bugs keep their traceback.
    """
    from .fit import TrainingDiverged

    try:
        sys.exit(main())
    except USER_ERRORS as e:
        fail(_one_line(e))
    except TrainingDiverged as e:
        fail(str(e), code=1)
    except KeyboardInterrupt:
        fail("interrupted", code=130)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:  # "No space left on device: runs/x/model.pt"
        return f"{e.strerror}: {e.filename}" if e.filename is not None else e.strerror
    return str(e)
