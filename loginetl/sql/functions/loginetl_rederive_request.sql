-- keys rederive (loginetl_rederiver): append the rederive audit row naming the target
-- key id and its fingerprint. It looks at nothing but its arguments: whether that key is
-- the one the consumers write with now is the vault's to tell, so loginetl_rederive_page
-- and loginetl_add_aliases refuse any other, after this row is committed.
CREATE OR REPLACE FUNCTION public.loginetl_rederive_request(p_key_id text, p_fingerprint text, p_reason text, p_os_user text, p_client_host text)
 RETURNS TABLE(audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_token text := 'rederive->' || coalesce(p_key_id, '') || ':' || coalesce(p_fingerprint, '');
BEGIN
    PERFORM public.loginetl_check_audit_text(p_reason, p_os_user, p_client_host);

    IF v_token !~ '^rederive->(k[0-9]{1,6}):[0-9a-f]{16}$' THEN
        RAISE EXCEPTION 'key id or fingerprint malformed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host, v_token, NULL,
            p_reason, 'rederive', '', '')
    RETURNING a.seq, a.row_hash;
END $function$
;
