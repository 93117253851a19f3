"""The writer inserts but cannot read tokens back.

Before this revision loginetl_writer (what consume logs in as) could SELECT masked_ip and
masked_device_id from user_logins, the rollups and rollup_pending: with the HMAC key on
the same host, that is every stored IPv4 reversed by trying all 2^32 addresses. Now:

- user_logins: INSERT, plus SELECT on (idempotency_key, create_date) only, which
  ``ON CONFLICT (idempotency_key, create_date)`` needs; no token column is readable.
- pii_vault: nothing. Entries go through loginetl_add_vault_entries(...), a SECURITY
  DEFINER function that returns nothing: a direct INSERT told the writer, by its row
  count or a unique violation, whether a token was already there, so with the HMAC key
  it could test every IPv4 address one insert at a time.
- rollup_pending: nothing. An AFTER INSERT statement trigger on user_logins queues the
  rows a statement really inserted (its transition table: a skipped redelivery is not in
  it), so the batch write no longer needs ``RETURNING masked_ip, ...``.
- token_users, token_stats, user_stats: nothing. The fold runs in
  loginetl_fold_rollups(max_rows, wait), a SECURITY DEFINER function granted to the writer:
  bounded argument, its own advisory lock, returns only a count.

Both functions pin ``search_path = pg_catalog, pg_temp`` and name every table with its
schema, so no object the caller creates (a temp table, a look-alike function) is used.
Trigger functions cannot be called directly, and the transition table is resolved before
any catalog lookup, so a caller's temp table named like it is never read.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

MAX_FOLD_ROWS = 100_000  # loginetl.services.db.FOLD_CHUNK is 50,000
MAX_VAULT_ENTRIES = 10_000  # a batch holds at most 1,000 rows, 2 entries each

ADD_VAULT_ENTRIES = f"""
CREATE FUNCTION public.loginetl_add_vault_entries(
    tokens text[], pii_fields text[], recipients text[],
    ephemeral_public_keys bytea[], nonces bytea[], ciphertexts bytea[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer := coalesce(pg_catalog.cardinality(tokens), 0);
BEGIN
    IF n > {MAX_VAULT_ENTRIES} THEN
        RAISE EXCEPTION 'at most {MAX_VAULT_ENTRIES} vault entries a call'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(pg_catalog.cardinality(pii_fields), 0) <> n
       OR coalesce(pg_catalog.cardinality(recipients), 0) <> n
       OR coalesce(pg_catalog.cardinality(ephemeral_public_keys), 0) <> n
       OR coalesce(pg_catalog.cardinality(nonces), 0) <> n
       OR coalesce(pg_catalog.cardinality(ciphertexts), 0) <> n THEN
        RAISE EXCEPTION 'the vault entry arrays must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Sorted, as every writer does, so concurrent writers take locks in one order.
    INSERT INTO public.pii_vault
        (token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext)
    SELECT * FROM ROWS FROM (
        pg_catalog.unnest(tokens), pg_catalog.unnest(pii_fields),
        pg_catalog.unnest(recipients), pg_catalog.unnest(ephemeral_public_keys),
        pg_catalog.unnest(nonces), pg_catalog.unnest(ciphertexts)
    ) ORDER BY 1
    ON CONFLICT DO NOTHING;
END $$
"""
_ADD_VAULT_SIGNATURE = (
    "public.loginetl_add_vault_entries(text[], text[], text[], bytea[], bytea[], bytea[])"
)

QUEUE_NEW_LOGINS = """
CREATE FUNCTION public.loginetl_queue_new_logins() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at)
    SELECT user_id, masked_ip, masked_device_id, sent_at FROM new_logins;
    RETURN NULL;
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

_ROLLUPS = "public.token_users, public.token_stats, public.user_stats, public.rollup_pending"


def upgrade() -> None:
    op.execute(QUEUE_NEW_LOGINS)
    op.execute("REVOKE ALL ON FUNCTION public.loginetl_queue_new_logins() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER user_logins_queue_rollups AFTER INSERT ON public.user_logins "
        "REFERENCING NEW TABLE AS new_logins "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.loginetl_queue_new_logins()"
    )
    op.execute(ADD_VAULT_ENTRIES)
    op.execute(f"REVOKE ALL ON FUNCTION {_ADD_VAULT_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_ADD_VAULT_SIGNATURE} TO loginetl_writer")
    op.execute("REVOKE ALL ON public.pii_vault FROM loginetl_writer")
    op.execute(FOLD_ROLLUPS)
    op.execute("REVOKE ALL ON FUNCTION public.loginetl_fold_rollups(integer, boolean) FROM PUBLIC")
    op.execute(
        "GRANT EXECUTE ON FUNCTION public.loginetl_fold_rollups(integer, boolean) "
        "TO loginetl_writer"
    )
    op.execute("REVOKE ALL ON public.user_logins FROM loginetl_writer")
    op.execute("GRANT INSERT ON public.user_logins TO loginetl_writer")
    op.execute(
        "GRANT SELECT (idempotency_key, create_date) ON public.user_logins TO loginetl_writer"
    )
    op.execute(f"REVOKE ALL ON {_ROLLUPS} FROM loginetl_writer")


def downgrade() -> None:
    op.execute("DROP TRIGGER user_logins_queue_rollups ON public.user_logins")
    op.execute("DROP FUNCTION public.loginetl_queue_new_logins()")
    op.execute("DROP FUNCTION public.loginetl_fold_rollups(integer, boolean)")
    op.execute(f"DROP FUNCTION {_ADD_VAULT_SIGNATURE}")
    op.execute("GRANT INSERT ON public.pii_vault TO loginetl_writer")
    op.execute(
        "REVOKE SELECT (idempotency_key, create_date) ON public.user_logins FROM loginetl_writer"
    )
    op.execute("GRANT SELECT, INSERT ON public.user_logins, public.token_users TO loginetl_writer")
    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON public.token_stats, public.user_stats TO loginetl_writer"
    )
    op.execute("GRANT SELECT, INSERT, DELETE ON public.rollup_pending TO loginetl_writer")
