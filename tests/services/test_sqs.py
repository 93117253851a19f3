"""The SQS adapter against a real LocalStack endpoint."""

from __future__ import annotations

import logging
import uuid

import pytest

from loginetl.errors import QueueNotFound, ServiceUnavailable
from loginetl.services.sqs import OutboundMessage, SqsService, make_client


def test_create_queues_wires_the_redrive_policy(sqs: SqsService) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    url, dlq_url = sqs.create_queues(name, f"{name}-dlq", max_receive_count=3, visibility_timeout=7)
    depth = sqs.depth(url)
    assert depth.max_receive_count == 3
    assert depth.visibility_timeout == 7
    assert sqs.depth(dlq_url).max_receive_count is None
    assert sqs.create_queues(name, f"{name}-dlq", max_receive_count=3)[0] == url  # idempotent


def test_send_receive_delete_round_trip_keeps_attributes(sqs: SqsService) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    url, _ = sqs.create_queues(name, f"{name}-dlq")
    failed = sqs.send(
        url, [OutboundMessage(f"body-{i}", {"loginetl-reason": "x"}) for i in range(13)]
    )
    assert failed == []
    received = []
    while batch := sqs.receive(url, max_messages=10, wait_seconds=1):
        received += batch
        assert sqs.delete(url, batch) == []
    assert sorted(m.body for m in received) == sorted(f"body-{i}" for i in range(13))
    assert all(m.attributes == {"loginetl-reason": "x"} for m in received)
    assert all(m.receive_count == 1 and m.sent_at.year >= 2024 for m in received)
    assert sqs.depth(url).visible == 0


def test_release_makes_a_message_visible_again(sqs: SqsService) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    url, _ = sqs.create_queues(name, f"{name}-dlq")
    sqs.send(url, [OutboundMessage("one")])
    first = sqs.receive(url, wait_seconds=1)
    assert sqs.set_visibility(url, first, 0) == []
    again = sqs.receive(url, wait_seconds=1)
    assert [m.message_id for m in again] == [m.message_id for m in first]
    assert again[0].receive_count == 2


def test_missing_queue_is_a_clear_error(sqs: SqsService) -> None:
    with pytest.raises(QueueNotFound, match="--create-queues"):
        sqs.queue_url(f"absent-{uuid.uuid4().hex[:8]}")


def test_unreachable_endpoint_is_service_unavailable() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = SqsService(make_client(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"))
    dead.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ServiceUnavailable, match="cannot reach the SQS endpoint"):
        dead.queue_url("anything")


def test_calls_reuse_one_connection(sqs: SqsService, caplog: pytest.LogCaptureFixture) -> None:
    """Without an explicit keep-alive, LocalStack closes every connection after one call."""
    url, _ = sqs.create_queues("reuse-q", "reuse-q-dlq")
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for _ in range(20):
            sqs.depth(url)
    opened = [r for r in caplog.records if "Starting new HTTP" in r.getMessage()]
    dropped = [r for r in caplog.records if "Resetting dropped connection" in r.getMessage()]
    assert dropped == []
    assert len(opened) <= 1
