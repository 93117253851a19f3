"""``audit list`` and ``audit verify``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from loginetl.config import Settings
from loginetl.core.audit_chain import AuditRow, ChainReport, verify
from loginetl.services import audit, db


@contextlib.contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    with db.translate_errors(engine, "read the audit log"), engine.connect() as conn:
        yield conn


def list_entries(settings: Settings, *, since: timedelta | None = None) -> list[AuditRow]:
    """Audit rows, oldest first, optionally within a window."""
    start = datetime.now(UTC) - since if since is not None else None
    with db.engine_for(settings.database_url) as engine, _reading(engine) as conn:
        return audit.rows(conn, since=start)


def verify_chain(settings: Settings, *, expect_head: tuple[int, str] | None = None) -> ChainReport:
    """Recompute the whole chain from the database's rows."""
    with db.engine_for(settings.database_url) as engine, _reading(engine) as conn:
        return verify(audit.rows(conn), expect_head=expect_head)
