-- Internal (granted to nobody): the bounds of the text every audited request records as
-- its caller chose it: a reason of 1 to 1,000 characters, an OS user and a host of at most
-- 256. Raises invalid_parameter_value otherwise.
CREATE OR REPLACE FUNCTION public.loginetl_check_audit_text(p_reason text, p_os_user text, p_client_host text)
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF p_reason IS NULL OR pg_catalog.length(p_reason) NOT BETWEEN 1 AND 1000
       OR pg_catalog.length(coalesce(p_os_user, '')) > 256
       OR pg_catalog.length(coalesce(p_client_host, '')) > 256 THEN
        RAISE EXCEPTION 'reason (1-1000 chars), os user and host (256) out of bounds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $function$;
