-- retention apply (loginetl_maintainer): append the retention_requested audit row that
-- names the cutoff month.
CREATE OR REPLACE FUNCTION public.loginetl_retention_request(p_keep_months integer, p_reason text, p_os_user text, p_client_host text)
 RETURNS TABLE(audit_seq bigint, audit_hash text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET "TimeZone" TO 'UTC'
AS $function$
DECLARE
    v_cutoff date;
    v_seq bigint;
    v_hash text;
BEGIN
    PERFORM public.loginetl_check_audit_text(p_reason, p_os_user, p_client_host);

    
    IF p_keep_months IS NULL OR p_keep_months < 1 OR p_keep_months > 1200 THEN
        RAISE EXCEPTION 'keep between 1 and 1200 months (the current month is always kept)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := (pg_catalog.date_trunc('month', pg_catalog.now())
                 - pg_catalog.make_interval(months => p_keep_months - 1))::date;

    INSERT INTO public.unmask_audit AS a
        (seq, at, db_role, os_user, client_host, token, pii_field, reason, outcome,
         prev_hash, row_hash)
    VALUES (0, pg_catalog.now(), '', p_os_user, p_client_host, pg_catalog.format('retention->keep=%smo;before=%s', p_keep_months, v_cutoff), NULL, p_reason,
            'retention_requested', '', '')
    RETURNING a.seq, a.row_hash INTO v_seq, v_hash;
    RETURN QUERY SELECT v_seq, v_hash;
END $function$
;
