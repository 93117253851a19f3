"""Unwrap SNS notifications and EventBridge events around a login, then validate it.

A queue subscribed to an SNS topic (raw message delivery off) receives each login inside an
SNS notification, ``{"Type": "Notification", "MessageId", "TopicArn", "Message": "<the
login JSON as a string>", "Timestamp", ...}``; an EventBridge rule delivers ``{"version",
"id", "detail-type", "source", "time", "detail": {<the login>}}``. :func:`parse_message`
takes one SQS body and returns the login inside it (validated by the same contract as a
plain body, :mod:`loginetl.core.messages`) with the envelope's own id and time, or a
:class:`Rejection`. Pure, never raises: the consumer and the Lambda handler both call it.

Modes: ``none`` (every body is a plain login), ``sns`` or ``eventbridge`` (every body must
be that envelope), ``auto`` (the default): a body with an envelope's full shape is unwrapped,
a body that carries an envelope's markers but not its shape is ``envelope_invalid``, and
anything else is a plain login. Everything in an envelope is producer-controlled: the id and
time are checked strictly and used only within the bounds documented in docs/design.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from loginetl.core.messages import (
    ENVELOPE_INVALID,
    ENVELOPE_NOT_LOGIN,
    KNOWN_FIELDS,
    MAX_BODY_BYTES,
    LoginEvent,
    Rejection,
    decode_body,
    validate_document,
)

EnvelopeMode = Literal["auto", "none", "sns", "eventbridge"]
ENVELOPE_MODES: Final = ("auto", "none", "sns", "eventbridge")
EnvelopeKind = Literal["none", "sns", "eventbridge"]

# Idempotency keys of unwrapped messages carry their kind, so an envelope's id can never
# equal an SQS MessageId (a bare UUID) or an id of the other kind. The id itself is limited
# to what a loginetl-original-message-id attribute may hold (core/attributes.py).
KEY_PREFIX: Final = {"sns": "sns:", "eventbridge": "eventbridge:"}
_ENVELOPE_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_TIMESTAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_SNS_TYPES: Final = frozenset(
    {"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"}
)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid login, and the envelope it came in (``none`` for a plain body)."""

    event: LoginEvent
    kind: EnvelopeKind = "none"
    envelope_id: str | None = None  # e.g. "sns:<MessageId>": the idempotency key to use
    envelope_time: datetime | None = field(default=None)  # the envelope's own time, if sane


@dataclass(frozen=True, slots=True)
class EnvelopeRejection:
    """A Rejection of an envelope's payload, with the envelope id when the envelope parsed."""

    rejection: Rejection
    kind: EnvelopeKind = "none"
    envelope_id: str | None = None
    envelope_time: datetime | None = None


def parse_message(
    body: str, *, envelope: EnvelopeMode = "auto", max_body_bytes: int = MAX_BODY_BYTES
) -> Parsed | EnvelopeRejection:
    """Unwrap (per ``envelope``) and validate one SQS body; never raises."""
    try:
        return _parse(body, envelope, max_body_bytes)
    except Exception as error:  # a bug must cost one message, never the batch
        return EnvelopeRejection(
            Rejection(ENVELOPE_INVALID, f"unwrapping failed ({type(error).__name__})")
        )


def _parse(body: str, mode: EnvelopeMode, max_body_bytes: int) -> Parsed | EnvelopeRejection:
    document = decode_body(body, max_body_bytes=max_body_bytes)
    if isinstance(document, Rejection):
        return EnvelopeRejection(document)
    kind = _kind(document, mode)
    if kind is None:  # markers without the shape, or not the envelope the mode demands
        expected = {"sns": "an SNS notification", "eventbridge": "an EventBridge event"}
        what = expected.get(mode, "an SNS notification or EventBridge event")
        return EnvelopeRejection(
            Rejection(ENVELOPE_INVALID, f"body is not {what} of the expected shape")
        )
    if kind == "none":
        return _plain(validate_document(document))
    if kind == "sns":
        return _sns(document, max_body_bytes)
    return _eventbridge(document)


def _plain(outcome: LoginEvent | Rejection) -> Parsed | EnvelopeRejection:
    if isinstance(outcome, Rejection):
        return EnvelopeRejection(outcome)
    return Parsed(outcome)


def _is_sns(document: dict[str, Any]) -> bool:
    return (
        document.get("Type") == "Notification"
        and isinstance(document.get("Message"), str)
        and isinstance(document.get("MessageId"), str)
        and isinstance(document.get("TopicArn"), str)
    )


def _is_eventbridge(document: dict[str, Any]) -> bool:
    return (
        isinstance(document.get("detail-type"), str)
        and isinstance(document.get("detail"), dict)
        and isinstance(document.get("id"), str)
        and isinstance(document.get("source"), str)
    )


def _looks_like_sns(document: dict[str, Any]) -> bool:
    return document.get("Type") in _SNS_TYPES and "TopicArn" in document


def _looks_like_eventbridge(document: dict[str, Any]) -> bool:
    return "detail-type" in document and "detail" in document


def _kind(document: Any, mode: EnvelopeMode) -> EnvelopeKind | None:
    """Which envelope the body is, or None when it is a malformed one."""
    if mode == "none":
        return "none"
    is_object = isinstance(document, dict)
    if mode == "sns":
        return "sns" if is_object and _is_sns(document) else None
    if mode == "eventbridge":
        return "eventbridge" if is_object and _is_eventbridge(document) else None
    if not is_object:
        return "none"  # validate_document names it not_an_object
    if _is_sns(document):
        return "sns"
    if _is_eventbridge(document):
        return "eventbridge"
    if _looks_like_sns(document) or _looks_like_eventbridge(document):
        return None
    return "none"


def _envelope_id(kind: EnvelopeKind, raw: Any) -> str | None:
    if not isinstance(raw, str) or not _ENVELOPE_ID.fullmatch(raw):
        return None
    return KEY_PREFIX[kind] + raw


def kind_of(envelope_id: str | None) -> EnvelopeKind:
    """Which envelope an idempotency key from :class:`Parsed` came from."""
    for kind, prefix in KEY_PREFIX.items():
        if envelope_id is not None and envelope_id.startswith(prefix):
            return kind  # type: ignore[return-value]
    return "none"


def envelope_time(raw: Any) -> datetime | None:
    """An ISO-8601 time with a zone (SNS ``Timestamp``, EventBridge ``time``), or None."""
    if not isinstance(raw, str) or len(raw) > 40 or not _TIMESTAMP.fullmatch(raw):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _sns(document: dict[str, Any], max_body_bytes: int) -> Parsed | EnvelopeRejection:
    key = _envelope_id("sns", document["MessageId"])
    if key is None:
        return EnvelopeRejection(
            Rejection(ENVELOPE_INVALID, "the SNS notification's MessageId is not a valid id"),
            "sns",
        )
    at = envelope_time(document.get("Timestamp"))
    inner = decode_body(document["Message"], max_body_bytes=max_body_bytes)
    if isinstance(inner, Rejection) and inner.reason != "duplicate_key":
        return EnvelopeRejection(
            Rejection(ENVELOPE_NOT_LOGIN, f"the SNS notification's Message: {inner.detail}"),
            "sns",
            key,
            at,
        )
    return _payload("sns", "the SNS notification's Message", inner, key, at)


def _eventbridge(document: dict[str, Any]) -> Parsed | EnvelopeRejection:
    key = _envelope_id("eventbridge", document["id"])
    if key is None:
        return EnvelopeRejection(
            Rejection(ENVELOPE_INVALID, "the EventBridge event's id is not a valid id"),
            "eventbridge",
        )
    at = envelope_time(document.get("time"))
    return _payload("eventbridge", "the EventBridge event's detail", document["detail"], key, at)


def _payload(
    kind: EnvelopeKind, where: str, inner: Any, key: str, at: datetime | None
) -> Parsed | EnvelopeRejection:
    """Validate the wrapped value; a value with no login field at all is not a login."""
    if isinstance(inner, Rejection):
        return EnvelopeRejection(_in(inner, where), kind, key, at)
    if not isinstance(inner, dict) or not (inner.keys() & KNOWN_FIELDS):
        return EnvelopeRejection(
            Rejection(ENVELOPE_NOT_LOGIN, f"{where} is not a login (no login field)"), kind, key, at
        )
    outcome = validate_document(inner)
    if isinstance(outcome, Rejection):
        return EnvelopeRejection(_in(outcome, where), kind, key, at)
    return Parsed(outcome, kind, key, at)


def _in(rejection: Rejection, where: str) -> Rejection:
    return Rejection(rejection.reason, f"{rejection.detail} (in {where})")
