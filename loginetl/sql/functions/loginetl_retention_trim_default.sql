-- retention apply (loginetl_maintainer): delete up to p_max old rows of the default
-- partition under a committed retention_requested row, queueing -1s and candidates.
CREATE OR REPLACE FUNCTION public.loginetl_retention_trim_default(p_seq bigint, p_max integer)
 RETURNS TABLE(logins bigint, audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET "TimeZone" TO 'UTC'
AS $function$
DECLARE
    r public.unmask_audit;
    v_cutoff date;
    v_rows bigint;
    v_seq bigint;
    v_hash text;
BEGIN
    IF p_max IS NULL OR p_max < 1 OR p_max > 100000 THEN
        RAISE EXCEPTION 'max between 1 and 100000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    
    r := public.loginetl_committed_audit_row(p_seq, 'retention_requested',
                                             interval '12 hours');
    v_cutoff := pg_catalog.substring(r.token, 'before=([0-9-]+)$')::date;

    PERFORM public.loginetl_take_turn('lifecycle', true);
    WITH gone AS (
        DELETE FROM public.user_logins_default l
        WHERE l.ctid = ANY (ARRAY(SELECT d.ctid FROM public.user_logins_default d
                                  WHERE d.create_date < v_cutoff LIMIT p_max))
        RETURNING l.user_id, l.masked_ip, l.masked_device_id, l.sent_at, l.device_type,
                  l.locale, l.app_version_raw, l.create_date, l.loaded_at
    ), minus AS (
        INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at,
                                           device_type, locale, app_version_raw,
                                           create_date, loaded_at, sign)
        SELECT g.*, -1 FROM gone g
    ), candidates AS (
        INSERT INTO public.vault_purge_candidates (pii_field, token)
        SELECT DISTINCT 'ip', g.masked_ip FROM gone g
        UNION SELECT DISTINCT 'device_id', g.masked_device_id FROM gone g
        ON CONFLICT DO NOTHING
    )
    SELECT pg_catalog.count(*) INTO v_rows FROM gone;
    IF v_rows > 0 THEN
        INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', r.os_user, r.client_host, pg_catalog.format('retention->deleted from user_logins_default;before=%s;logins=%s;req=%s', v_cutoff, v_rows, p_seq), NULL, r.reason,
            'retention_deleted', '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    END IF;
    RETURN QUERY SELECT v_rows, v_seq, v_hash;
END $function$
;
