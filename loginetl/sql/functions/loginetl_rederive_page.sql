-- keys rederive (loginetl_rederiver): page through the vault entries of other keys under
-- a committed rederive audit row (12 hours). The first page (p_after empty) refuses a
-- row naming any key but the one the consumers wrote with last (the newest entry's, in
-- the vault or in vault_inbox).
CREATE OR REPLACE FUNCTION public.loginetl_rederive_page(p_seq bigint, p_after text, p_limit integer)
 RETURNS TABLE(token text, pii_field text, recipient text, ephemeral_public_key bytea, nonce bytea, ciphertext bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r public.unmask_audit;
    v_key_id text;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := public.loginetl_committed_audit_row(p_seq, 'rederive', interval '12 hours');
    v_key_id := pg_catalog.substring(r.token, '^rederive->(k[0-9]{1,6}):[0-9a-f]{16}$');
    -- The deployed key: the newest entry's, settled or still in vault_inbox.
    IF coalesce(p_after, '') = '' AND v_key_id IS DISTINCT FROM (
            SELECT pg_catalog.split_part(w.token, ':', 1) FROM (
                SELECT v.token, v.created_at FROM public.pii_vault v
                UNION ALL SELECT i.token, i.created_at FROM public.vault_inbox i) w
             ORDER BY w.created_at DESC LIMIT 1) THEN
        RAISE EXCEPTION 'rederive maps only to the key the consumers write with now, not %', v_key_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    SELECT v.token::text, v.pii_field::text, v.recipient::text, v.ephemeral_public_key,
           v.nonce, v.ciphertext
      FROM public.pii_vault v
     WHERE v.token > coalesce(p_after, '')
       AND NOT pg_catalog.starts_with(v.token, v_key_id || ':')
     ORDER BY v.token LIMIT p_limit;
END $function$
;
