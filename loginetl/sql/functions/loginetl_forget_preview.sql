-- forget --dry-run (loginetl_eraser): how many logins and tokens a forget would remove,
-- and how many of the tokens other users share (those keep their vault entries).
CREATE OR REPLACE FUNCTION public.loginetl_forget_preview(p_user_id text)
 RETURNS TABLE(logins bigint, ip_tokens bigint, ip_shared bigint, device_tokens bigint, device_shared bigint)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    
    IF p_user_id IS NULL OR pg_catalog.length(p_user_id) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'a user id is 1 to 128 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    RETURN QUERY
    WITH mine AS (
        SELECT l.masked_ip, l.masked_device_id FROM public.user_logins l
        WHERE l.user_id = p_user_id
    ), ips AS (SELECT DISTINCT m.masked_ip AS t FROM mine m),
    devices AS (SELECT DISTINCT m.masked_device_id AS t FROM mine m)
    SELECT (SELECT pg_catalog.count(*) FROM mine),
           (SELECT pg_catalog.count(*) FROM ips),
           (SELECT pg_catalog.count(*) FROM ips i WHERE EXISTS (
                SELECT 1 FROM public.user_logins o
                WHERE o.masked_ip = i.t AND o.user_id <> p_user_id)),
           (SELECT pg_catalog.count(*) FROM devices),
           (SELECT pg_catalog.count(*) FROM devices d WHERE EXISTS (
                SELECT 1 FROM public.user_logins o
                WHERE o.masked_device_id = d.t AND o.user_id <> p_user_id));
END $function$
;
