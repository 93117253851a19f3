"""Sign and verify the message attributes loginetl writes when it moves a message.

A producer can set any message attribute, including ``loginetl-*``. Those that carry
identity and time (original message id, original send time) decide idempotency and the
partition a row lands in, so loginetl only believes them when they carry a valid HMAC
made with a key from ``attribute-keys.json``: the tag covers a canonical, length-prefixed
encoding of every loginetl attribute present and the SHA-256 of the body, so neither the
values nor the body can be swapped. Unverifiable or out-of-range values are dropped
(SQS's own MessageId and SentTimestamp then apply) and the caller counts them.

Pure: the caller passes the keys and the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from loginetl.core.keyring import Keyring

ATTR_ORIGINAL_MESSAGE_ID: Final = "loginetl-original-message-id"
ATTR_ORIGINAL_SENT_AT: Final = "loginetl-original-sent-at"  # epoch milliseconds
ATTR_REASON: Final = "loginetl-reason"
ATTR_DETAIL: Final = "loginetl-detail"
ATTR_FIRST_SEEN: Final = "loginetl-first-seen"  # ISO-8601 UTC, when loginetl dead-lettered it
ATTR_REPLAYS: Final = "loginetl-replays"  # how many times replay-dlq has moved it back
ATTR_KEY_ID: Final = "loginetl-attr-key"
ATTR_TAG: Final = "loginetl-attr-tag"

PREFIX: Final = "loginetl-"
SIGNED: Final = (
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_SENT_AT,
    ATTR_REASON,
    ATTR_DETAIL,
    ATTR_FIRST_SEEN,
    ATTR_REPLAYS,
)
ATTRIBUTE_KEY_ID: Final = re.compile(r"a[0-9]{1,6}")
MIN_KEY_BYTES: Final = 32

# Bounds: a signed value outside them is dropped too (a stale key must not unlock absurd
# values). SQS keeps a message at most 14 days; a DLQ round trip can repeat, so a year.
MAX_AGE: Final = timedelta(days=366)
MAX_CLOCK_SKEW: Final = timedelta(days=1)
MAX_REPLAYS: Final = 1000
_MESSAGE_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MILLIS: Final = re.compile(r"[0-9]{1,15}")
_REASON: Final = re.compile(r"[a-z_]{1,64}")
_DETAIL_MAX: Final = 512
_ISO_MAX: Final = 40
_TAG_FORMAT: Final = re.compile(r"[0-9a-f]{64}")  # what _tag returns; compare_digest needs ASCII


@dataclass(frozen=True)
class Verified:
    """The loginetl attributes that can be believed, and whether anything was dropped."""

    attributes: dict[str, str]  # every non-loginetl attribute, plus the verified loginetl ones
    dropped: bool  # some loginetl-* attribute was present but unverifiable or out of range


def _canonical(attributes: Mapping[str, str], body: str) -> bytes:
    parts = [hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()]
    for name in SIGNED:
        value = attributes.get(name)
        if value is not None:
            parts.append(name)
            parts.append(value)
    return b"".join(
        str(len(raw)).encode() + b":" + raw + b";"
        for raw in (p.encode("utf-8", "surrogatepass") for p in parts)
    )


def _tag(key: bytes, attributes: Mapping[str, str], body: str) -> str:
    return hmac.digest(key, _canonical(attributes, body), "sha256").hex()


def sign(attributes: Mapping[str, str], body: str, keys: Keyring) -> dict[str, str]:
    """Return the attributes with a key id and a tag over them and the body."""
    signed = {k: v for k, v in attributes.items() if k not in (ATTR_KEY_ID, ATTR_TAG)}
    mine = {k: v for k, v in signed.items() if k in SIGNED}
    signed[ATTR_KEY_ID] = keys.current
    signed[ATTR_TAG] = _tag(keys.keys[keys.current], mine, body)
    return signed


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _in_range(name: str, value: str, now: datetime) -> bool:
    if name == ATTR_ORIGINAL_MESSAGE_ID:
        return _MESSAGE_ID.fullmatch(value) is not None
    if name == ATTR_ORIGINAL_SENT_AT:
        if not _MILLIS.fullmatch(value):
            return False
        # Compared as integers: a datetime for 15 digits of milliseconds overflows.
        earliest, latest = now - MAX_AGE, now + MAX_CLOCK_SKEW
        return _millis(earliest) <= int(value) <= _millis(latest)
    if name == ATTR_FIRST_SEEN:
        if len(value) > _ISO_MAX:
            return False
        try:
            seen = datetime.fromisoformat(value)
        except ValueError:
            return False
        if seen.tzinfo is None:
            return False
        return now - MAX_AGE <= seen <= now + MAX_CLOCK_SKEW
    if name == ATTR_REPLAYS:
        return value.isascii() and value.isdigit() and int(value) <= MAX_REPLAYS
    if name == ATTR_REASON:
        return _REASON.fullmatch(value) is not None
    return len(value) <= _DETAIL_MAX  # ATTR_DETAIL


def verify(attributes: Mapping[str, str], body: str, keys: Keyring, *, now: datetime) -> Verified:
    """Keep the loginetl attributes whose tag verifies and whose values are in range.

    Never raises. Attributes that are not loginetl's pass through untouched.
    """
    others = {k: v for k, v in attributes.items() if not k.startswith(PREFIX)}
    present = {k: v for k, v in attributes.items() if k.startswith(PREFIX)}
    if not present:
        return Verified(others, dropped=False)
    key = keys.keys.get(present.get(ATTR_KEY_ID, ""))
    mine = {k: v for k, v in present.items() if k in SIGNED}
    tag = present.get(ATTR_TAG, "")
    unknown = set(present) - set(SIGNED) - {ATTR_KEY_ID, ATTR_TAG}
    if (
        key is None
        or not _TAG_FORMAT.fullmatch(tag)
        or not hmac.compare_digest(_tag(key, mine, body), tag)
    ):
        return Verified(others, dropped=True)
    good = {k: v for k, v in mine.items() if _in_range(k, v, now)}
    return Verified({**others, **good}, dropped=len(good) < len(mine) or bool(unknown))


def unverified(attributes: Mapping[str, str]) -> Verified:
    """Believe none of loginetl's attributes (no keys to check them with)."""
    others = {k: v for k, v in attributes.items() if not k.startswith(PREFIX)}
    return Verified(others, dropped=len(others) < len(attributes))


def trust(
    attributes: Mapping[str, str], body: str, keys: Keyring | None, *, now: datetime
) -> Verified:
    """What consume believes of a message's attributes: the one path consume, peek and
    replay share. Without keys, or if verification fails unexpectedly, nothing of
    loginetl's is believed."""
    if keys is None:
        return unverified(attributes)
    try:
        return verify(attributes, body, keys, now=now)
    except Exception:  # verify never raises; if it did, believe nothing of loginetl's
        return unverified(attributes)


def original_sent_at(attributes: Mapping[str, str], fallback: datetime) -> datetime:
    """The original send time from (already verified) attributes; never raises."""
    raw = attributes.get(ATTR_ORIGINAL_SENT_AT)
    if raw is None or not _MILLIS.fullmatch(raw):
        return fallback
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(raw))
    except OverflowError:
        return fallback
