"""A loopback TCP proxy that adds a fixed round-trip delay to every HTTP request.

The fault suite's proxy (tests/faults/proxy.py) with one change: before it forwards the
first bytes of each request on a connection, it waits ``delay_seconds``. "Each request"
and not "each connection": botocore keeps connections alive, so a proxy that delayed
only the connect would charge one round trip for thousands of calls. A request starts
with the first bytes the client sends after the server last sent something (HTTP/1.1,
no pipelining: one request at a time on a connection, as botocore does). A new
connection costs one more delay, as a TCP handshake costs a round trip.

Used by bench/latency.py: ``with LatencyProxy(upstream_port, 0.020) as proxy:`` then
point the client at ``proxy.url``.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.proxy import Proxy


class LatencyProxy(Proxy):
    """Forward to ``127.0.0.1:upstream_port``, each request ``delay_seconds`` late."""

    def __init__(self, upstream_port: int, delay_seconds: float) -> None:
        self.delay = delay_seconds
        self.requests = 0  # how many requests were delayed (a check that it delays at all)
        super().__init__(upstream_port)

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.pause()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Client ``a``, server ``b``: delay the first chunk of each request from ``a``."""
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        for side in (a, b):  # else Nagle + delayed ACKs add ~40 ms to split writes
            side.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        new_request = True
        if self.delay:
            time.sleep(self.delay)  # the connect's round trip
        try:
            while True:
                for key, _ in selector.select(timeout=1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if key.fileobj is a:
                        if new_request:
                            new_request = False
                            self.requests += 1
                            if self.delay:
                                time.sleep(self.delay)
                    else:
                        new_request = True
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._conns.discard(a)
                self._conns.discard(b)
            a.close()
            b.close()
