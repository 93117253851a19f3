"""The writer loads but cannot read tokens back.

Before this revision loginetl_writer (what consume logs in as) could SELECT masked_ip and
masked_device_id from user_logins, the rollups and rollup_pending, and learn from an
INSERT into pii_vault whether a token was already there: with the HMAC key on the same
host, every stored IPv4 reversed by trying all 2^32 addresses. Now the writer holds no
right on any of those tables. Three SECURITY DEFINER functions, granted to it, do the work:

- loginetl_prepare_staging() creates this session's two staging tables (temporary, ON
  COMMIT DELETE ROWS), owned by the functions' owner, and lets the writer INSERT (COPY)
  into them, nothing else.
- loginetl_move_staged() moves the staged batch into pii_vault, user_logins and
  rollup_pending in one statement and returns only how many rows were new (never which
  vault tokens were). It reads only tables of this session's own temp schema that are
  ordinary tables owned by its owner: a look-alike the caller made (a view, a table with
  triggers of its own) is refused, so the caller cannot make it read anything else.
- loginetl_fold_rollups(max_rows, wait) folds rollup_pending into the rollups: bounded
  argument, its own advisory lock, returns only a count.

Each pins ``search_path = pg_catalog, pg_temp`` and names every table with its schema,
so nothing the caller creates (a temp table, a look-alike function) is used in its place.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MAX_FOLD_ROWS = 100_000  # loginetl.services.db.FOLD_CHUNK is 50,000

PREPARE_STAGING = """
CREATE FUNCTION public.loginetl_prepare_staging() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Made once a session. A look-alike the caller made first stays, and the move refuses it.
    IF pg_catalog.to_regclass('pg_temp.loginetl_staged_vault') IS NULL THEN
        CREATE TEMP TABLE loginetl_staged_vault (
            token varchar(80), pii_field varchar(16), recipient varchar(32),
            ephemeral_public_key bytea, nonce bytea, ciphertext bytea
        ) ON COMMIT DELETE ROWS;
        GRANT INSERT ON pg_temp.loginetl_staged_vault TO loginetl_writer;
    END IF;
    IF pg_catalog.to_regclass('pg_temp.loginetl_staged_logins') IS NULL THEN
        CREATE TEMP TABLE loginetl_staged_logins (
            idempotency_key text, user_id varchar(128), device_type varchar(32),
            masked_ip varchar(80), masked_device_id varchar(80), locale varchar(32),
            app_version integer, app_version_raw varchar(16), sent_at timestamptz,
            create_date date
        ) ON COMMIT DELETE ROWS;
        GRANT INSERT ON pg_temp.loginetl_staged_logins TO loginetl_writer;
    END IF;
END $$
"""

# Rows whose key is present are skipped (redelivery, replay); only new rows reach
# rollup_pending. Inserts run in sorted key order, and every writer runs the same plan, so
# concurrent writers take their locks in one order and cannot deadlock each other.
MOVE_STAGED = """
CREATE FUNCTION public.loginetl_move_staged() RETURNS integer
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
        RETURNING user_id, masked_ip, masked_device_id, sent_at
    ), pending AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at)
        SELECT user_id, masked_ip, masked_device_id, sent_at FROM new
    )
    SELECT pg_catalog.count(*) INTO inserted FROM new;
    RETURN inserted;
END $$
"""

# The fold: take up to max_rows pending rows (deleting them) and add them to the rollups
# in one statement. A (token, user) pair the pair insert did not skip is a new user of
# that token. One folder at a time (the advisory lock), so pair inserts never race.
FOLD_ROLLUPS = f"""
CREATE FUNCTION public.loginetl_fold_rollups(max_rows integer, wait boolean)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
        RETURNING user_id, masked_ip, masked_device_id, sent_at
    ), new_tokens AS (
        SELECT 'ip'::pg_catalog.varchar AS pii_field, masked_ip AS token, user_id FROM new
        UNION ALL
        SELECT 'device_id', masked_device_id, user_id FROM new
    ), pairs AS (
        INSERT INTO public.token_users (pii_field, token, user_id)
        SELECT DISTINCT pii_field, token, user_id FROM new_tokens ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING
        RETURNING pii_field, token
    ), tokens AS (
        INSERT INTO public.token_stats AS t (pii_field, token, users, logins)
        SELECT logins.pii_field, logins.token, coalesce(added.users, 0), logins.n
        FROM (SELECT pii_field, token, count(*) AS n FROM new_tokens GROUP BY 1, 2) logins
        LEFT JOIN (SELECT pii_field, token, count(*) AS users FROM pairs GROUP BY 1, 2) added
            USING (pii_field, token)
        ORDER BY 1, 2
        ON CONFLICT (pii_field, token) DO UPDATE
        SET users = t.users + excluded.users, logins = t.logins + excluded.logins
    ), users AS (
        INSERT INTO public.user_stats AS u (user_id, logins, first_login, last_login)
        SELECT user_id, count(*), min(sent_at), max(sent_at) FROM new
        GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE
        SET logins = u.logins + excluded.logins,
            first_login = least(u.first_login, excluded.first_login),
            last_login = greatest(u.last_login, excluded.last_login)
    )
    SELECT count(*) INTO folded FROM new;
    RETURN folded;
END $$
"""

_FUNCTIONS = (
    "public.loginetl_prepare_staging()",
    "public.loginetl_move_staged()",
    "public.loginetl_fold_rollups(integer, boolean)",
)
_TABLES = (
    "public.user_logins, public.pii_vault, public.token_users, public.token_stats, "
    "public.user_stats, public.rollup_pending"
)


def upgrade() -> None:
    for definition in (PREPARE_STAGING, MOVE_STAGED, FOLD_ROLLUPS):
        op.execute(definition)
    for function in _FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO loginetl_writer")
    op.execute(f"REVOKE ALL ON {_TABLES} FROM loginetl_writer")
    op.execute("REVOKE ALL ON SEQUENCE public.user_logins_id_seq FROM loginetl_writer")


def downgrade() -> None:
    for function in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    # The grants of 0003, 0004 and 0006.
    op.execute("GRANT SELECT, INSERT ON public.user_logins, public.token_users TO loginetl_writer")
    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON public.token_stats, public.user_stats TO loginetl_writer"
    )
    op.execute("GRANT INSERT ON public.pii_vault TO loginetl_writer")
    op.execute("GRANT SELECT, INSERT, DELETE ON public.rollup_pending TO loginetl_writer")
    op.execute("GRANT USAGE ON SEQUENCE public.user_logins_id_seq TO loginetl_writer")
