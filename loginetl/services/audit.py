"""The unmask audit log, written only through the definer functions in loginetl/sql.

The database sets seq, time, role, address and the hashes; what the vault holds is told
only against a committed, durable request row (``loginetl_vault_open``). Signed heads
live in ``audit_heads``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select, text

from loginetl.core.audit_chain import AuditRow, SignedHead
from loginetl.errors import Refused
from loginetl.services.db import translate_errors
from loginetl.services.schema import unmask_audit


@dataclass(frozen=True)
class Appended:
    """The row the database appended: its place in the chain, and what it recorded."""

    seq: int
    row_hash: str
    outcome: str
    pii_field: str | None = None


@dataclass(frozen=True)
class Operator:
    """Who asks, as recorded in each row beside the database role."""

    reason: str
    os_user: str | None
    client_host: str | None


def request_unmask(conn: Connection, *, token: str, operator: Operator) -> Appended:
    """Audit a request for a token (outcome ``requested``); commit it, then open it.

    The row depends on nothing but the arguments: what the vault holds for the token
    is told only by ``loginetl_vault_open``, once this row is committed and on disk.
    """
    row = conn.execute(
        text("SELECT * FROM public.loginetl_unmask_request(:token, :reason, :os_user, :host)"),
        {"token": token, **_who(operator)},
    ).one()
    return Appended(row.audit_seq, row.audit_hash, row.outcome, row.pii_field)


def request_rederive(
    conn: Connection, *, key_id: str, fingerprint: str, operator: Operator
) -> Appended:
    """Audit a re-derivation to the deployed key ``key_id`` (refused for any other)."""
    row = conn.execute(
        text(
            "SELECT * FROM public.loginetl_rederive_request("
            ":key_id, :fingerprint, :reason, :os_user, :host)"
        ),
        {"key_id": key_id, "fingerprint": fingerprint, **_who(operator)},
    ).one()
    return Appended(row.audit_seq, row.audit_hash, "rederive")


def record(
    conn: Connection,
    *,
    token: str,
    pii_field: str | None,
    outcome: str,
    operator: Operator,
) -> Appended:
    """Append a row with an outcome loginetl itself determined (revealed, refusals)."""
    row = conn.execute(
        text(
            "SELECT * FROM public.loginetl_audit_append("
            ":token, :pii_field, :reason, :outcome, :os_user, :host)"
        ),
        {"token": token, "pii_field": pii_field, "outcome": outcome, **_who(operator)},
    ).one()
    return Appended(row.audit_seq, row.audit_hash, outcome, pii_field)


def _who(operator: Operator) -> dict[str, str | None]:
    return {"reason": operator.reason, "os_user": operator.os_user, "host": operator.client_host}


def add_signed_head(conn: Connection, head: SignedHead) -> None:
    """Store a head signature; the database checks the head names a real row."""
    conn.execute(
        text(
            "INSERT INTO public.audit_heads (seq, row_hash, key_id, signature, signed_at, "
            "signed_by) VALUES (:seq, :row_hash, :key_id, :signature, now(), '')"
        ),
        {
            "seq": head.seq,
            "row_hash": head.row_hash,
            "key_id": head.key_id,
            "signature": head.signature,
        },
    )


def signed_heads(conn: Connection) -> list[SignedHead]:
    """Every stored head signature."""
    rows = conn.execute(
        text("SELECT seq, row_hash, key_id, signature FROM public.audit_heads ORDER BY seq")
    )
    return [SignedHead(r.seq, r.row_hash, r.key_id, bytes(r.signature)) for r in rows]


def rows(conn: Connection, *, since: datetime | None = None) -> list[AuditRow]:
    """Audit rows in chain order, optionally only those at or after ``since``."""
    query = select(unmask_audit).order_by(unmask_audit.c.seq)
    if since is not None:
        query = query.where(unmask_audit.c.at >= since)
    return [AuditRow(**r._mapping) for r in conn.execute(query)]


def may_call(conn: Connection, function: str) -> bool:
    """Whether the connected role may EXECUTE ``function`` (a signature, e.g. ``f(bigint)``)."""
    return bool(
        conn.execute(
            text("SELECT has_function_privilege(current_user, :function, 'EXECUTE')"),
            {"function": f"public.{function}"},
        ).scalar_one()
    )


def require_grant(engine: Engine, functions: Sequence[str], *, group: str, what: str) -> None:
    """Refuse (exit 3) before any audit row if the role may not call every function."""
    with translate_errors(engine, "check grants"), engine.connect() as conn:
        role = current_role(conn)
        allowed = all(may_call(conn, f) for f in functions)
    if not allowed:
        raise Refused(f"database role {role!r} may not {what}; it needs {group}")


def current_role(conn: Connection) -> str:
    """The login role of this session."""
    return str(conn.execute(text("SELECT session_user")).scalar_one())
