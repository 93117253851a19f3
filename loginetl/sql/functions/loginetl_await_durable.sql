-- Internal (granted to nobody): wait until the WAL up to p_lsn, a WAL insert position read
-- once an audit row's commit was seen (its commit record is before it), is on disk; at
-- most p_bound, else refuse. A session may commit with synchronous_commit = off (a user
-- setting), and such a commit is acknowledged before it is flushed: an audit row a crash
-- would lose. The definer functions call this before they tell anything that depends on
-- a committed audit row.
-- Verified when the flush position reaches p_lsn (a position just past a page header,
-- nothing written on that page yet, counts as the page's start). Past the last complete
-- page, the tail may be other sessions' records that nobody commits, which the WAL writer
-- does not flush; there PostgreSQL's documented bound is relied on: the WAL writer flushes
-- every asynchronous commit within three wal_writer_delay, so once every complete page up
-- to p_lsn is flushed and that long has passed since the commit was seen, it is on disk.
CREATE OR REPLACE FUNCTION public.loginetl_await_durable(p_lsn pg_lsn, p_bound interval)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_started  timestamptz := pg_catalog.clock_timestamp();
    v_deadline timestamptz := v_started + p_bound;
    v_writer   interval := 3 * pg_catalog.current_setting('wal_writer_delay')::interval
                           + interval '100 ms';
    v_block    numeric := pg_catalog.current_setting('wal_block_size')::numeric;
    v_segment  numeric := pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size'));
    v_at       numeric := p_lsn - '0/0'::pg_lsn;
    v_target   pg_lsn := p_lsn;
    v_page     pg_lsn;
    v_header   numeric;
BEGIN
    -- Page headers: 40 bytes on a segment's first page, 24 on the others.
    v_header := CASE WHEN v_at % v_segment < v_block THEN 40 ELSE 24 END;
    IF v_at % v_block = v_header THEN
        v_target := p_lsn - (v_at % v_block);
    END IF;
    v_page := p_lsn - (v_at % v_block);
    LOOP
        EXIT WHEN pg_catalog.pg_current_wal_flush_lsn() >= v_target;
        EXIT WHEN pg_catalog.pg_current_wal_flush_lsn() >= v_page
              AND pg_catalog.clock_timestamp() >= v_started + v_writer;
        IF pg_catalog.clock_timestamp() > v_deadline THEN
            RAISE EXCEPTION 'the audit row is committed but not yet on disk after %; nothing was handed out: run this again', p_bound
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        PERFORM pg_catalog.pg_sleep(0.005);
    END LOOP;
END $function$
;
