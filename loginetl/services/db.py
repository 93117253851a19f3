"""The PostgreSQL adapter: engines, database creation, and the one-transaction batch write."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict

from sqlalchemy import Connection, Engine, create_engine, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from loginetl.core import rollup
from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.errors import ConfigError, ServiceUnavailable
from loginetl.services.schema import pii_vault, token_stats, token_users, user_logins, user_stats

_NO_SUCH_DATABASE = "3D000"
_INSUFFICIENT_PRIVILEGE = "42501"


def make_engine(database_url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine that never logs parameters (they may hold user data)."""
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={
            "connect_timeout": 5,
            "application_name": "loginetl",
            "options": "-c statement_timeout=60000",
        },
    )


def is_transient(error: BaseException) -> bool:
    """True for failures a retry can cure: lost connections, deadlocks, shutdowns."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def describe(error: BaseException) -> str:
    """A one-line, parameter-free description of a database error."""
    original = getattr(error, "orig", None) or error
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {first_line}" if first_line else type(original).__name__


@contextlib.contextmanager
def translate_errors(engine: Engine, what: str) -> Iterator[None]:
    """Turn connection failures into ServiceUnavailable with the (password-free) URL."""
    try:
        yield
    except OperationalError as error:
        code = getattr(error.orig, "pgcode", None)
        url = engine.url.render_as_string(hide_password=True)
        if code == _NO_SUCH_DATABASE or "does not exist" in str(error.orig):
            raise ServiceUnavailable(
                f"database {engine.url.database!r} does not exist at {url}; "
                "create it with: loginetl migrate upgrade"
            ) from error
        raise ServiceUnavailable(
            f"cannot {what}: PostgreSQL at {url} is unreachable ({describe(error)})"
        ) from error


def ping(engine: Engine) -> None:
    """Check that the database answers, raising ServiceUnavailable if not."""
    with translate_errors(engine, "connect"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def ensure_database(database_url: str) -> bool:
    """Create the database if it is missing and the role may; return True if created."""
    url = make_url(database_url)
    admin = make_engine(
        url.set(database="postgres").render_as_string(hide_password=False), pool_size=1
    ).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with translate_errors(admin, "create the database"), admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).scalar()
            if exists:
                return False
            quoted = admin.dialect.identifier_preparer.quote(url.database or "")
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    except ProgrammingError as error:
        if getattr(error.orig, "pgcode", None) == _INSUFFICIENT_PRIVILEGE:
            raise ConfigError(
                f"database {url.database!r} does not exist and this role may not create it; "
                "ask a DBA to create it, then run loginetl migrate upgrade"
            ) from None
        raise
    finally:
        admin.dispose()


def ensure_partitions(engine: Engine, *, months_ahead: int = 3) -> int:
    """Create monthly partitions of user_logins from this month on; return how many were made.

    Runs the migration's SECURITY DEFINER function, so the writer role may call it.
    """
    with engine.begin() as conn:
        return int(
            conn.execute(
                text("SELECT loginetl_ensure_partitions(current_date, :months)"),
                {"months": months_ahead + 1},
            ).scalar_one()
        )


def write_batch(
    engine: Engine, rows: Sequence[LoginRow], vault_entries: Sequence[SealedVaultEntry]
) -> int:
    """Insert rows, vault entries and rollups in one transaction; return how many rows were new.

    Rows whose idempotency key is already present are skipped (redelivery, replay), and
    only new rows reach the rollups. Every statement works in sorted key order, so
    concurrent writers take row locks in the same order and cannot deadlock each other.
    """
    if not rows and not vault_entries:
        return 0
    with engine.begin() as conn:
        if vault_entries:
            conn.execute(
                # No conflict target: naming one needs SELECT on it, and the writer role
                # must be able to add to the vault without reading any of it.
                insert(pii_vault).on_conflict_do_nothing(),
                [
                    {
                        "token": e.token,
                        "pii_field": e.pii_field,
                        "recipient": e.recipient,
                        "ephemeral_public_key": e.ephemeral_public_key,
                        "nonce": e.nonce,
                        "ciphertext": e.ciphertext,
                    }
                    for e in sorted(vault_entries, key=lambda e: e.token)
                ],
            )
        if not rows:
            return 0
        inserted = set(
            conn.execute(
                insert(user_logins)
                # The partition key is part of the unique constraint; see migration 0004.
                .on_conflict_do_nothing(index_elements=["idempotency_key", "create_date"])
                .returning(user_logins.c.idempotency_key),
                [asdict(r) for r in sorted(rows, key=lambda r: r.idempotency_key)],
            ).scalars()
        )
        new_rows = [r for r in rows if r.idempotency_key in inserted]
        if new_rows:
            _update_rollups(conn, new_rows)
    return len(inserted)


def _update_rollups(conn: Connection, new_rows: Sequence[LoginRow]) -> None:
    new_pairs = conn.execute(
        insert(token_users)
        .on_conflict_do_nothing()
        .returning(token_users.c.pii_field, token_users.c.token),
        [
            {"pii_field": f, "token": t, "user_id": u}
            for f, t, u in rollup.token_user_pairs(new_rows)
        ],
    ).all()
    stmt = insert(token_stats)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["pii_field", "token"],
            set_={
                "users": token_stats.c.users + stmt.excluded.users,
                "logins": token_stats.c.logins + stmt.excluded.logins,
            },
        ),
        [
            {"pii_field": f, "token": t, "users": users, "logins": logins}
            for f, t, users, logins in rollup.token_deltas(
                new_rows, [(p[0], p[1]) for p in new_pairs]
            )
        ],
    )
    stmt = insert(user_stats)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                "logins": user_stats.c.logins + stmt.excluded.logins,
                "first_login": func.least(user_stats.c.first_login, stmt.excluded.first_login),
                "last_login": func.greatest(user_stats.c.last_login, stmt.excluded.last_login),
            },
        ),
        [asdict(d) for d in rollup.user_deltas(new_rows)],
    )
