"""The database owner rewrites the audit log: signed heads give it away."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from loginetl.core.audit_chain import AuditRow, row_hash, sign_head
from tests.security.conftest import REASON, World, attack, run, session, sql


def unmask_all(world: World, count: int) -> dict[str, str]:
    env = world.env(world.unmasker)
    for token in world.ip_tokens[:count]:
        result = run(env, "unmask", token, "--reason", REASON)
        assert result.exit_code == 0, result.output
    return env


def rewrite_and_rehash(world: World, seq: int, **changes: str) -> None:
    """As the owner: edit row ``seq``, then re-hash it and every later row, as the trigger would."""
    with session(world.owner) as conn:
        conn.execute(text("ALTER TABLE unmask_audit DISABLE TRIGGER unmask_audit_no_change"))
        rows = [
            AuditRow(**r._mapping)
            for r in conn.execute(text("SELECT * FROM unmask_audit ORDER BY seq"))
        ]
        previous = rows[seq - 2].row_hash if seq > 1 else "0" * 64
        for row in rows[seq - 1 :]:
            edited = replace(row, prev_hash=previous, **(changes if row.seq == seq else {}))
            edited = replace(edited, row_hash=row_hash(edited))
            conn.execute(
                text(
                    "UPDATE unmask_audit SET reason = :reason, token = :token, "
                    "prev_hash = :prev_hash, row_hash = :row_hash WHERE seq = :seq"
                ),
                edited.__dict__,
            )
            previous = edited.row_hash
        conn.execute(text("ALTER TABLE unmask_audit ENABLE TRIGGER unmask_audit_no_change"))
        conn.commit()


def test_an_owner_rewrite_with_rehash_is_detected(world: World) -> None:
    env = unmask_all(world, 4)  # rows 1-12: requested/released/revealed, each head signed
    rewrite_and_rehash(world, 3, reason="routine check, nothing to see")
    with attack("owner: rewrite audit row 3 and re-hash every later row", "detected"):
        chain_only = run(env, "audit", "verify", "--no-signatures")
        assert chain_only.exit_code == 0  # a consistent chain: the hashes alone are fooled
        verdict = run(env, "audit", "verify")
        assert verdict.exit_code == 1
        assert (
            "BROKEN at row 3: it differs from the head signed for it; row 3 was" in verdict.stdout
        )
    # Every signed head after the edit is reported, not just the first.
    report = json.loads(run(env, "audit", "verify", "--json").stdout)
    assert [b["seq"] for b in report["breaks"]] == list(range(3, 13))
    assert report["signed_through"] == 2


def test_deleting_later_heads_then_rewriting_and_rehashing_is_detected(world: World) -> None:
    env = unmask_all(world, 4)  # rows 1-12, each row's head signed
    with session(world.owner) as conn:
        conn.execute(text("ALTER TABLE audit_heads DISABLE TRIGGER audit_heads_no_change"))
        conn.execute(text("DELETE FROM audit_heads WHERE seq >= 4"))
        conn.execute(text("ALTER TABLE audit_heads ENABLE TRIGGER audit_heads_no_change"))
        conn.commit()
    rewrite_and_rehash(world, 4, reason="routine check, nothing to see")
    with attack("owner: delete the signed heads from row 4 on, rewrite row 4, re-hash", "detected"):
        verdict = run(env, "audit", "verify")
        assert verdict.exit_code == 1, verdict.output
        assert "BROKEN at row 4: rows 4-12 are after signing began" in verdict.stdout
        assert "signed through row 3" in verdict.stdout
    report = json.loads(run(env, "audit", "verify", "--json").stdout)
    assert [b["seq"] for b in report["breaks"]] == [4]


def test_an_owner_who_re_signs_with_a_key_of_his_own_is_detected(world: World) -> None:
    env = unmask_all(world, 2)
    rewrite_and_rehash(world, 1, token="k1:" + "0" * 64)
    own_key = Ed25519PrivateKey.generate()
    with session(world.owner) as conn:
        conn.execute(text("ALTER TABLE audit_heads DISABLE TRIGGER audit_heads_no_change"))
        conn.execute(text("DELETE FROM audit_heads"))
        for seq, digest in conn.execute(text("SELECT seq, row_hash FROM unmask_audit")).all():
            head = sign_head(own_key, seq, digest)
            conn.execute(
                text(
                    "INSERT INTO audit_heads VALUES (:seq, :row_hash, :key_id, :signature, "
                    "now(), 'owner')"
                ),
                head.__dict__,
            )
        conn.commit()
    with attack("owner: rewrite, re-hash, and re-sign every head with his own key", "detected"):
        verdict = run(env, "audit", "verify")
        assert verdict.exit_code == 1
        assert "does not verify with this key (made with key" in verdict.stdout
        assert "signed through row 0" in verdict.stdout


def test_every_break_is_reported_not_just_the_first(world: World) -> None:
    env = unmask_all(world, 3)
    sql(world.owner, "ALTER TABLE unmask_audit DISABLE TRIGGER unmask_audit_no_change")
    sql(world.owner, "UPDATE unmask_audit SET reason = 'edited one' WHERE seq = 2")
    sql(world.owner, "UPDATE unmask_audit SET reason = 'edited two' WHERE seq = 5")
    sql(world.owner, "DELETE FROM unmask_audit WHERE seq = 4")
    with attack("owner: edit rows 2 and 5, delete row 4 (all three named)", "detected"):
        verdict = run(env, "audit", "verify")
        assert verdict.exit_code == 1
        assert "BROKEN at row 2: its contents do not match its hash" in verdict.stdout
        assert "BROKEN at row 4: a signed head names it, but it is gone" in verdict.stdout
        assert "BROKEN at row 5: row 4 is missing" in verdict.stdout
        assert "BROKEN at row 5: its contents do not match its hash" in verdict.stdout


def test_a_forged_head_from_the_unmasker_is_refused(world: World) -> None:
    env = unmask_all(world, 1)
    forged = sign_head(Ed25519PrivateKey.generate(), 99, "f" * 64)
    with (
        attack("unmasker: store a signed head for a row that does not exist"),
        pytest.raises(IntegrityError, match="no audit row 99"),
    ):
        sql(
            world.unmasker,
            "INSERT INTO audit_heads VALUES (:seq, :row_hash, :key_id, :signature, now(), '')",
            forged.__dict__,
        )
    verdict = run(env, "audit", "verify")
    assert verdict.exit_code == 0
    assert "3 signed head(s) hold; signed through row 3" in verdict.stdout
