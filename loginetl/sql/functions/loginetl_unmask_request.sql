-- unmask (loginetl_unmasker): append the audit row for one token and return its seq
-- with the outcome: released (in the vault, or appended by a load and not settled yet),
-- erased (tombstoned), unknown_token, unknown_key_id or malformed_token. The ciphertext comes only from
-- loginetl_vault_open, after this row is committed.
CREATE OR REPLACE FUNCTION public.loginetl_unmask_request(p_token text, p_reason text, p_os_user text, p_client_host text)
 RETURNS TABLE(audit_seq bigint, audit_hash text, outcome text, pii_field text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_field text;
    v_outcome text;
    v_token text := pg_catalog.left(coalesce(p_token, ''), 200);
BEGIN
    
    IF p_reason IS NULL OR pg_catalog.length(p_reason) NOT BETWEEN 1 AND 1000
       OR pg_catalog.length(coalesce(p_os_user, '')) > 256
       OR pg_catalog.length(coalesce(p_client_host, '')) > 256 THEN
        RAISE EXCEPTION 'reason (1-1000 chars), os user and host (256) out of bounds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF v_token !~ '^k[0-9]{1,6}:[0-9a-f]{64}$' THEN
        v_outcome := 'malformed_token';
    ELSE
        SELECT v.pii_field INTO v_field FROM public.pii_vault v WHERE v.token = v_token;
        IF NOT FOUND THEN  -- loaded, not settled yet: the entry the settle will keep
            SELECT i.pii_field INTO v_field FROM public.vault_inbox i
            WHERE i.token = v_token ORDER BY i.created_at LIMIT 1;
        END IF;
        IF FOUND THEN
            v_outcome := 'released';
        ELSIF EXISTS (SELECT 1 FROM public.erased_tokens e WHERE e.token = v_token) THEN
            v_outcome := 'erased';  -- forget or retention purged it
        ELSIF EXISTS (SELECT 1 FROM public.pii_vault v WHERE pg_catalog.starts_with(
                      v.token, pg_catalog.split_part(v_token, ':', 1) || ':'))
           OR EXISTS (SELECT 1 FROM public.vault_inbox i WHERE pg_catalog.starts_with(
                      i.token, pg_catalog.split_part(v_token, ':', 1) || ':')) THEN
            v_outcome := 'unknown_token';
        ELSE
            v_outcome := 'unknown_key_id';
        END IF;
    END IF;
    RETURN QUERY
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host, v_token, v_field,
            p_reason, v_outcome, '', '')
    RETURNING a.seq, a.row_hash, a.outcome, a.pii_field;
END $function$
;
