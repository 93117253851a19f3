"""``keys rederive``: map every old-key token to its new-key token after a rotation.

After ``keys rotate`` the same value has a k1 token in old rows and a k2 token in new
ones. This job, run by privacy staff, opens each vault entry of another key id, computes
the value's token under the target key, and records the pair in ``token_aliases`` for
analysts to join on. It is one audited operation, recorded before anything is decrypted;
no plaintext leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from sqlalchemy import Engine

from loginetl.actions.unmask import AuditSession
from loginetl.config import Settings
from loginetl.core import unmask_policy as policy
from loginetl.core.masking import Masker
from loginetl.core.vault_crypto import VaultOpener
from loginetl.errors import ConfigError, Refused
from loginetl.services import audit, db, keys, migrations, vault

_CHUNK = 1000


@dataclass(frozen=True)
class RederiveResult:
    """What the job did."""

    target_key_id: str
    examined: int
    aliased: int
    undecryptable: int
    audit_seq: int


def rederive(
    settings: Settings,
    *,
    reason: str,
    to_key_id: str | None = None,
    private_key_path: Path | None = None,
) -> RederiveResult:
    """Record an alias under ``to_key_id`` (default: the current key) for every older token."""
    problem = policy.reason_problem(reason)
    if problem:
        raise ConfigError(f"--reason: {problem}")
    maskers = keys.load_maskers(settings.keys_dir)
    target = maskers.get(to_key_id or keys.load_masker(settings.keys_dir).key_id)
    if target is None:
        raise ConfigError(f"--to {to_key_id}: no such key in {settings.keys_dir / keys.HMAC_FILE}")
    opener = VaultOpener(
        keys.load_private_key(private_key_path or settings.keys_dir / keys.PRIVATE_FILE)
    )
    with db.engine_for(settings.database_url, pool_size=2) as engine:
        migrations.require_head(engine)
        return _rederive(engine, target, opener, reason)


def _rederive(engine: Engine, target: Masker, opener: VaultOpener, reason: str) -> RederiveResult:
    with db.translate_errors(engine, "re-derive tokens"), engine.connect() as conn:
        allowed = all(
            audit.may(conn, table, privilege)
            for table, privilege in (
                ("pii_vault", "SELECT"),
                ("token_aliases", "INSERT"),
                ("unmask_audit", "INSERT"),
            )
        )
        role = audit.current_role(conn)
    if not allowed:
        raise Refused(
            f"database role {role!r} may not re-derive tokens; it needs loginetl_unmasker"
        )
    # Audited once, before anything is decrypted; AuditUnavailable stops it otherwise.
    seq, _ = AuditSession(engine, reason).audit(f"rederive->{target.key_id}", policy.REDERIVE)
    examined = aliased = undecryptable = 0
    with engine.connect() as reader:
        chunk: list[tuple[str, str, str]] = []
        for entry in vault.entries_not_of(reader, target.key_id):
            examined += 1
            try:
                value = opener.open(entry)
            except (InvalidTag, ValueError):
                undecryptable += 1
                continue
            chunk.append((entry.token, target.token(entry.pii_field, value), entry.pii_field))
            if len(chunk) >= _CHUNK:
                aliased += _flush(engine, chunk)
        aliased += _flush(engine, chunk)
    return RederiveResult(target.key_id, examined, aliased, undecryptable, seq)


def _flush(engine: Engine, chunk: list[tuple[str, str, str]]) -> int:
    with engine.begin() as conn:
        vault.add_aliases(conn, chunk)
    count = len(chunk)
    chunk.clear()
    return count
