"""token_aliases: old-key token -> new-key token, so analysts can join across a key rotation.

Written by `loginetl keys rederive` (privacy staff: it decrypts the vault), read by analysts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE token_aliases (
            token      varchar(80) PRIMARY KEY,
            alias      varchar(80) NOT NULL,
            pii_field  varchar(16) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX token_aliases_alias_idx ON token_aliases (alias)")
    op.execute("REVOKE ALL ON token_aliases FROM PUBLIC")
    op.execute("GRANT SELECT ON token_aliases TO loginetl_analyst")
    op.execute("GRANT SELECT, INSERT ON token_aliases TO loginetl_unmasker")


def downgrade() -> None:
    op.execute("DROP TABLE token_aliases")
