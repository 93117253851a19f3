"""Read access to the PII vault (only the unmasker role has it)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.services.schema import pii_vault


def fetch(conn: Connection, token: str) -> SealedVaultEntry | None:
    """The sealed entry for a token, or None."""
    row = conn.execute(
        select(
            pii_vault.c.token,
            pii_vault.c.pii_field,
            pii_vault.c.recipient,
            pii_vault.c.ephemeral_public_key,
            pii_vault.c.nonce,
            pii_vault.c.ciphertext,
        ).where(pii_vault.c.token == token)
    ).one_or_none()
    return None if row is None else SealedVaultEntry(*row)


def key_id_in_use(conn: Connection, key_id: str) -> bool:
    """Whether any token of this HMAC key id was ever stored.

    A scan, not an index range: under a non-C collation ':' may sort anywhere. Only the
    error path of unmask asks.
    """
    row = conn.execute(
        select(pii_vault.c.token).where(func.starts_with(pii_vault.c.token, f"{key_id}:")).limit(1)
    ).first()
    return row is not None
