-- Internal (granted to nobody): take loginetl's turn named p_name (a row of
-- loginetl_locks, which no other role may touch) for the rest of the transaction.
-- Waits for it when p_wait; otherwise returns false at once when another holds it.
CREATE OR REPLACE FUNCTION public.loginetl_take_turn(p_name text, p_wait boolean)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF p_wait THEN
        PERFORM 1 FROM public.loginetl_locks l WHERE l.name = p_name FOR UPDATE;
    ELSE
        BEGIN
            PERFORM 1 FROM public.loginetl_locks l WHERE l.name = p_name FOR UPDATE NOWAIT;
        EXCEPTION WHEN lock_not_available THEN
            RETURN false;
        END;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no turn named %', p_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END $function$;
