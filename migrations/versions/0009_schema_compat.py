"""Rolling deploys: each revision declares the oldest consumer head it still serves.

``loginetl_schema_compat`` holds one row per revision from this one on: (revision,
compatible_with). A consumer whose code does not know the database's revision (the
schema is ahead of it, mid-deploy) reads this table and runs only if every revision it
does not know declares itself compatible with a head it does know (its own or older);
otherwise it refuses with a sentence. Every later migration declares itself with
``declare_compatible`` in its upgrade, and its downgrade removes the row again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        f"CREATE TABLE {COMPAT_TABLE} (revision text PRIMARY KEY, compatible_with text NOT NULL)"
    )
    op.execute(
        f"COMMENT ON TABLE {COMPAT_TABLE} IS "
        "'per revision: the oldest consumer head that may run against this schema'"
    )
    op.execute(f"REVOKE ALL ON {COMPAT_TABLE} FROM PUBLIC")
    op.execute(
        f"GRANT SELECT ON {COMPAT_TABLE} TO loginetl_writer, loginetl_analyst, loginetl_unmasker"
    )
    # Only adds a table no older code reads: consumers at 0008 run unchanged on it. (0007
    # and 0008 change grants and functions that 0006 code uses, so no older head is served.)
    declare_compatible("0009", "0008")


def downgrade() -> None:
    op.execute(f"DROP TABLE {COMPAT_TABLE}")
