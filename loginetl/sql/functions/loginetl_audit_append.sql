-- unmask (loginetl_unmasker): append the outcome loginetl reports after the database
-- released a ciphertext (revealed, decrypt_failed, refused_*). Outcomes are a fixed list.
CREATE OR REPLACE FUNCTION public.loginetl_audit_append(p_token text, p_pii_field text, p_reason text, p_outcome text, p_os_user text, p_client_host text)
 RETURNS TABLE(audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM public.loginetl_check_audit_text(p_reason, p_os_user, p_client_host);

    IF p_outcome IS NULL OR p_outcome <> ALL (ARRAY['revealed', 'decrypt_failed', 'refused_token_mismatch', 'refused_unverifiable', 'refused_no_private_key', 'refused_no_vault_grant', 'refused_no_signing_key']::text[]) THEN
        RAISE EXCEPTION 'not an outcome loginetl reports: %', pg_catalog.left(p_outcome, 40)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_pii_field IS NOT NULL AND p_pii_field NOT IN ('ip', 'device_id') THEN
        RAISE EXCEPTION 'pii_field must be ip or device_id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host, pg_catalog.left(coalesce(p_token, ''), 200), p_pii_field,
            p_reason, p_outcome, '', '')
    RETURNING a.seq, a.row_hash;
END $function$
;
