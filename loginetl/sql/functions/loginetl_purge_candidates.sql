-- Internal (forget and retention, holding the 'lifecycle' turn): judge up to p_max purge
-- candidates. A candidate is referenced while a row of user_logins holds its token,
-- asked of the table itself under locks that keep loads out; an unreferenced one loses
-- its vault entry and aliases and is tombstoned in erased_tokens. Everything in
-- vault_inbox is settled first, so no entry of a purged token waits there to come back.
-- The vault epoch advances first, so a consumer's token cache cannot outlive the entry.
CREATE OR REPLACE FUNCTION public.loginetl_purge_candidates(p_max integer, p_audit_seq bigint)
 RETURNS TABLE(ip_purged bigint, ip_kept bigint, device_purged bigint, device_kept bigint, vault_deleted bigint, aliases_deleted bigint, remaining bigint)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_folded integer;
    v_fields text[];
    v_tokens text[];
    v_referenced boolean[];
BEGIN
    -- Each judging statement must see every load committed before the locks below; a
    -- snapshot taken earlier (REPEATABLE READ) would miss them and purge a needed entry.
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the vault purge runs only under READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- The fold's and the settle's turns first (as every folder and settler takes them),
    -- then no load may be in flight: a move locks vault_inbox before it writes anything,
    -- so a load that committed first is seen by the judgement below, and the next waits
    -- until this purge commits.
    PERFORM public.loginetl_take_turn('fold', true);
    PERFORM public.loginetl_take_turn('settle', true);
    LOCK TABLE public.vault_inbox, public.rollup_pending IN SHARE ROW EXCLUSIVE MODE;
    LOOP
        v_folded := public.loginetl_fold_rollups(100000, true);
        EXIT WHEN v_folded < 100000;
    END LOOP;
    LOOP
        v_folded := public.loginetl_settle_vault(100000, true);
        EXIT WHEN v_folded < 100000;
    END LOOP;
    -- Judged from user_logins itself (its token indexes), never from the rollups: a row
    -- written by any path keeps its token's vault entry. Into arrays, not a temporary
    -- table: a caller may have planted one.
    WITH batch AS (
        DELETE FROM public.vault_purge_candidates c
        WHERE c.ctid = ANY (ARRAY(SELECT k.ctid FROM public.vault_purge_candidates k
                                  LIMIT p_max))
        RETURNING c.pii_field, c.token
    )
    SELECT coalesce(pg_catalog.array_agg(b.pii_field::text), '{}'),
           coalesce(pg_catalog.array_agg(b.token::text), '{}'),
           coalesce(pg_catalog.array_agg(CASE b.pii_field
               WHEN 'ip' THEN EXISTS (SELECT 1 FROM public.user_logins l
                                      WHERE l.masked_ip = b.token)
               ELSE EXISTS (SELECT 1 FROM public.user_logins l
                            WHERE l.masked_device_id = b.token) END), '{}')
    INTO v_fields, v_tokens, v_referenced
    FROM batch b;
    -- A consumer whose token cache predates this purge must seal again. Advanced by every
    -- purge, whatever it deletes, so its lock on the sequence (visible to all in pg_locks)
    -- does not tell whether it deleted anything.
    PERFORM pg_catalog.nextval('public.vault_epoch');
    RETURN QUERY
    WITH j AS (
        SELECT u.pii_field, u.token, u.referenced
        FROM ROWS FROM (pg_catalog.unnest(v_fields), pg_catalog.unnest(v_tokens),
                        pg_catalog.unnest(v_referenced)) AS u(pii_field, token, referenced)
    ), vault AS (
        DELETE FROM public.pii_vault v USING j
        WHERE NOT j.referenced AND v.token = j.token AND v.pii_field = j.pii_field
        RETURNING v.token
    ), aliases AS (
        DELETE FROM public.token_aliases a USING j
        WHERE NOT j.referenced AND a.token = j.token AND a.pii_field = j.pii_field
        RETURNING a.token
    ), tomb AS (
        INSERT INTO public.erased_tokens AS e (token, pii_field, audit_seq)
        SELECT j.token, j.pii_field, p_audit_seq FROM j WHERE NOT j.referenced
        ON CONFLICT (token) DO UPDATE SET erased_at = pg_catalog.now(),
                                          audit_seq = excluded.audit_seq
    )
    SELECT pg_catalog.count(*) FILTER (WHERE j.pii_field = 'ip' AND NOT j.referenced),
           pg_catalog.count(*) FILTER (WHERE j.pii_field = 'ip' AND j.referenced),
           pg_catalog.count(*) FILTER (WHERE j.pii_field = 'device_id' AND NOT j.referenced),
           pg_catalog.count(*) FILTER (WHERE j.pii_field = 'device_id' AND j.referenced),
           (SELECT pg_catalog.count(*) FROM vault),
           (SELECT pg_catalog.count(*) FROM aliases),
           (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM public.vault_purge_candidates
                                             LIMIT 1) more)  -- 1 while more remain
    FROM j;
END $function$
;
