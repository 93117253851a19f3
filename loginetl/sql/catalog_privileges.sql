-- Statistics, WAL-position and size functions of pg_catalog tell whoever can run them
-- whether a statement inserted or updated a row: the writer's only way to learn whether
-- a token it guessed was already stored. Only a superuser may change pg_catalog's
-- privileges, so this runs where the migration runs as one, and changes nothing
-- otherwise (a managed PostgreSQL's owner is not a superuser: see docs/security.md).
DO $$
DECLARE
    f text;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RETURN;
    END IF;
    FOR f IN
        SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace
          AND p.proname = ANY (ARRAY[
            'pg_stat_get_numscans', 'pg_stat_get_lastscan', 'pg_stat_get_tuples_returned',
            'pg_stat_get_tuples_fetched', 'pg_stat_get_tuples_inserted',
            'pg_stat_get_tuples_updated', 'pg_stat_get_tuples_deleted',
            'pg_stat_get_tuples_hot_updated', 'pg_stat_get_tuples_newpage_updated',
            'pg_stat_get_live_tuples', 'pg_stat_get_dead_tuples',
            'pg_stat_get_mod_since_analyze', 'pg_stat_get_ins_since_vacuum',
            'pg_stat_get_blocks_fetched', 'pg_stat_get_blocks_hit',
            'pg_stat_get_xact_numscans', 'pg_stat_get_xact_tuples_returned',
            'pg_stat_get_xact_tuples_fetched', 'pg_stat_get_xact_tuples_inserted',
            'pg_stat_get_xact_tuples_updated', 'pg_stat_get_xact_tuples_deleted',
            'pg_stat_get_xact_tuples_hot_updated', 'pg_stat_get_xact_tuples_newpage_updated',
            'pg_stat_get_xact_blocks_fetched', 'pg_stat_get_xact_blocks_hit',
            'pg_stat_get_db_tuples_returned', 'pg_stat_get_db_tuples_fetched',
            'pg_stat_get_db_tuples_inserted', 'pg_stat_get_db_tuples_updated',
            'pg_stat_get_db_tuples_deleted', 'pg_stat_get_db_blocks_fetched',
            'pg_stat_get_db_blocks_hit',
            'pg_current_wal_lsn', 'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn',
            'pg_stat_get_wal', 'pg_relation_size', 'pg_total_relation_size', 'pg_table_size',
            'pg_indexes_size', 'pg_database_size', 'pg_tablespace_size']::text[])
        ORDER BY 1
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION pg_catalog.%s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION pg_catalog.%s TO pg_monitor', f);
    END LOOP;
END $$;
