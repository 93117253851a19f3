-- Old-key token -> new-key token, so analysts can join across a key rotation. Written by
-- `loginetl keys rederive` through loginetl_add_aliases(), read by analysts.
CREATE TABLE public.token_aliases (
    token      varchar(80) PRIMARY KEY,
    alias      varchar(80) NOT NULL,
    pii_field  varchar(16) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_aliases_alias_idx ON public.token_aliases (alias);
-- No planner statistics of the tokens (see rollups.sql).
ALTER TABLE public.token_aliases ALTER COLUMN token SET STATISTICS 0,
    ALTER COLUMN alias SET STATISTICS 0;
