-- Internal (granted to nobody): wait until the WAL is flushed to disk up to p_lsn, at
-- most p_bound, else refuse. A session may commit with synchronous_commit = off (a user
-- setting), and such a commit is acknowledged before it is on disk: an audit row a crash
-- would lose. The definer functions call this before they tell anything that depends on
-- a committed audit row, with the insert position read after that row's commit was seen
-- (its commit record is before it), so what they hand out outlives a crash of this server.
CREATE OR REPLACE FUNCTION public.loginetl_await_durable(p_lsn pg_lsn, p_bound interval)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_deadline timestamptz := pg_catalog.clock_timestamp() + p_bound;
BEGIN
    -- The WAL writer flushes an asynchronous commit within three wal_writer_delay.
    WHILE pg_catalog.pg_current_wal_flush_lsn() < p_lsn LOOP
        IF pg_catalog.clock_timestamp() > v_deadline THEN
            RAISE EXCEPTION 'the audit row is committed but not yet on disk after %; nothing was handed out: run this again', p_bound
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        PERFORM pg_catalog.pg_sleep(0.005);
    END LOOP;
END $function$
;
