-- The privacy lifecycle: erasure on request (forget) and retention by policy.
--
-- Removed rows make their tokens purge candidates; a candidate loses its vault entry
-- (and is tombstoned in erased_tokens, so unmask says "erased") once no row of
-- user_logins holds its token (loginetl_purge_candidates).
CREATE TABLE public.erased_tokens (
    token      varchar(80) PRIMARY KEY,
    pii_field  varchar(16) NOT NULL,
    erased_at  timestamptz NOT NULL DEFAULT now(),
    audit_seq  bigint      NOT NULL
);
COMMENT ON TABLE public.erased_tokens IS
    'tokens whose vault entry forget or retention purged (no value): unmask says erased';

CREATE TABLE public.vault_purge_candidates (
    pii_field varchar(16) NOT NULL,
    token     varchar(80) NOT NULL,
    PRIMARY KEY (pii_field, token)
);
COMMENT ON TABLE public.vault_purge_candidates IS
    'tokens of removed rows, purged from the vault once no row references them';

-- The key of the user reference forget writes to the audit log (loginetl_user_ref):
-- readable by the owner only, so an auditor with the owner's help can answer "was user
-- X erased", and nobody can read a user id out of the log.
CREATE TABLE public.erasure_secret (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret   bytea   NOT NULL
);
COMMENT ON TABLE public.erasure_secret IS
    'keys the user reference forget writes to the audit log (owner only)';
INSERT INTO public.erasure_secret (secret)
    SELECT pg_catalog.sha256(pg_catalog.convert_to(
        gen_random_uuid()::text || gen_random_uuid()::text || pg_catalog.clock_timestamp()::text,
        'UTF8'));

-- Advanced by every purge of vault entries. Sequences are not transactional: every
-- session sees a new value at once, whatever its snapshot, so a consumer's token cache
-- cannot outlive a purge (loginetl_move_staged refuses a stale epoch).
CREATE SEQUENCE public.vault_epoch AS bigint MINVALUE 1 NO CYCLE;
SELECT pg_catalog.setval('public.vault_epoch', 1, true);
COMMENT ON SEQUENCE public.vault_epoch IS
    'advanced by every purge of vault entries; consumers refill their token cache';
