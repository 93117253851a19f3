-- loginetl's group roles (NOLOGIN; cluster-wide, so created only where missing). Login
-- roles are made members of them: GRANT loginetl_unmasker TO alice. What each may do is
-- grants.sql. Looked up first, so an owner without CREATEROLE migrates once a DBA has
-- made the roles.
--   loginetl_writer      consume: loads through definer functions, reads nothing back
--   loginetl_analyst     the masked data and the rollups
--   loginetl_unmasker    privacy staff: unmask, behind a committed audit row
--   loginetl_rederiver   the key-rotation job: keys rederive
--   loginetl_eraser      privacy staff: forget
--   loginetl_maintainer  the maintenance job: retention
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['loginetl_writer', 'loginetl_analyst', 'loginetl_unmasker',
                             'loginetl_rederiver', 'loginetl_eraser', 'loginetl_maintainer']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration made it at the same moment
            END;
        END IF;
    END LOOP;
END $$;
