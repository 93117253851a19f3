"""The privacy lifecycle: erasure on request (``forget``) and retention by policy.

- ``loginetl_eraser`` (NOLOGIN; grant it to privacy staff's login roles) may call the
  forget functions; ``loginetl_maintainer`` (NOLOGIN; the maintenance job) the
  retention functions. Neither reads user_logins, the vault or the rollups directly:
  every step is a SECURITY DEFINER function with a pinned search_path.
- Both act only against a COMMITTED audit row of the caller's own (``forget_requested``
  / ``retention_requested``, in the unmask hash chain), as unmask does, and append a
  second row with the counts of what they did in the same transaction as the work.
- The audit log never holds a user id: forget records ``u:`` + 32 hex of
  sha256(erasure secret || user id). The secret is generated here and readable by the
  owner only, so an auditor with the owner's help can answer "was user X erased, when,
  by whom, why", and nobody can read the user id out of the log.
- Removed rows go to rollup_pending with sign -1 in the same transaction (0011), so the
  rollups stay exact. The tokens they carried become purge candidates; a candidate is
  purged (its vault entry and its aliases deleted, its token tombstoned in
  erased_tokens) once the folded rollups say no row references it any more. The purge
  holds SHARE ROW EXCLUSIVE on rollup_pending: loads in flight commit first (so their
  rows count), new loads wait until the purge commits (milliseconds).
- Retention drops (or detaches) whole monthly partitions older than the window: the
  partition is locked SHARE (late rows for that month wait), scanned once for the -1s,
  then detached under ACCESS EXCLUSIVE on user_logins with lock_timeout 500 ms, so a
  consumer's insert waits at most that long per attempt (the client retries).
- ``loginetl_unmask_request`` answers ``erased`` for a tombstoned token with no vault
  entry.

Consumers at 0009 and later run unchanged: no function they call changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ERASER = "loginetl_eraser"
MAINTAINER = "loginetl_maintainer"
PINNED = "SET search_path = pg_catalog, pg_temp"
FORGET_WINDOW = "5 minutes"
RETENTION_WINDOW = "12 hours"
LOCK_TIMEOUT = "500ms"  # longest a consumer's insert waits behind one DETACH attempt
FOLD_MAX = 100_000  # 0011's MAX_FOLD_ROWS

TABLES = """
CREATE TABLE public.erased_tokens (
    token      varchar(80) PRIMARY KEY,
    pii_field  varchar(16) NOT NULL,
    erased_at  timestamptz NOT NULL DEFAULT now(),
    audit_seq  bigint      NOT NULL
);
COMMENT ON TABLE public.erased_tokens IS
    'tokens whose vault entry forget or retention purged (no value): unmask says erased';
CREATE TABLE public.vault_purge_candidates (
    pii_field varchar(16) NOT NULL,
    token     varchar(80) NOT NULL,
    PRIMARY KEY (pii_field, token)
);
COMMENT ON TABLE public.vault_purge_candidates IS
    'tokens of removed rows, purged from the vault once no row references them';
CREATE TABLE public.erasure_secret (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret   bytea   NOT NULL
);
COMMENT ON TABLE public.erasure_secret IS
    'keys the user reference forget writes to the audit log (owner only)';
INSERT INTO public.erasure_secret (secret)
    SELECT pg_catalog.sha256(pg_catalog.convert_to(
        gen_random_uuid()::text || gen_random_uuid()::text || pg_catalog.clock_timestamp()::text,
        'UTF8'));
REVOKE ALL ON public.erased_tokens, public.vault_purge_candidates, public.erasure_secret
    FROM PUBLIC;
"""

USER_REF = f"""
CREATE FUNCTION public.loginetl_user_ref(p_user_id text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT 'u:' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
        s.secret || pg_catalog.convert_to(p_user_id, 'UTF8')), 'hex'), 32)
    FROM public.erasure_secret s
$$
"""

_BOUND = """
    IF p_reason IS NULL OR pg_catalog.length(p_reason) NOT BETWEEN 1 AND 1000
       OR pg_catalog.length(coalesce(p_os_user, '')) > 256
       OR pg_catalog.length(coalesce(p_client_host, '')) > 256 THEN
        RAISE EXCEPTION 'reason (1-1000 chars), os user and host (256) out of bounds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
"""
_BOUND_USER = """
    IF p_user_id IS NULL OR pg_catalog.length(p_user_id) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'a user id is 1 to 128 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
"""


# The reason is stored in clear beside the user's keyed hash: naming the user there would
# undo the hash (attacker review). The user id as a word, any case, as `forget` checks it.
_REASON_WITHOUT_USER = r"""
    IF pg_catalog.lower(p_reason) ~ ('(?<![[:alnum:]])'
            || pg_catalog.regexp_replace(pg_catalog.lower(p_user_id), '([^[:alnum:]])', '\\\1', 'g')
            || '(?![[:alnum:]])') THEN
        RAISE EXCEPTION 'the reason must not contain the user id'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
"""


def _append(token: str, outcome: str, reason: str, os_user: str, host: str) -> str:
    """INSERT one audit row (the chain trigger fills seq, time, role and hashes)."""
    return f"""INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', {os_user}, {host}, {token}, NULL, {reason},
            {outcome}, '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;"""


# The purge of candidates (internal: called by forget and retention, granted to nobody).
PURGE = f"""
CREATE FUNCTION public.loginetl_purge_candidates(p_max integer, p_audit_seq bigint)
RETURNS TABLE (ip_purged bigint, ip_kept bigint, device_purged bigint, device_kept bigint,
               vault_deleted bigint, aliases_deleted bigint, remaining bigint)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    v_folded integer;
    v_fields text[];
    v_tokens text[];
    v_referenced boolean[];
BEGIN
    -- The fold's lock first (as every folder takes it), then no load may be in flight:
    -- a load that found a token's vault entry present must count before it is judged.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups'));
    LOCK TABLE public.rollup_pending IN SHARE ROW EXCLUSIVE MODE;
    LOOP
        v_folded := public.loginetl_fold_rollups({FOLD_MAX}, true);
        EXIT WHEN v_folded < {FOLD_MAX};
    END LOOP;
    -- Judged into arrays, not a temporary table: a caller may have planted one.
    WITH batch AS (
        DELETE FROM public.vault_purge_candidates c
        WHERE c.ctid = ANY (ARRAY(SELECT k.ctid FROM public.vault_purge_candidates k
                                  LIMIT p_max))
        RETURNING c.pii_field, c.token
    )
    SELECT coalesce(pg_catalog.array_agg(b.pii_field::text), '{{}}'),
           coalesce(pg_catalog.array_agg(b.token::text), '{{}}'),
           coalesce(pg_catalog.array_agg(EXISTS (
               SELECT 1 FROM public.token_stats s
               WHERE s.pii_field = b.pii_field AND s.token = b.token AND s.logins > 0)), '{{}}')
    INTO v_fields, v_tokens, v_referenced
    FROM batch b;
    RETURN QUERY
    WITH j AS (
        SELECT u.pii_field, u.token, u.referenced
        FROM ROWS FROM (pg_catalog.unnest(v_fields), pg_catalog.unnest(v_tokens),
                        pg_catalog.unnest(v_referenced)) AS u(pii_field, token, referenced)
    ), vault AS (
        DELETE FROM public.pii_vault v USING j
        WHERE NOT j.referenced AND v.token = j.token AND v.pii_field = j.pii_field
        RETURNING v.token
    ), aliases AS (
        DELETE FROM public.token_aliases a USING j
        WHERE NOT j.referenced AND a.token = j.token AND a.pii_field = j.pii_field
        RETURNING a.token
    ), tomb AS (
        INSERT INTO public.erased_tokens AS e (token, pii_field, audit_seq)
        SELECT j.token, j.pii_field, p_audit_seq FROM j WHERE NOT j.referenced
        ON CONFLICT (token) DO UPDATE SET erased_at = pg_catalog.now(),
                                          audit_seq = excluded.audit_seq
    )
    SELECT pg_catalog.count(*) FILTER (WHERE j.pii_field = 'ip' AND NOT j.referenced),
           pg_catalog.count(*) FILTER (WHERE j.pii_field = 'ip' AND j.referenced),
           pg_catalog.count(*) FILTER (WHERE j.pii_field = 'device_id' AND NOT j.referenced),
           pg_catalog.count(*) FILTER (WHERE j.pii_field = 'device_id' AND j.referenced),
           (SELECT pg_catalog.count(*) FROM vault),
           (SELECT pg_catalog.count(*) FROM aliases),
           (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM public.vault_purge_candidates
                                             LIMIT 1) more)  -- 1 while more remain
    FROM j;
END $$
"""

FORGET_PREVIEW = f"""
CREATE FUNCTION public.loginetl_forget_preview(p_user_id text)
RETURNS TABLE (logins bigint, ip_tokens bigint, ip_shared bigint,
               device_tokens bigint, device_shared bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER {PINNED} AS $$
BEGIN
    {_BOUND_USER}
    RETURN QUERY
    WITH mine AS (
        SELECT l.masked_ip, l.masked_device_id FROM public.user_logins l
        WHERE l.user_id = p_user_id
    ), ips AS (SELECT DISTINCT m.masked_ip AS t FROM mine m),
    devices AS (SELECT DISTINCT m.masked_device_id AS t FROM mine m)
    SELECT (SELECT pg_catalog.count(*) FROM mine),
           (SELECT pg_catalog.count(*) FROM ips),
           (SELECT pg_catalog.count(*) FROM ips i WHERE EXISTS (
                SELECT 1 FROM public.user_logins o
                WHERE o.masked_ip = i.t AND o.user_id <> p_user_id)),
           (SELECT pg_catalog.count(*) FROM devices),
           (SELECT pg_catalog.count(*) FROM devices d WHERE EXISTS (
                SELECT 1 FROM public.user_logins o
                WHERE o.masked_device_id = d.t AND o.user_id <> p_user_id));
END $$
"""

FORGET_REQUEST = f"""
CREATE FUNCTION public.loginetl_forget_request(
    p_user_id text, p_reason text, p_os_user text, p_client_host text)
RETURNS TABLE (audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    v_seq bigint;
    v_hash text;
BEGIN
    {_BOUND}
    {_BOUND_USER}
    {_REASON_WITHOUT_USER}
    {
    _append(
        "'forget->' || public.loginetl_user_ref(p_user_id)",
        "'forget_requested'",
        "p_reason",
        "p_os_user",
        "p_client_host",
    )
}
    RETURN QUERY SELECT v_seq, v_hash;
END $$
"""

FORGET = f"""
CREATE FUNCTION public.loginetl_forget(p_seq bigint, p_user_id text)
RETURNS TABLE (logins bigint, ip_purged bigint, ip_kept bigint, device_purged bigint,
               device_kept bigint, vault_deleted bigint, aliases_deleted bigint,
               audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r public.unmask_audit;
    p record;
    v_rows bigint;
    v_seq bigint;
    v_hash text;
BEGIN
    {_BOUND_USER}
    r := public.loginetl_committed_audit_row(p_seq, 'forget_requested',
                                             interval '{FORGET_WINDOW}');
    IF r.token IS DISTINCT FROM 'forget->' || public.loginetl_user_ref(p_user_id) THEN
        RAISE EXCEPTION 'audit row % requested the erasure of another user', p_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Every folder takes this lock first; taken before any other, it cannot deadlock.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups'));
    WITH gone AS (
        DELETE FROM public.user_logins l WHERE l.user_id = p_user_id
        RETURNING l.user_id, l.masked_ip, l.masked_device_id, l.sent_at, l.device_type,
                  l.locale, l.app_version_raw, l.create_date, l.loaded_at
    ), minus AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at,
                                           device_type, locale, app_version_raw,
                                           create_date, loaded_at, sign)
        SELECT g.user_id, g.masked_ip, g.masked_device_id, g.sent_at, g.device_type,
               g.locale, g.app_version_raw, g.create_date, g.loaded_at, -1 FROM gone g
    ), candidates AS (
        INSERT INTO public.vault_purge_candidates (pii_field, token)
        SELECT DISTINCT 'ip', g.masked_ip FROM gone g
        UNION SELECT DISTINCT 'device_id', g.masked_device_id FROM gone g
        ON CONFLICT DO NOTHING
    )
    SELECT pg_catalog.count(*) INTO v_rows FROM gone;
    -- The purge folds everything (these -1s too), then judges every candidate: this
    -- user's tokens, and any a crashed retention left behind.
    SELECT * INTO p FROM public.loginetl_purge_candidates(2147483647, p_seq);
    {
    _append(
        "pg_catalog.format('forget->%s;req=%s;logins=%s;ip=%s purged/%s kept;"
        "device_id=%s purged/%s kept;vault=%s;aliases=%s', public.loginetl_user_ref(p_user_id), "
        "p_seq, v_rows, p.ip_purged, p.ip_kept, p.device_purged, p.device_kept, "
        "p.vault_deleted, p.aliases_deleted)",
        "'forgotten'",
        "r.reason",
        "r.os_user",
        "r.client_host",
    )
}
    RETURN QUERY SELECT v_rows, p.ip_purged, p.ip_kept, p.device_purged, p.device_kept,
                        p.vault_deleted, p.aliases_deleted, v_seq, v_hash;
END $$
"""

# Partitions of user_logins ending on or before the first month kept. UTC months.
_CUTOFF = """
    IF p_keep_months IS NULL OR p_keep_months < 1 OR p_keep_months > 1200 THEN
        RAISE EXCEPTION 'keep between 1 and 1200 months (the current month is always kept)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := (pg_catalog.date_trunc('month', pg_catalog.now())
                 - pg_catalog.make_interval(months => p_keep_months - 1))::date;
"""

PARTITIONS = f"""
CREATE FUNCTION public.loginetl_old_partitions(p_cutoff date)
RETURNS TABLE (partition text, month date, upper_bound date)
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT p.relname::text, p.lo, p.hi FROM (
        SELECT c.relname,
               pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                    'FROM \\(''([0-9-]+)''\\)')::date AS lo,
               pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                    'TO \\(''([0-9-]+)''\\)')::date AS hi
        FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.user_logins'::regclass
          AND c.relnamespace = 'public'::regnamespace  -- the drop names public.<partition>
          AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT') p
    WHERE p.hi <= p_cutoff
      AND p.hi <= pg_catalog.date_trunc('month', pg_catalog.now())::date
    ORDER BY p.lo
$$
"""

RETENTION_PLAN = f"""
CREATE FUNCTION public.loginetl_retention_plan(p_keep_months integer)
RETURNS TABLE (partition text, month date, logins bigint, first_kept date)
LANGUAGE plpgsql STABLE SECURITY DEFINER {PINNED} SET TimeZone = 'UTC' AS $$
DECLARE
    v_cutoff date;
BEGIN
    {_CUTOFF}
    RETURN QUERY
    SELECT o.partition, o.month,
           coalesce((SELECT m.logins FROM public.rollup_months m WHERE m.month = o.month), 0)
           + coalesce((SELECT pg_catalog.sum(p.sign) FROM public.rollup_pending p
                       WHERE p.create_date >= o.month AND p.create_date < o.upper_bound), 0),
           v_cutoff
    FROM public.loginetl_old_partitions(v_cutoff) o
    UNION ALL
    SELECT 'user_logins_default', NULL::date, (SELECT pg_catalog.count(*)
        FROM public.user_logins_default d WHERE d.create_date < v_cutoff), v_cutoff;
END $$
"""

RETENTION_REQUEST = f"""
CREATE FUNCTION public.loginetl_retention_request(
    p_keep_months integer, p_reason text, p_os_user text, p_client_host text)
RETURNS TABLE (audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} SET TimeZone = 'UTC' AS $$
DECLARE
    v_cutoff date;
    v_seq bigint;
    v_hash text;
BEGIN
    {_BOUND}
    {_CUTOFF}
    {
    _append(
        "pg_catalog.format('retention->keep=%smo;before=%s', p_keep_months, v_cutoff)",
        "'retention_requested'",
        "p_reason",
        "p_os_user",
        "p_client_host",
    )
}
    RETURN QUERY SELECT v_seq, v_hash;
END $$
"""

_RETENTION_ROW = f"""
    r := public.loginetl_committed_audit_row(p_seq, 'retention_requested',
                                             interval '{RETENTION_WINDOW}');
    v_cutoff := pg_catalog.substring(r.token, 'before=([0-9-]+)$')::date;
"""

RETENTION_DROP = f"""
CREATE FUNCTION public.loginetl_retention_drop(p_seq bigint, p_partition text, p_detach boolean)
RETURNS TABLE (logins bigint, audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} SET TimeZone = 'UTC'
SET lock_timeout = '{LOCK_TIMEOUT}' AS $$
DECLARE
    r public.unmask_audit;
    v_cutoff date;
    v_month date;
    v_rows bigint;
    v_seq bigint;
    v_hash text;
BEGIN
    {_RETENTION_ROW}
    SELECT o.month INTO v_month FROM public.loginetl_old_partitions(v_cutoff) o
    WHERE o.partition = p_partition;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a partition of user_logins older than %', v_cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups'));
    -- Late rows for this month wait (SHARE), so the -1s match what is dropped.
    EXECUTE pg_catalog.format('LOCK TABLE public.%I IN SHARE MODE', p_partition);
    EXECUTE pg_catalog.format(
        'WITH gone AS (SELECT user_id, masked_ip, masked_device_id, sent_at, device_type, '
        'locale, app_version_raw, create_date, loaded_at FROM public.%I), '
        'minus AS (INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, '
        'sent_at, device_type, locale, app_version_raw, create_date, loaded_at, sign) '
        'SELECT *, -1 FROM gone), '
        'candidates AS (INSERT INTO public.vault_purge_candidates (pii_field, token) '
        'SELECT DISTINCT ''ip'', masked_ip FROM gone UNION '
        'SELECT DISTINCT ''device_id'', masked_device_id FROM gone ON CONFLICT DO NOTHING) '
        'SELECT pg_catalog.count(*) FROM gone', p_partition) INTO v_rows;
    -- ACCESS EXCLUSIVE on user_logins, waited for at most lock_timeout.
    EXECUTE pg_catalog.format('ALTER TABLE public.user_logins DETACH PARTITION public.%I',
                              p_partition);
    IF NOT p_detach THEN
        EXECUTE pg_catalog.format('DROP TABLE public.%I', p_partition);
    END IF;
    {
    _append(
        "pg_catalog.format('retention->%s %s;month=%s;logins=%s;req=%s', "
        "CASE WHEN p_detach THEN 'detached' ELSE 'dropped' END, p_partition, v_month, "
        "v_rows, p_seq)",
        "CASE WHEN p_detach THEN 'retention_detached' ELSE 'retention_dropped' END",
        "r.reason",
        "r.os_user",
        "r.client_host",
    )
}
    RETURN QUERY SELECT v_rows, v_seq, v_hash;
END $$
"""

RETENTION_TRIM_DEFAULT = f"""
CREATE FUNCTION public.loginetl_retention_trim_default(p_seq bigint, p_max integer)
RETURNS TABLE (logins bigint, audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} SET TimeZone = 'UTC' AS $$
DECLARE
    r public.unmask_audit;
    v_cutoff date;
    v_rows bigint;
    v_seq bigint;
    v_hash text;
BEGIN
    IF p_max IS NULL OR p_max < 1 OR p_max > 100000 THEN
        RAISE EXCEPTION 'max between 1 and 100000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    {_RETENTION_ROW}
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups'));
    WITH gone AS (
        DELETE FROM public.user_logins_default l
        WHERE l.ctid = ANY (ARRAY(SELECT d.ctid FROM public.user_logins_default d
                                  WHERE d.create_date < v_cutoff LIMIT p_max))
        RETURNING l.user_id, l.masked_ip, l.masked_device_id, l.sent_at, l.device_type,
                  l.locale, l.app_version_raw, l.create_date, l.loaded_at
    ), minus AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at,
                                           device_type, locale, app_version_raw,
                                           create_date, loaded_at, sign)
        SELECT g.*, -1 FROM gone g
    ), candidates AS (
        INSERT INTO public.vault_purge_candidates (pii_field, token)
        SELECT DISTINCT 'ip', g.masked_ip FROM gone g
        UNION SELECT DISTINCT 'device_id', g.masked_device_id FROM gone g
        ON CONFLICT DO NOTHING
    )
    SELECT pg_catalog.count(*) INTO v_rows FROM gone;
    IF v_rows > 0 THEN
        {
    _append(
        "pg_catalog.format('retention->deleted from user_logins_default;before=%s;"
        "logins=%s;req=%s', v_cutoff, v_rows, p_seq)",
        "'retention_deleted'",
        "r.reason",
        "r.os_user",
        "r.client_host",
    )
}
    END IF;
    RETURN QUERY SELECT v_rows, v_seq, v_hash;
END $$
"""

RETENTION_PURGE = f"""
CREATE FUNCTION public.loginetl_retention_purge(p_seq bigint, p_max integer)
RETURNS TABLE (ip_purged bigint, ip_kept bigint, device_purged bigint, device_kept bigint,
               vault_deleted bigint, aliases_deleted bigint, remaining bigint,
               audit_seq bigint, audit_hash text)
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r public.unmask_audit;
    p record;
    v_seq bigint;
    v_hash text;
BEGIN
    IF p_max IS NULL OR p_max < 1 OR p_max > 1000000 THEN
        RAISE EXCEPTION 'max between 1 and 1000000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := public.loginetl_committed_audit_row(p_seq, 'retention_requested',
                                             interval '{RETENTION_WINDOW}');
    SELECT * INTO p FROM public.loginetl_purge_candidates(p_max, p_seq);
    IF p.ip_purged + p.ip_kept + p.device_purged + p.device_kept > 0 THEN
        {
    _append(
        "pg_catalog.format('retention->purge;ip=%s purged/%s kept;device_id=%s purged/%s "
        "kept;vault=%s;aliases=%s;req=%s', p.ip_purged, p.ip_kept, p.device_purged, "
        "p.device_kept, p.vault_deleted, p.aliases_deleted, p_seq)",
        "'retention_purged'",
        "r.reason",
        "r.os_user",
        "r.client_host",
    )
}
    END IF;
    RETURN QUERY SELECT p.ip_purged, p.ip_kept, p.device_purged, p.device_kept,
                        p.vault_deleted, p.aliases_deleted, p.remaining, v_seq, v_hash;
END $$
"""

FUNCTIONS = {
    "loginetl_user_ref(text)": (USER_REF, ()),
    "loginetl_purge_candidates(integer, bigint)": (PURGE, ()),
    "loginetl_old_partitions(date)": (PARTITIONS, ()),
    "loginetl_forget_preview(text)": (FORGET_PREVIEW, (ERASER,)),
    "loginetl_forget_request(text, text, text, text)": (FORGET_REQUEST, (ERASER,)),
    "loginetl_forget(bigint, text)": (FORGET, (ERASER,)),
    "loginetl_retention_plan(integer)": (RETENTION_PLAN, (MAINTAINER,)),
    "loginetl_retention_request(integer, text, text, text)": (RETENTION_REQUEST, (MAINTAINER,)),
    "loginetl_retention_drop(bigint, text, boolean)": (RETENTION_DROP, (MAINTAINER,)),
    "loginetl_retention_trim_default(bigint, integer)": (RETENTION_TRIM_DEFAULT, (MAINTAINER,)),
    "loginetl_retention_purge(bigint, integer)": (RETENTION_PURGE, (MAINTAINER,)),
}

FOLD = "public.loginetl_fold_rollups(integer, boolean)"
_REQUEST = "public.loginetl_unmask_request(text, text, text, text)"
_RELEASED = "            v_outcome := 'released';\n"
_ERASED = (
    _RELEASED + "        ELSIF EXISTS (SELECT 1 FROM public.erased_tokens e "
    "WHERE e.token = v_token) THEN\n"
    "            v_outcome := 'erased';  -- 0012: forget or retention purged it\n"
)


def _one(statement: str) -> object:
    return op.get_bind().execute(text(statement)).scalar_one()


def _replace_in_request(old: str, new: str) -> None:
    definition = str(_one(f"SELECT pg_catalog.pg_get_functiondef('{_REQUEST}'::regprocedure)"))
    if old not in definition:
        raise RuntimeError(f"{_REQUEST} is not the function this migration expects")
    op.execute(definition.replace(old, new, 1))


def upgrade() -> None:
    for role in (ERASER, MAINTAINER):
        op.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles "
            f"WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN; END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    op.execute(TABLES)
    for signature, (definition, granted) in FUNCTIONS.items():
        op.execute(definition)
        op.execute(f"REVOKE ALL ON FUNCTION public.{signature} FROM PUBLIC")
        for role in granted:
            op.execute(f"GRANT EXECUTE ON FUNCTION public.{signature} TO {role}")
    for role in (ERASER, MAINTAINER):
        # The revision check, and the signed head each audit row carries (whose check
        # trigger reads unmask_audit as the caller).
        op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        op.execute(f"GRANT SELECT ON public.alembic_version, public.{COMPAT_TABLE} TO {role}")
        op.execute(f"GRANT SELECT ON public.unmask_audit TO {role}")
        op.execute(f"GRANT SELECT, INSERT ON public.audit_heads TO {role}")
    # Retention folds its -1s in chunks before the purge folds the rest under its lock.
    op.execute(f"GRANT EXECUTE ON FUNCTION {FOLD} TO {MAINTAINER}")
    _replace_in_request(_RELEASED, _ERASED)
    # Tables, roles and functions no consumer calls; unmask gains one outcome.
    declare_compatible("0012", "0009")


def downgrade() -> None:
    op.execute(f"DELETE FROM public.{COMPAT_TABLE} WHERE revision = '0012'")
    _replace_in_request(_ERASED, _RELEASED)
    op.execute(f"REVOKE EXECUTE ON FUNCTION {FOLD} FROM {MAINTAINER}")
    for role in (ERASER, MAINTAINER):  # the roles stay: cluster-wide, maybe used elsewhere
        op.execute(f"REVOKE ALL ON public.audit_heads, public.unmask_audit FROM {role}")
        op.execute(f"REVOKE ALL ON public.alembic_version, public.{COMPAT_TABLE} FROM {role}")
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
    for signature in reversed(list(FUNCTIONS)):
        op.execute(f"DROP FUNCTION public.{signature}")
    op.execute(
        "DROP TABLE public.erased_tokens, public.vault_purge_candidates, public.erasure_secret"
    )
