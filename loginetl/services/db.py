"""The PostgreSQL adapter: engines, database creation, and the one-transaction batch write."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from loginetl.core import rollup
from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.errors import ConfigError, ServiceUnavailable
from loginetl.services import failpoints

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


@contextlib.contextmanager
def engine_for(database_url: str, *, pool_size: int = 1) -> Iterator[Engine]:
    """An engine for one command's work, disposed (connections closed) when it is done."""
    engine = make_engine(database_url, pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()


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


# Each statement sends a whole batch in one round trip (psycopg2's execute_values):
# SQLAlchemy's executemany sends one statement per row for the ones without RETURNING,
# which made the load stage ~15x slower (see the README's profile).
_INSERT_VAULT = """
    INSERT INTO pii_vault (token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext)
    VALUES %s
    ON CONFLICT DO NOTHING
"""  # no conflict target: naming one needs SELECT on it, and the writer may not read the vault
_INSERT_ROWS = """
    INSERT INTO user_logins (idempotency_key, user_id, device_type, masked_ip, masked_device_id,
                             locale, app_version, app_version_raw, sent_at, create_date)
    VALUES %s
    ON CONFLICT (idempotency_key, create_date) DO NOTHING
    RETURNING idempotency_key
"""  # the partition key is part of the unique constraint; see migration 0004
_INSERT_PAIRS = """
    INSERT INTO token_users (pii_field, token, user_id) VALUES %s
    ON CONFLICT DO NOTHING
    RETURNING pii_field, token
"""
_UPSERT_TOKENS = """
    INSERT INTO token_stats AS t (pii_field, token, users, logins) VALUES %s
    ON CONFLICT (pii_field, token) DO UPDATE
    SET users = t.users + excluded.users, logins = t.logins + excluded.logins
"""
_UPSERT_USERS = """
    INSERT INTO user_stats AS u (user_id, logins, first_login, last_login) VALUES %s
    ON CONFLICT (user_id) DO UPDATE
    SET logins = u.logins + excluded.logins,
        first_login = least(u.first_login, excluded.first_login),
        last_login = greatest(u.last_login, excluded.last_login)
"""


def _values(
    cursor: Any, sql: str, rows: Sequence[tuple[Any, ...]], *, fetch: bool = False
) -> list[tuple[Any, ...]]:
    if not rows:
        return []
    result = execute_values(cursor, sql, rows, page_size=max(len(rows), 100), fetch=fetch)
    return list(result) if fetch else []


def insert_many(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run an ``INSERT ... VALUES %s`` for all rows in one round trip, in conn's transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        _values(cursor, sql, rows)
    finally:
        cursor.close()


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
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            _values(
                cursor,
                _INSERT_VAULT,
                [
                    (
                        e.token,
                        e.pii_field,
                        e.recipient,
                        e.ephemeral_public_key,
                        e.nonce,
                        e.ciphertext,
                    )
                    for e in sorted(vault_entries, key=lambda e: e.token)
                ],
            )
            inserted = {
                key
                for (key,) in _values(
                    cursor,
                    _INSERT_ROWS,
                    [
                        (
                            r.idempotency_key,
                            r.user_id,
                            r.device_type,
                            r.masked_ip,
                            r.masked_device_id,
                            r.locale,
                            r.app_version,
                            r.app_version_raw,
                            r.sent_at,
                            r.create_date,
                        )
                        for r in sorted(rows, key=lambda r: r.idempotency_key)
                    ],
                    fetch=True,
                )
            }
            new_rows = [r for r in rows if r.idempotency_key in inserted]
            if new_rows:
                _update_rollups(cursor, new_rows)
            failpoints.hit("crash_before_commit")
            failpoints.hit("sleep_before_commit")
        finally:
            cursor.close()
    return len(inserted)


def _update_rollups(cursor: Any, new_rows: Sequence[LoginRow]) -> None:
    new_pairs = _values(cursor, _INSERT_PAIRS, rollup.token_user_pairs(new_rows), fetch=True)
    _values(cursor, _UPSERT_TOKENS, rollup.token_deltas(new_rows, [(f, t) for f, t in new_pairs]))
    _values(
        cursor,
        _UPSERT_USERS,
        [(d.user_id, d.logins, d.first_login, d.last_login) for d in rollup.user_deltas(new_rows)],
    )
