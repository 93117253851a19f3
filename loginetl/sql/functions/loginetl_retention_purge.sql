-- retention apply (loginetl_maintainer): purge up to p_max candidates under a committed
-- retention_requested row; append a retention_purged row when any was judged.
CREATE OR REPLACE FUNCTION public.loginetl_retention_purge(p_seq bigint, p_max integer)
 RETURNS TABLE(ip_purged bigint, ip_kept bigint, device_purged bigint, device_kept bigint, vault_deleted bigint, aliases_deleted bigint, remaining bigint, audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r public.unmask_audit;
    p record;
    v_seq bigint;
    v_hash text;
BEGIN
    IF p_max IS NULL OR p_max < 1 OR p_max > 1000000 THEN
        RAISE EXCEPTION 'max between 1 and 1000000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := public.loginetl_committed_audit_row(p_seq, 'retention_requested',
                                             interval '12 hours');
    PERFORM public.loginetl_take_turn('lifecycle', true);
    SELECT * INTO p FROM public.loginetl_purge_candidates(p_max, p_seq);
    IF p.ip_purged + p.ip_kept + p.device_purged + p.device_kept > 0 THEN
        INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', r.os_user, r.client_host, pg_catalog.format('retention->purge;ip=%s purged/%s kept;device_id=%s purged/%s kept;vault=%s;aliases=%s;req=%s', p.ip_purged, p.ip_kept, p.device_purged, p.device_kept, p.vault_deleted, p.aliases_deleted, p_seq), NULL, r.reason,
            'retention_purged', '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    END IF;
    RETURN QUERY SELECT p.ip_purged, p.ip_kept, p.device_purged, p.device_kept,
                        p.vault_deleted, p.aliases_deleted, p.remaining, v_seq, v_hash;
END $function$
;
