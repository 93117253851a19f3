"""The chain verifier on its own: every break named, signed heads checked with the key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loginetl.core.audit_chain import GENESIS, AuditRow, row_hash, sign_head, verify


def chain(n: int) -> list[AuditRow]:
    rows, previous = [], GENESIS
    for seq in range(1, n + 1):
        row = AuditRow(
            seq, datetime(2026, 11, 25, 12, 0, seq, tzinfo=UTC), "alice", "alice", "local",
            "laptop", f"k1:{seq:064x}", "ip", "INC-1 fraud case", "revealed", previous, "",
        )  # fmt: skip
        row = replace(row, row_hash=row_hash(row))
        rows.append(row)
        previous = row.row_hash
    return rows


def rehash_from(rows: list[AuditRow], seq: int, **change: str) -> list[AuditRow]:
    out, previous = rows[: seq - 1], rows[seq - 2].row_hash if seq > 1 else GENESIS
    for row in rows[seq - 1 :]:
        edited = replace(row, prev_hash=previous, **(change if row.seq == seq else {}))
        edited = replace(edited, row_hash=row_hash(edited))
        out.append(edited)
        previous = edited.row_hash
    return out


def test_an_intact_signed_chain() -> None:
    key = Ed25519PrivateKey.generate()
    rows = chain(6)
    heads = [sign_head(key, r.seq, r.row_hash) for r in rows if r.seq % 2 == 0]
    report = verify(rows, heads=heads, public_key=key.public_key())
    assert report.intact
    assert (report.rows, report.signed_heads, report.signed_through) == (6, 3, 6)
    assert report.unsigned_rows == 0


def test_rows_before_signing_began_are_unsigned_not_broken() -> None:
    key = Ed25519PrivateKey.generate()
    rows = chain(5)  # written before migration 0007: no head at all
    report = verify(rows, heads=[], public_key=key.public_key())
    assert report.intact
    assert (report.signed_through, report.unsigned_rows) == (0, 5)


def test_rows_after_the_last_signed_head_are_a_break() -> None:
    # loginetl signs each row it writes: once signing began, an unsigned row was written
    # around it, or its head was deleted.
    key = Ed25519PrivateKey.generate()
    rows = chain(5)
    report = verify(rows, heads=[sign_head(key, 2, rows[1].row_hash)], public_key=key.public_key())
    assert [(b.seq, b.problem) for b in report.breaks] == [
        (
            3,
            "rows 3-5 are after signing began (a valid head signs row 2) but no signed head "
            "covers them: written around loginetl, or their signed heads were deleted",
        )
    ]
    assert (report.signed_through, report.unsigned_rows) == (2, 3)


def test_deleting_later_heads_then_rewriting_and_rehashing_is_a_break() -> None:
    key = Ed25519PrivateKey.generate()
    rows = chain(13)
    heads = [sign_head(key, r.seq, r.row_hash) for r in rows[:7]]  # heads 8-13 deleted
    forged = rehash_from(rows, 8, reason="routine check, nothing to see")
    report = verify(forged, heads=heads, public_key=key.public_key())
    assert [b.seq for b in report.breaks][:1] == [8]
    assert (report.problem or "").startswith("rows 8-13 are after")
    assert len(report.breaks) == 1


def test_a_rewrite_with_rehash_is_caught_by_each_later_signed_head() -> None:
    key = Ed25519PrivateKey.generate()
    rows = chain(6)
    heads = [sign_head(key, r.seq, r.row_hash) for r in rows if r.seq % 2 == 0]
    forged = rehash_from(rows, 3, reason="nothing to see here")
    assert verify(forged).intact  # the chain alone cannot tell
    report = verify(forged, heads=heads, public_key=key.public_key())
    assert [(b.seq, b.problem.split(";")[0]) for b in report.breaks] == [
        (4, "it differs from the head signed for it"),
        (6, "it differs from the head signed for it"),
    ]
    assert "rows 3-4 were rewritten and re-hashed" in (report.problem or "")
    assert report.signed_through == 2


def test_heads_signed_with_another_key_do_not_count() -> None:
    rows = chain(2)
    stranger = Ed25519PrivateKey.generate()
    report = verify(
        rows,
        heads=[sign_head(stranger, 2, rows[1].row_hash)],
        public_key=Ed25519PrivateKey.generate().public_key(),
    )
    assert [b.seq for b in report.breaks][:1] == [2]
    assert "does not verify with this key" in (report.problem or "")
    assert report.signed_through == 0


def test_every_break_is_reported() -> None:
    rows = chain(8)
    edited = [replace(r, reason="edited") if r.seq in (2, 6) else r for r in rows]
    del edited[3]  # row 4
    report = verify(edited)
    assert [(b.seq, b.problem) for b in report.breaks] == [
        (2, "its contents do not match its hash (edited)"),
        (5, "row 4 is missing (found 5 next)"),
        (6, "its contents do not match its hash (edited)"),
    ]


def test_an_expected_head_catches_a_removed_tail() -> None:
    rows = chain(5)
    report = verify(rows[:3], expect_head=(5, rows[4].row_hash))
    assert report.problem == "the log ends at row 3, but row 5 was recorded earlier"
