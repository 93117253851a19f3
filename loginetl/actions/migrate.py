"""``migrate``: the schema commands, each opening and closing its own engine."""

from __future__ import annotations

from dataclasses import dataclass

from loginetl.config import Settings
from loginetl.services import db, migrations
from loginetl.services.migrations import Revision, SchemaStatus

__all__ = [
    "Revision",
    "SchemaStatus",
    "Upgraded",
    "downgrade",
    "history",
    "status",
    "upgrade",
    "upgrade_sql",
]


@dataclass(frozen=True)
class Upgraded:
    """Where the schema ended up, and whether the database had to be created first."""

    created_database: bool
    status: SchemaStatus


def upgrade(settings: Settings, revision: str = "head") -> Upgraded:
    """Create the database if missing (and the role may), then migrate up."""
    created = db.ensure_database(settings.database_url)
    # No statement timeout: a migration may rightly run (and hold its locks) for minutes;
    # consumers meanwhile treat their lock waits as transient (docs/operations.md).
    with db.engine_for(settings.database_url, statement_timeout_ms=0) as engine:
        return Upgraded(created, migrations.upgrade(engine, revision))


def upgrade_sql(revision: str = "head") -> str:
    """The DDL up to ``revision``, for a DBA to review and run; needs no database."""
    return migrations.upgrade_sql(revision)


def downgrade(settings: Settings, revision: str) -> SchemaStatus:
    """Migrate down to ``revision``."""
    with db.engine_for(settings.database_url, statement_timeout_ms=0) as engine:
        return migrations.downgrade(engine, revision)


def status(settings: Settings) -> SchemaStatus:
    """The database's revision against this code's heads."""
    with db.engine_for(settings.database_url) as engine:
        return migrations.status(engine)


def history() -> list[Revision]:
    """Every migration, newest first."""
    return migrations.history()
