-- Where the writer appends the sealed vault entries of each batch, every one of them,
-- whether its token is stored already or not: no index, no conflict check, nothing read
-- back, so what the writer's transaction does never depends on what the vault holds.
-- loginetl_settle_vault() moves them into pii_vault (first entry of a token wins) under
-- roles that may already know which tokens are stored (the fold worker, stats).
-- Owner only: it holds ciphertexts.
CREATE TABLE public.vault_inbox (
    token                varchar(80) NOT NULL,
    pii_field            varchar(16) NOT NULL,
    recipient            varchar(32) NOT NULL,
    ephemeral_public_key bytea       NOT NULL,
    nonce                bytea       NOT NULL,
    ciphertext           bytea       NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.vault_inbox IS
    'sealed vault entries appended by loads, not yet settled into pii_vault';
