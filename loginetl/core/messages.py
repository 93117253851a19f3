"""Parse and validate one SQS message body against the login-event contract.

:func:`parse_login` never raises on any input: it returns either a :class:`LoginEvent`
or a :class:`Rejection` with a stable reason code. Rejection details name fields, never
their values, because a rejected value may be plaintext PII.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from loginetl.core.versions import encode_app_version

# The contract's body size limit, in UTF-8 bytes (SQS's classic limit; SQS now accepts up
# to 1 MiB, so consume takes it as a setting: ConsumeOptions.max_body_bytes).
MAX_BODY_BYTES: Final = 256 * 1024

# Reason codes are a public contract: they travel as DLQ attributes and in metrics.
TOO_LARGE: Final = "too_large"
INVALID_JSON: Final = "invalid_json"
DUPLICATE_KEY: Final = "duplicate_key"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
EMPTY_FIELD: Final = "empty_field"
TOO_LONG: Final = "too_long"
INVALID_TEXT: Final = "invalid_text"
INVALID_IP: Final = "invalid_ip"
INVALID_APP_VERSION: Final = "invalid_app_version"
# An SNS notification or EventBridge event (core/envelope.py) that is malformed as an
# envelope, or whose payload is not a login at all (e.g. another event type on the topic).
ENVELOPE_INVALID: Final = "envelope_invalid"
ENVELOPE_NOT_LOGIN: Final = "envelope_not_login"

REASON_CODES: Final = (
    TOO_LARGE,
    INVALID_JSON,
    DUPLICATE_KEY,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    EMPTY_FIELD,
    TOO_LONG,
    INVALID_TEXT,
    INVALID_IP,
    INVALID_APP_VERSION,
    ENVELOPE_INVALID,
    ENVELOPE_NOT_LOGIN,
)

# field -> (max length, may be empty, may be null/missing)
_TEXT_FIELDS: Final = {
    "user_id": (128, False, False),
    "device_type": (32, True, False),
    "device_id": (256, False, False),
    "app_version": (11, False, False),
    "ip": (64, False, False),
    "locale": (32, True, True),
}
KNOWN_FIELDS: Final = frozenset(_TEXT_FIELDS)


@dataclass(frozen=True, slots=True)
class LoginEvent:
    """A valid login. ``ip`` and ``device_id`` are plaintext PII and kept out of repr."""

    user_id: str
    device_type: str
    ip: str = field(repr=False)  # canonical spelling, see canonical_ip
    device_id: str = field(repr=False)
    app_version_raw: str
    app_version: int
    locale: str | None
    ignored_fields: int = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a body cannot be loaded: a stable code and a value-free detail."""

    reason: str
    detail: str


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins; refusing is the only unambiguous answer.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


# Dotted-quad IPv4 already in canonical form (no leading zeros, each part 0-255): by far
# the commonest input, and ipaddress's pure-Python parser is the costliest step of a parse.
_CANONICAL_IPV4: Final = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


def canonical_ip(value: str) -> str | None:
    """Return the canonical spelling of an IPv4/IPv6 address, or None if it is not one.

    IPv4-mapped IPv6 (``::ffff:1.2.3.4``) is folded to IPv4, so one host has one token.
    """
    if _CANONICAL_IPV4.fullmatch(value):
        return value
    return _canonical_ip_by_parser(value)


def _canonical_ip_by_parser(value: str) -> str | None:
    """canonical_ip without the fast path: what the fast path must agree with."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _is_storable_text(value: str) -> bool:
    # PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def body_bytes(body: str) -> int:
    """The body's size in UTF-8 bytes (a lone surrogate counts as its 3 bytes)."""
    if body.isascii():
        return len(body)
    return len(body.encode("utf-8", "surrogatepass"))


def parse_login(body: str, *, max_body_bytes: int = MAX_BODY_BYTES) -> LoginEvent | Rejection:
    """Parse one message body; never raises."""
    document = decode_body(body, max_body_bytes=max_body_bytes)
    if isinstance(document, Rejection):
        return document
    return validate_document(document)


def decode_body(body: str, *, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The body's JSON value after the size, BOM and duplicate-key rules, or a Rejection."""
    if len(body) > max_body_bytes or (
        len(body) * 4 > max_body_bytes and body_bytes(body) > max_body_bytes
    ):
        return Rejection(TOO_LARGE, f"body is larger than {max_body_bytes} bytes")
    text = body[1:] if body.startswith("\ufeff") else body
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey:
        return Rejection(DUPLICATE_KEY, "an object in the body repeats a key")
    except RecursionError:
        return Rejection(INVALID_JSON, "body is nested too deeply")
    except ValueError:  # JSONDecodeError, and int-too-large-to-convert
        return Rejection(INVALID_JSON, "body is not valid JSON")


def validate_document(document: Any) -> LoginEvent | Rejection:
    """Validate a decoded body against the contract; never raises."""
    if not isinstance(document, dict):
        return Rejection(NOT_AN_OBJECT, f"body is a JSON {_json_type(document)}, not an object")
    return _validate(document)


def _validate(document: dict[str, Any]) -> LoginEvent | Rejection:
    values: dict[str, str | None] = {}
    for name, (max_len, may_be_empty, nullable) in _TEXT_FIELDS.items():
        value = document.get(name)
        if value is None:
            if nullable:
                values[name] = None
                continue
            return Rejection(MISSING_FIELD, f"field {name!r} is missing or null")
        if not isinstance(value, str):
            return Rejection(
                WRONG_TYPE, f"field {name!r} is a JSON {_json_type(value)}, not a string"
            )
        if not _is_storable_text(value):
            return Rejection(INVALID_TEXT, f"field {name!r} holds a NUL or an unpaired surrogate")
        if len(value) > max_len:
            return Rejection(TOO_LONG, f"field {name!r} is longer than {max_len} characters")
        if not value.strip() and not may_be_empty:
            return Rejection(EMPTY_FIELD, f"field {name!r} is empty")
        values[name] = value

    ip = canonical_ip(values["ip"] or "")
    if ip is None:
        return Rejection(INVALID_IP, "field 'ip' is not an IPv4 or IPv6 address")
    version_raw = values["app_version"] or ""
    version = encode_app_version(version_raw)
    if version is None:
        return Rejection(
            INVALID_APP_VERSION,
            "field 'app_version' is not X, X.Y or X.Y.Z with each part 0-999",
        )
    return LoginEvent(
        user_id=values["user_id"] or "",
        device_type=values["device_type"] or "",
        ip=ip,
        device_id=values["device_id"] or "",
        app_version_raw=version_raw,
        app_version=version,
        locale=values["locale"],
        ignored_fields=len(document.keys() - KNOWN_FIELDS),
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
