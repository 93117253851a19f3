-- One row per distinct token: the plaintext sealed to the vault's public key. Nobody but
-- the owner reads it; the ciphertext leaves only through loginetl_vault_open() after a
-- committed audit row (grants.sql).
CREATE TABLE public.pii_vault (
    token                varchar(80) PRIMARY KEY,
    pii_field            varchar(16) NOT NULL CHECK (pii_field IN ('ip', 'device_id')),
    recipient            varchar(32) NOT NULL,
    ephemeral_public_key bytea       NOT NULL,
    nonce                bytea       NOT NULL,
    ciphertext           bytea       NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.pii_vault IS
    'PII sealed to the vault public key (X25519+HKDF+AES-GCM); token -> ciphertext';
