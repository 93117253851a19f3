"""The PII vault, reached only through the definer functions in loginetl/sql/functions.

No role but the owner reads ``pii_vault``: what it holds for a token (the ciphertext, or
that it is erased or unknown) comes out only against a ``requested`` audit row the same
login role has already committed, and on disk; aliases go in only under a committed
``rederive`` row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.services.audit import Appended

PAGE = 1000  # vault entries a rederive page fetches; the function allows up to 10,000
_SEALED = "token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext"


def _entry(row: Sequence[object]) -> SealedVaultEntry:
    return SealedVaultEntry(*row)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Opened:
    """What the vault holds for a requested token, and the outcome row that records it."""

    outcome: str  # released, erased, unknown_token, unknown_key_id or malformed_token
    audit: Appended
    entry: SealedVaultEntry | None  # only when released


def open_requested(conn: Connection, audit_seq: int) -> Opened:
    """Open the token of a committed, durable ``requested`` audit row of this login role.

    The database appends the outcome row in ``conn``'s transaction (the caller signs its
    head and commits); a refusal (not committed, not one's own, too old) raises.
    """
    row = conn.execute(
        text(
            f"SELECT outcome, audit_seq, audit_hash, {_SEALED} "
            "FROM public.loginetl_vault_open(:seq)"
        ),
        {"seq": audit_seq},
    ).one()
    appended = Appended(row.audit_seq, row.audit_hash, row.outcome, row.pii_field)
    entry = _entry(tuple(row)[3:]) if row.ciphertext is not None else None
    return Opened(row.outcome, appended, entry)


def rederive_page(
    conn: Connection, audit_seq: int, *, after: str, limit: int = PAGE
) -> list[SealedVaultEntry]:
    """The next ``limit`` entries (by token, after ``after``) not of the audited key."""
    rows = conn.execute(
        text(f"SELECT {_SEALED} FROM public.loginetl_rederive_page(:seq, :after, :limit)"),
        {"seq": audit_seq, "after": after, "limit": limit},
    )
    return [_entry(r) for r in rows]


_EXISTING = text(
    "SELECT token, alias FROM public.token_aliases WHERE token = ANY (:tokens)"
).bindparams(bindparam("tokens", type_=ARRAY(Text)))


def existing_aliases(conn: Connection, tokens: Sequence[str]) -> dict[str, str]:
    """The aliases token_aliases already holds for ``tokens`` (token -> alias)."""
    if not tokens:
        return {}
    return {str(t): str(a) for t, a in conn.execute(_EXISTING, {"tokens": list(tokens)})}


_ADD_ALIASES = text(
    "SELECT public.loginetl_add_aliases(:seq, :tokens, :aliases, :fields)"
).bindparams(
    bindparam("tokens", type_=ARRAY(Text)),
    bindparam("aliases", type_=ARRAY(Text)),
    bindparam("fields", type_=ARRAY(Text)),
)


def add_aliases(conn: Connection, audit_seq: int, aliases: Sequence[tuple[str, str, str]]) -> int:
    """Record (token, alias, pii_field) rows under a committed rederive row; return how many.

    The database refuses the whole call if any alias is not a token of the audited key.
    """
    if not aliases:
        return 0
    tokens, new, fields = (list(column) for column in zip(*aliases, strict=True))
    return int(
        conn.execute(
            _ADD_ALIASES, {"seq": audit_seq, "tokens": tokens, "aliases": new, "fields": fields}
        ).scalar_one()
    )
