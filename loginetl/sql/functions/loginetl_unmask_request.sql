-- unmask (loginetl_unmasker): append the 'requested' audit row for one token and return
-- its seq. It looks at nothing but its arguments (outcome is always 'requested',
-- pii_field NULL), so a caller who rolls back learns nothing: whether the token is
-- stored, erased or unknown, and for which field, is told only by loginetl_vault_open,
-- once this row is committed and on disk.
CREATE OR REPLACE FUNCTION public.loginetl_unmask_request(p_token text, p_reason text, p_os_user text, p_client_host text)
 RETURNS TABLE(audit_seq bigint, audit_hash text, outcome text, pii_field text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM public.loginetl_check_audit_text(p_reason, p_os_user, p_client_host);

    RETURN QUERY
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host,
            pg_catalog.left(coalesce(p_token, ''), 200), NULL, p_reason, 'requested', '', '')
    RETURNING a.seq, a.row_hash, a.outcome, a.pii_field;
END $function$
;
