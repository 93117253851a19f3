"""``unmask``: recover plaintext for tokens, audited before anything is revealed.

PostgreSQL enforces the order: the unmasker role cannot read the vault, only ask
``loginetl_unmask_request`` to audit a request (a row that depends on nothing but the
token and the operator) and then, once that row is committed and on disk, ask
``loginetl_vault_open`` what the vault holds for it: the ciphertext, or that the token
is erased or unknown, recorded as the database's outcome row. In that same transaction
loginetl decrypts, checks that the value hashes to the token (a planted vault entry is
refused), records what it did, commits (synchronously), and only then returns the
plaintext. Each row loginetl writes carries its signed head, in the same transaction. If
any audit write fails, nothing is revealed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine

from loginetl.actions.audited import AuditSession
from loginetl.config import Settings
from loginetl.core import unmask_policy as policy
from loginetl.core.masking import Masker, token_key_id
from loginetl.core.vault_crypto import SealedVaultEntry, VaultOpener
from loginetl.errors import ConfigError, KeyMaterialError, LoginetlError, Refused
from loginetl.services import audit, db, keys, migrations, vault

# The definer functions (loginetl/sql/functions) that unmask calls.
REQUEST_FN = "loginetl_unmask_request(text, text, text, text)"
APPEND_FN = "loginetl_audit_append(text, text, text, text, text, text)"
OPEN_FN = "loginetl_vault_open(bigint)"


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


def _record(
    session: AuditSession, conn: Connection, token: str, outcome: str, field_: str | None = None
) -> audit.Appended:
    """Record an outcome loginetl determined itself, signed, in ``conn``'s transaction."""
    row = audit.record(
        conn, token=token[:200], pii_field=field_, outcome=outcome, operator=session.operator
    )
    session.sign(conn, row)
    return row


def _refuse(session: AuditSession, tokens: list[str], outcome: str) -> None:
    """Record (and commit) a refusal for each token before the command says why."""
    for token in tokens:
        with session.transaction("audit the refusal") as conn:
            _record(session, conn, token, outcome)


def check_reason(reason: str) -> None:
    """The bar every audited action sets: a reason an auditor can find the case by."""
    problem = policy.reason_problem(reason)
    if problem:
        raise ConfigError(f"--reason: {problem}")


def unmask(
    settings: Settings,
    tokens: list[str],
    *,
    reason: str,
    private_key_path: Path | None = None,
    max_tokens: int = 1,
) -> list[UnmaskResult]:
    """Audit, then recover, each token. Raises before revealing anything on a refusal."""
    check_reason(reason)
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


def load_signer(keys_dir: Path) -> tuple[Ed25519PrivateKey | None, KeyMaterialError | None]:
    """The audit-signing key, or the reason it cannot be used (a refusal, audited later)."""
    try:
        return keys.load_audit_signer(keys_dir), None
    except KeyMaterialError as error:
        return None, error


def hmac_keys(keys_dir: Path) -> dict[str, Masker] | None:
    """Every HMAC key, to check values against tokens; None if this host has no key file."""
    if not (keys_dir / keys.HMAC_FILE).exists():
        return None
    return keys.load_maskers(keys_dir)


def value_problem(
    maskers: dict[str, Masker] | None, entry: SealedVaultEntry, value: str
) -> str | None:
    """Why a decrypted value must not be shown, or None: it must hash to its token.

    Fails closed: without the HMAC key file, or without the token's key id in it, the
    value cannot be checked, so it is refused as unverifiable (a planted entry would
    otherwise be revealed).
    """
    if maskers is None:
        return policy.REFUSED_UNVERIFIABLE
    masker = maskers.get(token_key_id(entry.token) or "")
    if masker is None:
        return policy.REFUSED_UNVERIFIABLE
    if hmac.compare_digest(masker.token(entry.pii_field, value), entry.token):
        return None
    return policy.REFUSED_TOKEN_MISMATCH


def _unmask(
    engine: Engine,
    settings: Settings,
    tokens: list[str],
    reason: str,
    private_key_path: Path | None,
) -> list[UnmaskResult]:
    signer, signer_error = load_signer(settings.keys_dir)
    session = AuditSession.start(engine, reason, signer)
    with db.translate_errors(engine, "unmask"), engine.connect() as conn:
        role = audit.current_role(conn)
        can_audit = audit.may_call(conn, APPEND_FN)
        can_read = audit.may_call(conn, REQUEST_FN) and audit.may_call(conn, OPEN_FN)
    if not can_audit:
        raise Refused(
            f"database role {role!r} may not write the unmask audit log, so it may not unmask; "
            "ask for membership of loginetl_unmasker"
        )
    return _unmask_audited(
        engine, settings, session, tokens, private_key_path, can_read, role, signer_error
    )


def _unmask_audited(
    engine: Engine,
    settings: Settings,
    session: AuditSession,
    tokens: list[str],
    private_key_path: Path | None,
    can_read: bool,
    role: str,
    signer_error: KeyMaterialError | None,
) -> list[UnmaskResult]:
    if not can_read:
        _refuse(session, tokens, policy.REFUSED_NO_VAULT_GRANT)
        raise Refused(
            f"database role {role!r} may not read the vault (the refusal was audited); "
            "ask for membership of loginetl_unmasker"
        )
    try:
        opener = VaultOpener(
            keys.load_private_key(private_key_path or settings.keys_dir / keys.PRIVATE_FILE)
        )
    except KeyMaterialError:
        _refuse(session, tokens, policy.REFUSED_NO_PRIVATE_KEY)
        raise
    if signer_error is not None:
        _refuse(session, tokens, policy.REFUSED_NO_SIGNING_KEY)
        raise signer_error
    maskers = hmac_keys(settings.keys_dir)
    return [_one(session, opener, maskers, token) for token in tokens]


def _one(
    session: AuditSession,
    opener: VaultOpener,
    maskers: dict[str, Masker] | None,
    token: str,
) -> UnmaskResult:
    # Committed (and on disk) before the database tells anything about the token.
    with session.transaction("audit the unmask request") as conn:
        request = audit.request_unmask(conn, token=token[:200], operator=session.operator)
        session.sign(conn, request)
    # One transaction: the database's outcome row, then loginetl's, each signed; the
    # plaintext leaves this function only after its COMMIT.
    with session.transaction("open the vault") as conn:
        opened = vault.open_requested(conn, request.seq)
        session.sign(conn, opened.audit)
        result = _judge(conn, session, opener, maskers, token, opened)
    return result


def _judge(
    conn: Connection,
    session: AuditSession,
    opener: VaultOpener,
    maskers: dict[str, Masker] | None,
    token: str,
    opened: vault.Opened,
) -> UnmaskResult:
    """Decrypt and check what the vault released, and record the outcome in ``conn``."""
    sealed, field_ = opened.entry, opened.audit.pii_field
    if opened.outcome != policy.RELEASED:
        return UnmaskResult(token, opened.outcome, opened.audit.seq, opened.audit.row_hash)
    plaintext = None
    if sealed is not None:
        try:
            plaintext = opener.open(sealed)
        except (InvalidTag, ValueError):
            plaintext = None
    if sealed is None or plaintext is None:
        row = _record(session, conn, token, policy.DECRYPT_FAILED, field_)
        return UnmaskResult(token, policy.DECRYPT_FAILED, row.seq, row.row_hash, field_)
    problem = value_problem(maskers, sealed, plaintext)
    if problem is not None:
        row = _record(session, conn, token, problem, sealed.pii_field)
        return UnmaskResult(token, problem, row.seq, row.row_hash, sealed.pii_field)
    row = _record(session, conn, token, policy.REVEALED, sealed.pii_field)
    return UnmaskResult(token, policy.REVEALED, row.seq, row.row_hash, sealed.pii_field, plaintext)
