"""Signing and verifying loginetl's own message attributes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loginetl.core import attributes as a
from loginetl.core.batch import InboundMessage
from loginetl.core.keyring import Keyring

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEYS = Keyring(current="a2", keys={"a1": b"1" * 32, "a2": b"2" * 32})
BODY = '{"user_id": "u"}'


def genuine(**extra: str) -> dict[str, str]:
    return {
        a.ATTR_ORIGINAL_MESSAGE_ID: "0b7a-11",
        a.ATTR_ORIGINAL_SENT_AT: str(int((NOW - timedelta(days=2)).timestamp() * 1000)),
        a.ATTR_REASON: "invalid_ip",
        a.ATTR_DETAIL: "field 'ip' is not an IPv4 or IPv6 address",
        a.ATTR_FIRST_SEEN: (NOW - timedelta(days=1)).isoformat(timespec="seconds"),
        a.ATTR_REPLAYS: "2",
        **extra,
    }


def test_a_signed_set_verifies_and_passes_other_attributes_through() -> None:
    signed = a.sign({**genuine(), "app-trace": "x"}, BODY, KEYS)
    assert signed[a.ATTR_KEY_ID] == "a2"
    verified = a.verify(signed, BODY, KEYS, now=NOW)
    assert not verified.dropped
    assert verified.attributes == {**genuine(), "app-trace": "x"}


def test_any_key_in_the_file_verifies_so_old_dlq_messages_survive_a_rotation() -> None:
    old = Keyring(current="a1", keys={"a1": b"1" * 32})
    assert not a.verify(a.sign(genuine(), BODY, old), BODY, KEYS, now=NOW).dropped


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: {**s, a.ATTR_ORIGINAL_MESSAGE_ID: "someone-else"},
        lambda s: {**s, a.ATTR_REPLAYS: "3"},
        lambda s: {k: v for k, v in s.items() if k != a.ATTR_REASON},  # a value removed
        lambda s: {**s, a.ATTR_KEY_ID: "a9"},  # a key id not in the file
        lambda s: {k: v for k, v in s.items() if k != a.ATTR_TAG},
        lambda s: {**s, a.ATTR_TAG: "0" * 64},
    ],
)
def test_a_changed_value_key_or_tag_drops_every_loginetl_attribute(tamper: object) -> None:
    signed = a.sign(genuine(), BODY, KEYS)
    verified = a.verify(tamper(signed), BODY, KEYS, now=NOW)  # type: ignore[operator]
    assert verified.dropped
    assert not any(k.startswith("loginetl-") for k in verified.attributes)


def test_the_tag_binds_the_body() -> None:
    signed = a.sign(genuine(), BODY, KEYS)
    assert a.verify(signed, BODY + " ", KEYS, now=NOW).dropped


def test_unsigned_attributes_from_an_older_loginetl_are_unverified() -> None:
    verified = a.verify(genuine(), BODY, KEYS, now=NOW)
    assert verified.dropped
    assert verified.attributes == {}


def test_no_loginetl_attributes_is_not_counted() -> None:
    assert a.verify({"other": "1"}, BODY, KEYS, now=NOW) == a.Verified({"other": "1"}, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (a.ATTR_ORIGINAL_SENT_AT, "9" * 15),  # year 33658
        (a.ATTR_ORIGINAL_SENT_AT, "0"),  # 1970
        (a.ATTR_ORIGINAL_SENT_AT, "-5"),
        (a.ATTR_ORIGINAL_SENT_AT, "1e12"),
        (a.ATTR_ORIGINAL_MESSAGE_ID, "x" * 129),
        (a.ATTR_ORIGINAL_MESSAGE_ID, "a b"),
        (a.ATTR_REPLAYS, "1001"),
        (a.ATTR_REPLAYS, "²"),
        (a.ATTR_FIRST_SEEN, "2026-11-25T00:00:00"),  # no zone
        (a.ATTR_FIRST_SEEN, "1900-01-01T00:00:00+00:00"),
        (a.ATTR_REASON, "Not A Code"),
        (a.ATTR_DETAIL, "d" * 513),
    ],
)
def test_signed_values_out_of_range_are_dropped_alone(name: str, value: str) -> None:
    signed = a.sign(genuine(**{name: value}), BODY, KEYS)
    verified = a.verify(signed, BODY, KEYS, now=NOW)
    assert verified.dropped
    assert name not in verified.attributes
    assert len(verified.attributes) == len(genuine()) - 1


@given(st.dictionaries(st.text(max_size=40), st.text(max_size=300), max_size=8), st.text())
def test_verify_never_raises_on_anything_a_producer_sends(attrs: dict[str, str], body: str) -> None:
    for prefix in ("", "loginetl-"):
        raw = {prefix + k: v for k, v in attrs.items()}
        verified = a.verify(raw, body, KEYS, now=NOW)
        if any(k.startswith("loginetl-") for k in raw):
            assert verified.dropped


NAMES = st.sampled_from([*a.SIGNED, a.ATTR_KEY_ID, a.ATTR_TAG, "loginetl-other", "app-trace"])
TAGS = st.one_of(
    st.text(),
    st.text(min_size=64, max_size=64),  # the right length, any characters
    st.text(alphabet="0123456789abcdefé", min_size=63, max_size=65),
)


@given(
    st.dictionaries(NAMES, st.text(max_size=80), max_size=10), TAGS, st.sampled_from(["a1", "a2"])
)
def test_verify_never_raises_with_a_real_key_id_and_any_tag(
    attrs: dict[str, str], tag: str, key_id: str
) -> None:
    raw = {**attrs, a.ATTR_KEY_ID: key_id, a.ATTR_TAG: tag}
    verified = a.verify(raw, BODY, KEYS, now=NOW)
    assert verified.dropped
    assert not any(k.startswith("loginetl-") for k in verified.attributes)


@given(st.dictionaries(st.sampled_from(a.SIGNED), st.text(max_size=80), max_size=6), st.text())
def test_verify_never_raises_on_signed_values_of_any_text(attrs: dict[str, str], body: str) -> None:
    verified = a.verify(a.sign(attrs, body, KEYS), body, KEYS, now=NOW)
    assert set(verified.attributes) <= set(attrs)


@pytest.mark.parametrize("tag", ["é" * 64, "\udcff" * 64, "0" * 63 + "é", "ab"])
def test_a_non_ascii_or_short_tag_with_a_real_key_id_is_dropped(tag: str) -> None:
    signed = {**a.sign(genuine(), BODY, KEYS), a.ATTR_TAG: tag}
    verified = a.verify(signed, BODY, KEYS, now=NOW)
    assert verified.dropped
    assert verified.attributes == {}


def test_trust_without_keys_believes_nothing_of_loginetl() -> None:
    signed = {**a.sign(genuine(), BODY, KEYS), "app-trace": "x"}
    assert a.trust(signed, BODY, None, now=NOW) == a.Verified({"app-trace": "x"}, dropped=True)
    assert a.trust({"app-trace": "x"}, BODY, None, now=NOW) == a.Verified({"app-trace": "x"}, False)


@given(st.text(max_size=20))
def test_original_sent_at_never_raises(raw: str) -> None:
    message = InboundMessage("m", "r", "", NOW, attributes={a.ATTR_ORIGINAL_SENT_AT: raw})
    assert isinstance(message.original_sent_at, datetime)


def test_the_sent_at_that_killed_consume_falls_back_to_sqs_time() -> None:
    message = InboundMessage("m", "r", "", NOW, attributes={a.ATTR_ORIGINAL_SENT_AT: "9" * 18})
    assert message.original_sent_at == NOW
