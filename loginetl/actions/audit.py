"""``audit list`` and ``audit verify``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine

from loginetl.config import Settings
from loginetl.core.audit_chain import AuditRow, ChainReport, verify
from loginetl.services import audit, db, keys


@contextlib.contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    with db.translate_errors(engine, "read the audit log"), engine.connect() as conn:
        yield conn


def list_entries(settings: Settings, *, since: timedelta | None = None) -> list[AuditRow]:
    """Audit rows, oldest first, optionally within a window."""
    start = datetime.now(UTC) - since if since is not None else None
    with db.engine_for(settings.database_url) as engine, _reading(engine) as conn:
        return audit.rows(conn, since=start)


def verify_chain(
    settings: Settings,
    *,
    expect_head: tuple[int, str] | None = None,
    public_key_path: Path | None = None,
    check_signatures: bool = True,
) -> ChainReport:
    """Recompute the whole chain and check every signed head against the public key.

    The key comes from outside the database (default: the keys dir), so the database
    owner cannot swap it.
    """
    public_key = (
        keys.load_audit_public_key(public_key_path or settings.keys_dir / keys.AUDIT_PUBLIC_FILE)
        if check_signatures
        else None
    )
    with db.engine_for(settings.database_url) as engine, _reading(engine) as conn:
        return verify(
            audit.rows(conn),
            heads=audit.signed_heads(conn) if check_signatures else (),
            public_key=public_key,
            expect_head=expect_head,
        )
