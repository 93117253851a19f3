-- The settle (loginetl_maintainer's fold worker, stats as loginetl_analyst, and the
-- purge): move up to max_rows sealed entries from vault_inbox into pii_vault, the first
-- entry of a token winning (an entry already in the vault wins over any in the inbox),
-- and return how many inbox entries it took. One settler at a time (the 'settle' turn;
-- without wait, NULL when another holds it). Who may call it may already know which
-- tokens are stored: an analyst reads every token of user_logins.
CREATE OR REPLACE FUNCTION public.loginetl_settle_vault(max_rows integer, wait boolean)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    taken integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 100000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 100000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT public.loginetl_take_turn('settle', wait IS TRUE) THEN
        RETURN NULL;  -- another session is settling; it will take these entries too
    END IF;
    WITH taken AS (
        DELETE FROM public.vault_inbox i
        WHERE i.ctid = ANY (ARRAY(SELECT k.ctid FROM public.vault_inbox k LIMIT max_rows))
        RETURNING i.token, i.pii_field, i.recipient, i.ephemeral_public_key, i.nonce,
                  i.ciphertext, i.created_at
    ), first AS (
        SELECT DISTINCT ON (t.token) t.token, t.pii_field, t.recipient,
               t.ephemeral_public_key, t.nonce, t.ciphertext, t.created_at
        FROM taken t ORDER BY t.token, t.created_at
    ), stored AS (
        INSERT INTO public.pii_vault
            (token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext, created_at)
        SELECT f.token, f.pii_field, f.recipient, f.ephemeral_public_key, f.nonce,
               f.ciphertext, f.created_at
        FROM first f ORDER BY f.token
        ON CONFLICT DO NOTHING
    )
    SELECT pg_catalog.count(*) INTO taken FROM taken;
    RETURN taken;
END $function$;
