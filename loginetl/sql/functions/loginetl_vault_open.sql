-- unmask (loginetl_unmasker): the ciphertext of the token named by a committed
-- 'released' audit row of the caller's own, written within 5 minutes (from the vault,
-- or from vault_inbox when a load appended it and it is not settled yet).
CREATE OR REPLACE FUNCTION public.loginetl_vault_open(p_seq bigint)
 RETURNS TABLE(token text, pii_field text, recipient text, ephemeral_public_key bytea, nonce bytea, ciphertext bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r public.unmask_audit;
BEGIN
    r := public.loginetl_committed_audit_row(p_seq, 'released', interval '5 minutes');
    RETURN QUERY
    SELECT v.token::text, v.pii_field::text, v.recipient::text, v.ephemeral_public_key,
           v.nonce, v.ciphertext
      FROM public.pii_vault v WHERE v.token = r.token;
    IF NOT FOUND THEN  -- loaded, not settled yet: the entry the settle will keep
        RETURN QUERY
        SELECT i.token::text, i.pii_field::text, i.recipient::text, i.ephemeral_public_key,
               i.nonce, i.ciphertext
          FROM public.vault_inbox i WHERE i.token = r.token ORDER BY i.created_at LIMIT 1;
    END IF;
END $function$
;
