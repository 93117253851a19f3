-- stats and the fold worker (loginetl_analyst, loginetl_maintainer): how much loaded work
-- the figures and unmask do not reflect yet, and since when. Counts and ages only.
CREATE OR REPLACE FUNCTION public.loginetl_backlog()
 RETURNS TABLE(pending_rows bigint, pending_since timestamp with time zone,
               inbox_entries bigint, inbox_since timestamp with time zone)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT (SELECT pg_catalog.count(*) FROM public.rollup_pending),
           (SELECT pg_catalog.min(p.loaded_at) FROM public.rollup_pending p WHERE p.sign = 1),
           (SELECT pg_catalog.count(*) FROM public.vault_inbox),
           (SELECT pg_catalog.min(i.created_at) FROM public.vault_inbox i)
$function$;
