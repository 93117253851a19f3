-- forget (loginetl_eraser): append the forget_requested audit row. The log holds the
-- user only as 'u:' + a keyed hash (loginetl_user_ref), and the reason may not name the
-- user, so nobody reads the user id out of the log.
CREATE OR REPLACE FUNCTION public.loginetl_forget_request(p_user_id text, p_reason text, p_os_user text, p_client_host text)
 RETURNS TABLE(audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_seq bigint;
    v_hash text;
BEGIN
    PERFORM public.loginetl_check_audit_text(p_reason, p_os_user, p_client_host);

    
    IF p_user_id IS NULL OR pg_catalog.length(p_user_id) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'a user id is 1 to 128 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    
    IF pg_catalog.lower(p_reason) ~ ('(?<![[:alnum:]])'
            || pg_catalog.regexp_replace(pg_catalog.lower(p_user_id), '([^[:alnum:]])', '\\\1', 'g')
            || '(?![[:alnum:]])') THEN
        RAISE EXCEPTION 'the reason must not contain the user id'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host, 'forget->' || public.loginetl_user_ref(p_user_id), NULL, p_reason,
            'forget_requested', '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    RETURN QUERY SELECT v_seq, v_hash;
END $function$
;
