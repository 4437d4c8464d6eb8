"""Run folders: created exclusively (two runs never share one), never half-written or empty."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

from zoo.config import ConfigError

__all__ = [
    "RUN_DIRS",
    "RUN_FILES",
    "HistoryWriter",
    "create_run_dir",
    "discard_unless_checkpointed",
    "finished",
    "lock_run_dir",
    "release_run_dirs",
    "remove_run_folder",
    "stale_temp_files",
]

#: What a run writes; ``--overwrite`` removes these (and the PNG plots), nothing else.
RUN_FILES = (
    "config.json",
    "model.pt",
    "train_state.pt",
    "metrics.json",
    "metrics_eval.json",
    "history.csv",
    "baselines.md",
)
#: Folders a run writes (each of its files, temp files included, is a run file):
#: ``backtest`` holds a forecasting run's finished backtest windows until it ends.
RUN_DIRS = ("backtest",)


def _run_files(run_dir: Path) -> list[Path]:
    inside = [f for d in RUN_DIRS for f in sorted((run_dir / d).glob("*")) if f.is_file()]
    return [run_dir / f for f in RUN_FILES if (run_dir / f).exists()] + sorted(
        run_dir.glob("*.png")
    ) + stale_temp_files(run_dir) + inside  # fmt: skip


def _remove(files: list[Path], run_dir: Path) -> None:
    for f in files:
        f.unlink(missing_ok=True)
    for d in RUN_DIRS:
        try:
            (run_dir / d).rmdir()
        except OSError:  # absent, or holding files the run did not write
            pass


def remove_run_folder(run_dir: Path, name: str) -> None:
    """Removes one of :data:`RUN_DIRS` of a run folder and its files (e.g. once they are
    not needed: a finished run's backtest windows)."""
    if name not in RUN_DIRS:
        raise ValueError(f"{name!r} is not one of the run's folders {RUN_DIRS}")
    folder = Path(run_dir) / name
    _remove(sorted(f for f in folder.glob("*") if f.is_file()), Path(run_dir))


def stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files of the atomic writes (``.NAME.*.tmp``) that a SIGKILL left mid-write."""
    names = (*RUN_FILES, "*.png")
    return sorted({p for n in names for p in Path(run_dir).glob(f".{n}.*.tmp")})


#: run folders this process holds (their descriptors keep the locks)
_HELD: dict[Path, int] = {}


def lock_run_dir(run_dir: Path) -> None:
    """Takes the run folder for this process, or refuses in one line when another process
    (a run, a ``--resume`` or an ``--overwrite`` of it) holds it.

    An advisory ``flock`` on the folder itself: the kernel drops it when the holder exits,
    however it exits (SIGKILL included), so no stale lock is ever left behind. Held until the
    process ends. Where ``fcntl`` is missing (Windows) it does nothing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    run_dir = Path(run_dir).resolve()
    if run_dir in _HELD:
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"{run_dir} is in use by another process (a run or --resume of it is still going);"
            " wait for it to end, or pass another --out"
        ) from None
    _HELD[run_dir] = fd


def release_run_dirs() -> None:
    """Lets go of every run folder this process holds (at the end of a run)."""
    while _HELD:
        os.close(_HELD.popitem()[1])  # closing the descriptor drops its flock


def finished(run_dir: Path) -> bool:
    """Whether the run wrote its final metrics (a run killed after its fit has not)."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return metrics.get("stopped") != "interrupted"


def create_run_dir(out: str | None, default: str, overwrite: bool = False) -> tuple[Path, bool]:
    """Makes the run folder and returns it with whether this call created it.

    Without ``out`` the folder is ``default`` (``runs/MODEL-DATASET-TIME``), or ``default-2``,
    ``default-3``, ... when a run started in the same second holds it: each name is taken
    with an exclusive ``mkdir``, so two runs started at once get two folders. An explicit
    ``out`` that already holds a run is refused unless ``overwrite`` (its run files are then
    removed first); an existing empty folder is used as it is.
    """
    if out is None:
        base = Path(default)
        base.parent.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            path = base if i == 1 else base.with_name(f"{base.name}-{i}")
            try:
                path.mkdir()
                lock_run_dir(path)
                return path, True
            except FileExistsError:
                continue
        raise ConfigError(f"no free run folder name beside {base}; pass --out")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder; name a folder")
    if path.is_dir():
        lock_run_dir(path)  # before anything is removed: another process may be writing it
        files = _run_files(path)
        if files and not overwrite:
            # --resume only where there is something to resume (a run killed before its first
            # checkpoint leaves only history.csv; a finished one has nothing left)
            resumable = (path / "train_state.pt").is_file() and not finished(path)
            resume = f"--resume {path} to continue it, " if resumable else ""
            raise ConfigError(
                f"--out {path} already holds a run ({files[0].name}); pass --overwrite to replace "
                f"it, {resume}or another --out"
            )
        _remove(files, path)
        return path, False
    path.mkdir(parents=True)
    lock_run_dir(path)
    return path, True


def discard_unless_checkpointed(run_dir: Path, created: bool) -> bool:
    """After a failed new run: removes its files (and the folder, if it made it) when no model
    checkpoint was written, so errors leave no empty or unloadable folder. True if removed.

    Not for a resumed run: its training state is the user's to keep."""
    if (run_dir / "model.pt").exists():
        return False
    _remove(_run_files(run_dir), run_dir)
    if created:
        try:
            run_dir.rmdir()
        except OSError:  # someone put other files there
            return False
    return True


class HistoryWriter:
    """Appends each epoch's row to ``history.csv`` as it ends (flushed, so a killed run keeps
    the epochs it finished); ``rows`` given at the start (a resumed run's) are written first."""

    def __init__(self, path: Path, rows: list[dict[str, float]] | None = None):
        self.path = path
        self.keys: list[str] | None = None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp")
        with open(tmp, "w", newline="") as f:
            for row in rows or []:
                self._write(f, row)
        os.replace(tmp, path)

    def _write(self, f, row: dict[str, float]) -> None:
        if self.keys is None:
            self.keys = list(row)
            csv.writer(f).writerow(self.keys)
        csv.DictWriter(f, fieldnames=self.keys, extrasaction="ignore").writerow(row)

    def __call__(self, row: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            self._write(f, row)
