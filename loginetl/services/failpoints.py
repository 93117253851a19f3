"""Fault injection for the fault suite (``make faults``): crash, stall or hold at exact places.

``LOGINETL_FAILPOINT=<name>:<arg>[,<name>:<arg>...]`` arms one or more points; unset
(always, in production), every ``hit`` is a no-op. Names:

  crash_before_commit:N      SIGKILL this process in the Nth batch, after the writes, before COMMIT
  crash_after_commit:N       SIGKILL it after the Nth COMMIT, before the messages are deleted
  crash_after_dead_letter:N  SIGKILL it after the Nth DLQ send was accepted, before the delete
  crash_in_fold:N            SIGKILL it inside the Nth rollup fold, before its COMMIT
  crash_mid_delete:N         SIGKILL it after the Nth DeleteMessageBatch call, while the rest
                             of that batch is still in the queue
  crash_after_replay_send:N  SIGKILL replay-dlq after its Nth send, before the DLQ delete
  crash_in_forget:N          SIGKILL forget inside its Nth erasure transaction, before COMMIT
  crash_in_retention:N       SIGKILL retention apply inside its Nth partition, default-trim or
                             purge transaction, before COMMIT
  sleep_before_commit:S      hold every batch's transaction open S seconds before COMMIT
  sleep_on_first_delivery:S  stall S seconds before loading a batch received for the first
                             time (past a short visibility timeout, it is redelivered meanwhile)
  hold_before_commit:N       from the Nth batch on, hold the open transaction until the gate
  hold_after_receive:N       from the Nth non-empty receive on, hold the received messages
                             (before consume looks at its stop flag) until the gate
  raise_in_prepare:N         from the Nth preparation on, raise RuntimeError while masking
                             and sealing (a broken masker or sealer: every message fails)
  raise_in_write:N           from the Nth batch write on, raise RuntimeError before it (an
                             unexpected exception in the write path)

The gate is the file named by ``LOGINETL_FAILPOINT_GATE``: a hold waits until it exists
(at most 120 s, so a broken test cannot hang a run), which lets a test order events
("the transaction is open, the receive is back, now SIGTERM, now go") without sleeping.
A kill -9 from outside cannot hit these windows on purpose; these make the scenarios exact.
"""

from __future__ import annotations

import os
import signal
import threading
import time

_lock = threading.Lock()
_hits: dict[str, int] = {}
_HOLD_LIMIT_SECONDS = 120.0


def _armed(name: str) -> str | None:
    """The argument ``name`` is armed with, or None if it is not armed."""
    for spec in os.environ.get("LOGINETL_FAILPOINT", "").split(","):
        point, _, argument = spec.strip().partition(":")
        if point == name:
            return argument
    return None


def _count(name: str) -> int:
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        return _hits[name]


def hit(name: str, *, when: bool = True) -> None:
    """Misbehave here if ``name`` is an armed failpoint (and ``when`` holds)."""
    if "LOGINETL_FAILPOINT" not in os.environ or not when:
        return
    argument = _armed(name)
    if argument is None:
        return
    if name.startswith("sleep_"):
        time.sleep(float(argument or 1))
    elif name.startswith("raise_"):
        if _count(name) >= int(argument or 1):
            raise RuntimeError(f"failpoint {name}")
    elif name.startswith("hold_"):
        if _count(name) >= int(argument or 1):
            _wait_for_gate()
    elif _count(name) >= int(argument or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _wait_for_gate() -> None:
    gate = os.environ.get("LOGINETL_FAILPOINT_GATE", "")
    deadline = time.monotonic() + _HOLD_LIMIT_SECONDS
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
