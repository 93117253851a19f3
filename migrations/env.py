"""Alembic environment: the URL comes from loginetl's settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from loginetl.config import Settings
from loginetl.services.db import make_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection if it passed one, else build an engine from settings."""
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    url = context.config.attributes.get("database_url") or Settings.load().database_url
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
