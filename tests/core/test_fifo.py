"""FIFO helpers: deduplication ids, group order, holding a group back."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from loginetl.core.batch import ATTR_ORIGINAL_MESSAGE_ID, InboundMessage
from loginetl.core.fifo import (
    MAX_DEDUPLICATION_ID,
    behind,
    deduplication_id,
    in_group_order,
)

SQS_DEDUPLICATION_ID = re.compile(r"[!-~]{1,128}")  # alphanumerics and punctuation


def message(
    mid: str, group: str | None = None, seq: int | None = None, **attrs: str
) -> InboundMessage:
    return InboundMessage(
        mid,
        "rh",
        "{}",
        datetime(2026, 1, 1, tzinfo=UTC),
        attributes=attrs,
        group_id=group,
        sequence_number=seq,
    )


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_a_deduplication_id_is_always_one_sqs_accepts(original: str, delivery: str) -> None:
    made = deduplication_id(
        "dead-letter", message(delivery, **{ATTR_ORIGINAL_MESSAGE_ID: original})
    )
    assert SQS_DEDUPLICATION_ID.fullmatch(made)
    assert len(made) <= MAX_DEDUPLICATION_ID


def test_a_deduplication_id_follows_the_original_id_and_the_delivery() -> None:
    first = message("m1", **{ATTR_ORIGINAL_MESSAGE_ID: "orig"})
    assert deduplication_id("dead-letter", first) == deduplication_id("dead-letter", first)
    assert deduplication_id("dead-letter", first) != deduplication_id("replay", first)
    # The same original, delivered again after a replay (a new SQS MessageId): a new id.
    again = message("m2", **{ATTR_ORIGINAL_MESSAGE_ID: "orig"})
    assert deduplication_id("dead-letter", first) != deduplication_id("dead-letter", again)
    other = message("m1", **{ATTR_ORIGINAL_MESSAGE_ID: "other"})
    assert deduplication_id("dead-letter", first) != deduplication_id("dead-letter", other)


def test_group_order_is_sequence_number_order_and_standard_queues_keep_theirs() -> None:
    received = [message("b2", "b", 5), message("a1", "a", 1), message("b1", "b", 2)]
    assert [m.message_id for m in in_group_order(received)] == ["a1", "b1", "b2"]
    standard = [message("x"), message("y", "g", 1)]
    assert in_group_order(standard) == standard


def test_behind_a_stuck_message_is_the_rest_of_its_group_only() -> None:
    batch = [
        message("a1", "a", 1),
        message("b1", "b", 2),
        message("a2", "a", 3),
        message("a3", "a", 4),
        message("b2", "b", 5),
        message("s", None, None),
    ]
    assert [m.message_id for m in behind(batch, [batch[2]])] == ["a3"]
    assert [m.message_id for m in behind(batch, [batch[0], batch[1]])] == ["a2", "a3", "b2"]
    assert behind(batch, [batch[5]]) == []
    assert behind(batch, []) == []
