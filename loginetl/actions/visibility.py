"""Keep in-flight batches hidden, however long a commit blocks: the visibility heartbeat.

One background thread per Consumer, apart from the workers (which may be blocked inside
the database for minutes), extends each held batch's visibility before a third of the
timeout has passed since its receive, and every third of it after. A batch is held from
its receive until its deletes (or release) are done, so a slow database never causes a
redelivery mid-transaction.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loginetl.core.batch import InboundMessage
from loginetl.errors import ConfigError, LoginetlError
from loginetl.services.sqs import SqsService

log = logging.getLogger("loginetl.consume")


@dataclass
class _Held:
    messages: Sequence[InboundMessage]
    due: float  # monotonic time of the next extension
    extending: bool = False  # a ChangeMessageVisibility call for it is in flight


class Hold:
    """A batch under the heartbeat; ``release()`` stops extending it (idempotent)."""

    def __init__(self, heartbeat: Heartbeat, key: int) -> None:
        self._heartbeat, self._key = heartbeat, key

    def release(self) -> None:
        self._heartbeat._drop(self._key)


class Heartbeat:
    """Extends the visibility of every held batch from one background thread."""

    def __init__(
        self,
        sqs: SqsService,
        queue_url: str,
        visibility_timeout: int,
        *,
        on_fatal: Callable[[LoginetlError], None],
    ) -> None:
        self.sqs, self.queue_url = sqs, queue_url
        self.visibility = visibility_timeout
        self.period = visibility_timeout / 3
        self.on_fatal = on_fatal
        self.extensions = 0
        self._held: dict[int, _Held] = {}
        self._ids = itertools.count()
        # Guards _held only, never across an SQS call: a slow endpoint must not block every
        # worker's hold and release. A release waits (on _extended) only for its own
        # batch's extension in flight, so no extension lands after a release or a delete.
        self._lock = threading.Lock()
        self._extended = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility", daemon=True)
        self._thread.start()

    def hold(self, messages: Sequence[InboundMessage], received_at: float) -> Hold:
        """Keep ``messages`` hidden; ``received_at`` is monotonic time before the receive."""
        key = next(self._ids)
        with self._lock:
            self._held[key] = _Held(messages, received_at + self.period)
        self._wake.set()
        return Hold(self, key)

    def _drop(self, key: int) -> None:
        with self._lock:
            held = self._held.pop(key, None)
            while held is not None and held.extending:
                self._extended.wait()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed.is_set():
            while (held := self._next_due()) is not None:
                self._extend(held)  # no lock held: holds and other releases go on meanwhile
                with self._lock:
                    held.extending = False
                    held.due = time.monotonic() + self.period
                    self._extended.notify_all()
            with self._lock:
                now = time.monotonic()
                next_due = min((h.due for h in self._held.values()), default=now + self.period)
            self._wake.wait(max(0.05, next_due - now))
            self._wake.clear()

    def _next_due(self) -> _Held | None:
        """The next held batch whose extension is due, marked as being extended."""
        with self._lock:
            now = time.monotonic()
            held = next((h for h in self._held.values() if h.due <= now), None)
            if held is not None:
                held.extending = True
            return held
            self._wake.clear()

    def _extend(self, held: _Held) -> None:
        try:
            self.sqs.set_visibility(self.queue_url, held.messages, self.visibility)
            self.extensions += 1
        except ConfigError as error:  # e.g. ChangeMessageVisibility denied: no retry cures it
            self.on_fatal(error)
        except LoginetlError as error:
            log.warning("could not extend visibility (%s); retrying", error)
