-- consume (loginetl_writer): create this session's two staging tables (temporary, ON
-- COMMIT DELETE ROWS, owned by the function owner), into which the writer may only
-- INSERT (COPY).
CREATE OR REPLACE FUNCTION public.loginetl_prepare_staging()
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$
;
