"""``unmask``: recover plaintext for tokens, audited before anything is revealed.

Three things must all hold: the database role may read the vault and append to the
audit log; the caller holds the vault's private key; and a real reason is given. Every
attempt that reaches the database is audited, refusals included, and each audit row is
committed before the command returns any plaintext. If the audit write fails, nothing
is revealed.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from loginetl.config import Settings
from loginetl.core import unmask_policy as policy
from loginetl.core.masking import token_key_id
from loginetl.core.vault_crypto import VaultOpener
from loginetl.errors import ConfigError, KeyMaterialError, LoginetlError, Refused
from loginetl.services import audit, db, keys, migrations, vault


class AuditUnavailable(LoginetlError):
    """The audit row could not be written, so nothing was revealed."""

    exit_code = 5


class TokenNotRecovered(LoginetlError):
    """At least one token was malformed, unknown, or would not decrypt."""

    exit_code = 4


@dataclass(frozen=True)
class UnmaskResult:
    """One token's outcome; ``plaintext`` only when the outcome is ``revealed``."""

    token: str
    outcome: str
    audit_seq: int
    audit_hash: str
    pii_field: str | None = None
    plaintext: str | None = field(default=None, repr=False)


def operator_identity() -> tuple[str | None, str | None]:
    """The OS user and host name, recorded in every audit row."""
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return user, socket.gethostname()


class AuditSession:
    """Writes the audit rows of one run; a failed write raises AuditUnavailable."""

    def __init__(self, engine: Engine, reason: str) -> None:
        self.engine, self.reason = engine, reason
        self.os_user, self.host = operator_identity()

    def audit(self, token: str, outcome: str, pii_field: str | None = None) -> tuple[int, str]:
        try:
            with self.engine.begin() as conn:
                row = audit.record(
                    conn,
                    token=token,
                    pii_field=pii_field,
                    reason=self.reason,
                    outcome=outcome,
                    os_user=self.os_user,
                    client_host=self.host,
                )
        except DBAPIError as error:
            raise AuditUnavailable(
                f"the audit log could not be written ({db.describe(error)}); nothing was revealed"
            ) from None
        return row.seq, row.row_hash


def unmask(
    settings: Settings,
    tokens: list[str],
    *,
    reason: str,
    private_key_path: Path | None = None,
    max_tokens: int = 1,
) -> list[UnmaskResult]:
    """Audit, then recover, each token. Raises before revealing anything on a refusal."""
    problem = policy.reason_problem(reason)
    if problem:
        raise ConfigError(f"--reason: {problem}")
    if not tokens:
        raise ConfigError("no token given")
    if len(tokens) > max_tokens:
        raise ConfigError(
            f"{len(tokens)} tokens is more than --max {max_tokens}; raise --max explicitly "
            "if this investigation really needs them all"
        )
    with db.engine_for(settings.database_url) as engine:
        migrations.require_head(engine)
        return _unmask(engine, settings, tokens, reason, private_key_path)


def _unmask(
    engine: Engine,
    settings: Settings,
    tokens: list[str],
    reason: str,
    private_key_path: Path | None,
) -> list[UnmaskResult]:
    session = AuditSession(engine, reason)
    with db.translate_errors(engine, "unmask"), engine.connect() as conn:
        role = audit.current_role(conn)
        can_audit = audit.may(conn, "unmask_audit", "INSERT")
        can_read = audit.may(conn, "pii_vault", "SELECT")
    if not can_audit:
        raise Refused(
            f"database role {role!r} may not write the unmask audit log, so it may not unmask; "
            "ask for membership of loginetl_unmasker"
        )
    if not can_read:
        for token in tokens:
            session.audit(token, policy.REFUSED_NO_VAULT_GRANT)
        raise Refused(
            f"database role {role!r} may not read the vault (the refusal was audited); "
            "ask for membership of loginetl_unmasker"
        )
    try:
        opener = VaultOpener(
            keys.load_private_key(private_key_path or settings.keys_dir / keys.PRIVATE_FILE)
        )
    except KeyMaterialError:
        for token in tokens:
            session.audit(token, policy.REFUSED_NO_PRIVATE_KEY)
        raise
    return [_one(engine, session, opener, token) for token in tokens]


def _one(engine: Engine, session: AuditSession, opener: VaultOpener, token: str) -> UnmaskResult:
    key_id = token_key_id(token)
    if key_id is None:
        seq, digest = session.audit(token[:200], policy.MALFORMED_TOKEN)
        return UnmaskResult(token, policy.MALFORMED_TOKEN, seq, digest)
    with engine.connect() as conn:
        sealed = vault.fetch(conn, token)
        if sealed is None:
            known = vault.key_id_in_use(conn, key_id)
    if sealed is None:
        outcome = policy.UNKNOWN_TOKEN if known else policy.UNKNOWN_KEY_ID
        seq, digest = session.audit(token, outcome)
        return UnmaskResult(token, outcome, seq, digest)
    try:
        plaintext = opener.open(sealed)
    except (InvalidTag, ValueError):
        seq, digest = session.audit(token, policy.DECRYPT_FAILED, sealed.pii_field)
        return UnmaskResult(token, policy.DECRYPT_FAILED, seq, digest, sealed.pii_field)
    # Audit before reveal: the plaintext leaves this function only after this commit.
    seq, digest = session.audit(token, policy.REVEALED, sealed.pii_field)
    return UnmaskResult(token, policy.REVEALED, seq, digest, sealed.pii_field, plaintext)
