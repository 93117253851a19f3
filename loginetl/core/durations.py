"""Parse the short durations operators type: 90m, 24h, 7d, 2w."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for "<number><s|m|h|d|w>"; raise ValueError with the fix."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit, e.g. 90m, 24h, 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
