-- Internal (granted to nobody): the audit row p_seq, if it is the caller's own, of the
-- given outcome, within the window, and COMMITTED. Its inserting transaction id, widened
-- to 64 bits against this snapshot, must be reported committed: never the caller's own
-- (in progress) transaction, never an aborted one. So BEGIN; request; open; ROLLBACK
-- yields nothing. And DURABLE: the WAL is flushed past its commit (loginetl_await_durable,
-- at most 5 seconds), whatever synchronous_commit the session that wrote it ran with.
CREATE OR REPLACE FUNCTION public.loginetl_committed_audit_row(p_seq bigint, p_outcome text, p_window interval)
 RETURNS unmask_audit
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
    -- Its commit record is in the WAL before pg_xact_status says committed, so before
    -- the insert position read now.
    PERFORM public.loginetl_await_durable(pg_catalog.pg_current_wal_insert_lsn(), interval '5 seconds');
    RETURN r;
END $function$
;
