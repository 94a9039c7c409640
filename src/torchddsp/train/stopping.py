"""When a training run stops: SIGINT/SIGTERM, a time limit, and one decision for all processes."""

from __future__ import annotations

import signal
import sys
import threading
import time

from .distributed import DistributedContext, max_across_ranks

# Why a run stopped, ordered so that the strongest reason wins across processes.
FINISHED, TIME_LIMIT, INTERRUPTED = "finished", "time_limit", "interrupted"
_STOP_CODES = {None: 0, TIME_LIMIT: 1, INTERRUPTED: 2}


def agreed_stop(reason: str | None, context: DistributedContext) -> str | None:
    """The stop reason every process acts on, so all leave after the same step."""
    code = max_across_ranks(_STOP_CODES[reason], context)
    return next(name for name, value in _STOP_CODES.items() if value == code)


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT aborts."""

    def __init__(self, announce: bool):
        self.announce = announce
        self.requested = self.aborted = False
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            self.aborted = True
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)


def monotonic_deadline(max_minutes: float) -> float:
    """The ``time.monotonic()`` at which ``max_minutes`` run out; infinity for 0 (no limit)."""
    return time.monotonic() + max_minutes * 60 if max_minutes > 0 else float("inf")
