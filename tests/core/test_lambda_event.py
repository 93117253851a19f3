"""SQS event records as InboundMessages; the partial batch response."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loginetl.core.batch import InboundMessage
from loginetl.core.lambda_event import MalformedEvent, batch_response, from_fifo, messages_of

RECORD: dict[str, Any] = {
    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
    "body": '{"user_id": "u"}',
    "attributes": {
        "ApproximateReceiveCount": "2",
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185",
        "MessageGroupId": "g1",
        "SequenceNumber": "18849496460467696128",
    },
    "messageAttributes": {
        "loginetl-replays": {
            "stringValue": "1",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "blob": {"binaryValue": "AAE=", "dataType": "Binary"},
    },
    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
    "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:logins.fifo",
    "awsRegion": "us-east-2",
}


def test_a_record_becomes_the_message_consume_would_have_received() -> None:
    (message,) = messages_of({"Records": [RECORD]})
    assert message == InboundMessage(
        message_id=RECORD["messageId"],
        receipt_handle=RECORD["receiptHandle"],
        body=RECORD["body"],
        sent_at=datetime(2018, 12, 17, 21, 37, 29, 183000, tzinfo=UTC),
        receive_count=2,
        attributes={"loginetl-replays": "1"},  # string attributes only, as consume reads them
        group_id="g1",
        sequence_number=18849496460467696128,
    )
    assert from_fifo({"Records": [RECORD]})
    assert not from_fifo({"Records": [{**RECORD, "eventSourceARN": "arn:aws:sqs:r:1:logins"}]})


def test_the_response_lists_each_failed_record_once_in_order() -> None:
    a, b = messages_of({"Records": [RECORD, {**RECORD, "messageId": "b"}]})
    assert batch_response([b, a, b]) == {
        "batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": RECORD["messageId"]}]
    }
    assert batch_response([]) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "event",
    [{}, {"Records": None}, {"Records": [{"body": "x"}]}, {"Records": [{"messageId": "m"}]}],
)
def test_an_event_that_is_not_an_sqs_event_is_refused(event: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        messages_of(event)


@given(
    st.dictionaries(
        st.text(max_size=20),
        st.one_of(
            st.none(),
            st.text(max_size=20),
            st.integers(),
            st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
        ),
        max_size=4,
    ),
    st.dictionaries(
        st.text(max_size=20), st.one_of(st.none(), st.text(max_size=30), st.integers()), max_size=4
    ),
)
def test_hostile_attributes_never_break_the_conversion(
    message_attributes: dict[str, Any], system: dict[str, Any]
) -> None:
    record = {**RECORD, "messageAttributes": message_attributes, "attributes": system}
    (message,) = messages_of({"Records": [record]})
    assert all(isinstance(v, str) for v in message.attributes.values())
    assert message.receive_count >= 0


def test_an_absurd_sent_timestamp_does_not_raise() -> None:
    record = {**RECORD, "attributes": {"SentTimestamp": "9" * 40}}
    (message,) = messages_of({"Records": [record]})
    assert message.sent_at == datetime.fromtimestamp(0, tz=UTC)
