"""Envelopes: SNS notifications and EventBridge events unwrapped, strictly, never raising."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from loginetl.core.attributes import ATTR_ORIGINAL_SENT_AT
from loginetl.core.batch import InboundMessage, dead_letter_attributes, prepare_batch
from loginetl.core.envelope import EnvelopeRejection, Parsed, parse_message
from loginetl.core.masking import Masker
from loginetl.core.messages import REASON_CODES, parse_login
from loginetl.core.vault_crypto import VaultSealer

LOGIN: dict[str, Any] = {
    "user_id": "u1",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": "199.172.111.135",
    "locale": "RU",
    "device_id": "593-47-5928",
}
SNS_ID = "6e92e9d6-5501-4bee-aa3e-93258ceb80f7"
EB_ID = "a0b1c2d3-0000-4000-8000-000000000001"
SQS_SENT = datetime(2026, 11, 25, 0, 0, 5, tzinfo=UTC)


def sns(message: Any = None, **changes: Any) -> str:
    document = {
        "Type": "Notification",
        "MessageId": SNS_ID,
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:logins",
        "Message": json.dumps(LOGIN) if message is None else message,
        "Timestamp": "2026-11-24T23:59:59.616Z",
        "SignatureVersion": "1",
        "Signature": "c2ln",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        **changes,
    }
    return json.dumps({k: v for k, v in document.items() if v is not None})


def eventbridge(detail: Any = None, **changes: Any) -> str:
    document = {
        "version": "0",
        "id": EB_ID,
        "detail-type": "user.login",
        "source": "com.example.app",
        "account": "000000000000",
        "time": "2026-11-24T23:59:58Z",
        "region": "us-east-1",
        "resources": [],
        "detail": LOGIN if detail is None else detail,
        **changes,
    }
    return json.dumps({k: v for k, v in document.items() if v is not None})


def parsed(body: str, mode: str = "auto") -> Parsed:
    outcome = parse_message(body, envelope=mode)  # type: ignore[arg-type]
    assert isinstance(outcome, Parsed), outcome
    return outcome


def reason(body: str, mode: str = "auto") -> str:
    outcome = parse_message(body, envelope=mode)  # type: ignore[arg-type]
    assert isinstance(outcome, EnvelopeRejection), outcome
    return outcome.rejection.reason


def test_sns_notification_is_unwrapped_with_its_message_id_and_timestamp() -> None:
    for mode in ("auto", "sns"):
        outcome = parsed(sns(), mode)
        assert outcome.event == parse_login(json.dumps(LOGIN))
        assert (outcome.kind, outcome.envelope_id) == ("sns", f"sns:{SNS_ID}")
        assert outcome.envelope_time == datetime(2026, 11, 24, 23, 59, 59, 616000, tzinfo=UTC)


def test_eventbridge_event_is_unwrapped_with_its_id_and_time() -> None:
    for mode in ("auto", "eventbridge"):
        outcome = parsed(eventbridge(), mode)
        assert outcome.event == parse_login(json.dumps(LOGIN))
        assert (outcome.kind, outcome.envelope_id) == ("eventbridge", f"eventbridge:{EB_ID}")
        assert outcome.envelope_time == datetime(2026, 11, 24, 23, 59, 58, tzinfo=UTC)


def test_a_plain_login_passes_through_auto_and_none_but_not_a_strict_mode() -> None:
    body = json.dumps(LOGIN)
    assert parsed(body, "auto") == Parsed(parse_login(body))  # type: ignore[arg-type]
    assert parsed(body, "none").kind == "none"
    assert reason(body, "sns") == "envelope_invalid"
    assert reason(body, "eventbridge") == "envelope_invalid"


def test_none_treats_an_envelope_as_a_plain_body() -> None:
    assert reason(sns(), "none") == "missing_field"


def test_the_inner_login_is_held_to_the_same_contract() -> None:
    bad = {**LOGIN, "ip": "300.1.1.1"}
    assert reason(sns(json.dumps(bad))) == "invalid_ip"
    assert reason(eventbridge(bad)) == "invalid_ip"
    outcome = parse_message(sns(json.dumps({**LOGIN, "user_id": 1})))
    assert isinstance(outcome, EnvelopeRejection)
    assert outcome.rejection.detail.endswith("(in the SNS notification's Message)")
    assert outcome.envelope_id == f"sns:{SNS_ID}"  # a reject keeps the envelope's identity
    assert reason(sns('{"ip": "1.2.3.4", "ip": "1.2.3.4"}')) == "duplicate_key"


@pytest.mark.parametrize(
    "body",
    [
        sns("not json"),
        sns("[1, 2]"),
        sns('"a string"'),
        sns(json.dumps({"Records": [{"s3": {}}]})),  # another event type on the topic
        eventbridge({"orderId": "1"}),
        eventbridge({}),
    ],
)
def test_an_envelope_around_something_that_is_not_a_login_has_its_own_reason(body: str) -> None:
    assert reason(body) == "envelope_not_login"


@pytest.mark.parametrize(
    "body",
    [
        sns(MessageId="../../etc"),  # not an id
        sns(MessageId="x" * 101),
        sns(Message={"user_id": "u1"}),  # Message must be a string
        sns(MessageId=None),
        sns(MessageId=7),
        eventbridge(id=""),
        eventbridge(detail="{}"),  # detail must be an object
        eventbridge(id=None),
        json.dumps({"Type": "SubscriptionConfirmation", "TopicArn": "arn", "Token": "t"}),
    ],
)
def test_a_malformed_envelope_is_envelope_invalid(body: str) -> None:
    assert reason(body) == "envelope_invalid"


def test_reason_codes_are_public() -> None:
    assert {"envelope_invalid", "envelope_not_login"} <= set(REASON_CODES)


def test_size_limits_still_apply_to_the_whole_body() -> None:
    huge = sns(json.dumps({**LOGIN, "pad": "x" * 2000}))
    assert parse_message(huge, max_body_bytes=1024) == EnvelopeRejection(
        parse_login(huge, max_body_bytes=1024)  # type: ignore[arg-type]
    )
    assert parsed(huge).envelope_id == f"sns:{SNS_ID}"  # within the default limit it loads


def test_an_unparseable_or_zone_less_time_is_ignored_not_fatal() -> None:
    for stamp in ("yesterday", "2026-11-24T23:59:59", "2026-13-99T99:99:99Z", 5):
        outcome = parsed(sns(Timestamp=stamp))
        assert outcome.envelope_time is None


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    ),
    st.sampled_from(["auto", "none", "sns", "eventbridge"]),
)
def test_parse_message_never_raises(value: Any, mode: str) -> None:
    for body in (json.dumps(value), sns(json.dumps(value)), eventbridge(value), sns(value)):
        outcome = parse_message(body, envelope=mode)  # type: ignore[arg-type]
        assert isinstance(outcome, Parsed | EnvelopeRejection)


# -- through the batch: keys and times -----------------------------------------------------

MASKER = Masker("k1", bytes(range(32)))
SEALER = VaultSealer(X25519PrivateKey.generate().public_key())


def inbound(message_id: str, body: str, sent: datetime = SQS_SENT, **attrs: str) -> InboundMessage:
    return InboundMessage(message_id, f"rh-{message_id}", body, sent, 1, attrs)


def test_two_sqs_copies_of_one_sns_notification_are_one_row_on_one_day() -> None:
    # SNS delivered the same notification twice, across midnight UTC (new SQS MessageIds).
    late = SQS_SENT + timedelta(minutes=3)
    batch = prepare_batch(
        [inbound("sqs-1", sns()), inbound("sqs-2", sns(), late)], masker=MASKER, sealer=SEALER
    )
    assert [r.idempotency_key for r in batch.rows] == [f"sns:{SNS_ID}"]
    assert batch.duplicates_in_batch == 1
    assert batch.rows[0].create_date.isoformat() == "2026-11-24"  # the envelope's day


def test_an_envelope_id_cannot_collide_with_an_sqs_message_id() -> None:
    forged = sns(MessageId="sqs-1")  # a producer names another message's SQS id
    batch = prepare_batch(
        [inbound("sqs-1", json.dumps(LOGIN)), inbound("sqs-2", forged)],
        masker=MASKER,
        sealer=SEALER,
    )
    assert sorted(r.idempotency_key for r in batch.rows) == ["sns:sqs-1", "sqs-1"]


def test_a_loaded_envelope_takes_its_day_from_its_own_time_and_only_within_the_bound() -> None:
    def outcome(stamp: object) -> datetime | str:
        batch = prepare_batch([inbound("m", sns(Timestamp=stamp))], masker=MASKER, sealer=SEALER)
        return batch.rows[0].sent_at if batch.rows else batch.rejected[0].rejection.reason

    assert outcome("2026-11-24T01:00:05Z") == datetime(2026, 11, 24, 1, 0, 5, tzinfo=UTC)
    # Outside the bound, or no usable time: rejected, never loaded on SQS's day instead.
    assert outcome("2026-11-23T00:00:04Z") == "envelope_invalid"  # over a day earlier
    assert outcome("2026-11-25T00:10:00Z") == "envelope_invalid"  # later than SQS saw it
    assert outcome("yesterday") == "envelope_invalid"


@settings(max_examples=200, deadline=None)
@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_a_redelivery_however_late_never_makes_a_second_row_on_another_day(
    late: timedelta,
) -> None:
    # One SNS notification delivered twice, the second time ``late`` after the first (a new
    # SQS message, a new SentTimestamp): wherever each delivery lands, every row it makes
    # is under one key on one day, so the primary key (idempotency_key, create_date)
    # absorbs the second.
    first = prepare_batch([inbound("sqs-1", sns())], masker=MASKER, sealer=SEALER)
    second = prepare_batch([inbound("sqs-2", sns(), SQS_SENT + late)], masker=MASKER, sealer=SEALER)
    keys = {(r.idempotency_key, r.create_date) for r in [*first.rows, *second.rows]}
    assert len(keys) == 1
    assert len(second.rows) + len(second.rejected) == 1


def test_lag_starts_no_later_than_sqs_and_at_the_move_for_a_replayed_copy() -> None:
    fresh = inbound("m", sns(Timestamp="2026-11-25T00:00:06Z"))  # claims after SQS's time
    message = prepare_batch([fresh], masker=MASKER, sealer=SEALER).loadable[0]
    assert message.lag_from == SQS_SENT
    older = prepare_batch([inbound("m", sns())], masker=MASKER, sealer=SEALER).loadable[0]
    assert older.lag_from == datetime(2026, 11, 24, 23, 59, 59, 616000, tzinfo=UTC)
    original = str(int(SQS_SENT.timestamp() * 1000))  # a replay carries the first send
    replayed = inbound(
        "r", sns(), SQS_SENT + timedelta(days=3), **{ATTR_ORIGINAL_SENT_AT: original}
    )
    moved = prepare_batch([replayed], masker=MASKER, sealer=SEALER).loadable[0]
    assert moved.lag_from == SQS_SENT + timedelta(days=3)


def test_a_rejected_envelope_is_dead_lettered_under_its_envelope_id() -> None:
    batch = prepare_batch(
        [inbound("sqs-9", sns(json.dumps({**LOGIN, "ip": "x"})))], masker=MASKER, sealer=SEALER
    )
    attributes = dead_letter_attributes(batch.rejected[0], first_seen=SQS_SENT)
    assert attributes["loginetl-reason"] == "invalid_ip"
    assert attributes["loginetl-original-message-id"] == f"sns:{SNS_ID}"
    malformed = prepare_batch([inbound("sqs-8", sns(MessageId="??"))], masker=MASKER, sealer=SEALER)
    attributes = dead_letter_attributes(malformed.rejected[0], first_seen=SQS_SENT)
    assert attributes["loginetl-original-message-id"] == "sqs-8"  # no id to believe: SQS's
