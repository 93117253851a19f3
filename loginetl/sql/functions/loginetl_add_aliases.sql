-- keys rederive (loginetl_rederiver): write old-token -> new-token aliases under a
-- committed rederive audit row. Every alias must be a token of the audited key, for a
-- vault token of another key, so analysts never join two different values.
CREATE OR REPLACE FUNCTION public.loginetl_add_aliases(p_seq bigint, p_tokens text[], p_aliases text[], p_fields text[])
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r public.unmask_audit;
    v_key_id text;
    v_given integer := coalesce(pg_catalog.cardinality(p_tokens), 0);
    v_valid integer;
    v_added integer;
BEGIN
    IF v_given > 10000 OR v_given <> coalesce(pg_catalog.cardinality(p_aliases), 0)
       OR v_given <> coalesce(pg_catalog.cardinality(p_fields), 0) THEN
        RAISE EXCEPTION 'up to 10000 aliases a call, three arrays of one length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := public.loginetl_committed_audit_row(p_seq, 'rederive', interval '12 hours');
    v_key_id := pg_catalog.substring(r.token, '^rederive->(k[0-9]{1,6}):[0-9a-f]{16}$');
    -- Every alias must be a token of the audited key, for a vault token of another key.
    SELECT pg_catalog.count(*) INTO v_valid
      FROM ROWS FROM (pg_catalog.unnest(p_tokens), pg_catalog.unnest(p_aliases),
                    pg_catalog.unnest(p_fields)) AS u(t, a, f)
      JOIN public.pii_vault v ON v.token = u.t AND v.pii_field = u.f
     WHERE u.a ~ '^k[0-9]{1,6}:[0-9a-f]{64}$' AND pg_catalog.starts_with(u.a, v_key_id || ':')
       AND NOT pg_catalog.starts_with(u.t, v_key_id || ':');
    IF v_valid <> v_given THEN
        RAISE EXCEPTION '% of % aliases are not tokens of %, the key audited in row %',
            v_given - v_valid, v_given, v_key_id, p_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO public.token_aliases (token, alias, pii_field)
    SELECT u.t, u.a, u.f FROM ROWS FROM (pg_catalog.unnest(p_tokens), pg_catalog.unnest(p_aliases),
                    pg_catalog.unnest(p_fields)) AS u(t, a, f)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END $function$
;
