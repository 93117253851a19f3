-- The audit log of every unmask, rederive, forget and retention request, and what came
-- of it: append-only, hash-chained by the server (unmask_audit_chain), written only
-- through the definer functions. audit_heads holds Ed25519 signatures of chain heads,
-- made with a key only privacy staff hold, so an owner who rewrites and re-hashes the
-- chain is detected by `loginetl audit verify`.
CREATE TABLE public.unmask_audit (
    seq         bigint      PRIMARY KEY,
    at          timestamptz NOT NULL,
    db_role     text        NOT NULL,
    os_user     text,
    client_addr text,
    client_host text,
    token       text        NOT NULL,
    pii_field   text,
    reason      text        NOT NULL,
    outcome     text        NOT NULL,
    prev_hash   text        NOT NULL,
    row_hash    text        NOT NULL
);
CREATE INDEX unmask_audit_at_idx ON public.unmask_audit (at);

CREATE TABLE public.audit_heads (
    seq        bigint      NOT NULL,
    row_hash   text        NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL,
    signed_at  timestamptz NOT NULL,
    signed_by  text        NOT NULL,
    PRIMARY KEY (seq, key_id, signature)
);
COMMENT ON TABLE public.audit_heads IS
    'Ed25519 signatures of unmask_audit heads (seq, row_hash), by privacy staff''s key';
