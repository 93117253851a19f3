-- Who can do what: every privilege any loginetl role holds in this database, and nothing
-- else. It starts from nothing, so running it again (a later migration does, after
-- changing a function) converges. docs/security.md explains each line.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, loginetl_writer, loginetl_analyst,
    loginetl_unmasker, loginetl_rederiver, loginetl_eraser, loginetl_maintainer;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, loginetl_writer, loginetl_analyst,
    loginetl_unmasker, loginetl_rederiver, loginetl_eraser, loginetl_maintainer;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC, loginetl_writer, loginetl_analyst,
    loginetl_unmasker, loginetl_rederiver, loginetl_eraser, loginetl_maintainer;

-- Everyone: the schema, and the two tables that say which revision it is.
GRANT USAGE ON SCHEMA public TO loginetl_writer, loginetl_analyst, loginetl_unmasker,
    loginetl_rederiver, loginetl_eraser, loginetl_maintainer;
GRANT SELECT ON public.alembic_version, public.loginetl_schema_compat TO loginetl_writer,
    loginetl_analyst, loginetl_unmasker, loginetl_rederiver, loginetl_eraser,
    loginetl_maintainer;

-- consume: no table at all. It stages a batch and appends it, keeps partitions ahead and
-- reads the vault epoch, each through a definer function that returns a count or a
-- number, none of which depends on what PII-derived content is stored. It cannot fold or
-- settle: those read and upsert tokens.
GRANT EXECUTE ON FUNCTION public.loginetl_prepare_staging(), public.loginetl_move_staged(),
    public.loginetl_ensure_partitions(date, integer), public.loginetl_vault_epoch()
    TO loginetl_writer;

-- Analysts: the masked data, the rollups and the aliases; nothing of the vault, the
-- audit log or the lifecycle tables.
GRANT SELECT ON public.user_logins, public.token_users, public.token_stats, public.user_stats,
    public.rollup_pending, public.rollup_totals, public.rollup_breakdown,
    public.rollup_months, public.rollup_hourly, public.token_aliases TO loginetl_analyst;

-- Folding and settling: by roles that may already know what the work reveals (which
-- tokens are stored, which are shared): the analyst (stats folds before it reads) and
-- the maintainer (the fold worker, retention).
GRANT EXECUTE ON FUNCTION public.loginetl_fold_rollups(integer, boolean),
    public.loginetl_settle_vault(integer, boolean), public.loginetl_backlog()
    TO loginetl_analyst, loginetl_maintainer;

-- Privacy staff and jobs: each reads the audit log, appends signed heads beside its own
-- rows, and acts only through its functions, each behind a committed audit row.
GRANT SELECT ON public.unmask_audit TO loginetl_unmasker, loginetl_rederiver,
    loginetl_eraser, loginetl_maintainer;
GRANT SELECT, INSERT ON public.audit_heads TO loginetl_unmasker, loginetl_rederiver,
    loginetl_eraser, loginetl_maintainer;
GRANT SELECT ON public.token_aliases TO loginetl_unmasker, loginetl_rederiver;

GRANT EXECUTE ON FUNCTION public.loginetl_unmask_request(text, text, text, text),
    public.loginetl_vault_open(bigint),
    public.loginetl_audit_append(text, text, text, text, text, text) TO loginetl_unmasker;

GRANT EXECUTE ON FUNCTION public.loginetl_rederive_request(text, text, text, text, text),
    public.loginetl_rederive_page(bigint, text, integer),
    public.loginetl_add_aliases(bigint, text[], text[], text[]) TO loginetl_rederiver;
-- It pages out every older-key entry, so it may settle the inbox first: it learns nothing
-- it is not about to read.
GRANT EXECUTE ON FUNCTION public.loginetl_settle_vault(integer, boolean) TO loginetl_rederiver;

GRANT EXECUTE ON FUNCTION public.loginetl_forget_preview(text),
    public.loginetl_forget_request(text, text, text, text),
    public.loginetl_forget(bigint, text) TO loginetl_eraser;

GRANT EXECUTE ON FUNCTION public.loginetl_retention_plan(integer),
    public.loginetl_retention_request(integer, text, text, text),
    public.loginetl_retention_drop(bigint, text, boolean),
    public.loginetl_retention_trim_default(bigint, integer),
    public.loginetl_retention_purge(bigint, integer) TO loginetl_maintainer;
