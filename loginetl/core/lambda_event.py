"""The records of an SQS event (as Lambda's event source mapping delivers them), as
InboundMessages, and the partial batch response.

Everything in a record's body and message attributes is the producer's, so hostile; the
record's frame (messageId, receiptHandle, the system attributes) is SQS's. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from loginetl.core.batch import InboundMessage


class MalformedEvent(ValueError):
    """The event is not an SQS event source mapping's (no Records, a record without an id)."""


def _int(raw: object, default: int) -> int:
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else default


def _sent_at(raw: object) -> datetime:
    """SQS's SentTimestamp (epoch milliseconds); the epoch itself if it is unusable."""
    try:
        return datetime.fromtimestamp(_int(raw, 0) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, tz=UTC)


def _message(record: Mapping[str, Any]) -> InboundMessage:
    message_id, body = record.get("messageId"), record.get("body")
    if not isinstance(message_id, str) or not message_id or not isinstance(body, str):
        raise MalformedEvent("an SQS record without a messageId or a body")
    system = record.get("attributes") or {}
    attributes = {
        str(name): value["stringValue"]
        for name, value in (record.get("messageAttributes") or {}).items()
        if isinstance(value, Mapping) and isinstance(value.get("stringValue"), str)
    }
    group = system.get("MessageGroupId")
    sequence = system.get("SequenceNumber")
    return InboundMessage(
        message_id=message_id,
        receipt_handle=str(record.get("receiptHandle", "")),
        body=body,
        sent_at=_sent_at(system.get("SentTimestamp")),
        receive_count=_int(system.get("ApproximateReceiveCount"), 1),
        attributes=attributes,
        group_id=group if isinstance(group, str) else None,
        sequence_number=_int(sequence, -1) if isinstance(sequence, str) else None,
    )


def messages_of(event: Mapping[str, Any]) -> list[InboundMessage]:
    """The event's records as messages, in the event's order (a FIFO group's order)."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("not an SQS event: no Records list")
    return [_message(record) for record in records]


def is_fifo(event: Mapping[str, Any]) -> bool:
    """Whether the records come from a FIFO queue (its ARN ends in .fifo)."""
    return any(
        str(record.get("eventSourceARN", "")).endswith(".fifo")
        for record in event.get("Records") or []
        if isinstance(record, Mapping)
    )


def batch_response(failed: Iterable[InboundMessage]) -> dict[str, list[dict[str, str]]]:
    """ReportBatchItemFailures' answer: the records the event source must not delete."""
    return {"batchItemFailures": [{"itemIdentifier": m.message_id} for m in _unique(failed)]}


def _unique(messages: Iterable[InboundMessage]) -> Sequence[InboundMessage]:
    seen: dict[str, InboundMessage] = {}
    for message in messages:
        seen.setdefault(message.message_id, message)
    return list(seen.values())
