"""SIGINT/SIGTERM for the long-running commands (consume, fold --follow)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger("loginetl")


@contextmanager
def stop_on_signals(stop: threading.Event, finishing: str) -> Iterator[None]:
    """First SIGINT/SIGTERM sets ``stop`` (the command finishes ``finishing`` and exits);
    a second Ctrl-C forces the exit. The previous handlers come back afterwards."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C
        stop.set()
        log.warning("stop requested: finishing %s (Ctrl-C again to force)", finishing)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
