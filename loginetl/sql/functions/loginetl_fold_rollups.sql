-- The fold (loginetl_maintainer's fold worker, stats as loginetl_analyst, and the
-- purge): take up to max_rows pending rows
-- (deleting them) and add their signed counts to the rollups in one statement. Upserts
-- return each count after the change; with the delta that gives the count before, and a
-- count crossing zero is a pair, token or user appearing or going. One folder at a time
-- (the 'fold' turn; without wait, NULL when another holds it). Rows left at zero are deleted (through partial indexes). Hours
-- and months are UTC. Hash joins: the CTEs are estimated at a handful of rows, and
-- nested loops made the fold quadratic in the chunk.
CREATE OR REPLACE FUNCTION public.loginetl_fold_rollups(max_rows integer, wait boolean)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET "TimeZone" TO 'UTC'
 SET enable_nestloop TO 'off'
AS $function$
DECLARE
    folded integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 100000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 100000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT public.loginetl_take_turn('fold', wait IS TRUE) THEN
        RETURN NULL;  -- another session is folding; it will fold these rows too
    END IF;
    WITH new AS (
        DELETE FROM public.rollup_pending
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM public.rollup_pending LIMIT max_rows))
        RETURNING user_id, masked_ip, masked_device_id, device_type, locale,
                  app_version_raw, create_date, loaded_at, sign
    ), pair_deltas AS (
        SELECT pii_field, token, user_id, pg_catalog.sum(sign)::bigint AS delta
        FROM (SELECT 'ip'::pg_catalog.varchar AS pii_field, masked_ip AS token, user_id, sign
              FROM new
              UNION ALL
              SELECT 'device_id', masked_device_id, user_id, sign FROM new) t
        GROUP BY 1, 2, 3 HAVING pg_catalog.sum(sign) <> 0
    ), pairs AS (
        INSERT INTO public.token_users AS p (pii_field, token, user_id, logins)
        SELECT pii_field, token, user_id, delta FROM pair_deltas ORDER BY 1, 2, 3
        ON CONFLICT (pii_field, token, user_id) DO UPDATE SET logins = p.logins + excluded.logins
        RETURNING p.pii_field, p.token, p.user_id, p.logins
    ), token_deltas AS (
        SELECT d.pii_field, d.token, pg_catalog.sum(d.delta)::bigint AS logins,
               (pg_catalog.count(*) FILTER (WHERE p.logins > 0 AND p.logins - d.delta <= 0)
                - pg_catalog.count(*) FILTER (WHERE p.logins <= 0 AND p.logins - d.delta > 0)
               )::bigint AS users
        FROM pair_deltas d JOIN pairs p USING (pii_field, token, user_id)
        GROUP BY 1, 2
    ), tokens AS (
        INSERT INTO public.token_stats AS t (pii_field, token, users, logins)
        SELECT pii_field, token, users, logins FROM token_deltas ORDER BY 1, 2
        ON CONFLICT (pii_field, token) DO UPDATE
        SET users = t.users + excluded.users, logins = t.logins + excluded.logins
        RETURNING t.pii_field, t.token, t.logins
    ), token_presence AS (
        SELECT t.pii_field,
               (pg_catalog.count(*) FILTER (WHERE t.logins > 0 AND t.logins - d.logins <= 0)
                - pg_catalog.count(*) FILTER (WHERE t.logins <= 0 AND t.logins - d.logins > 0)
               )::bigint AS change
        FROM token_deltas d JOIN tokens t USING (pii_field, token)
        GROUP BY 1
    ), user_deltas AS (
        SELECT user_id, pg_catalog.sum(sign)::bigint AS delta FROM new
        GROUP BY 1 HAVING pg_catalog.sum(sign) <> 0
    ), users AS (
        INSERT INTO public.user_stats AS u (user_id, logins)
        SELECT user_id, delta FROM user_deltas ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET logins = u.logins + excluded.logins
        RETURNING u.user_id, u.logins
    ), user_presence AS (
        SELECT (pg_catalog.count(*) FILTER (WHERE u.logins > 0 AND u.logins - d.delta <= 0)
                - pg_catalog.count(*) FILTER (WHERE u.logins <= 0 AND u.logins - d.delta > 0)
               )::bigint AS change
        FROM user_deltas d JOIN users u USING (user_id)
    ), totals AS (
        UPDATE public.rollup_totals r SET value = r.value + c.change
        FROM (SELECT 'users'::pg_catalog.varchar AS metric, change FROM user_presence
              UNION ALL
              SELECT CASE pii_field WHEN 'ip' THEN 'ip_tokens' ELSE 'device_tokens' END,
                     change FROM token_presence) c
        WHERE r.metric = c.metric AND c.change <> 0
    ), breakdown AS (
        INSERT INTO public.rollup_breakdown AS b (dimension, value, logins)
        SELECT 'device_type', device_type, pg_catalog.sum(sign) FROM new GROUP BY 2
        UNION ALL SELECT 'locale', locale, pg_catalog.sum(sign) FROM new GROUP BY 2
        UNION ALL SELECT 'app_version', app_version_raw, pg_catalog.sum(sign) FROM new GROUP BY 2
        ORDER BY 1, 2
        ON CONFLICT (dimension, value) DO UPDATE SET logins = b.logins + excluded.logins
    ), months AS (
        INSERT INTO public.rollup_months AS m (month, logins)
        SELECT pg_catalog.date_trunc('month', create_date)::date, pg_catalog.sum(sign)
        FROM new GROUP BY 1 ORDER BY 1
        ON CONFLICT (month) DO UPDATE SET logins = m.logins + excluded.logins
    ), hourly AS (
        INSERT INTO public.rollup_hourly AS h (loaded_hour, logins)
        SELECT pg_catalog.date_trunc('hour', loaded_at), pg_catalog.sum(sign)
        FROM new GROUP BY 1 ORDER BY 1
        ON CONFLICT (loaded_hour) DO UPDATE SET logins = h.logins + excluded.logins
    )
    SELECT pg_catalog.count(*) INTO folded FROM new;
    IF folded > 0 THEN
        DELETE FROM public.token_users WHERE logins = 0;
        DELETE FROM public.token_stats WHERE logins = 0;
        DELETE FROM public.user_stats WHERE logins = 0;
        DELETE FROM public.rollup_breakdown WHERE logins = 0;
        DELETE FROM public.rollup_months WHERE logins = 0;
        DELETE FROM public.rollup_hourly WHERE logins = 0;
    END IF;
    RETURN folded;
END $function$
;
