"""Create user_logins and pii_vault.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The take-home's columns keep their names and types so existing queries work;
    # the rest is what an idempotent, replayable pipeline needs.
    op.execute(
        """
        CREATE TABLE user_logins (
            id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            idempotency_key  text         NOT NULL,
            user_id          varchar(128) NOT NULL,
            device_type      varchar(32)  NOT NULL,
            masked_ip        varchar(80)  NOT NULL,
            masked_device_id varchar(80)  NOT NULL,
            locale           varchar(32),
            app_version      integer      NOT NULL,
            app_version_raw  varchar(16)  NOT NULL,
            create_date      date         NOT NULL,
            sent_at          timestamptz  NOT NULL,
            loaded_at        timestamptz  NOT NULL DEFAULT now(),
            CONSTRAINT user_logins_idempotency_key_key UNIQUE (idempotency_key)
        )
        """
    )
    op.execute(
        "COMMENT ON COLUMN user_logins.app_version IS "
        "'major*1000000 + minor*1000 + patch; ordered like the versions'"
    )
    op.execute(
        "COMMENT ON COLUMN user_logins.idempotency_key IS "
        "'SQS MessageId as first published (survives DLQ round trips)'"
    )
    op.execute("CREATE INDEX user_logins_create_date_idx ON user_logins (create_date)")
    op.execute("CREATE INDEX user_logins_loaded_at_idx ON user_logins (loaded_at)")
    op.execute("CREATE INDEX user_logins_masked_ip_idx ON user_logins (masked_ip, user_id)")
    op.execute(
        "CREATE INDEX user_logins_masked_device_id_idx ON user_logins (masked_device_id, user_id)"
    )
    op.execute(
        """
        CREATE TABLE pii_vault (
            token                varchar(80) PRIMARY KEY,
            pii_field            varchar(16) NOT NULL CHECK (pii_field IN ('ip', 'device_id')),
            recipient            varchar(32) NOT NULL,
            ephemeral_public_key bytea       NOT NULL,
            nonce                bytea       NOT NULL,
            ciphertext           bytea       NOT NULL,
            created_at           timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE pii_vault IS "
        "'PII sealed to the vault public key (X25519+HKDF+AES-GCM); token -> ciphertext'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE pii_vault")
    op.execute("DROP TABLE user_logins")
