-- consume (loginetl_writer): the vault epoch, which every purge advances. A consumer
-- reads it when it fills its token cache and claims it in each batch (see
-- loginetl_move_staged).
CREATE OR REPLACE FUNCTION public.loginetl_vault_epoch()
 RETURNS bigint
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT e.last_value FROM public.vault_epoch e
$function$
;
