"""Encode dotted app versions as one ordered, collision-free integer.

``major * 1_000_000 + minor * 1_000 + patch``: "2.3.0" -> 2003000, "0.96" -> 96000,
"2.00" -> 2000000. Each part is 0-999, so the encoding is injective on parsed parts and
integer order equals version order.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){0,2}", re.ASCII)


def encode_app_version(raw: str) -> int | None:
    """Return the integer encoding of "X", "X.Y" or "X.Y.Z", or None if it is not one."""
    if not _VERSION.fullmatch(raw):
        return None
    parts = [int(p) for p in raw.split(".")] + [0, 0]
    major, minor, patch = parts[:3]
    return major * 1_000_000 + minor * 1_000 + patch


def decode_app_version(encoded: int) -> str:
    """Render an encoded version back as "X.Y.Z" (for reports)."""
    major, rest = divmod(encoded, 1_000_000)
    minor, patch = divmod(rest, 1_000)
    return f"{major}.{minor}.{patch}"
