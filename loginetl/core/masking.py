"""Pseudonymize PII fields with a keyed HMAC, so tokens are stable but not reversible.

An unkeyed hash of an IPv4 address is reversed by hashing all 2**32 addresses; a keyed
HMAC-SHA-256 is not, without the key. Each field gets its own context string, so an ip and
a device id that happen to be the same text do not share a token. Tokens carry the key id
(``k1:<64 hex>``) so the key can rotate while old tokens stay meaningful.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Final, Literal

PiiField = Literal["ip", "device_id"]
PII_FIELDS: Final[tuple[PiiField, ...]] = ("ip", "device_id")

KEY_ID_PATTERN: Final = re.compile(r"k[0-9]{1,6}")
TOKEN_PATTERN: Final = re.compile(r"(k[0-9]{1,6}):([0-9a-f]{64})")
MIN_KEY_BYTES: Final = 32


@dataclass(frozen=True)
class Masker:
    """Turns canonical PII values into tokens with one HMAC key."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.fullmatch(self.key_id):
            raise ValueError("HMAC key id must look like k1, k2, ...")
        if len(self.key) < MIN_KEY_BYTES:
            raise ValueError(f"HMAC key must be at least {MIN_KEY_BYTES} bytes")

    def token(self, pii_field: PiiField, canonical_value: str) -> str:
        """Return ``<key id>:<hex HMAC>`` for one field value."""
        message = b"loginetl/v1/" + pii_field.encode() + b"\x00" + canonical_value.encode()
        digest = hmac.digest(self.key, message, "sha256").hex()  # one-shot: OpenSSL's HMAC
        return f"{self.key_id}:{digest}"

    @property
    def fingerprint(self) -> str:
        """16 hex digits that name this key in the audit log without revealing it."""
        return hmac.digest(self.key, b"loginetl/v1/key-fingerprint", "sha256").hex()[:16]


def token_key_id(token: str) -> str | None:
    """Return the key id of a well-formed token, or None if it is not one."""
    match = TOKEN_PATTERN.fullmatch(token)
    return match.group(1) if match else None
