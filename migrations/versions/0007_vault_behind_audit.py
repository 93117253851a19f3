"""The vault behind a committed audit row; pinned definer functions; signed audit heads.

Before this revision the audit was advisory: the unmasker role could SELECT (or COPY)
pii_vault and decrypt without loginetl. Now:

- No role but the owner reads pii_vault, token_aliases is written only through a
  function, and unmask_audit is appended to only through functions.
- ``loginetl_unmask_request`` writes the audit row (outcome ``released`` when the token
  is in the vault) and returns its seq; ``loginetl_vault_open(seq)`` hands out that
  token's ciphertext only if the row is the caller's, recent, and ALREADY COMMITTED, so
  BEGIN; request; open; ROLLBACK yields nothing.
- ``keys rederive`` works the same way: a committed ``rederive`` row names the target
  key id and its fingerprint; vault pages and alias writes require it.
- Every SECURITY DEFINER and trigger function pins search_path to pg_catalog, pg_temp
  and qualifies what it touches, so neither a look-alike function in a writable schema
  nor a temporary table named unmask_audit can steer it. CREATE on schema public is
  revoked from PUBLIC.
- audit_heads: Ed25519 signatures of chain heads, made by loginetl with a key only
  privacy staff hold, so an owner who rewrites and re-hashes the chain is detected.

The hash formula of unmask_audit is unchanged: existing chains verify as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ROLES = ("loginetl_writer", "loginetl_analyst", "loginetl_unmasker")
PINNED = "SET search_path = pg_catalog, pg_temp"
TOKEN_RE = "^k[0-9]{1,6}:[0-9a-f]{64}$"  # noqa: S105 - a pattern, not a secret
# How long a committed audit row lets its caller fetch what it names.
OPEN_WINDOW = "5 minutes"
REDERIVE_WINDOW = "12 hours"

# The 0003 formula, every function schema-qualified. Same text, same hashes.
_FIELD = "CASE WHEN {v} IS NULL THEN '~' ELSE pg_catalog.length({v})::text || ':' || {v} END"
_CANONICAL = " || '|' || ".join(
    _FIELD.format(v=v)
    for v in (
        "NEW.seq::text",
        "pg_catalog.to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        "NEW.db_role",
        "NEW.os_user",
        "NEW.client_addr",
        "NEW.client_host",
        "NEW.token",
        "NEW.pii_field",
        "NEW.reason",
        "NEW.outcome",
        "NEW.prev_hash",
    )
)

CHAIN = f"""
CREATE OR REPLACE FUNCTION public.unmask_audit_chain() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
DECLARE
    last_seq  bigint;
    last_hash text;
BEGIN
    -- One writer at a time, so the chain has no forks and seq no gaps.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.unmask_audit'));
    SELECT a.seq, a.row_hash INTO last_seq, last_hash
      FROM public.unmask_audit a ORDER BY a.seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, pg_catalog.repeat('0', 64));
    NEW.at := pg_catalog.clock_timestamp();
    NEW.db_role := session_user;
    NEW.client_addr := coalesce(pg_catalog.host(pg_catalog.inet_client_addr()), 'local');
    NEW.row_hash := pg_catalog.encode(
        pg_catalog.sha256(pg_catalog.convert_to({_CANONICAL}, 'UTF8')), 'hex');
    RETURN NEW;
END $$
"""

APPEND_ONLY = f"""
CREATE OR REPLACE FUNCTION public.unmask_audit_append_only() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$
"""

ENSURE_PARTITIONS = f"""
CREATE OR REPLACE FUNCTION public.loginetl_ensure_partitions(first_month date, months integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    lo date;
    hi date;
    name text;
    made integer := 0;
BEGIN
    IF months IS NULL OR months < 1 OR months > 120 THEN
        RAISE EXCEPTION 'months must be between 1 and 120';
    END IF;
    IF first_month IS NULL
       OR first_month < (CURRENT_DATE - 3660)
       OR first_month > (CURRENT_DATE + 400) THEN
        RAISE EXCEPTION 'first_month must be within ten years back and a year ahead';
    END IF;
    -- One creator at a time: two consumers starting together must not race.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.partitions'));
    FOR i IN 0 .. months - 1 LOOP
        lo := (pg_catalog.date_trunc('month', first_month::timestamp)
               + pg_catalog.make_interval(months => i))::date;
        hi := (lo + interval '1 month')::date;
        name := 'user_logins_' || pg_catalog.to_char(lo, 'YYYY_MM');
        CONTINUE WHEN pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(name)) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM public.user_logins_default d
                   WHERE d.create_date >= lo AND d.create_date < hi) THEN
            -- Rows for this month are in the default partition: move them in with it.
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I (LIKE public.user_logins INCLUDING DEFAULTS)', name);
            EXECUTE pg_catalog.format(
                'WITH moved AS (DELETE FROM public.user_logins_default WHERE create_date >= %L '
                'AND create_date < %L RETURNING *) INSERT INTO public.%I SELECT * FROM moved',
                lo, hi, name);
            EXECUTE pg_catalog.format(
                'ALTER TABLE public.user_logins ATTACH PARTITION public.%I '
                'FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        ELSE
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I PARTITION OF public.user_logins '
                'FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        END IF;
        made := made + 1;
    END LOOP;
    RETURN made;
END $$
"""

# Arguments every audited function bounds the same way (text the caller chooses).
_BOUND_AUDIT_TEXT = """
    IF p_reason IS NULL OR pg_catalog.length(p_reason) NOT BETWEEN 1 AND 1000
       OR pg_catalog.length(coalesce(p_os_user, '')) > 256
       OR pg_catalog.length(coalesce(p_client_host, '')) > 256 THEN
        RAISE EXCEPTION 'reason (1-1000 chars), os user and host (256) out of bounds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
"""


def _append_row(token: str, pii_field: str, outcome: str, more: str = "") -> str:
    """RETURN QUERY of one audit row; the chain trigger fills in seq, time, role and hashes."""
    return f"""RETURN QUERY
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host, {token}, {pii_field},
            p_reason, {outcome}, '', '')
    RETURNING a.seq, a.row_hash{more};"""


UNMASK_REQUEST = f"""
CREATE FUNCTION public.loginetl_unmask_request(
    p_token text, p_reason text, p_os_user text, p_client_host text)
RETURNS TABLE (audit_seq bigint, audit_hash text, outcome text, pii_field text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    v_field text;
    v_outcome text;
    v_token text := pg_catalog.left(coalesce(p_token, ''), 200);
BEGIN
    {_BOUND_AUDIT_TEXT}
    IF v_token !~ '{TOKEN_RE}' THEN
        v_outcome := 'malformed_token';
    ELSE
        SELECT v.pii_field INTO v_field FROM public.pii_vault v WHERE v.token = v_token;
        IF FOUND THEN
            v_outcome := 'released';
        ELSIF EXISTS (SELECT 1 FROM public.pii_vault v WHERE pg_catalog.starts_with(
                      v.token, pg_catalog.split_part(v_token, ':', 1) || ':')) THEN
            v_outcome := 'unknown_token';
        ELSE
            v_outcome := 'unknown_key_id';
        END IF;
    END IF;
    {_append_row("v_token", "v_field", "v_outcome", ", a.outcome, a.pii_field")}
END $$
"""

# Outcomes loginetl reports after the database released a ciphertext (or refused earlier).
CLIENT_OUTCOMES = (
    "revealed",
    "decrypt_failed",
    "refused_token_mismatch",
    "refused_unverifiable",
    "refused_no_private_key",
    "refused_no_vault_grant",
    "refused_no_signing_key",
)

AUDIT_APPEND = f"""
CREATE FUNCTION public.loginetl_audit_append(
    p_token text, p_pii_field text, p_reason text, p_outcome text,
    p_os_user text, p_client_host text)
RETURNS TABLE (audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    {_BOUND_AUDIT_TEXT}
    IF p_outcome IS NULL OR p_outcome <> ALL (ARRAY{list(CLIENT_OUTCOMES)}::text[]) THEN
        RAISE EXCEPTION 'not an outcome loginetl reports: %', pg_catalog.left(p_outcome, 40)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_pii_field IS NOT NULL AND p_pii_field NOT IN ('ip', 'device_id') THEN
        RAISE EXCEPTION 'pii_field must be ip or device_id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    {_append_row("pg_catalog.left(coalesce(p_token, ''), 200)", "p_pii_field", "p_outcome")}
END $$
"""

# The audit row named by p_seq must be the caller's own, of the given outcome, written
# within the window, and committed: its inserting transaction (xmin, widened to a full
# 64-bit id against the current epoch) must be reported committed, never "in progress"
# (the caller's own transaction or subtransaction) nor aborted.
COMMITTED_ROW = f"""
CREATE FUNCTION public.loginetl_committed_audit_row(p_seq bigint, p_outcome text, p_window interval)
RETURNS public.unmask_audit
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r public.unmask_audit;
    v_xmin bigint;
    v_now bigint;
    v_full bigint;
BEGIN
    SELECT a.* INTO r FROM public.unmask_audit a WHERE a.seq = p_seq;
    IF NOT FOUND OR r.db_role <> session_user OR r.outcome <> p_outcome
       OR r.at < pg_catalog.clock_timestamp() - p_window THEN
        RAISE EXCEPTION 'audit row % is not a recent % row of this login role', p_seq, p_outcome
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT a.xmin::text::bigint INTO v_xmin FROM public.unmask_audit a WHERE a.seq = p_seq;
    -- Widen the 32-bit xmin against this snapshot's horizon; every id at or past the
    -- horizon (e.g. this very transaction, under REPEATABLE READ) counts as uncommitted.
    v_now := pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint;
    v_full := (v_now >> 32 << 32) | v_xmin;
    IF v_full > v_now + 2147483648 THEN
        v_full := v_full - 4294967296;
    ELSIF v_full < v_now - 2147483648 THEN
        v_full := v_full + 4294967296;
    END IF;
    IF v_full < 0 OR v_full >= v_now
       OR pg_catalog.pg_xact_status(v_full::text::xid8) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'audit row % is not committed yet: commit it, then fetch', p_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN r;
END $$
"""

VAULT_OPEN = f"""
CREATE FUNCTION public.loginetl_vault_open(p_seq bigint)
RETURNS TABLE (token text, pii_field text, recipient text, ephemeral_public_key bytea,
               nonce bytea, ciphertext bytea)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r public.unmask_audit;
BEGIN
    r := public.loginetl_committed_audit_row(p_seq, 'released', interval '{OPEN_WINDOW}');
    RETURN QUERY
    SELECT v.token::text, v.pii_field::text, v.recipient::text, v.ephemeral_public_key,
           v.nonce, v.ciphertext
      FROM public.pii_vault v WHERE v.token = r.token;
END $$
"""

# A rederive row's token reads "rederive->k2:<16 hex fingerprint of the HMAC key>".
REDERIVE_RE = "^rederive->(k[0-9]{1,6}):[0-9a-f]{16}$"

REDERIVE_REQUEST = f"""
CREATE FUNCTION public.loginetl_rederive_request(
    p_key_id text, p_fingerprint text, p_reason text, p_os_user text, p_client_host text)
RETURNS TABLE (audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    v_deployed text;
    v_token text := 'rederive->' || coalesce(p_key_id, '') || ':' || coalesce(p_fingerprint, '');
BEGIN
    {_BOUND_AUDIT_TEXT}
    IF v_token !~ '{REDERIVE_RE}' THEN
        RAISE EXCEPTION 'key id or fingerprint malformed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The deployed key is the one the consumers wrote with last.
    SELECT pg_catalog.split_part(v.token, ':', 1) INTO v_deployed
      FROM public.pii_vault v ORDER BY v.created_at DESC LIMIT 1;
    IF v_deployed IS DISTINCT FROM p_key_id THEN
        RAISE EXCEPTION 'the consumers last wrote tokens of %, not %: rederive maps to the '
                        'deployed key only', coalesce(v_deployed, 'no key'), p_key_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    {_append_row("v_token", "NULL", "'rederive'")}
END $$
"""

REDERIVE_PAGE = f"""
CREATE FUNCTION public.loginetl_rederive_page(p_seq bigint, p_after text, p_limit integer)
RETURNS TABLE (token text, pii_field text, recipient text, ephemeral_public_key bytea,
               nonce bytea, ciphertext bytea)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r public.unmask_audit;
    v_key_id text;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := public.loginetl_committed_audit_row(p_seq, 'rederive', interval '{REDERIVE_WINDOW}');
    v_key_id := pg_catalog.substring(r.token, '{REDERIVE_RE}');
    RETURN QUERY
    SELECT v.token::text, v.pii_field::text, v.recipient::text, v.ephemeral_public_key,
           v.nonce, v.ciphertext
      FROM public.pii_vault v
     WHERE v.token > coalesce(p_after, '')
       AND NOT pg_catalog.starts_with(v.token, v_key_id || ':')
     ORDER BY v.token LIMIT p_limit;
END $$
"""

ADD_ALIASES = f"""
CREATE FUNCTION public.loginetl_add_aliases(
    p_seq bigint, p_tokens text[], p_aliases text[], p_fields text[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r public.unmask_audit;
    v_key_id text;
    v_given integer := coalesce(pg_catalog.cardinality(p_tokens), 0);
    v_valid integer;
    v_added integer;
BEGIN
    IF v_given > 10000 OR v_given <> coalesce(pg_catalog.cardinality(p_aliases), 0)
       OR v_given <> coalesce(pg_catalog.cardinality(p_fields), 0) THEN
        RAISE EXCEPTION 'up to 10000 aliases a call, three arrays of one length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := public.loginetl_committed_audit_row(p_seq, 'rederive', interval '{REDERIVE_WINDOW}');
    v_key_id := pg_catalog.substring(r.token, '{REDERIVE_RE}');
    -- Every alias must be a token of the audited key, for a vault token of another key.
    SELECT pg_catalog.count(*) INTO v_valid
      FROM ROWS FROM (pg_catalog.unnest(p_tokens), pg_catalog.unnest(p_aliases),
                    pg_catalog.unnest(p_fields)) AS u(t, a, f)
      JOIN public.pii_vault v ON v.token = u.t AND v.pii_field = u.f
     WHERE u.a ~ '{TOKEN_RE}' AND pg_catalog.starts_with(u.a, v_key_id || ':')
       AND NOT pg_catalog.starts_with(u.t, v_key_id || ':');
    IF v_valid <> v_given THEN
        RAISE EXCEPTION '% of % aliases are not tokens of %, the key audited in row %',
            v_given - v_valid, v_given, v_key_id, p_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO public.token_aliases (token, alias, pii_field)
    SELECT u.t, u.a, u.f FROM ROWS FROM (pg_catalog.unnest(p_tokens), pg_catalog.unnest(p_aliases),
                    pg_catalog.unnest(p_fields)) AS u(t, a, f)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END $$
"""

HEAD_MATCHES = f"""
CREATE FUNCTION public.audit_heads_check() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.unmask_audit a
                   WHERE a.seq = NEW.seq AND a.row_hash = NEW.row_hash) THEN
        RAISE EXCEPTION 'no audit row % with that hash', NEW.seq
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    NEW.signed_at := pg_catalog.clock_timestamp();
    NEW.signed_by := session_user;
    RETURN NEW;
END $$
"""

FUNCTIONS = {
    "loginetl_unmask_request(text, text, text, text)": UNMASK_REQUEST,
    "loginetl_audit_append(text, text, text, text, text, text)": AUDIT_APPEND,
    "loginetl_committed_audit_row(bigint, text, interval)": COMMITTED_ROW,
    "loginetl_vault_open(bigint)": VAULT_OPEN,
    "loginetl_rederive_request(text, text, text, text, text)": REDERIVE_REQUEST,
    "loginetl_rederive_page(bigint, text, integer)": REDERIVE_PAGE,
    "loginetl_add_aliases(bigint, text[], text[], text[])": ADD_ALIASES,
}
UNMASKER_CALLS = [f for f in FUNCTIONS if not f.startswith("loginetl_committed_audit_row")]


def upgrade() -> None:
    everyone = ", ".join(ROLES)
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    op.execute(CHAIN)
    op.execute(APPEND_ONLY)
    op.execute(ENSURE_PARTITIONS)
    # Nobody but the owner reads the vault: every table- and column-level SELECT goes,
    # whoever it was granted to (the writer keeps INSERT, which reads nothing back).
    op.execute(
        """
        DO $$
        DECLARE g record;
        BEGIN
            FOR g IN
                SELECT DISTINCT pg_catalog.quote_ident(r.rolname) AS who
                  FROM pg_catalog.pg_class c,
                       pg_catalog.aclexplode(c.relacl) x
                  JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
                 WHERE c.oid = 'public.pii_vault'::regclass AND x.grantee <> c.relowner
                UNION
                SELECT DISTINCT pg_catalog.quote_ident(r.rolname)
                  FROM pg_catalog.pg_attribute a,
                       pg_catalog.aclexplode(a.attacl) x
                  JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
                 WHERE a.attrelid = 'public.pii_vault'::regclass
            LOOP
                EXECUTE pg_catalog.format(
                    'REVOKE SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES ON public.pii_vault FROM %s',
                    g.who);
                EXECUTE pg_catalog.format(
                    'REVOKE SELECT (token, pii_field, recipient, ephemeral_public_key, nonce, '
                    'ciphertext, created_at), UPDATE (token, pii_field, recipient, '
                    'ephemeral_public_key, nonce, ciphertext, created_at) '
                    'ON public.pii_vault FROM %s', g.who);
            END LOOP;
        END $$
        """
    )
    op.execute(f"REVOKE ALL ON pii_vault FROM PUBLIC, {everyone}")
    op.execute("GRANT INSERT ON pii_vault TO loginetl_writer")
    # The audit log and the aliases are written only through the functions below.
    op.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON unmask_audit FROM {everyone}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON token_aliases FROM {everyone}")
    for definition in FUNCTIONS.values():
        op.execute(definition)
    for signature in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION public.{signature} FROM PUBLIC")
    for signature in UNMASKER_CALLS:
        op.execute(f"GRANT EXECUTE ON FUNCTION public.{signature} TO loginetl_unmasker")
    op.execute(
        """
        CREATE TABLE audit_heads (
            seq        bigint      NOT NULL,
            row_hash   text        NOT NULL,
            key_id     text        NOT NULL,
            signature  bytea       NOT NULL,
            signed_at  timestamptz NOT NULL,
            signed_by  text        NOT NULL,
            PRIMARY KEY (seq, key_id, signature)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE audit_heads IS "
        "'Ed25519 signatures of unmask_audit heads (seq, row_hash), by privacy staff''s key'"
    )
    op.execute(HEAD_MATCHES)
    op.execute(
        "CREATE TRIGGER audit_heads_check BEFORE INSERT ON audit_heads "
        "FOR EACH ROW EXECUTE FUNCTION public.audit_heads_check()"
    )
    op.execute(
        "CREATE TRIGGER audit_heads_no_change BEFORE UPDATE OR DELETE ON audit_heads "
        "FOR EACH ROW EXECUTE FUNCTION public.unmask_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.unmask_audit_append_only()"
    )
    op.execute("REVOKE ALL ON audit_heads FROM PUBLIC")
    op.execute("GRANT SELECT, INSERT ON audit_heads TO loginetl_unmasker")


def downgrade() -> None:
    # CREATE on public stays revoked: nothing in loginetl needs it back.
    op.execute("DROP TABLE audit_heads")
    op.execute("DROP FUNCTION public.audit_heads_check()")
    for signature in reversed(list(FUNCTIONS)):
        op.execute(f"DROP FUNCTION public.{signature}")
    op.execute("GRANT SELECT ON pii_vault TO loginetl_unmasker")
    op.execute("GRANT INSERT ON unmask_audit TO loginetl_unmasker")
    op.execute("GRANT INSERT ON token_aliases TO loginetl_unmasker")
