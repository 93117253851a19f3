"""``retention apply``: drop (or detach) monthly partitions older than the window.

One transaction per partition: lock it SHARE (late rows for that month wait), queue its
rows' -1s and tokens, detach it under ACCESS EXCLUSIVE on user_logins (granted within
500 ms or the attempt rolls back and is retried, so a consumer's insert never waits
longer than that per attempt), drop it unless ``detach``. Old rows the default partition
holds are deleted row-wise with their -1s. Then the -1s are folded and vault entries no
remaining row references are purged. Every step is audited, after a committed request.
A kill at any point leaves whole steps done; a rerun does the rest.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from loginetl.actions.audited import AuditSession, LockBusy
from loginetl.actions.unmask import check_reason
from loginetl.config import Settings
from loginetl.errors import ConfigError, ServiceUnavailable
from loginetl.services import audit, db, failpoints, keys, lifecycle, migrations

TRIM_CHUNK = 50_000
PURGE_CHUNK = 10_000  # tokens a locked purge transaction judges: loads wait for it
LOCK_ATTEMPTS = 40
_KEEP = re.compile(r"^\s*(\d{1,4})\s*(mo|m|months?|y|years?)\s*$")


def parse_keep(text: str) -> int:
    """``13mo`` -> 13, ``2y`` -> 24; at least 1 (the current month is always kept)."""
    match = _KEEP.match(text.lower())
    if not match:
        raise ConfigError(f"--keep {text!r}: give months like 13mo (or years like 2y)")
    months = int(match.group(1)) * (12 if match.group(2).startswith("y") else 1)
    if not 1 <= months <= 1200:
        raise ConfigError("--keep: between 1 month (the current one) and 100 years")
    return months


@dataclass(frozen=True)
class Removed:
    """One partition dropped or detached (or the default partition's old rows deleted)."""

    partition: str
    logins: int
    attempts: int
    lock_wait_seconds: float


@dataclass(frozen=True)
class RetentionResult:
    keep_months: int
    first_kept: str
    dry_run: bool
    detach: bool
    plan: list[lifecycle.OldPartition]
    removed: list[Removed] = field(default_factory=list)
    purge: lifecycle.Purge = field(default_factory=lifecycle.Purge)
    request_seq: int | None = None


def _add(a: lifecycle.Purge, b: lifecycle.Purge) -> lifecycle.Purge:
    return lifecycle.Purge(
        a.ip_purged + b.ip_purged,
        a.ip_kept + b.ip_kept,
        a.device_purged + b.device_purged,
        a.device_kept + b.device_kept,
        a.vault_deleted + b.vault_deleted,
        a.aliases_deleted + b.aliases_deleted,
        b.remaining,
    )


def apply(
    settings: Settings,
    *,
    keep: str,
    reason: str,
    dry_run: bool = False,
    detach: bool = False,
) -> RetentionResult:
    """Enforce the window; with ``dry_run`` only say what would go."""
    check_reason(reason)
    months = parse_keep(keep)
    with db.engine_for(settings.database_url) as engine:
        migrations.require_head(engine)
        audit.require_grant(
            engine,
            (lifecycle.RETENTION_REQUEST_FN, lifecycle.RETENTION_DROP_FN),
            group="loginetl_maintainer",
            what="apply retention",
        )
        with db.translate_errors(engine, "plan retention"), engine.connect() as conn:
            plan = lifecycle.retention_plan(conn, keep_months=months)
        first_kept = plan[-1].first_kept.isoformat()
        if dry_run:
            return RetentionResult(months, first_kept, True, detach, plan)
        session = AuditSession.start(engine, reason, keys.load_audit_signer(settings.keys_dir))
        with session.transaction("audit the retention run") as conn:
            request = lifecycle.request_retention(
                conn, keep_months=months, operator=session.operator
            )
            session.sign(conn, request)
        removed = [
            _drop(session, request.seq, old.partition, detach)
            for old in plan
            if old.partition != lifecycle.DEFAULT_PARTITION
        ]
        removed.append(_trim_default(session, request.seq))
        db.fold_rollups(engine, wait=True)  # the -1s, in chunks, before the locked purge
        purge = lifecycle.Purge()
        while True:
            with session.transaction("purge the vault") as conn:
                step, row = lifecycle.retention_purge(
                    conn, request_seq=request.seq, limit=PURGE_CHUNK
                )
                session.sign(conn, row)
                failpoints.hit("crash_in_retention", when=row is not None)
            purge = _add(purge, step)
            if not step.remaining:
                break
    return RetentionResult(months, first_kept, False, detach, plan, removed, purge, request.seq)


def _drop(session: AuditSession, request_seq: int, partition: str, detach: bool) -> Removed:
    """One partition in one transaction, retried while its lock is not granted in time."""
    waited = 0.0
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            with session.transaction("drop a partition") as conn:
                logins, row = lifecycle.drop_partition(
                    conn, request_seq=request_seq, partition=partition, detach=detach
                )
                session.sign(conn, row)
                failpoints.hit("crash_in_retention")
            return Removed(partition, logins, attempt, waited)
        except LockBusy:
            waited += time.monotonic() - started
            time.sleep(min(2.0, 0.1 * attempt))
    raise ServiceUnavailable(
        f"{partition}: user_logins stayed locked by others through {LOCK_ATTEMPTS} attempts "
        "of 500 ms; nothing of it was dropped. Run retention apply again later"
    )


def _trim_default(session: AuditSession, request_seq: int) -> Removed:
    total = 0
    while True:
        with session.transaction("trim the default partition") as conn:
            logins, row = lifecycle.trim_default(conn, request_seq=request_seq, limit=TRIM_CHUNK)
            session.sign(conn, row)
            failpoints.hit("crash_in_retention", when=logins > 0)
        total += logins
        if logins < TRIM_CHUNK:
            return Removed(lifecycle.DEFAULT_PARTITION, total, 1, 0.0)
