"""The message contract: what loads, and the stable reason code for what does not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loginetl.core import messages as m
from loginetl.core.messages import LoginEvent, Rejection, parse_login

VALID: dict[str, Any] = {
    "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": "199.172.111.135",
    "locale": "RU",
    "device_id": "593-47-5928",
}


def body(**changes: Any) -> str:
    document = {**VALID, **changes}
    return json.dumps({k: v for k, v in document.items() if v is not _DROP})


_DROP = object()


def test_valid_message_parses_into_event() -> None:
    event = parse_login(body())
    assert event == LoginEvent(
        user_id=VALID["user_id"],
        device_type="android",
        ip="199.172.111.135",
        device_id="593-47-5928",
        app_version_raw="2.3.0",
        app_version=2_003_000,
        locale="RU",
    )


def test_repr_of_event_hides_pii() -> None:
    text = repr(parse_login(body()))
    assert "199.172.111.135" not in text
    assert "593-47-5928" not in text


@pytest.mark.parametrize("locale", [None, _DROP])
def test_null_or_missing_locale_loads_as_null(locale: object) -> None:
    event = parse_login(body(locale=locale))
    assert isinstance(event, LoginEvent)
    assert event.locale is None


def test_unknown_fields_are_ignored_and_counted() -> None:
    event = parse_login(body(email="someone@example.com", extra={"a": 1}))
    assert isinstance(event, LoginEvent)
    assert event.ignored_fields == 2


def test_leading_bom_is_tolerated() -> None:
    assert isinstance(parse_login("\ufeff" + body()), LoginEvent)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("x" * (m.MAX_BODY_BYTES + 1), m.TOO_LARGE),
        ("not json", m.INVALID_JSON),
        ("", m.INVALID_JSON),
        ("[" * 100_000, m.INVALID_JSON),
        ("1" * 5000, m.INVALID_JSON),
        ('{"user_id": "a", "user_id": "b"}', m.DUPLICATE_KEY),
        ("[1, 2]", m.NOT_AN_OBJECT),
        ('"a string"', m.NOT_AN_OBJECT),
        ("null", m.NOT_AN_OBJECT),
        (json.dumps({"foo": "oops_wrong_msg_type", "bar": "123"}), m.MISSING_FIELD),
        (body(ip=None), m.MISSING_FIELD),
        (body(device_id=_DROP), m.MISSING_FIELD),
        (body(user_id=12345), m.WRONG_TYPE),
        (body(app_version=2.3), m.WRONG_TYPE),
        (body(locale=["RU"]), m.WRONG_TYPE),
        (body(device_type=True), m.WRONG_TYPE),
        (body(user_id=""), m.EMPTY_FIELD),
        (body(device_id="   "), m.EMPTY_FIELD),
        (body(user_id="u" * 129), m.TOO_LONG),
        (body(locale="x" * 33), m.TOO_LONG),
        (body(device_id="d" * 257), m.TOO_LONG),
        (body(user_id="a\x00b"), m.INVALID_TEXT),
        ('{"user_id": "\\ud800", "ip": "1.2.3.4"}', m.INVALID_TEXT),
        (body(ip="999.1.2.3"), m.INVALID_IP),
        (body(ip="01.2.3.4"), m.INVALID_IP),
        (body(ip="localhost"), m.INVALID_IP),
        (body(app_version="v2-beta"), m.INVALID_APP_VERSION),
        (body(app_version="1.2.3.4"), m.INVALID_APP_VERSION),
        (body(app_version="1000.0"), m.INVALID_APP_VERSION),
        (body(app_version="١.٢"), m.INVALID_APP_VERSION),  # non-ASCII digits
    ],
)
def test_rejections_carry_a_stable_reason(raw: str, reason: str) -> None:
    outcome = parse_login(raw)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == reason
    assert outcome.reason in m.REASON_CODES


def test_rejection_detail_never_quotes_the_value() -> None:
    outcome = parse_login(body(ip="10.0.0.999", device_id="secret-device"))
    assert isinstance(outcome, Rejection)
    assert "10.0.0.999" not in outcome.detail


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_parse_never_raises_on_any_text(raw: str) -> None:
    assert isinstance(parse_login(raw), LoginEvent | Rejection)


@settings(max_examples=300)
@given(_json)
def test_parse_never_raises_on_any_json(document: object) -> None:
    assert isinstance(parse_login(json.dumps(document)), LoginEvent | Rejection)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(m.KNOWN_FIELDS), "extra"]),
        st.none() | st.text(max_size=40) | st.integers(),
    )
)
def test_parse_never_raises_on_near_miss_objects(document: dict[str, object]) -> None:
    outcome = parse_login(json.dumps({**VALID, **document}))
    assert isinstance(outcome, LoginEvent | Rejection)
