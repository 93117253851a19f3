"""Partition user_logins by month of create_date, with a default partition.

Uniqueness must include the partition key, so the idempotency constraint becomes
(idempotency_key, create_date). That is still "one row per message": create_date is the
UTC day of the message's original send time, which travels with the message through
every DLQ round trip (loginetl-original-sent-at), so one message always lands on one day.

Partitions are made ahead of time by loginetl_ensure_partitions(), a SECURITY DEFINER
function the writer role may call (only the table owner may add partitions). It also
handles rows that already landed in the default partition for a month it creates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (
    "idempotency_key, user_id, device_type, masked_ip, masked_device_id, locale, "
    "app_version, app_version_raw, create_date, sent_at, loaded_at"
)

ENSURE_PARTITIONS = """
CREATE FUNCTION loginetl_ensure_partitions(first_month date, months integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    lo date;
    hi date;
    name text;
    made integer := 0;
BEGIN
    IF months < 1 OR months > 120 THEN
        RAISE EXCEPTION 'months must be between 1 and 120';
    END IF;
    -- One creator at a time: two consumers starting together must not race.
    PERFORM pg_advisory_xact_lock(hashtext('loginetl.partitions'));
    FOR i IN 0 .. months - 1 LOOP
        lo := (date_trunc('month', first_month) + make_interval(months => i))::date;
        hi := (lo + interval '1 month')::date;
        name := 'user_logins_' || to_char(lo, 'YYYY_MM');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM user_logins_default WHERE create_date >= lo AND create_date < hi) THEN
            -- Rows for this month are in the default partition: move them in with it.
            EXECUTE format('CREATE TABLE %I (LIKE user_logins INCLUDING DEFAULTS)', name);
            EXECUTE format(
                'WITH moved AS (DELETE FROM user_logins_default WHERE create_date >= %L '
                'AND create_date < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                lo, hi, name);
            EXECUTE format(
                'ALTER TABLE user_logins ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                name, lo, hi);
        ELSE
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF user_logins FOR VALUES FROM (%L) TO (%L)',
                name, lo, hi);
        END IF;
        made := made + 1;
    END LOOP;
    RETURN made;
END $$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE user_logins RENAME TO user_logins_unpartitioned")
    for index in ("create_date", "loaded_at", "masked_ip", "masked_device_id"):
        op.execute(
            f"ALTER INDEX user_logins_{index}_idx RENAME TO user_logins_unpartitioned_{index}_idx"
        )
    op.execute(
        "ALTER TABLE user_logins_unpartitioned "
        "RENAME CONSTRAINT user_logins_idempotency_key_key TO user_logins_unpartitioned_key_key"
    )
    op.execute(
        "ALTER TABLE user_logins_unpartitioned RENAME CONSTRAINT user_logins_pkey "
        "TO user_logins_unpartitioned_pkey"
    )
    op.execute("ALTER SEQUENCE user_logins_id_seq RENAME TO user_logins_unpartitioned_id_seq")
    op.execute(
        """
        CREATE TABLE user_logins (
            id               bigint GENERATED ALWAYS AS IDENTITY,
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
            PRIMARY KEY (id, create_date),
            CONSTRAINT user_logins_idempotency_key_key UNIQUE (idempotency_key, create_date)
        ) PARTITION BY RANGE (create_date)
        """
    )
    op.execute("CREATE TABLE user_logins_default PARTITION OF user_logins DEFAULT")
    op.execute("CREATE INDEX user_logins_create_date_idx ON user_logins (create_date)")
    op.execute("CREATE INDEX user_logins_loaded_at_idx ON user_logins (loaded_at)")
    op.execute("CREATE INDEX user_logins_masked_ip_idx ON user_logins (masked_ip, user_id)")
    op.execute(
        "CREATE INDEX user_logins_masked_device_id_idx ON user_logins (masked_device_id, user_id)"
    )
    op.execute(ENSURE_PARTITIONS)
    op.execute("REVOKE ALL ON FUNCTION loginetl_ensure_partitions(date, integer) FROM PUBLIC")
    op.execute(
        "GRANT EXECUTE ON FUNCTION loginetl_ensure_partitions(date, integer) TO loginetl_writer"
    )
    # Months that already hold data, and this month plus the next three.
    conn = op.get_bind()
    first, last = conn.execute(
        text(
            "SELECT date_trunc('month', least(min(create_date), current_date))::date, "
            "date_trunc('month', greatest(max(create_date), current_date))::date "
            "FROM user_logins_unpartitioned"
        )
    ).one()
    months = (last.year - first.year) * 12 + (last.month - first.month) + 4
    conn.execute(
        text("SELECT loginetl_ensure_partitions(:first, :months)"),
        {"first": first, "months": months},
    )
    op.execute(
        f"INSERT INTO user_logins ({_COLUMNS}) SELECT {_COLUMNS} FROM user_logins_unpartitioned"
    )
    op.execute("DROP TABLE user_logins_unpartitioned")
    op.execute(
        "COMMENT ON COLUMN user_logins.app_version IS "
        "'major*1000000 + minor*1000 + patch; ordered like the versions'"
    )
    op.execute("GRANT SELECT, INSERT ON user_logins TO loginetl_writer")
    op.execute("GRANT USAGE ON SEQUENCE user_logins_id_seq TO loginetl_writer")
    op.execute("GRANT SELECT ON user_logins TO loginetl_analyst")


def downgrade() -> None:
    op.execute("ALTER TABLE user_logins RENAME TO user_logins_partitioned")
    op.execute("ALTER TABLE user_logins_partitioned RENAME CONSTRAINT user_logins_pkey TO ulp_pkey")
    op.execute(
        "ALTER TABLE user_logins_partitioned "
        "RENAME CONSTRAINT user_logins_idempotency_key_key TO ulp_key_key"
    )
    op.execute("ALTER SEQUENCE user_logins_id_seq RENAME TO ulp_id_seq")
    for index in ("create_date", "loaded_at", "masked_ip", "masked_device_id"):
        op.execute(f"ALTER INDEX user_logins_{index}_idx RENAME TO ulp_{index}_idx")
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
            loaded_at        timestamptz  NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        f"INSERT INTO user_logins ({_COLUMNS}) SELECT {_COLUMNS} FROM user_logins_partitioned"
    )
    op.execute("DROP TABLE user_logins_partitioned")
    op.execute("DROP FUNCTION loginetl_ensure_partitions(date, integer)")
    op.execute(
        "ALTER TABLE user_logins ADD CONSTRAINT user_logins_idempotency_key_key "
        "UNIQUE (idempotency_key)"
    )
    op.execute("CREATE INDEX user_logins_create_date_idx ON user_logins (create_date)")
    op.execute("CREATE INDEX user_logins_loaded_at_idx ON user_logins (loaded_at)")
    op.execute("CREATE INDEX user_logins_masked_ip_idx ON user_logins (masked_ip, user_id)")
    op.execute(
        "CREATE INDEX user_logins_masked_device_id_idx ON user_logins (masked_device_id, user_id)"
    )
    op.execute("GRANT SELECT, INSERT ON user_logins TO loginetl_writer")
    op.execute("GRANT USAGE ON SEQUENCE user_logins_id_seq TO loginetl_writer")
    op.execute("GRANT SELECT ON user_logins TO loginetl_analyst")
