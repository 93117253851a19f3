-- What a database at pre-release revision 0016 lacks of the 1.0 tables, besides the two
-- new tables (tables/vault_inbox.sql and tables/locks.sql run first). `migrate upgrade`
-- runs it once, then functions/, triggers.sql and grants.sql, and stamps 1.0.
CREATE INDEX user_logins_user_id_idx ON public.user_logins (user_id);
ALTER TABLE ONLY public.user_logins ALTER COLUMN user_id SET STATISTICS 0,
    ALTER COLUMN masked_ip SET STATISTICS 0, ALTER COLUMN masked_device_id SET STATISTICS 0;
ALTER TABLE public.token_users ALTER COLUMN token SET STATISTICS 0,
    ALTER COLUMN user_id SET STATISTICS 0;
ALTER TABLE public.token_stats ALTER COLUMN token SET STATISTICS 0;
ALTER TABLE public.user_stats ALTER COLUMN user_id SET STATISTICS 0;
ALTER TABLE public.rollup_pending ALTER COLUMN user_id SET STATISTICS 0,
    ALTER COLUMN masked_ip SET STATISTICS 0, ALTER COLUMN masked_device_id SET STATISTICS 0;
ALTER TABLE public.token_aliases ALTER COLUMN token SET STATISTICS 0,
    ALTER COLUMN alias SET STATISTICS 0;
-- SET STATISTICS 0 keeps what an earlier ANALYZE stored; a change of a column's type, even
-- to the same type (no rewrite of the table or its indexes), drops it.
ALTER TABLE public.user_logins ALTER COLUMN user_id TYPE varchar(128),
    ALTER COLUMN masked_ip TYPE varchar(80), ALTER COLUMN masked_device_id TYPE varchar(80);
ALTER TABLE public.token_users ALTER COLUMN token TYPE varchar(80),
    ALTER COLUMN user_id TYPE varchar(128);
ALTER TABLE public.token_stats ALTER COLUMN token TYPE varchar(80);
ALTER TABLE public.user_stats ALTER COLUMN user_id TYPE varchar(128);
ALTER TABLE public.rollup_pending ALTER COLUMN user_id TYPE varchar(128),
    ALTER COLUMN masked_ip TYPE varchar(80), ALTER COLUMN masked_device_id TYPE varchar(80);
ALTER TABLE public.token_aliases ALTER COLUMN token TYPE varchar(80),
    ALTER COLUMN alias TYPE varchar(80);
