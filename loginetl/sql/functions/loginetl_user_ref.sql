-- Internal: 'u:' + 32 hex of sha256(erasure secret || user id), how the audit log names
-- a user. The secret is readable by the owner only.
CREATE OR REPLACE FUNCTION public.loginetl_user_ref(p_user_id text)
 RETURNS text
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'u:' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
        s.secret || pg_catalog.convert_to(p_user_id, 'UTF8')), 'hex'), 32)
    FROM public.erasure_secret s
$function$
;
