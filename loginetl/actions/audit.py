"""``audit list`` and ``audit verify``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loginetl.config import Settings
from loginetl.core.audit_chain import AuditRow, ChainReport, verify
from loginetl.services import audit, db


def list_entries(settings: Settings, *, since: timedelta | None = None) -> list[AuditRow]:
    """Audit rows, oldest first, optionally within a window."""
    engine = db.make_engine(settings.database_url, pool_size=1)
    try:
        with db.translate_errors(engine, "read the audit log"), engine.connect() as conn:
            start = datetime.now(UTC) - since if since is not None else None
            return audit.rows(conn, since=start)
    finally:
        engine.dispose()


def verify_chain(settings: Settings, *, expect_head: tuple[int, str] | None = None) -> ChainReport:
    """Recompute the whole chain from the database's rows."""
    engine = db.make_engine(settings.database_url, pool_size=1)
    try:
        with db.translate_errors(engine, "read the audit log"), engine.connect() as conn:
            return verify(audit.rows(conn), expect_head=expect_head)
    finally:
        engine.dispose()
