"""Fault injection for the fault suite (``make faults``): crash or stall at exact places.

``LOGINETL_FAILPOINT=<name>:<arg>`` arms one point; unset (always, in production), every
``hit`` is a no-op. Names:

  crash_before_commit:N   SIGKILL this process in the Nth batch, after the writes, before COMMIT
  crash_after_commit:N    SIGKILL it after the Nth COMMIT, before the messages are deleted
  sleep_before_commit:S   hold every batch's transaction open S seconds before COMMIT
  sleep_on_first_delivery:S  stall S seconds before loading a batch received for the first
                          time (past a short visibility timeout, it is redelivered meanwhile)

A kill -9 from outside cannot hit these windows on purpose; these make the scenarios exact.
"""

from __future__ import annotations

import os
import signal
import threading
import time

_lock = threading.Lock()
_hits: dict[str, int] = {}


def hit(name: str, *, when: bool = True) -> None:
    """Misbehave here if ``name`` is the armed failpoint (and ``when`` holds)."""
    armed = os.environ.get("LOGINETL_FAILPOINT")
    if not armed or not when:
        return
    point, _, argument = armed.partition(":")
    if point != name:
        return
    if name.startswith("sleep_"):
        time.sleep(float(argument or 1))
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= int(argument or 1):
            os.kill(os.getpid(), signal.SIGKILL)
