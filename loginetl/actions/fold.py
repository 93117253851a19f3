"""``fold``: the rest of the write, which the writer role is not allowed to do.

consume only appends: rows, sealed vault entries (to ``vault_inbox``) and rollup deltas
(to ``rollup_pending``), so nothing its transaction does depends on what is stored. This
settles the inbox into the vault (the first entry of a token wins) and folds the deltas
into the rollups, as a role that may already know what that reveals
(``loginetl_maintainer``, or the owner): once until nothing is pending, or with
``follow`` every ``interval`` seconds until stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from loginetl.config import Settings
from loginetl.errors import Refused
from loginetl.services import db, migrations

log = logging.getLogger("loginetl.fold")


@dataclass(frozen=True)
class FoldSummary:
    """What a ``fold`` run did, and what it left behind (nothing, unless stopped)."""

    rounds: int
    settled: int  # vault inbox entries moved into the vault (or found there already)
    folded: int  # pending rows added to the rollups
    pending_rows: int
    vault_pending: int
    behind_seconds: float  # age of the oldest work left: how far stats and the vault lag
    failed_rounds: int
    stopped_because: str


def fold(
    settings: Settings,
    *,
    follow: bool = False,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    on_round: Callable[[db.Backlog], None] | None = None,
) -> FoldSummary:
    """Settle and fold until nothing is pending, or (``follow``) until ``stop`` is set."""
    stop = stop or threading.Event()
    rounds = failed = settled = folded = 0
    last: db.Backlog | None = None
    stopped_because = "nothing_pending"
    with db.engine_for(settings.database_url, pool_size=2) as engine:
        with db.translate_errors(engine, "fold"):
            migrations.require_compatible(engine)
        while True:
            try:
                done = db.fold(engine, wait=True)
                moved, added = done.settled or 0, done.folded or 0
                with engine.connect() as conn:
                    last = db.backlog_on(conn)
            except Exception as error:
                if db.is_database_error(error) and db.sqlstate(error) == db.INSUFFICIENT_PRIVILEGE:
                    raise Refused(
                        "this database role may not fold; run fold as a login role in "
                        "loginetl_maintainer (or the owner), never as the writer"
                    ) from None
                if not (follow and db.is_database_error(error) and db.is_transient(error)):
                    with db.translate_errors(engine, "fold"):  # a lost database: one sentence
                        raise
                failed += 1
                log.warning("fold failed, retrying in %.1f s (%s)", interval, db.describe(error))
            else:
                rounds += 1
                settled, folded = settled + moved, folded + added
                if on_round is not None:
                    on_round(last)
                if not follow:
                    break
            if stop.wait(interval):
                stopped_because = "signal"
                break
    return FoldSummary(
        rounds=rounds,
        settled=settled,
        folded=folded,
        pending_rows=last.pending_rows if last else 0,
        vault_pending=last.inbox_entries if last else 0,
        behind_seconds=last.behind_seconds if last else 0.0,
        failed_rounds=failed,
        stopped_because=stopped_because,
    )
