"""SIGINT / SIGTERM as a request to stop training cleanly at the end of the current step."""

from __future__ import annotations

import signal
import threading

__all__ = ["StopSignals"]


class StopSignals:
    """Within the block, the first SIGINT or SIGTERM only sets a flag; a second one interrupts.

    Pass :meth:`requested` as ``fit(..., should_stop=...)``: training stops at the end of the
    current step, saves a resumable checkpoint and returns with ``stopped="interrupted"``.
    Outside the main thread (where Python cannot install handlers) it does nothing.

    Example:
        >>> with StopSignals() as stop:
        ...     history = fit(model, data.train, should_stop=stop.requested)
        >>> if stop.signum is not None:
        ...     raise SystemExit(stop.exit_code)
    """

    def __init__(self, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.signums = signums
        self.signum: int | None = None
        self._at_once = False
        self._previous: dict[int, object] = {}

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(self.signum or 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def interrupt_now(self) -> None:
        """From here on a signal interrupts at once (``KeyboardInterrupt``), as a second one
        does; one that came already interrupts here. For work after the last checkpoint,
        which no step polls and a resume redoes."""
        self._at_once = True
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt

    def _handle(self, signum, frame) -> None:
        if self.signum is not None or self._at_once:  # asked twice, or nothing polls: stop now
            self.signum = self.signum or signum
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.signums:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
