-- Trigger on unmask_audit and audit_heads: UPDATE, DELETE and TRUNCATE are refused,
-- even for the owner (who could disable the trigger: `loginetl audit verify` detects that).
CREATE OR REPLACE FUNCTION public.unmask_audit_append_only()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $function$
;
