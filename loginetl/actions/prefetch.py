"""Receive a worker's next batch while it loads the last one: the prefetch.

Against a real SQS endpoint every call costs a round trip (~10-30 ms), and a batch of
300 messages takes 30 receives. A worker that receives, then loads, then receives again
leaves the endpoint idle while it commits; with a prefetch its receiver thread gathers
the next batch meanwhile, so the receive side never waits for the database. Measured
in docs/performance.md (bench/latency.py).

At most one batch is fetched ahead: the receiver waits for room before each fetch, and
the worker makes room when it takes a batch (``ahead(batch)`` true) or only when it has
finished it (false: e.g. a batch of large bodies, so memory stays bounded). A batch
fetched and never taken is handed to ``discard`` (consume releases it to the queue).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Runs ``fetch`` on its own thread, at most one result ahead of ``take``.

    ``fetch`` returns None when there is nothing more to fetch; an exception it raises is
    raised again by ``take``. ``close`` must be called (after a stop is requested, so a
    fetch in progress ends soon) and waits for the thread.
    """

    def __init__(
        self,
        fetch: Callable[[], T | None],
        *,
        ahead: Callable[[T], bool],
        discard: Callable[[T], None],
        name: str,
    ) -> None:
        self._fetch, self._ahead, self._discard = fetch, ahead, discard
        self._ready: queue.Queue[T | _Failed | None] = queue.Queue()
        self._room = threading.Semaphore(1)  # one batch being fetched or waiting to be taken
        self._owed = False  # room to make when the taken batch is done
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._room.acquire()
            if self._closed.is_set():
                return
            try:
                item = self._fetch()
            except BaseException as error:  # handed to the worker, which decides
                self._ready.put(_Failed(error))
                return
            self._ready.put(item)
            if item is None:
                return

    def take(self) -> T | None:
        """The next batch (waits for it); None when there are no more."""
        item = self._ready.get()
        if isinstance(item, _Failed):
            raise item.error
        if item is not None and not self._ahead(item):
            self._owed = True
        else:
            self._room.release()
        return item

    def done(self) -> None:
        """The batch last taken is finished: let the receiver fetch if it was waiting on it."""
        if self._owed:
            self._owed = False
            self._room.release()

    def close(self) -> None:
        """Stop fetching, wait for the thread, discard what was fetched and not taken."""
        self._closed.set()
        self._room.release()
        self._thread.join()
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                return
            if item is not None and not isinstance(item, _Failed):
                self._discard(item)


class Inline(Generic[T]):
    """The same interface without a thread: fetch when asked (``--no-prefetch``)."""

    def __init__(self, fetch: Callable[[], T | None]) -> None:
        self._fetch = fetch

    def take(self) -> T | None:
        return self._fetch()

    def done(self) -> None:
        pass

    def close(self) -> None:
        pass
