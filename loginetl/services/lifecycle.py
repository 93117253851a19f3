"""Erasure and retention, through the definer functions of migration 0012.

Each function acts only against a committed audit row of the caller's own and appends
the row of what it did in the caller's transaction; the caller signs that row's head in
the same transaction (see actions/forget.py and actions/retention.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from loginetl.services.audit import Appended, Operator

FORGET_FN = "loginetl_forget(bigint, text)"
FORGET_REQUEST_FN = "loginetl_forget_request(text, text, text, text)"
RETENTION_DROP_FN = "loginetl_retention_drop(bigint, text, boolean)"
RETENTION_REQUEST_FN = "loginetl_retention_request(integer, text, text, text)"
DEFAULT_PARTITION = "user_logins_default"


@dataclass(frozen=True)
class Preview:
    """What forget would remove: counts only."""

    logins: int
    ip_tokens: int
    ip_shared: int
    device_tokens: int
    device_shared: int


@dataclass(frozen=True)
class Purge:
    """Tokens judged after a removal: purged (no row references them) or kept (shared)."""

    ip_purged: int = 0
    ip_kept: int = 0
    device_purged: int = 0
    device_kept: int = 0
    vault_deleted: int = 0
    aliases_deleted: int = 0
    remaining: int = 0


@dataclass(frozen=True)
class Forgotten:
    """What forget removed, and the audit row that records it."""

    logins: int
    purge: Purge
    audit: Appended


@dataclass(frozen=True)
class OldPartition:
    """A partition (or the default partition's rows) older than the window."""

    partition: str
    month: date | None  # None for the default partition
    logins: int
    first_kept: date


def _who(operator: Operator) -> dict[str, str | None]:
    return {"reason": operator.reason, "os_user": operator.os_user, "host": operator.client_host}


def forget_preview(conn: Connection, *, user_id: str) -> Preview:
    """Count the user's rows and tokens, and how many tokens other users share."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_forget_preview(:user_id)"), {"user_id": user_id}
    ).one()
    return Preview(*(int(v) for v in row))


def request_forget(conn: Connection, *, user_id: str, operator: Operator) -> Appended:
    """Audit an erasure request (commit it before ``forget``)."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_forget_request(:user_id, :reason, :os_user, :host)"),
        {"user_id": user_id, **_who(operator)},
    ).one()
    return Appended(row.audit_seq, row.audit_hash, "forget_requested")


def forget(conn: Connection, *, request_seq: int, user_id: str) -> Forgotten:
    """Remove the user's rows, correct the rollups, purge unreferenced vault entries."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_forget(:seq, :user_id)"),
        {"seq": request_seq, "user_id": user_id},
    ).one()
    purge = Purge(
        int(row.ip_purged),
        int(row.ip_kept),
        int(row.device_purged),
        int(row.device_kept),
        int(row.vault_deleted),
        int(row.aliases_deleted),
    )
    return Forgotten(int(row.logins), purge, Appended(row.audit_seq, row.audit_hash, "forgotten"))


def retention_plan(conn: Connection, *, keep_months: int) -> list[OldPartition]:
    """Partitions ending before the first month kept, then the default partition's old rows."""
    rows = conn.execute(
        text("SELECT * FROM public.loginetl_retention_plan(:keep)"), {"keep": keep_months}
    )
    return [OldPartition(r.partition, r.month, int(r.logins), r.first_kept) for r in rows]


def request_retention(conn: Connection, *, keep_months: int, operator: Operator) -> Appended:
    """Audit a retention run (commit it before dropping anything)."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_retention_request(:keep, :reason, :os_user, :host)"),
        {"keep": keep_months, **_who(operator)},
    ).one()
    return Appended(row.audit_seq, row.audit_hash, "retention_requested")


def drop_partition(
    conn: Connection, *, request_seq: int, partition: str, detach: bool
) -> tuple[int, Appended]:
    """Queue the partition's -1s and tokens, then detach (and drop) it; one transaction."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_retention_drop(:seq, :partition, :detach)"),
        {"seq": request_seq, "partition": partition, "detach": detach},
    ).one()
    outcome = "retention_detached" if detach else "retention_dropped"
    return int(row.logins), Appended(row.audit_seq, row.audit_hash, outcome)


def trim_default(conn: Connection, *, request_seq: int, limit: int) -> tuple[int, Appended | None]:
    """Delete up to ``limit`` old rows of the default partition, with their -1s."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_retention_trim_default(:seq, :limit)"),
        {"seq": request_seq, "limit": limit},
    ).one()
    audit = None if row.audit_seq is None else Appended(row.audit_seq, row.audit_hash, "")
    return int(row.logins), audit


def retention_purge(
    conn: Connection, *, request_seq: int, limit: int
) -> tuple[Purge, Appended | None]:
    """Fold, then purge up to ``limit`` candidate tokens no row references any more."""
    row = conn.execute(
        text("SELECT * FROM public.loginetl_retention_purge(:seq, :limit)"),
        {"seq": request_seq, "limit": limit},
    ).one()
    purge = Purge(*(int(v) for v in tuple(row)[:7]))
    audit = None if row.audit_seq is None else Appended(row.audit_seq, row.audit_hash, "")
    return purge, audit
