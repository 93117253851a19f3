-- unmask (loginetl_unmasker): what the vault holds for the token of a committed, durable
-- 'requested' audit row of the caller's own, written within 5 minutes (an entry a load
-- appended to vault_inbox and the settle has not moved yet counts as held)
-- (loginetl_committed_audit_row), appended as the outcome row: released (with the
-- ciphertext), erased (tombstoned), unknown_token, unknown_key_id or malformed_token.
-- Always one row. The same statements run, and so the same locks are taken, whatever the
-- outcome, so pg_locks does not tell it to anyone watching. (Dropped first: 1.0 changed
-- what it returns, and a database adopted from 0016 has the old one.)
DROP FUNCTION IF EXISTS public.loginetl_vault_open(bigint);
CREATE OR REPLACE FUNCTION public.loginetl_vault_open(p_seq bigint)
 RETURNS TABLE(outcome text, pii_field text, audit_seq bigint, audit_hash text, token text, recipient text, ephemeral_public_key bytea, nonce bytea, ciphertext bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r public.unmask_audit;
    v public.pii_vault;
    w public.pii_vault;
    v_found boolean;
    v_erased boolean;
    v_key_known boolean;
    v_outcome text;
    v_seq bigint;
    v_hash text;
BEGIN
    r := public.loginetl_committed_audit_row(p_seq, 'requested', interval '5 minutes');
    -- Every lookup runs for every token, whatever the earlier ones found.
    SELECT x.* INTO v FROM public.pii_vault x WHERE x.token = r.token;
    v_found := FOUND;
    -- The entry the settle will keep (vault_inbox has pii_vault's columns, in its order).
    SELECT i.* INTO w FROM public.vault_inbox i WHERE i.token = r.token
     ORDER BY i.created_at LIMIT 1;
    IF FOUND AND NOT v_found THEN
        v := w;
        v_found := true;
    END IF;
    v_erased := EXISTS (SELECT 1 FROM public.erased_tokens e WHERE e.token = r.token);
    v_key_known := EXISTS (SELECT 1 FROM public.pii_vault x WHERE pg_catalog.starts_with(
                           x.token, pg_catalog.split_part(r.token, ':', 1) || ':'))
                OR EXISTS (SELECT 1 FROM public.vault_inbox i WHERE pg_catalog.starts_with(
                           i.token, pg_catalog.split_part(r.token, ':', 1) || ':'));
    v_outcome := CASE
        WHEN r.token !~ '^k[0-9]{1,6}:[0-9a-f]{64}$' THEN 'malformed_token'
        WHEN v_found THEN 'released'
        WHEN v_erased THEN 'erased'  -- forget or retention purged it
        WHEN v_key_known THEN 'unknown_token'
        ELSE 'unknown_key_id' END;
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', r.os_user, r.client_host, r.token,
            CASE WHEN v_found THEN v.pii_field END, r.reason, v_outcome, '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    IF v_outcome = 'released' THEN
        RETURN QUERY SELECT v_outcome, v.pii_field::text, v_seq, v_hash, v.token::text,
            v.recipient::text, v.ephemeral_public_key, v.nonce, v.ciphertext;
    ELSE
        RETURN QUERY SELECT v_outcome, NULL::text, v_seq, v_hash, r.token,
            NULL::text, NULL::bytea, NULL::bytea, NULL::bytea;
    END IF;
END $function$
;
