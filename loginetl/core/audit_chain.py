"""The unmask audit log's hash chain: canonical form, row hash, and verification.

Each row's hash covers its fields and the previous row's hash. The database trigger in
migration 0003 computes it; this module recomputes it independently, so an edit, a
deletion or a reordering made by someone who can bypass the trigger shows up as the
first row whose hash or link does not match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRow:
    """One row of ``unmask_audit``."""

    seq: int
    at: datetime
    db_role: str
    os_user: str | None
    client_addr: str | None
    client_host: str | None
    token: str
    pii_field: str | None
    reason: str
    outcome: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainReport:
    """The verdict of a verification: intact, or the first row that breaks it and why."""

    rows: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def _field(value: str | None) -> str:
    return "~" if value is None else f"{len(value)}:{value}"


def canonical(row: AuditRow) -> str:
    """The exact text the trigger hashes (see migration 0003)."""
    at = row.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "|".join(
        _field(v)
        for v in (
            str(row.seq),
            at,
            row.db_role,
            row.os_user,
            row.client_addr,
            row.client_host,
            row.token,
            row.pii_field,
            row.reason,
            row.outcome,
            row.prev_hash,
        )
    )


def row_hash(row: AuditRow) -> str:
    """SHA-256 of the canonical text, hex."""
    return hashlib.sha256(canonical(row).encode()).hexdigest()


def verify(rows: Iterable[AuditRow], *, expect_head: tuple[int, str] | None = None) -> ChainReport:
    """Walk the chain in seq order; report the first row that does not fit.

    ``expect_head`` is a (seq, hash) recorded earlier somewhere the database owner cannot
    reach; it catches what no chain can show by itself: the last rows removed.
    """
    previous_hash, expected_seq = GENESIS, 1
    hashes: dict[int, str] = {}
    for row in rows:
        head = (len(hashes), previous_hash)
        if row.seq != expected_seq:
            problem = f"row {expected_seq} is missing (found {row.seq} next)"
        elif row.prev_hash != previous_hash:
            problem = "its link to the previous row does not match"
        elif row_hash(row) != row.row_hash:
            problem = "its contents do not match its hash (edited)"
        else:
            hashes[row.seq] = previous_hash = row.row_hash
            expected_seq = row.seq + 1
            continue
        return ChainReport(len(hashes), *head, broken_at=row.seq, problem=problem)
    head_seq = expected_seq - 1
    if expect_head is not None:
        seq, digest = expect_head
        if seq > head_seq:
            return ChainReport(
                len(hashes),
                head_seq,
                previous_hash,
                broken_at=head_seq + 1,
                problem=f"the log ends at row {head_seq}, but row {seq} was recorded earlier",
            )
        if seq > 0 and hashes.get(seq) != digest:
            return ChainReport(
                len(hashes),
                head_seq,
                previous_hash,
                broken_at=seq,
                problem="it differs from the head recorded earlier (rewritten)",
            )
    return ChainReport(len(hashes), head_seq, previous_hash)
