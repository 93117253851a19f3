-- forget (loginetl_eraser): under a committed forget_requested row for this user, delete
-- the user's rows, queue their -1s for the fold, make their tokens purge candidates, purge
-- (loginetl_purge_candidates) and append a 'forgotten' row with the counts, all in one
-- transaction.
CREATE OR REPLACE FUNCTION public.loginetl_forget(p_seq bigint, p_user_id text)
 RETURNS TABLE(logins bigint, ip_purged bigint, ip_kept bigint, device_purged bigint, device_kept bigint, vault_deleted bigint, aliases_deleted bigint, audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r public.unmask_audit;
    p record;
    v_rows bigint;
    v_seq bigint;
    v_hash text;
BEGIN
    
    IF p_user_id IS NULL OR pg_catalog.length(p_user_id) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'a user id is 1 to 128 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    r := public.loginetl_committed_audit_row(p_seq, 'forget_requested',
                                             interval '5 minutes');
    IF r.token IS DISTINCT FROM 'forget->' || public.loginetl_user_ref(p_user_id) THEN
        RAISE EXCEPTION 'audit row % requested the erasure of another user', p_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- One forget or retention step at a time, taken before any other lock: two of them
    -- must not each hold rollup_pending while waiting for the other's (the purge).
    PERFORM public.loginetl_take_turn('lifecycle', true);
    WITH gone AS (
        DELETE FROM public.user_logins l WHERE l.user_id = p_user_id
        RETURNING l.user_id, l.masked_ip, l.masked_device_id, l.sent_at, l.device_type,
                  l.locale, l.app_version_raw, l.create_date, l.loaded_at
    ), minus AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at,
                                           device_type, locale, app_version_raw,
                                           create_date, loaded_at, sign)
        SELECT g.user_id, g.masked_ip, g.masked_device_id, g.sent_at, g.device_type,
               g.locale, g.app_version_raw, g.create_date, g.loaded_at, -1 FROM gone g
    ), candidates AS (
        INSERT INTO public.vault_purge_candidates (pii_field, token)
        SELECT DISTINCT 'ip', g.masked_ip FROM gone g
        UNION SELECT DISTINCT 'device_id', g.masked_device_id FROM gone g
        ON CONFLICT DO NOTHING
    )
    SELECT pg_catalog.count(*) INTO v_rows FROM gone;
    -- The purge folds everything (these -1s too), then judges every candidate: this
    -- user's tokens, and any a crashed retention left behind.
    SELECT * INTO p FROM public.loginetl_purge_candidates(2147483647, p_seq);
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', r.os_user, r.client_host, pg_catalog.format('forget->%s;req=%s;logins=%s;ip=%s purged/%s kept;device_id=%s purged/%s kept;vault=%s;aliases=%s', public.loginetl_user_ref(p_user_id), p_seq, v_rows, p.ip_purged, p.ip_kept, p.device_purged, p.device_kept, p.vault_deleted, p.aliases_deleted), NULL, r.reason,
            'forgotten', '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    RETURN QUERY SELECT v_rows, p.ip_purged, p.ip_kept, p.device_purged, p.device_kept,
                        p.vault_deleted, p.aliases_deleted, v_seq, v_hash;
END $function$
;
