"""What newly loaded rows add to the stats rollups (token_users, token_stats, user_stats)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from loginetl.core.batch import LoginRow

TokenKey = tuple[str, str]  # (pii_field, token)


@dataclass(frozen=True)
class UserDelta:
    """Logins to add for one user, and the span they cover."""

    user_id: str
    logins: int
    first_login: datetime
    last_login: datetime


def token_user_pairs(rows: Iterable[LoginRow]) -> list[tuple[str, str, str]]:
    """Distinct (pii_field, token, user_id) of the rows, sorted (a stable lock order)."""
    pairs = {
        pair
        for r in rows
        for pair in (("ip", r.masked_ip, r.user_id), ("device_id", r.masked_device_id, r.user_id))
    }
    return sorted(pairs)


def token_deltas(
    rows: Sequence[LoginRow], new_pairs: Iterable[tuple[str, str]]
) -> list[tuple[str, str, int, int]]:
    """(pii_field, token, users to add, logins to add), sorted.

    ``new_pairs`` holds one (pii_field, token) per (token, user) pair that did not exist
    before, as returned by the pair insert; each adds one user to its token.
    """
    logins: Counter[TokenKey] = Counter()
    for r in rows:
        logins["ip", r.masked_ip] += 1
        logins["device_id", r.masked_device_id] += 1
    users = Counter(new_pairs)
    return sorted((f, t, users[f, t], n) for (f, t), n in logins.items())


def user_deltas(rows: Iterable[LoginRow]) -> list[UserDelta]:
    """Per-user login counts and time span, sorted by user id."""
    spans: dict[str, UserDelta] = {}
    for r in rows:
        seen = spans.get(r.user_id)
        spans[r.user_id] = (
            UserDelta(r.user_id, 1, r.sent_at, r.sent_at)
            if seen is None
            else UserDelta(
                r.user_id,
                seen.logins + 1,
                min(seen.first_login, r.sent_at),
                max(seen.last_login, r.sent_at),
            )
        )
    return [spans[u] for u in sorted(spans)]
