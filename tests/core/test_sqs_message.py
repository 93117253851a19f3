"""One decoder for an SQS message, whichever way it arrives (ReceiveMessage or a Lambda
record): the same message decodes the same, and no value SQS should never send raises."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from loginetl.core.sqs_message import decode_message
from tests.core.test_lambda_event import RECORD


def as_api(record: dict[str, Any]) -> dict[str, Any]:
    """The ReceiveMessage spelling of a Lambda record."""
    return {
        "MessageId": record["messageId"],
        "ReceiptHandle": record["receiptHandle"],
        "Body": record["body"],
        "MD5OfBody": record["md5OfBody"],
        "Attributes": record["attributes"],
        "MessageAttributes": {
            name: {
                ("StringValue" if k == "stringValue" else k[0].upper() + k[1:]): v
                for k, v in value.items()
            }
            for name, value in record["messageAttributes"].items()
        },
    }


def test_a_receive_and_a_lambda_record_of_one_message_decode_the_same() -> None:
    assert decode_message(as_api(RECORD)) == decode_message(RECORD)


@given(
    st.one_of(st.none(), st.text(max_size=30), st.integers(), st.lists(st.integers())),
    st.sampled_from(["SentTimestamp", "ApproximateReceiveCount", "SequenceNumber"]),
)
def test_bad_system_values_fall_back_the_same_in_both_spellings(value: Any, name: str) -> None:
    record = {**RECORD, "attributes": {**RECORD["attributes"], name: value}}
    assert decode_message(as_api(record)) == decode_message(record)
