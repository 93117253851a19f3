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


def run_migrations_offline() -> None:
    """Print the DDL (``migrate upgrade --sql``): no database is read or written."""
    context.configure(
        dialect_name="postgresql",
        dialect_opts={"paramstyle": "named"},  # "%" printed as written, not doubled
        transaction_per_migration=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
