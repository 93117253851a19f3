"""A leaner write path: fewer indexes per row, and rollups folded beside the load.

Profiling the load stage (README, "Where the time goes") showed the server spending most
of each batch on index entries: six b-trees on user_logins plus three rollup tables kept
in the same transaction. This revision:

- makes (idempotency_key, create_date) the primary key, replacing the unique constraint
  and the surrogate-id key (``id`` stays, filled from its sequence, but is not indexed);
- turns the create_date and loaded_at indexes into BRIN: rows arrive in time order, so
  a block-range summary answers "this day" and "the last 24 hours" at almost no cost;
- adds rollup_pending: the load appends each new row's (user, tokens, time) there, and
  a fold (``db.fold_rollups``, run by consume) moves them into token_users, token_stats
  and user_stats in bulk. The fold deletes what it folds in the same transaction, so
  every row is counted exactly once, whoever folds and whenever.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE user_logins DROP CONSTRAINT user_logins_pkey")
    op.execute("ALTER TABLE user_logins DROP CONSTRAINT user_logins_idempotency_key_key")
    op.execute(
        "ALTER TABLE user_logins ADD CONSTRAINT user_logins_pkey "
        "PRIMARY KEY (idempotency_key, create_date)"
    )
    for column in ("create_date", "loaded_at"):
        op.execute(f"DROP INDEX user_logins_{column}_idx")
        op.execute(f"CREATE INDEX user_logins_{column}_idx ON user_logins USING brin ({column})")
    op.execute(
        """
        CREATE TABLE rollup_pending (
            user_id          varchar(128) NOT NULL,
            masked_ip        varchar(80)  NOT NULL,
            masked_device_id varchar(80)  NOT NULL,
            sent_at          timestamptz  NOT NULL
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE rollup_pending IS "
        "'rows loaded but not yet folded into token_users/token_stats/user_stats'"
    )
    op.execute("REVOKE ALL ON rollup_pending FROM PUBLIC")
    op.execute("GRANT SELECT, INSERT, DELETE ON rollup_pending TO loginetl_writer")
    op.execute("GRANT SELECT ON rollup_pending TO loginetl_analyst")


def downgrade() -> None:
    # Fold what is pending first, so the older schema's rollups stay exact.
    op.execute(
        "INSERT INTO token_users SELECT DISTINCT f, t, user_id FROM rollup_pending, "
        "LATERAL (VALUES ('ip', masked_ip), ('device_id', masked_device_id)) v(f, t) "
        "ON CONFLICT DO NOTHING"
    )
    for field, column in (("ip", "masked_ip"), ("device_id", "masked_device_id")):
        op.execute(f"DELETE FROM token_stats WHERE pii_field = '{field}'")
        op.execute(
            f"INSERT INTO token_stats SELECT '{field}', {column}, count(DISTINCT user_id), "
            f"count(*) FROM user_logins GROUP BY {column}"
        )
    op.execute("DELETE FROM user_stats")
    op.execute(
        "INSERT INTO user_stats SELECT user_id, count(*), min(sent_at), max(sent_at) "
        "FROM user_logins GROUP BY user_id"
    )
    op.execute("DROP TABLE rollup_pending")
    for column in ("create_date", "loaded_at"):
        op.execute(f"DROP INDEX user_logins_{column}_idx")
        op.execute(f"CREATE INDEX user_logins_{column}_idx ON user_logins ({column})")
    op.execute("ALTER TABLE user_logins DROP CONSTRAINT user_logins_pkey")
    op.execute(
        "ALTER TABLE user_logins ADD CONSTRAINT user_logins_idempotency_key_key "
        "UNIQUE (idempotency_key, create_date)"
    )
    op.execute("ALTER TABLE user_logins ADD PRIMARY KEY (id, create_date)")
