-- Every rollup rebuilt from user_logins, exact whatever was pending: how the bench gives a
-- bulk-seeded database the rollups its loads would have folded. Hours and months in UTC,
-- as the fold buckets them (the caller sets TimeZone).
TRUNCATE public.rollup_pending, public.token_users, public.token_stats, public.user_stats,
         public.rollup_totals, public.rollup_breakdown, public.rollup_months,
         public.rollup_hourly;
INSERT INTO public.token_users (pii_field, token, user_id, logins)
    SELECT 'ip', masked_ip, user_id, count(*) FROM public.user_logins GROUP BY 2, 3
    UNION ALL
    SELECT 'device_id', masked_device_id, user_id, count(*) FROM public.user_logins GROUP BY 2, 3;
INSERT INTO public.token_stats (pii_field, token, users, logins)
    SELECT pii_field, token, count(*), sum(logins) FROM public.token_users GROUP BY 1, 2;
INSERT INTO public.user_stats (user_id, logins)
    SELECT user_id, count(*) FROM public.user_logins GROUP BY 1;
INSERT INTO public.rollup_totals (metric, value)
    SELECT 'users', count(*) FROM public.user_stats
    UNION ALL SELECT 'ip_tokens', count(*) FROM public.token_stats WHERE pii_field = 'ip'
    UNION ALL SELECT 'device_tokens', count(*) FROM public.token_stats
              WHERE pii_field = 'device_id';
INSERT INTO public.rollup_breakdown (dimension, value, logins)
    SELECT 'device_type', device_type, count(*) FROM public.user_logins GROUP BY 2
    UNION ALL SELECT 'locale', locale, count(*) FROM public.user_logins GROUP BY 2
    UNION ALL SELECT 'app_version', app_version_raw, count(*) FROM public.user_logins GROUP BY 2;
INSERT INTO public.rollup_months (month, logins)
    SELECT date_trunc('month', create_date)::date, count(*) FROM public.user_logins GROUP BY 1;
INSERT INTO public.rollup_hourly (loaded_hour, logins)
    SELECT date_trunc('hour', loaded_at), count(*) FROM public.user_logins GROUP BY 1;
