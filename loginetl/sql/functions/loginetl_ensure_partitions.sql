-- consume (loginetl_writer): make the monthly partitions of user_logins ahead of time
-- (only the owner may). Rows already in the default partition for a month it creates
-- move in with it. One creator at a time.
CREATE OR REPLACE FUNCTION public.loginetl_ensure_partitions(first_month date, months integer)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    lo date;
    hi date;
    name text;
    made integer := 0;
BEGIN
    IF months IS NULL OR months < 1 OR months > 120 THEN
        RAISE EXCEPTION 'months must be between 1 and 120';
    END IF;
    IF first_month IS NULL
       OR first_month < (CURRENT_DATE - 3660)
       OR first_month > (CURRENT_DATE + 400) THEN
        RAISE EXCEPTION 'first_month must be within ten years back and a year ahead';
    END IF;
    -- One creator at a time: two consumers starting together must not race.
    PERFORM public.loginetl_take_turn('partitions', true);
    FOR i IN 0 .. months - 1 LOOP
        lo := (pg_catalog.date_trunc('month', first_month::timestamp)
               + pg_catalog.make_interval(months => i))::date;
        hi := (lo + interval '1 month')::date;
        name := 'user_logins_' || pg_catalog.to_char(lo, 'YYYY_MM');
        CONTINUE WHEN pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(name)) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM public.user_logins_default d
                   WHERE d.create_date >= lo AND d.create_date < hi) THEN
            -- Rows for this month are in the default partition: move them in with it.
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I (LIKE public.user_logins INCLUDING DEFAULTS)', name);
            EXECUTE pg_catalog.format(
                'WITH moved AS (DELETE FROM public.user_logins_default WHERE create_date >= %L '
                'AND create_date < %L RETURNING *) INSERT INTO public.%I SELECT * FROM moved',
                lo, hi, name);
            EXECUTE pg_catalog.format(
                'ALTER TABLE public.user_logins ATTACH PARTITION public.%I '
                'FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        ELSE
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I PARTITION OF public.user_logins '
                'FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        END IF;
        made := made + 1;
    END LOOP;
    RETURN made;
END $function$
;
