"""Signed rollups: every figure `stats` prints, kept exact under loads AND removals.

Before this revision `stats` counted user_logins (rows, breakdowns, loads per hour) and
the distinct-count tables (user_stats, token_stats): its time grew with the data. And
the rollups could only grow, so deleting rows (an erasure, a retention drop) would leave
them counting rows that no longer exist.

- rollup_pending carries everything a rollup needs (device_type, locale, app_version_raw,
  create_date, loaded_at) and a ``sign``: +1 for a loaded row, -1 for a removed one. Who
  removes rows (``forget``, ``retention apply``) appends the removed rows with sign -1 in
  the same transaction; the fold applies both kinds alike.
- token_users counts each (token, user) pair's logins, so a removal knows when a pair,
  and with it one of the token's distinct users, is gone. A pair, token or user is
  *present* while its count is above zero: a -1 folded before its +1 (they may sit in
  different fold chunks) drives a count below zero for a while without changing any
  distinct count. Rows whose count reaches zero are deleted.
- New, small tables answer `stats` in time independent of the table's size:
  rollup_totals (distinct users, ip tokens, device tokens), rollup_breakdown (logins per
  device_type, locale, app_version), rollup_months (logins per month of create_date, the
  partition key: total rows and the oldest month held), rollup_hourly (loads per hour of
  loaded_at).
- user_stats loses first_login/last_login: nothing read them, and a removal cannot
  correct a minimum without rescanning the user's rows.

The upgrade rebuilds every rollup from user_logins under an exclusive lock on
rollup_pending: writers' loads wait (one aggregate scan of the table; ~3 s per million
rows here) and go on afterwards. Old consumers (0010) keep working: they call the same
definer functions, redefined here with the same signatures.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from alembic import op

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible, load_revision

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MAX_FOLD_ROWS = 100_000  # loginetl.services.db.FOLD_CHUNK is 50,000

NEW_TABLES = """
CREATE TABLE public.rollup_totals (
    metric varchar(32) PRIMARY KEY,
    value  bigint      NOT NULL
);
CREATE TABLE public.rollup_breakdown (
    dimension varchar(16) NOT NULL CHECK (dimension IN ('device_type', 'locale', 'app_version')),
    value     varchar(32),
    logins    bigint      NOT NULL,
    CONSTRAINT rollup_breakdown_key UNIQUE NULLS NOT DISTINCT (dimension, value)
);
CREATE TABLE public.rollup_months (
    month  date   PRIMARY KEY,
    logins bigint NOT NULL
);
CREATE TABLE public.rollup_hourly (
    loaded_hour timestamptz PRIMARY KEY,
    logins      bigint      NOT NULL
);
COMMENT ON TABLE public.rollup_totals IS
    'distinct users, ip tokens and device tokens held in user_logins (folded rows)';
COMMENT ON TABLE public.rollup_months IS
    'logins per month of create_date (the partition key); their sum is the row count';
"""

# Rebuilt from the table itself: exact whatever the pending rows were.
REBUILD = """
TRUNCATE public.rollup_pending, public.token_users, public.token_stats, public.user_stats,
         public.rollup_totals, public.rollup_breakdown, public.rollup_months,
         public.rollup_hourly;
INSERT INTO public.token_users (pii_field, token, user_id, logins)
    SELECT 'ip', masked_ip, user_id, count(*) FROM public.user_logins GROUP BY 2, 3
    UNION ALL
    SELECT 'device_id', masked_device_id, user_id, count(*) FROM public.user_logins GROUP BY 2, 3;
INSERT INTO public.token_stats (pii_field, token, users, logins)
    SELECT pii_field, token, count(*), sum(logins) FROM public.token_users GROUP BY 1, 2;
INSERT INTO public.user_stats (user_id, logins)
    SELECT user_id, count(*) FROM public.user_logins GROUP BY 1;
INSERT INTO public.rollup_totals (metric, value)
    SELECT 'users', count(*) FROM public.user_stats
    UNION ALL SELECT 'ip_tokens', count(*) FROM public.token_stats WHERE pii_field = 'ip'
    UNION ALL SELECT 'device_tokens', count(*) FROM public.token_stats
              WHERE pii_field = 'device_id';
INSERT INTO public.rollup_breakdown (dimension, value, logins)
    SELECT 'device_type', device_type, count(*) FROM public.user_logins GROUP BY 2
    UNION ALL SELECT 'locale', locale, count(*) FROM public.user_logins GROUP BY 2
    UNION ALL SELECT 'app_version', app_version_raw, count(*) FROM public.user_logins GROUP BY 2;
INSERT INTO public.rollup_months (month, logins)
    SELECT date_trunc('month', create_date)::date, count(*) FROM public.user_logins GROUP BY 1;
INSERT INTO public.rollup_hourly (loaded_hour, logins)
    SELECT date_trunc('hour', loaded_at), count(*) FROM public.user_logins GROUP BY 1;
"""

MOVE_STAGED = """
CREATE OR REPLACE FUNCTION public.loginetl_move_staged() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    inserted integer;
BEGIN
    IF (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
        WHERE c.oid IN (pg_catalog.to_regclass('pg_temp.loginetl_staged_vault'),
                        pg_catalog.to_regclass('pg_temp.loginetl_staged_logins'))
          AND c.relkind = 'r'
          AND c.relnamespace = pg_catalog.pg_my_temp_schema()
          AND c.relowner = (SELECT r.oid FROM pg_catalog.pg_roles r
                            WHERE r.rolname = current_user)) <> 2 THEN
        RAISE EXCEPTION 'no staging tables of loginetl_prepare_staging() in this session'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    WITH vault AS (
        INSERT INTO public.pii_vault
            (token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext)
        SELECT token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext
        FROM pg_temp.loginetl_staged_vault ORDER BY token
        ON CONFLICT DO NOTHING
    ), new AS (
        INSERT INTO public.user_logins (idempotency_key, user_id, device_type, masked_ip,
                                        masked_device_id, locale, app_version,
                                        app_version_raw, sent_at, create_date)
        SELECT idempotency_key, user_id, device_type, masked_ip, masked_device_id, locale,
               app_version, app_version_raw, sent_at, create_date
        FROM pg_temp.loginetl_staged_logins ORDER BY idempotency_key, create_date
        ON CONFLICT (idempotency_key, create_date) DO NOTHING
        RETURNING user_id, masked_ip, masked_device_id, sent_at, device_type, locale,
                  app_version_raw, create_date, loaded_at
    ), pending AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at,
                                           device_type, locale, app_version_raw,
                                           create_date, loaded_at, sign)
        SELECT user_id, masked_ip, masked_device_id, sent_at, device_type, locale,
               app_version_raw, create_date, loaded_at, 1 FROM new
    )
    SELECT pg_catalog.count(*) INTO inserted FROM new;
    RETURN inserted;
END $$
"""

# The fold: take up to max_rows pending rows (deleting them) and add their signed counts
# to the rollups. Upserts return each count after the change; with the delta that gives
# the count before, and a count crossing zero is a pair, token or user appearing or going.
# One folder at a time (the advisory lock). Rows left at zero are deleted afterwards
# (found through partial indexes, so the delete does not scan). Hours and months are
# UTC whatever the caller's session says. The CTEs are estimated at a handful of rows, so
# the planner joined them with nested loops, quadratic in the chunk (5,000 pending rows
# took 4.9 s, 50,000 over ten minutes, measured by the lifecycle work: a retention drop
# queues a month of -1s at once); with hash joins 50,000 rows fold in about 2 s.
FOLD_ROLLUPS = f"""
CREATE OR REPLACE FUNCTION public.loginetl_fold_rollups(max_rows integer, wait boolean)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET enable_nestloop = off AS $$
DECLARE
    folded integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > {MAX_FOLD_ROWS} THEN
        RAISE EXCEPTION 'max_rows must be between 1 and {MAX_FOLD_ROWS}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF wait IS TRUE THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups'));
    ELSIF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups')) THEN
        RETURN NULL;  -- another session is folding; it will fold these rows too
    END IF;
    WITH new AS (
        DELETE FROM public.rollup_pending
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM public.rollup_pending LIMIT max_rows))
        RETURNING user_id, masked_ip, masked_device_id, device_type, locale,
                  app_version_raw, create_date, loaded_at, sign
    ), pair_deltas AS (
        SELECT pii_field, token, user_id, pg_catalog.sum(sign)::bigint AS delta
        FROM (SELECT 'ip'::pg_catalog.varchar AS pii_field, masked_ip AS token, user_id, sign
              FROM new
              UNION ALL
              SELECT 'device_id', masked_device_id, user_id, sign FROM new) t
        GROUP BY 1, 2, 3 HAVING pg_catalog.sum(sign) <> 0
    ), pairs AS (
        INSERT INTO public.token_users AS p (pii_field, token, user_id, logins)
        SELECT pii_field, token, user_id, delta FROM pair_deltas ORDER BY 1, 2, 3
        ON CONFLICT (pii_field, token, user_id) DO UPDATE SET logins = p.logins + excluded.logins
        RETURNING p.pii_field, p.token, p.user_id, p.logins
    ), token_deltas AS (
        SELECT d.pii_field, d.token, pg_catalog.sum(d.delta)::bigint AS logins,
               (pg_catalog.count(*) FILTER (WHERE p.logins > 0 AND p.logins - d.delta <= 0)
                - pg_catalog.count(*) FILTER (WHERE p.logins <= 0 AND p.logins - d.delta > 0)
               )::bigint AS users
        FROM pair_deltas d JOIN pairs p USING (pii_field, token, user_id)
        GROUP BY 1, 2
    ), tokens AS (
        INSERT INTO public.token_stats AS t (pii_field, token, users, logins)
        SELECT pii_field, token, users, logins FROM token_deltas ORDER BY 1, 2
        ON CONFLICT (pii_field, token) DO UPDATE
        SET users = t.users + excluded.users, logins = t.logins + excluded.logins
        RETURNING t.pii_field, t.token, t.logins
    ), token_presence AS (
        SELECT t.pii_field,
               (pg_catalog.count(*) FILTER (WHERE t.logins > 0 AND t.logins - d.logins <= 0)
                - pg_catalog.count(*) FILTER (WHERE t.logins <= 0 AND t.logins - d.logins > 0)
               )::bigint AS change
        FROM token_deltas d JOIN tokens t USING (pii_field, token)
        GROUP BY 1
    ), user_deltas AS (
        SELECT user_id, pg_catalog.sum(sign)::bigint AS delta FROM new
        GROUP BY 1 HAVING pg_catalog.sum(sign) <> 0
    ), users AS (
        INSERT INTO public.user_stats AS u (user_id, logins)
        SELECT user_id, delta FROM user_deltas ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET logins = u.logins + excluded.logins
        RETURNING u.user_id, u.logins
    ), user_presence AS (
        SELECT (pg_catalog.count(*) FILTER (WHERE u.logins > 0 AND u.logins - d.delta <= 0)
                - pg_catalog.count(*) FILTER (WHERE u.logins <= 0 AND u.logins - d.delta > 0)
               )::bigint AS change
        FROM user_deltas d JOIN users u USING (user_id)
    ), totals AS (
        UPDATE public.rollup_totals r SET value = r.value + c.change
        FROM (SELECT 'users'::pg_catalog.varchar AS metric, change FROM user_presence
              UNION ALL
              SELECT CASE pii_field WHEN 'ip' THEN 'ip_tokens' ELSE 'device_tokens' END,
                     change FROM token_presence) c
        WHERE r.metric = c.metric AND c.change <> 0
    ), breakdown AS (
        INSERT INTO public.rollup_breakdown AS b (dimension, value, logins)
        SELECT 'device_type', device_type, pg_catalog.sum(sign) FROM new GROUP BY 2
        UNION ALL SELECT 'locale', locale, pg_catalog.sum(sign) FROM new GROUP BY 2
        UNION ALL SELECT 'app_version', app_version_raw, pg_catalog.sum(sign) FROM new GROUP BY 2
        ORDER BY 1, 2
        ON CONFLICT (dimension, value) DO UPDATE SET logins = b.logins + excluded.logins
    ), months AS (
        INSERT INTO public.rollup_months AS m (month, logins)
        SELECT pg_catalog.date_trunc('month', create_date)::date, pg_catalog.sum(sign)
        FROM new GROUP BY 1 ORDER BY 1
        ON CONFLICT (month) DO UPDATE SET logins = m.logins + excluded.logins
    ), hourly AS (
        INSERT INTO public.rollup_hourly AS h (loaded_hour, logins)
        SELECT pg_catalog.date_trunc('hour', loaded_at), pg_catalog.sum(sign)
        FROM new GROUP BY 1 ORDER BY 1
        ON CONFLICT (loaded_hour) DO UPDATE SET logins = h.logins + excluded.logins
    )
    SELECT pg_catalog.count(*) INTO folded FROM new;
    IF folded > 0 THEN
        DELETE FROM public.token_users WHERE logins = 0;
        DELETE FROM public.token_stats WHERE logins = 0;
        DELETE FROM public.user_stats WHERE logins = 0;
        DELETE FROM public.rollup_breakdown WHERE logins = 0;
        DELETE FROM public.rollup_months WHERE logins = 0;
        DELETE FROM public.rollup_hourly WHERE logins = 0;
    END IF;
    RETURN folded;
END $$
"""

_ZERO_INDEXES = (
    ("token_users", "pii_field, token, user_id"),
    ("token_stats", "pii_field, token"),
    ("user_stats", "user_id"),
)
_NEW_TABLES = "rollup_totals, rollup_breakdown, rollup_months, rollup_hourly"


def upgrade() -> None:
    # Writers wait here (their load inserts into rollup_pending); nothing is pending after.
    op.execute("LOCK TABLE public.rollup_pending IN ACCESS EXCLUSIVE MODE")
    op.execute(
        "ALTER TABLE public.rollup_pending "
        "ADD COLUMN device_type varchar(32), ADD COLUMN locale varchar(32), "
        "ADD COLUMN app_version_raw varchar(16), ADD COLUMN create_date date, "
        "ADD COLUMN loaded_at timestamptz, "
        "ADD COLUMN sign smallint NOT NULL DEFAULT 1 CHECK (sign IN (-1, 1))"
    )
    op.execute("ALTER TABLE public.token_users ADD COLUMN logins bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE public.user_stats DROP COLUMN first_login, DROP COLUMN last_login")
    op.execute(NEW_TABLES)
    op.execute("SET LOCAL TimeZone = 'UTC'")  # hours and months as the fold buckets them
    op.execute("SET LOCAL work_mem = '64MB'")  # the pair counts aggregate in memory
    op.execute(REBUILD)
    for table, columns in _ZERO_INDEXES:
        op.execute(f"CREATE INDEX {table}_zero_idx ON public.{table} ({columns}) WHERE logins <= 0")
    op.execute(MOVE_STAGED)
    op.execute(FOLD_ROLLUPS)
    op.execute(f"REVOKE ALL ON {_NEW_TABLES} FROM PUBLIC")
    op.execute(f"GRANT SELECT ON {_NEW_TABLES} TO loginetl_analyst")
    declare_compatible("0011", "0009")  # 0009 and 0010 consumers call the same functions


def _revision_0008() -> ModuleType:
    """0008's module, for the function definitions the downgrade restores."""
    return load_revision(Path(__file__).with_name("0008_writer_least_privilege.py"))


def downgrade() -> None:
    op.execute("LOCK TABLE public.rollup_pending IN ACCESS EXCLUSIVE MODE")
    previous = _revision_0008()
    for definition in (previous.MOVE_STAGED, previous.FOLD_ROLLUPS):
        op.execute(definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(f"DROP TABLE {_NEW_TABLES}")
    for table, _ in _ZERO_INDEXES:
        op.execute(f"DROP INDEX public.{table}_zero_idx")
    op.execute(
        "ALTER TABLE public.rollup_pending DROP COLUMN device_type, DROP COLUMN locale, "
        "DROP COLUMN app_version_raw, DROP COLUMN create_date, DROP COLUMN loaded_at, "
        "DROP COLUMN sign"
    )
    op.execute("ALTER TABLE public.token_users DROP COLUMN logins")
    op.execute(
        "ALTER TABLE public.user_stats ADD COLUMN first_login timestamptz, "
        "ADD COLUMN last_login timestamptz"
    )
    # 0002's shapes, recounted from the table (nothing pending is lost: it is recounted too).
    op.execute("TRUNCATE public.rollup_pending, public.token_users, public.token_stats")
    op.execute("TRUNCATE public.user_stats")
    for field, column in (("ip", "masked_ip"), ("device_id", "masked_device_id")):
        op.execute(
            f"INSERT INTO public.token_users SELECT DISTINCT '{field}', {column}, user_id "
            "FROM public.user_logins"
        )
        op.execute(
            f"INSERT INTO public.token_stats SELECT '{field}', {column}, "
            f"count(DISTINCT user_id), count(*) FROM public.user_logins GROUP BY {column}"
        )
    op.execute(
        "INSERT INTO public.user_stats SELECT user_id, count(*), min(sent_at), max(sent_at) "
        "FROM public.user_logins GROUP BY user_id"
    )
    op.execute(
        "ALTER TABLE public.user_stats ALTER COLUMN first_login SET NOT NULL, "
        "ALTER COLUMN last_login SET NOT NULL"
    )
    op.execute(f"DELETE FROM {COMPAT_TABLE} WHERE revision = '0011'")
