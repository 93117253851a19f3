"""The unmask audit log: append a row (the trigger chains it), read rows back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, text

from loginetl.core.audit_chain import AuditRow
from loginetl.services.schema import unmask_audit


def record(
    conn: Connection,
    *,
    token: str,
    pii_field: str | None,
    reason: str,
    outcome: str,
    os_user: str | None,
    client_host: str | None,
) -> AuditRow:
    """Append one row; the database sets seq, time, role, address and the hashes."""
    row = conn.execute(
        insert(unmask_audit)
        .values(
            token=token,
            pii_field=pii_field,
            reason=reason,
            outcome=outcome,
            os_user=os_user,
            client_host=client_host,
            # Placeholders: the BEFORE INSERT trigger overwrites every one of them.
            seq=0,
            at=text("now()"),
            db_role="",
            prev_hash="",
            row_hash="",
        )
        .returning(*unmask_audit.c)
    ).one()
    return AuditRow(**row._mapping)


def rows(conn: Connection, *, since: datetime | None = None) -> list[AuditRow]:
    """Audit rows in chain order, optionally only those at or after ``since``."""
    query = select(unmask_audit).order_by(unmask_audit.c.seq)
    if since is not None:
        query = query.where(unmask_audit.c.at >= since)
    return [AuditRow(**r._mapping) for r in conn.execute(query)]


def may(conn: Connection, table: str, privilege: str) -> bool:
    """Whether the connected role holds ``privilege`` on ``table`` (directly or by group)."""
    return bool(
        conn.execute(
            text("SELECT has_table_privilege(current_user, :table, :privilege)"),
            {"table": table, "privilege": privilege},
        ).scalar_one()
    )


def current_role(conn: Connection) -> str:
    """The login role of this session."""
    return str(conn.execute(text("SELECT session_user")).scalar_one())
