"""``keys rederive``: map every old-key token to its new-key token after a rotation.

After ``keys rotate`` the same value has a k1 token in old rows and a k2 token in new
ones. This job, run by privacy staff, opens each vault entry of another key id, computes
the value's token under the deployed key, and records the pair in ``token_aliases`` for
analysts to join on. PostgreSQL enforces the audit: one committed ``rederive`` row,
naming the target key id and its fingerprint, must exist before the vault hands out a
page or takes an alias, and the database refuses any key but the one the consumers last
wrote with. A value that does not hash back to its old token (a planted entry) gets no
alias. An old token that already carries a different alias (written by someone who
could forge one) is left as it is and the job ends with AliasConflict naming how many.
No plaintext leaves the process.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from loginetl.actions.audited import AuditSession
from loginetl.actions.unmask import check_reason
from loginetl.config import Settings
from loginetl.core.masking import Masker, token_key_id
from loginetl.core.vault_crypto import SealedVaultEntry, VaultOpener
from loginetl.errors import AliasConflict, ConfigError, Refused
from loginetl.services import audit, db, keys, migrations, vault

# The definer functions (loginetl/sql/functions) that rederive calls.
_FUNCTIONS = (
    "loginetl_rederive_request(text, text, text, text, text)",
    "loginetl_rederive_page(bigint, text, integer)",
    "loginetl_add_aliases(bigint, text[], text[], text[])",
)


@dataclass(frozen=True)
class RederiveResult:
    """What the job did."""

    target_key_id: str
    examined: int
    aliased: int
    undecryptable: int
    audit_seq: int
    unverified: int = 0  # decrypted, but the value does not hash to its old token


def rederive(
    settings: Settings,
    *,
    reason: str,
    to_key_id: str | None = None,
    private_key_path: Path | None = None,
) -> RederiveResult:
    """Record an alias under the current key for every older token."""
    check_reason(reason)
    target = keys.load_masker(settings.keys_dir)
    if to_key_id not in (None, target.key_id):
        raise ConfigError(
            f"--to {to_key_id}: rederive maps only to the current key ({target.key_id}) of "
            f"{settings.keys_dir / keys.HMAC_FILE}, the one consume writes with"
        )
    maskers = keys.load_maskers(settings.keys_dir)
    opener = VaultOpener(
        keys.load_private_key(private_key_path or settings.keys_dir / keys.PRIVATE_FILE)
    )
    signer = keys.load_audit_signer(settings.keys_dir)
    with db.engine_for(settings.database_url, pool_size=2) as engine:
        migrations.require_head(engine)
        return _rederive(
            engine, AuditSession.start(engine, reason, signer), target, maskers, opener
        )


def _rederive(
    engine: Engine,
    session: AuditSession,
    target: Masker,
    maskers: dict[str, Masker],
    opener: VaultOpener,
) -> RederiveResult:
    audit.require_grant(engine, _FUNCTIONS, group="loginetl_rederiver", what="re-derive tokens")
    # Audited (and committed) once, before anything is decrypted.
    with session.transaction("audit the re-derivation") as conn:
        request = audit.request_rederive(
            conn, key_id=target.key_id, fingerprint=target.fingerprint, operator=session.operator
        )
        session.sign(conn, request)
    seq = request.seq
    db.settle_vault(engine, wait=True)  # what loads appended is paged out too
    examined = aliased = undecryptable = unverified = conflicting = 0
    after = ""
    while True:
        page = _page(engine, seq, after)
        if not page:
            break
        chunk: list[tuple[str, str, str]] = []
        for entry in page:
            examined += 1
            try:
                value = opener.open(entry)
            except (InvalidTag, ValueError):
                undecryptable += 1
                continue
            old = maskers.get(token_key_id(entry.token) or "")
            if old is None or not hmac.compare_digest(
                old.token(entry.pii_field, value), entry.token
            ):
                unverified += 1
                continue
            chunk.append((entry.token, target.token(entry.pii_field, value), entry.pii_field))
        with engine.begin() as conn:
            existing = vault.existing_aliases(conn, [token for token, _, _ in chunk])
            fresh = [c for c in chunk if existing.get(c[0], c[1]) == c[1]]
            conflicting += len(chunk) - len(fresh)
            aliased += vault.add_aliases(conn, seq, fresh)
        after = page[-1].token
    if conflicting:
        raise AliasConflict(
            f"{conflicting:,} older tokens already alias to a different {target.key_id} token "
            "than their vault values hash to (forged aliases?); they were left unchanged and "
            f"analysts joining on them join different values: audit row {seq}, "
            "have the database owner delete those rows from token_aliases and run rederive again"
        )
    return RederiveResult(target.key_id, examined, aliased, undecryptable, seq, unverified)


def _page(engine: Engine, seq: int, after: str) -> list[SealedVaultEntry]:
    """The next page; the database's refusal (e.g. a key not deployed yet) exits 3."""
    try:
        with engine.connect() as conn:
            return vault.rederive_page(conn, seq, after=after)
    except DBAPIError as error:
        if getattr(error.orig, "pgcode", None) == db.INSUFFICIENT_PRIVILEGE:
            raise Refused(
                f"the database refused under audit row {seq}: {db.describe(error)}"
            ) from None
        raise
