"""loginetl 1.0: the whole schema, from the plain SQL files in loginetl/sql.

Every database object is defined once, in a file of its own a reviewer can read and grep
(docs/design.md, "Where the schema lives"). This revision runs them in dependency order:
the roles and tables, then the functions (whose bodies name the tables), the triggers
(which name the functions) and the grants (which name both). It asks the database
nothing, so `loginetl migrate upgrade --sql` prints the same DDL a DBA can review and run.

Revision ID: 1.0
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from importlib import resources

from alembic import op

revision = "1.0"
down_revision = None
branch_labels = None
depends_on = None

# Relative to loginetl/sql; a trailing "/" runs every .sql file of that folder, by name.
ORDER = (
    "roles.sql",
    "tables/",
    "functions/",
    "triggers.sql",
    "grants.sql",
)


def upgrade() -> None:
    sql = resources.files("loginetl") / "sql"
    for entry in ORDER:
        if entry.endswith("/"):
            files = sorted(
                (f for f in (sql / entry).iterdir() if f.name.endswith(".sql")),
                key=lambda f: f.name,
            )
        else:
            files = [sql / entry]
        for file in files:
            # Alembic ends each statement with ";" when it prints them (--sql).
            op.execute(file.read_text(encoding="utf-8").rstrip().removesuffix(";"))
    # This month and the next three; consume keeps them ahead from then on.
    op.execute("SELECT public.loginetl_ensure_partitions(CURRENT_DATE, 4)")


def downgrade() -> None:
    raise RuntimeError(
        "1.0 is the first revision: there is nothing below it to go back to; "
        "to start over, drop the database"
    )
