-- retention plan (loginetl_maintainer): the partitions older than the window and their
-- logins (from the rollups), plus the default partition's old rows.
CREATE OR REPLACE FUNCTION public.loginetl_retention_plan(p_keep_months integer)
 RETURNS TABLE(partition text, month date, logins bigint, first_kept date)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET "TimeZone" TO 'UTC'
AS $function$
DECLARE
    v_cutoff date;
BEGIN
    
    IF p_keep_months IS NULL OR p_keep_months < 1 OR p_keep_months > 1200 THEN
        RAISE EXCEPTION 'keep between 1 and 1200 months (the current month is always kept)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := (pg_catalog.date_trunc('month', pg_catalog.now())
                 - pg_catalog.make_interval(months => p_keep_months - 1))::date;

    RETURN QUERY
    SELECT o.partition, o.month,
           coalesce((SELECT m.logins FROM public.rollup_months m WHERE m.month = o.month), 0)
           + coalesce((SELECT pg_catalog.sum(p.sign) FROM public.rollup_pending p
                       WHERE p.create_date >= o.month AND p.create_date < o.upper_bound), 0),
           v_cutoff
    FROM public.loginetl_old_partitions(v_cutoff) o
    UNION ALL
    SELECT 'user_logins_default', NULL::date, (SELECT pg_catalog.count(*)
        FROM public.user_logins_default d WHERE d.create_date < v_cutoff), v_cutoff;
END $function$
;
