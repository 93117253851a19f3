"""The visibility heartbeat: no lock across an SQS call.

A stand-in for SqsService whose ChangeMessageVisibility blocks until the test lets it go
(a slow endpoint): nothing here crosses boto3, only the heartbeat's own threading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from loginetl.actions.visibility import Heartbeat
from loginetl.core.batch import InboundMessage


class SlowSqs:
    """Each set_visibility call blocks until ``go`` is set."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.calls: list[tuple[str, ...]] = []
        self.entered = threading.Event()

    def set_visibility(
        self, queue_url: str, messages: Sequence[InboundMessage], timeout: int
    ) -> list[str]:
        self.calls.append(tuple(m.message_id for m in messages))
        self.entered.set()
        self.go.wait(10)
        return []


def message(message_id: str) -> InboundMessage:
    return InboundMessage(message_id, "r", "{}", datetime.now(UTC))


def test_a_slow_extension_blocks_neither_other_holds_nor_their_release() -> None:
    sqs = SlowSqs()
    heartbeat = Heartbeat(cast(Any, sqs), "q", 3, on_fatal=lambda _: None)
    try:
        stuck = heartbeat.hold([message("a")], time.monotonic() - 2)  # due at once
        assert sqs.entered.wait(5)  # its extension is in flight, and hangs
        started = time.monotonic()
        other = heartbeat.hold([message("b")], time.monotonic())
        other.release()
        assert time.monotonic() - started < 0.5

        released = threading.Event()
        threading.Thread(target=lambda: (stuck.release(), released.set()), daemon=True).start()
        assert not released.wait(0.3)  # its own release waits for its extension to land
        sqs.go.set()
        assert released.wait(5)
        calls = len(sqs.calls)
        time.sleep(1.5)  # past another period: a released batch is never extended again
        assert len(sqs.calls) == calls == 1
    finally:
        sqs.go.set()
        heartbeat.close()
