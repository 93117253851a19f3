"""The one decoder: an SQS message, as ReceiveMessage returns it or as a Lambda event
record carries it, to an InboundMessage.

The two spellings differ only in their names (``MessageId`` / ``messageId``,
``StringValue`` / ``stringValue``, ...), so one function reads both and they cannot
disagree on a bad value. Everything in the body and the message attributes is the
producer's, so hostile; the frame (ids, the system attributes) is SQS's, and a value it
should never send (a non-numeric SentTimestamp) falls back rather than raising. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from loginetl.core.batch import InboundMessage


class MalformedMessage(ValueError):
    """A message without an id or a body: not something SQS sends."""


class _Names(NamedTuple):
    message_id: str
    receipt_handle: str
    body: str
    system: str
    attributes: str
    string_value: str


_API = _Names(
    "MessageId", "ReceiptHandle", "Body", "Attributes", "MessageAttributes", "StringValue"
)
_EVENT = _Names(
    "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "stringValue"
)


def _digits(raw: object) -> int | None:
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else None


def _sent_at(raw: object) -> datetime:
    """SQS's SentTimestamp (epoch milliseconds); the epoch itself if it is unusable."""
    try:
        return datetime.fromtimestamp((_digits(raw) or 0) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, tz=UTC)


def decode_message(raw: Mapping[str, Any]) -> InboundMessage:
    """One SQS message (either spelling) as an InboundMessage; MalformedMessage if it has
    no id or no body."""
    names = _API if "MessageId" in raw else _EVENT
    message_id, body = raw.get(names.message_id), raw.get(names.body)
    if not isinstance(message_id, str) or not message_id or not isinstance(body, str):
        raise MalformedMessage("an SQS message without a message id or a body")
    system = raw.get(names.system) or {}
    attributes = {
        str(name): value[names.string_value]
        for name, value in (raw.get(names.attributes) or {}).items()
        if isinstance(value, Mapping) and isinstance(value.get(names.string_value), str)
    }
    group = system.get("MessageGroupId")
    return InboundMessage(
        message_id=message_id,
        receipt_handle=str(raw.get(names.receipt_handle, "")),
        body=body,
        sent_at=_sent_at(system.get("SentTimestamp")),
        receive_count=_digits(system.get("ApproximateReceiveCount")) or 1,
        attributes=attributes,
        group_id=group if isinstance(group, str) else None,
        sequence_number=_digits(system.get("SequenceNumber")),
    )
