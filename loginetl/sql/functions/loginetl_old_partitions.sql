-- Internal: the monthly partitions of user_logins that end on or before p_cutoff (and
-- before this month).
CREATE OR REPLACE FUNCTION public.loginetl_old_partitions(p_cutoff date)
 RETURNS TABLE(partition text, month date, upper_bound date)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT p.relname::text, p.lo, p.hi FROM (
        SELECT c.relname,
               pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                    'FROM \(''([0-9-]+)''\)')::date AS lo,
               pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                    'TO \(''([0-9-]+)''\)')::date AS hi
        FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.user_logins'::regclass
          AND c.relnamespace = 'public'::regnamespace  -- the drop names public.<partition>
          AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT') p
    WHERE p.hi <= p_cutoff
      AND p.hi <= pg_catalog.date_trunc('month', pg_catalog.now())::date
    ORDER BY p.lo
$function$
;
