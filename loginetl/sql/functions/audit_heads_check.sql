-- Trigger on audit_heads: a signed head must name an existing audit row with that
-- hash; the server stamps who signed it and when.
CREATE OR REPLACE FUNCTION public.audit_heads_check()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.unmask_audit a
                   WHERE a.seq = NEW.seq AND a.row_hash = NEW.row_hash) THEN
        RAISE EXCEPTION 'no audit row % with that hash', NEW.seq
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    NEW.signed_at := pg_catalog.clock_timestamp();
    NEW.signed_by := session_user;
    RETURN NEW;
END $function$
;
