"""A writer plants a false vault entry; anyone but rederive (the rederiver) writes an alias."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, ProgrammingError

from loginetl.core.masking import Masker
from loginetl.core.vault_crypto import PlainVaultEntry, VaultSealer
from loginetl.services import db, keys
from tests.security.conftest import ADD, REASON, World, attack, rederive_row, run, sql, write_as


def outcomes(world: World) -> list[str]:
    return [str(r[0]) for r in sql(world.owner, "SELECT outcome FROM unmask_audit ORDER BY seq")]


def test_a_poisoned_vault_entry_is_refused_and_audited(world: World) -> None:
    # The writer holds the HMAC key and the vault public key: it can seal any value to
    # any token. It plants "203.0.113.66" under the token of 10.20.30.40, first.
    masker = keys.load_masker(world.keys_dir)
    token = masker.token("ip", "10.20.30.40")
    planted = VaultSealer(keys.load_public_key(world.keys_dir)).seal(
        [PlainVaultEntry(token, "ip", "203.0.113.66")]
    )
    engine = db.make_engine(world.writer)
    try:
        db.write_batch(engine, [], planted)
    finally:
        engine.dispose()
    with attack("writer: plant a false ciphertext for a token; unmask it (CLI)"):
        result = run(world.env(world.unmasker), "unmask", token, "--reason", REASON)
        assert result.exit_code == 4, result.output
        assert result.stdout == ""
        assert "203.0.113.66" not in result.output
        assert "does not hash to this token" in result.stderr
    assert outcomes(world) == ["requested", "released", "refused_token_mismatch"]


def test_unmask_reveals_a_true_entry_beside_it(world: World) -> None:
    token = world.ip_tokens[0]
    result = run(world.env(world.unmasker), "unmask", token, "--reason", REASON)
    assert result.exit_code == 0, result.output
    assert result.stdout == world.values[token] + "\n"


def test_a_forged_alias_is_refused(rotated: tuple[World, Masker]) -> None:
    world, k2 = rotated
    old = world.ip_tokens[0]
    forged = k2.token("ip", "203.0.113.66")
    for group in ("unmasker", "rederiver"):
        with (
            attack(f"{group}: INSERT a forged alias into token_aliases directly"),
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            sql(
                getattr(world, group),
                "INSERT INTO token_aliases (token, alias, pii_field) VALUES (:t, :a, 'ip')",
                {"t": old, "a": forged},
            )
    released = sql(
        world.unmasker,
        "SELECT audit_seq FROM loginetl_unmask_request(:t, :r, NULL, NULL)",
        {"t": old, "r": REASON},
    )[0][0]
    with (
        attack("rederiver: loginetl_add_aliases with no rederive row (an unmasker's released one)"),
        pytest.raises(ProgrammingError, match="not a recent rederive row"),
    ):
        sql(world.rederiver, ADD, {"seq": released, "t": old, "a": forged, "f": "ip"})
    seq = rederive_row(world, k2)
    k3_looking = "k3:" + forged.split(":")[1]
    with (
        attack("rederiver: loginetl_add_aliases with an alias of another key id"),
        pytest.raises(ProgrammingError, match="not tokens of k2"),
    ):
        sql(world.rederiver, ADD, {"seq": seq, "t": old, "a": k3_looking, "f": "ip"})
    with (
        attack("rederiver: loginetl_add_aliases for a token not in the vault"),
        pytest.raises(ProgrammingError, match="not tokens of k2"),
    ):
        sql(world.rederiver, ADD, {"seq": seq, "t": "k1:" + "e" * 64, "a": forged, "f": "ip"})
    for group in ("unmasker", "analyst", "writer"):
        with (
            attack(f"{group}: loginetl_add_aliases"),
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            sql(getattr(world, group), ADD, {"seq": seq, "t": old, "a": forged, "f": "ip"})
    assert sql(world.owner, "SELECT count(*) FROM token_aliases") == [(0,)]


def test_rederive_maps_only_to_the_deployed_key(rotated: tuple[World, Masker]) -> None:
    world, k2 = rotated
    k1 = keys.load_maskers(world.keys_dir)["k1"]
    # The request looks at nothing but its arguments; the vault says "not k1" only to a
    # committed request row, on its first page.
    seq = rederive_row(world, k1)
    with (
        attack("rederiver: rederive to a key the consumers no longer write with (raw SQL)"),
        pytest.raises(ProgrammingError, match="write with now, not k1") as wrong_key,
    ):
        sql(world.rederiver, "SELECT token FROM loginetl_rederive_page(:s, '', 10)", {"s": seq})
    assert "k2" not in str(wrong_key.value)  # the refusal does not name the deployed key
    env = world.env(world.rederiver)
    with attack("rederiver: keys rederive --to k1 (CLI)"):
        refused = run(env, "keys", "rederive", "--to", "k1", "--reason", REASON)
        assert refused.exit_code == 2
        assert "maps only to the current key (k2)" in refused.stderr
    done = run(env, "keys", "rederive", "--reason", REASON)
    assert done.exit_code == 0, done.output
    assert "8 of 8 older tokens now alias to k2" in done.stdout
    token = sql(
        world.owner, "SELECT token FROM unmask_audit WHERE outcome = 'rederive' ORDER BY seq"
    )[-1][0]
    assert token == f"rederive->k2:{k2.fingerprint}"


def test_rederive_gives_a_poisoned_entry_no_alias(rotated: tuple[World, Masker]) -> None:
    world, _ = rotated
    k1 = keys.load_maskers(world.keys_dir)["k1"]
    planted = VaultSealer(keys.load_public_key(world.keys_dir)).seal(
        [PlainVaultEntry(k1.token("ip", "10.99.0.1"), "ip", "203.0.113.66")]
    )
    engine = db.make_engine(world.writer)
    try:
        db.write_batch(engine, [], planted)
    finally:
        engine.dispose()
    write_as(world.writer, world.keys_dir, {"192.0.2.8": "device-later"}, "k2b")  # k2 is last
    with attack("writer: plant an entry so that rederive publishes a false alias"):
        done = run(world.env(world.rederiver), "keys", "rederive", "--reason", REASON)
        assert done.exit_code == 0, done.output
        assert "1 did not hash back to their token" in done.stdout
        aliased = sql(
            world.owner,
            "SELECT count(*) FROM token_aliases WHERE token = :t",
            {"t": planted[0].token},
        )
        assert aliased == [(0,)]


def test_bad_arguments_to_add_aliases_are_refused(rotated: tuple[World, Masker]) -> None:
    world, _ = rotated
    seq = rederive_row(world, rotated[1])
    with (
        attack("rederiver: loginetl_add_aliases with 10,001 aliases in one call"),
        pytest.raises(DBAPIError, match="up to 10000 aliases"),
    ):
        sql(
            world.rederiver,
            "SELECT loginetl_add_aliases(:seq, array_fill('x'::text, ARRAY[10001]), "
            "array_fill('x'::text, ARRAY[10001]), array_fill('ip'::text, ARRAY[10001]))",
            {"seq": seq},
        )
