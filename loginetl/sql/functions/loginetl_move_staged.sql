-- consume's write path (loginetl_writer): append this session's staged batch, in one
-- statement: every sealed vault entry to vault_inbox (stored token or not: no lookup, no
-- conflict), the rows to user_logins, and the rows that were new to rollup_pending.
-- Nothing it does depends on what PII-derived content is stored: the only conflict it
-- checks is a row's message key (a redelivery or replay is skipped), never a token, and
-- it returns only how many rows were new. It reads only the two staging tables of
-- loginetl_prepare_staging() (ordinary tables of this session's temp schema owned by the
-- function owner): a look-alike the caller made is refused. Inserts run in sorted key
-- order, so concurrent writers take their locks in one order. A consumer that set
-- loginetl.vault_epoch to an epoch older than the last purge gets SQLSTATE LE001 and
-- writes nothing: it seals again.
CREATE OR REPLACE FUNCTION public.loginetl_move_staged()
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    inserted integer;
    v_claimed text;
BEGIN
    IF (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
        WHERE c.oid IN (pg_catalog.to_regclass('pg_temp.loginetl_staged_vault'),
                        pg_catalog.to_regclass('pg_temp.loginetl_staged_logins'))
          AND c.relkind = 'r'
          AND c.relnamespace = pg_catalog.pg_my_temp_schema()
          AND c.relowner = (SELECT r.oid FROM pg_catalog.pg_roles r
                            WHERE r.rolname = current_user)) <> 2 THEN
        RAISE EXCEPTION 'no staging tables of loginetl_prepare_staging() in this session'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- No purge runs while this move does (a purge locks vault_inbox against this lock,
    -- which no other role can take); a cache older than the last purge (the epoch the
    -- caller read) may lack vault entries that are gone: refuse it.
    LOCK TABLE public.vault_inbox IN ROW EXCLUSIVE MODE;
    v_claimed := pg_catalog.current_setting('loginetl.vault_epoch', true);
    IF coalesce(v_claimed, '') <> '' THEN
        IF v_claimed !~ '^[0-9]{1,18}$' THEN
            RAISE EXCEPTION 'loginetl.vault_epoch must be a number'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_claimed::bigint <> (SELECT e.last_value FROM public.vault_epoch e) THEN
            RAISE EXCEPTION 'the vault changed since this cache was filled: seal again'
                USING ERRCODE = 'LE001';
        END IF;
    END IF;
    WITH vault AS (
        INSERT INTO public.vault_inbox
            (token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext)
        SELECT token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext
        FROM pg_temp.loginetl_staged_vault
    ), new AS (
        INSERT INTO public.user_logins (idempotency_key, user_id, device_type, masked_ip,
                                        masked_device_id, locale, app_version,
                                        app_version_raw, sent_at, create_date)
        SELECT idempotency_key, user_id, device_type, masked_ip, masked_device_id, locale,
               app_version, app_version_raw, sent_at, create_date
        FROM pg_temp.loginetl_staged_logins ORDER BY idempotency_key, create_date
        ON CONFLICT (idempotency_key, create_date) DO NOTHING
        RETURNING user_id, masked_ip, masked_device_id, sent_at, device_type, locale,
                  app_version_raw, create_date, loaded_at
    ), pending AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at,
                                           device_type, locale, app_version_raw,
                                           create_date, loaded_at, sign)
        SELECT user_id, masked_ip, masked_device_id, sent_at, device_type, locale,
               app_version_raw, create_date, loaded_at, 1 FROM new
    )
    SELECT pg_catalog.count(*) INTO inserted FROM new;
    RETURN inserted;
END $function$
;
