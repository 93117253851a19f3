-- unmask (loginetl_unmasker): the ciphertext of the token named by a committed
-- 'released' audit row of the caller's own, written within 5 minutes.
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
END $function$
;
