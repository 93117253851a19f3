"""FIFO queues: order within a message group, and deduplication ids.

A FIFO queue hands a message group to one receiver at a time and in order, but inside one
received batch the order is loginetl's to keep: a group's later message must not be
committed while an earlier one of that group goes back to the queue to be tried again.

Pure: the caller does the I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace

from loginetl.core.batch import InboundMessage, PreparedBatch

MAX_DEDUPLICATION_ID = 128  # SQS: up to 128 of a-z A-Z 0-9 and !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~


def is_fifo(queue: str) -> bool:
    """Whether a queue's name, URL or ARN names a FIFO queue (SQS requires the suffix)."""
    return queue.endswith(".fifo")


def deduplication_id(purpose: str, message: InboundMessage) -> str:
    """A MessageDeduplicationId for a copy of ``message`` sent for ``purpose``.

    Derived from the original message id (its idempotency key) and the id of this delivery,
    hashed to 64 hex characters: resending the same delivery's copy (after a crash between
    the send and the delete) is dropped by SQS within its 5-minute window, while a later
    trip through the queues (a replay, then a second dead-lettering) is a new delivery with
    a new SQS MessageId, so it is never mistaken for the first.
    """
    material = "\n".join((purpose, message.idempotency_key, message.message_id))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def in_group_order(messages: Sequence[InboundMessage]) -> list[InboundMessage]:
    """The messages by SequenceNumber, which grows within each group (a stable sort).

    Messages without one (a standard queue) keep the order they came in.
    """
    if any(m.sequence_number is None for m in messages):
        return list(messages)
    return sorted(messages, key=lambda m: m.sequence_number or 0)


def behind(
    messages: Sequence[InboundMessage], stuck: Iterable[InboundMessage]
) -> list[InboundMessage]:
    """The messages that follow a stuck one of their group in ``messages`` (in order).

    Stuck messages themselves are not included; messages without a group are never behind.
    """
    stuck_ids = {m.message_id for m in stuck}
    blocked_groups: set[str] = set()
    out: list[InboundMessage] = []
    for message in messages:
        if message.group_id is None:
            continue
        if message.message_id in stuck_ids:
            blocked_groups.add(message.group_id)
        elif message.group_id in blocked_groups:
            out.append(message)
    return out


def without(batch: PreparedBatch, held: Iterable[InboundMessage]) -> PreparedBatch:
    """The batch minus the rows of held-back messages (their vault entries may stay)."""
    held_ids = {m.message_id for m in held}
    if not held_ids:
        return batch
    loadable = [m for m in batch.loadable if m.message_id not in held_ids]
    keys = {m.idempotency_key for m in loadable}
    return replace(
        batch, rows=[r for r in batch.rows if r.idempotency_key in keys], loadable=loadable
    )
