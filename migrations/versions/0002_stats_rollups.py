"""Rollups that keep `stats` fast: per-token and per-user counts, kept in the load transaction.

Distinct counts over user_logins cost seconds at a million rows; these tables answer
them by counting or ordering a small table. Backfilled from existing rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE token_users (
            pii_field varchar(16)  NOT NULL,
            token     varchar(80)  NOT NULL,
            user_id   varchar(128) NOT NULL,
            PRIMARY KEY (pii_field, token, user_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE token_stats (
            pii_field varchar(16) NOT NULL,
            token     varchar(80) NOT NULL,
            users     bigint      NOT NULL,
            logins    bigint      NOT NULL,
            PRIMARY KEY (pii_field, token)
        )
        """
    )
    op.execute(
        "CREATE INDEX token_stats_shared_idx ON token_stats (pii_field, users DESC, logins DESC)"
    )
    op.execute(
        """
        CREATE TABLE user_stats (
            user_id     varchar(128) PRIMARY KEY,
            logins      bigint       NOT NULL,
            first_login timestamptz  NOT NULL,
            last_login  timestamptz  NOT NULL
        )
        """
    )
    for field, column in (("ip", "masked_ip"), ("device_id", "masked_device_id")):
        op.execute(
            f"INSERT INTO token_users SELECT DISTINCT '{field}', {column}, user_id FROM user_logins"
        )
        op.execute(
            f"INSERT INTO token_stats SELECT '{field}', {column}, count(DISTINCT user_id), count(*) "
            f"FROM user_logins GROUP BY {column}"
        )
    op.execute(
        "INSERT INTO user_stats SELECT user_id, count(*), min(sent_at), max(sent_at) "
        "FROM user_logins GROUP BY user_id"
    )


def downgrade() -> None:
    op.execute("DROP TABLE user_stats")
    op.execute("DROP TABLE token_stats")
    op.execute("DROP TABLE token_users")
