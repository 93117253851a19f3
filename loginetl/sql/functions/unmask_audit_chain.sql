-- Trigger on unmask_audit: the server, not the client, sets seq, time, role and the
-- hash chain. One appender at a time, so the chain has no forks and seq no gaps: each
-- takes SHARE UPDATE EXCLUSIVE on unmask_audit until its transaction ends, a mode no
-- loginetl role but the owner can take (the audit readers may LOCK it only in ACCESS
-- SHARE) and which inserts (ROW EXCLUSIVE) and reads do not conflict with. An appender
-- whose transaction stays open holds it: the next one waits at most lock_timeout (5 s),
-- then fails with one sentence naming the holder's login and pid. The hash formula is
-- mirrored in loginetl/core/audit_chain.py, which recomputes it:
-- one field is '~' for NULL or '<length>:<value>', fields joined by '|'.
CREATE OR REPLACE FUNCTION public.unmask_audit_chain()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '5s'
AS $function$
DECLARE
    last_seq  bigint;
    last_hash text;
    v_holder  text;
BEGIN
    BEGIN
        LOCK TABLE public.unmask_audit IN SHARE UPDATE EXCLUSIVE MODE;
    EXCEPTION WHEN lock_not_available THEN
        SELECT pg_catalog.format('login %s (backend pid %s)',
                                 coalesce(s.usename::text, s.backend_type), l.pid)
          INTO v_holder
          FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity s ON s.pid = l.pid
         WHERE l.relation = 'public.unmask_audit'::regclass AND l.granted
           AND l.mode = 'ShareUpdateExclusiveLock' AND l.pid <> pg_catalog.pg_backend_pid()
         LIMIT 1;
        RAISE EXCEPTION 'the audit log is held by %, whose transaction has appended to it and is still open; nothing was done: try again once it ends, or have a DBA end that session',
            coalesce(v_holder, 'another session') USING ERRCODE = 'lock_not_available';
    END;
    SELECT a.seq, a.row_hash INTO last_seq, last_hash
      FROM public.unmask_audit a ORDER BY a.seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, pg_catalog.repeat('0', 64));
    NEW.at := pg_catalog.clock_timestamp();
    NEW.db_role := session_user;
    NEW.client_addr := coalesce(pg_catalog.host(pg_catalog.inet_client_addr()), 'local');
    NEW.row_hash := pg_catalog.encode(
        pg_catalog.sha256(pg_catalog.convert_to(CASE WHEN NEW.seq::text IS NULL THEN '~' ELSE pg_catalog.length(NEW.seq::text)::text || ':' || NEW.seq::text END || '|' || CASE WHEN pg_catalog.to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') IS NULL THEN '~' ELSE pg_catalog.length(pg_catalog.to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text || ':' || pg_catalog.to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END || '|' || CASE WHEN NEW.db_role IS NULL THEN '~' ELSE pg_catalog.length(NEW.db_role)::text || ':' || NEW.db_role END || '|' || CASE WHEN NEW.os_user IS NULL THEN '~' ELSE pg_catalog.length(NEW.os_user)::text || ':' || NEW.os_user END || '|' || CASE WHEN NEW.client_addr IS NULL THEN '~' ELSE pg_catalog.length(NEW.client_addr)::text || ':' || NEW.client_addr END || '|' || CASE WHEN NEW.client_host IS NULL THEN '~' ELSE pg_catalog.length(NEW.client_host)::text || ':' || NEW.client_host END || '|' || CASE WHEN NEW.token IS NULL THEN '~' ELSE pg_catalog.length(NEW.token)::text || ':' || NEW.token END || '|' || CASE WHEN NEW.pii_field IS NULL THEN '~' ELSE pg_catalog.length(NEW.pii_field)::text || ':' || NEW.pii_field END || '|' || CASE WHEN NEW.reason IS NULL THEN '~' ELSE pg_catalog.length(NEW.reason)::text || ':' || NEW.reason END || '|' || CASE WHEN NEW.outcome IS NULL THEN '~' ELSE pg_catalog.length(NEW.outcome)::text || ':' || NEW.outcome END || '|' || CASE WHEN NEW.prev_hash IS NULL THEN '~' ELSE pg_catalog.length(NEW.prev_hash)::text || ':' || NEW.prev_hash END, 'UTF8')), 'hex');
    RETURN NEW;
END $function$
;
