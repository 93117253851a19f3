"""The records of an SQS event (as Lambda's event source mapping delivers them), as
InboundMessages, and the partial batch response.

Everything in a record's body and message attributes is the producer's, so hostile; the
record's frame (messageId, receiptHandle, the system attributes) is SQS's. Each record is
decoded by core/sqs_message.py, the decoder ReceiveMessage's answers go through too. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loginetl.core.batch import InboundMessage
from loginetl.core.fifo import is_fifo
from loginetl.core.sqs_message import MalformedMessage, decode_message


class MalformedEvent(ValueError):
    """The event is not an SQS event source mapping's (no Records, a record without an id)."""


def messages_of(event: Mapping[str, Any]) -> list[InboundMessage]:
    """The event's records as messages, in the event's order (a FIFO group's order)."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("not an SQS event: no Records list")
    try:
        return [decode_message(record) for record in records]
    except MalformedMessage as error:
        raise MalformedEvent(str(error)) from None


def from_fifo(event: Mapping[str, Any]) -> bool:
    """Whether the records come from a FIFO queue (its ARN ends in .fifo)."""
    return any(
        is_fifo(str(record.get("eventSourceARN", "")))
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
