"""The unmask audit log's hash chain: canonical form, row hash, signed heads, verification.

Each row's hash covers its fields and the previous row's hash. The database trigger in
migration 0003 computes it; this module recomputes it independently, so an edit, a
deletion or a reordering made by someone who can bypass the trigger shows up as a row
whose hash or link does not match. An owner who re-hashes every later row too makes a
consistent chain; what gives that away is a head (seq, hash) signed earlier with the
audit-signing key, which the database owner does not hold (migration 0007).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRow:
    """One row of ``unmask_audit``."""

    seq: int
    at: datetime
    db_role: str
    os_user: str | None
    client_addr: str | None
    client_host: str | None
    token: str
    pii_field: str | None
    reason: str
    outcome: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class SignedHead:
    """One row of ``audit_heads``: a chain head and its Ed25519 signature."""

    seq: int
    row_hash: str
    key_id: str
    signature: bytes


@dataclass(frozen=True)
class ChainBreak:
    """One place where the log is not what was written."""

    seq: int
    problem: str


@dataclass(frozen=True)
class ChainReport:
    """The verdict of a verification: every break found, and how far signatures reach."""

    rows: int
    head_seq: int
    head_hash: str
    breaks: tuple[ChainBreak, ...] = ()
    signed_heads: int = 0  # heads that hold: verified, or vouched for by a newer one that is
    signed_through: int = 0  # the last row a valid signature covers; 0 if none
    signatures_checked: bool = True

    @property
    def intact(self) -> bool:
        return not self.breaks

    @property
    def problem(self) -> str | None:
        return self.breaks[0].problem if self.breaks else None

    @property
    def unsigned_rows(self) -> int:
        """Rows after the last signed head: nothing but the chain vouches for them yet."""
        return max(0, self.head_seq - self.signed_through) if self.signatures_checked else 0


def _field(value: str | None) -> str:
    return "~" if value is None else f"{len(value)}:{value}"


def canonical(row: AuditRow) -> str:
    """The exact text the trigger hashes (see migration 0003)."""
    at = row.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "|".join(
        _field(v)
        for v in (
            str(row.seq),
            at,
            row.db_role,
            row.os_user,
            row.client_addr,
            row.client_host,
            row.token,
            row.pii_field,
            row.reason,
            row.outcome,
            row.prev_hash,
        )
    )


def row_hash(row: AuditRow) -> str:
    """SHA-256 of the canonical text, hex."""
    return hashlib.sha256(canonical(row).encode()).hexdigest()


def signing_key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable id of an audit-signing public key, stored with each signature."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def head_message(seq: int, digest: str) -> bytes:
    """The exact bytes a head signature covers."""
    return f"loginetl audit head v1|{seq}|{digest}".encode()


def sign_head(key: Ed25519PrivateKey, seq: int, digest: str) -> SignedHead:
    """Sign the chain head (seq, hash)."""
    return SignedHead(
        seq, digest, signing_key_id(key.public_key()), key.sign(head_message(seq, digest))
    )


def _chain_breaks(rows: Iterable[AuditRow]) -> tuple[list[ChainBreak], dict[int, str], int]:
    """Every link, sequence and content break; each row is then taken as it stands."""
    breaks: list[ChainBreak] = []
    hashes: dict[int, str] = {}
    previous_hash, expected_seq = GENESIS, 1
    for row in rows:
        if row.seq < expected_seq:
            breaks.append(ChainBreak(row.seq, f"out of order (row {expected_seq} expected)"))
        elif row.seq != expected_seq:
            gap = (
                f"row {expected_seq} is"
                if row.seq == expected_seq + 1
                else f"rows {expected_seq}-{row.seq - 1} are"
            )
            breaks.append(ChainBreak(row.seq, f"{gap} missing (found {row.seq} next)"))
        elif row.prev_hash != previous_hash:
            breaks.append(ChainBreak(row.seq, "its link to the previous row does not match"))
        if row_hash(row) != row.row_hash:
            breaks.append(ChainBreak(row.seq, "its contents do not match its hash (edited)"))
        hashes[row.seq] = previous_hash = row.row_hash
        expected_seq = row.seq + 1
    return breaks, hashes, expected_seq - 1


def _verifies(public_key: Ed25519PublicKey, head: SignedHead) -> bool:
    try:
        public_key.verify(head.signature, head_message(head.seq, head.row_hash))
    except InvalidSignature:
        return False
    return True


def _head_breaks(
    heads: Iterable[SignedHead], hashes: dict[int, str], public_key: Ed25519PublicKey
) -> tuple[list[ChainBreak], int, int, int]:
    """Check the signed heads against the key and the chain as it is now.

    The newest head that matches the chain and verifies (the anchor) vouches, through the
    hashes, for every row before it; an older head that matches the chain needs no
    signature check of its own, so a clean log costs one verification, not one a head.
    """
    ordered = sorted(heads, key=lambda h: h.seq)
    anchor = next(
        (
            h.seq
            for h in reversed(ordered)
            if hashes.get(h.seq) == h.row_hash and _verifies(public_key, h)
        ),
        0,
    )
    breaks: list[ChainBreak] = []
    key_id = signing_key_id(public_key)
    valid = 0
    good_through = 0  # the last signed row that still matches
    last_valid = 0  # the last row a valid head names, matching or not
    for head in ordered:
        now = hashes.get(head.seq)
        if not (now == head.row_hash and head.seq <= anchor) and not _verifies(public_key, head):
            other = "" if head.key_id == key_id else f" (made with key {head.key_id[:16]})"
            breaks.append(
                ChainBreak(head.seq, f"its signed head does not verify with this key{other}")
            )
            continue
        valid += 1
        last_valid = max(last_valid, head.seq)
        if now is None:
            breaks.append(ChainBreak(head.seq, "a signed head names it, but it is gone"))
        elif now != head.row_hash:
            breaks.append(
                ChainBreak(
                    head.seq,
                    "it differs from the head signed for it; "
                    + (
                        f"row {head.seq} was rewritten"
                        if good_through + 1 == head.seq
                        else f"rows {good_through + 1}-{head.seq} were rewritten and re-hashed"
                    ),
                )
            )
        else:
            good_through = max(good_through, head.seq)
    return breaks, valid, good_through, last_valid


def _uncovered_break(last_valid: int, head_seq: int) -> ChainBreak | None:
    """Rows after the last valid head, once signing has begun, are a break.

    loginetl signs every row it writes in that row's own transaction, so once a valid head
    exists, a later row no head covers was written around loginetl or had its head
    deleted. Rows before the first head (written before migration 0007) are not: a valid
    head covers them through the chain, and a log with no valid head has nothing to cover.
    """
    if last_valid == 0 or head_seq <= last_valid:
        return None
    rows = (
        f"row {head_seq} is"
        if head_seq == last_valid + 1
        else (f"rows {last_valid + 1}-{head_seq} are")
    )
    return ChainBreak(
        last_valid + 1,
        f"{rows} after signing began (a valid head signs row {last_valid}) but no signed "
        "head covers them: written around loginetl, or their signed heads were deleted",
    )


def verify(
    rows: Iterable[AuditRow],
    *,
    heads: Iterable[SignedHead] = (),
    public_key: Ed25519PublicKey | None = None,
    expect_head: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk the chain in seq order and check every signed head; report every break.

    ``public_key`` is the audit-signing public key: without it, signed heads are not
    checked (``signatures_checked`` is False). ``expect_head`` is a (seq, hash) recorded
    earlier somewhere the database owner cannot reach: it catches the last rows removed,
    signed heads and all.
    """
    breaks, hashes, head_seq = _chain_breaks(rows)
    valid, signed_through = 0, 0
    if public_key is not None:
        head_breaks, valid, signed_through, last_valid = _head_breaks(heads, hashes, public_key)
        breaks += head_breaks
        uncovered = _uncovered_break(last_valid, head_seq)
        if uncovered is not None:
            breaks.append(uncovered)
    if expect_head is not None:
        seq, digest = expect_head
        if seq > head_seq:
            breaks.append(
                ChainBreak(
                    head_seq + 1,
                    f"the log ends at row {head_seq}, but row {seq} was recorded earlier",
                )
            )
        elif seq > 0 and hashes.get(seq) != digest:
            breaks.append(ChainBreak(seq, "it differs from the head recorded earlier (rewritten)"))
    return ChainReport(
        rows=len(hashes),
        head_seq=head_seq,
        head_hash=hashes.get(head_seq, GENESIS),
        breaks=tuple(sorted(breaks, key=lambda b: b.seq)),
        signed_heads=valid,
        signed_through=signed_through,
        signatures_checked=public_key is not None,
    )
