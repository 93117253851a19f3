"""Read access to the PII vault (only the unmasker role has it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, func, select

from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.services import db
from loginetl.services.schema import pii_vault

# The columns of a SealedVaultEntry, in its field order.
_SEALED = (
    pii_vault.c.token,
    pii_vault.c.pii_field,
    pii_vault.c.recipient,
    pii_vault.c.ephemeral_public_key,
    pii_vault.c.nonce,
    pii_vault.c.ciphertext,
)


def fetch(conn: Connection, token: str) -> SealedVaultEntry | None:
    """The sealed entry for a token, or None."""
    row = conn.execute(select(*_SEALED).where(pii_vault.c.token == token)).one_or_none()
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


def entries_not_of(conn: Connection, key_id: str) -> Iterator[SealedVaultEntry]:
    """Stream every vault entry whose token is not of ``key_id`` (server-side cursor)."""
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(
        select(*_SEALED).where(~func.starts_with(pii_vault.c.token, f"{key_id}:"))
    )
    for row in result:
        yield SealedVaultEntry(*row)


def add_aliases(conn: Connection, aliases: Sequence[tuple[str, str, str]]) -> None:
    """Record (token, alias, pii_field) rows; an existing token keeps its alias."""
    db.insert_many(
        conn,
        "INSERT INTO token_aliases (token, alias, pii_field) VALUES %s ON CONFLICT DO NOTHING",
        aliases,
    )
