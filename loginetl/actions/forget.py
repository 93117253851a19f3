"""``forget``: erase one user on request, audited before it acts, rollups kept exact.

Two transactions, as unmask: the request row is committed first (the database acts only
against a committed request of the caller's own), then one transaction removes the
user's rows with their -1s, folds, purges every vault entry no remaining row references
(tokens shared with other users stay), and appends the row of what it did. A kill at
any point leaves either nothing done or everything done; a rerun finishes the job (and
finds nothing left the second time).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from loginetl.actions.audited import AuditSession
from loginetl.actions.unmask import check_reason
from loginetl.config import Settings
from loginetl.errors import ConfigError, LoginetlError
from loginetl.services import audit, db, failpoints, keys, lifecycle, migrations
from loginetl.services.sqs import SqsService

_SAMPLE_VISIBILITY = 20  # seconds a sampled DLQ message stays hidden if forget dies
UNREACHABLE = (
    "messages still in the queue (they load on their next receive: run forget again once "
    "they are consumed)",
    "messages in the DLQ (counted below, never printed: delete or replay them, then forget again)",
    "backups and replicas of the database, and anything exported from it",
    "months `retention apply --detach` detached (plain tables holding user ids in clear: "
    "drop them, or delete the user's rows there as their owner)",
)


@dataclass(frozen=True)
class DlqScan:
    """How many sampled DLQ messages carry the user id (counts only)."""

    sampled: int
    depth: int
    matching: int


@dataclass(frozen=True)
class ForgetResult:
    """What forget did (or, with dry_run, would do)."""

    dry_run: bool
    preview: lifecycle.Preview | None
    forgotten: lifecycle.Forgotten | None
    request_seq: int | None
    dlq: DlqScan | None
    dlq_error: str | None
    unreachable: tuple[str, ...] = UNREACHABLE


def _carries(body: str, user_id: str) -> bool:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and document.get("user_id") == user_id


def names_user(reason: str, user_id: str) -> bool:
    """True if the reason holds the user id as a word (case-insensitive): the audit log
    keeps a keyed hash of the id, and the reason is stored in clear next to it."""
    pattern = rf"(?<![^\W_]){re.escape(user_id.casefold())}(?![^\W_])"
    return re.search(pattern, reason.casefold()) is not None


def scan_dlq(settings: Settings, user_id: str, *, sample: int) -> DlqScan:
    """Count DLQ messages carrying the user id, releasing each at once (as peek does)."""
    sqs = SqsService.for_settings(settings)
    url = sqs.queue_url(settings.dlq_name)
    depth = sqs.depth(url)
    received = []
    try:
        received = sqs.sample(url, count=sample, visibility_timeout=_SAMPLE_VISIBILITY)
    finally:
        if received:
            sqs.set_visibility(url, received, 0)
    matching = sum(1 for m in received if _carries(m.body, user_id))
    return DlqScan(len(received), depth.visible + depth.in_flight, matching)


def forget(
    settings: Settings,
    *,
    user_id: str,
    reason: str,
    dry_run: bool = False,
    dlq_sample: int = 1000,
    scan_queues: bool = True,
) -> ForgetResult:
    """Erase ``user_id``: rows, rollup counts, and vault entries nothing else references."""
    check_reason(reason)
    if not 1 <= len(user_id) <= 128:
        raise ConfigError("--user-id: a user id is 1 to 128 characters")
    if names_user(reason, user_id):
        raise ConfigError(
            "--reason contains the user id as a word, and the reason is stored in clear: the "
            "audit log records the user only as a keyed hash; rephrase (e.g. the ticket alone)"
        )
    with db.engine_for(settings.database_url) as engine:
        migrations.require_head(engine)
        audit.require_grant(
            engine,
            (lifecycle.FORGET_REQUEST_FN, lifecycle.FORGET_FN, "loginetl_forget_preview(text)"),
            group="loginetl_eraser",
            what="forget users",
        )
        preview = forgotten = request_seq = None
        if dry_run:
            with db.translate_errors(engine, "preview the erasure"), engine.connect() as conn:
                preview = lifecycle.forget_preview(conn, user_id=user_id)
        else:
            session = AuditSession.start(engine, reason, keys.load_audit_signer(settings.keys_dir))
            with session.transaction("audit the erasure request") as conn:
                request = lifecycle.request_forget(conn, user_id=user_id, operator=session.operator)
                session.sign(conn, request)
            request_seq = request.seq
            with session.transaction("erase the user") as conn:
                forgotten = lifecycle.forget(conn, request_seq=request.seq, user_id=user_id)
                session.sign(conn, forgotten.audit)
                failpoints.hit("crash_in_forget")
    dlq = dlq_error = None
    if scan_queues:
        try:
            dlq = scan_dlq(settings, user_id, sample=dlq_sample)
        except LoginetlError as error:
            dlq_error = str(error)
    return ForgetResult(dry_run, preview, forgotten, request_seq, dlq, dlq_error)
