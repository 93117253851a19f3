-- retention apply (loginetl_maintainer): under a committed retention_requested row,
-- queue the -1s and purge candidates of one old partition (locked SHARE: late rows
-- wait), then detach it under ACCESS EXCLUSIVE (lock_timeout 500 ms, so a consumer's
-- insert waits at most that per attempt) and drop it unless p_detach.
CREATE OR REPLACE FUNCTION public.loginetl_retention_drop(p_seq bigint, p_partition text, p_detach boolean)
 RETURNS TABLE(logins bigint, audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET "TimeZone" TO 'UTC'
 SET lock_timeout TO '500ms'
AS $function$
DECLARE
    r public.unmask_audit;
    v_cutoff date;
    v_month date;
    v_rows bigint;
    v_seq bigint;
    v_hash text;
BEGIN
    
    r := public.loginetl_committed_audit_row(p_seq, 'retention_requested',
                                             interval '12 hours');
    v_cutoff := pg_catalog.substring(r.token, 'before=([0-9-]+)$')::date;

    SELECT o.month INTO v_month FROM public.loginetl_old_partitions(v_cutoff) o
    WHERE o.partition = p_partition;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a partition of user_logins older than %', v_cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM public.loginetl_take_turn('lifecycle', true);
    -- Late rows for this month wait (SHARE), so the -1s match what is dropped.
    EXECUTE pg_catalog.format('LOCK TABLE public.%I IN SHARE MODE', p_partition);
    EXECUTE pg_catalog.format(
        'WITH gone AS (SELECT user_id, masked_ip, masked_device_id, sent_at, device_type, '
        'locale, app_version_raw, create_date, loaded_at FROM public.%I), '
        'minus AS (INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, '
        'sent_at, device_type, locale, app_version_raw, create_date, loaded_at, sign) '
        'SELECT *, -1 FROM gone), '
        'candidates AS (INSERT INTO public.vault_purge_candidates (pii_field, token) '
        'SELECT DISTINCT ''ip'', masked_ip FROM gone UNION '
        'SELECT DISTINCT ''device_id'', masked_device_id FROM gone ON CONFLICT DO NOTHING) '
        'SELECT pg_catalog.count(*) FROM gone', p_partition) INTO v_rows;
    -- ACCESS EXCLUSIVE on user_logins, waited for at most lock_timeout.
    EXECUTE pg_catalog.format('ALTER TABLE public.user_logins DETACH PARTITION public.%I',
                              p_partition);
    IF NOT p_detach THEN
        EXECUTE pg_catalog.format('DROP TABLE public.%I', p_partition);
    END IF;
    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', r.os_user, r.client_host, pg_catalog.format('retention->%s %s;month=%s;logins=%s;req=%s', CASE WHEN p_detach THEN 'detached' ELSE 'dropped' END, p_partition, v_month, v_rows, p_seq), NULL, r.reason,
            CASE WHEN p_detach THEN 'retention_detached' ELSE 'retention_dropped' END, '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    RETURN QUERY SELECT v_rows, v_seq, v_hash;
END $function$
;
