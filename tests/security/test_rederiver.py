"""Rederive is the rederiver's alone: the unmasker can neither dump old ciphertexts nor forge.

Before 0010 an unmasker could write one ``rederive`` audit row and then page out every
older-key ciphertext of the vault under it, or write an alias that joins two different
values for analysts. A forged alias already in token_aliases makes rederive refuse.
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import ProgrammingError

from loginetl.core.masking import Masker
from tests.security.conftest import ADD, REASON, World, attack, rederive_row, role_of, run, sql

REQUEST = "SELECT audit_seq FROM loginetl_rederive_request(:k, :fp, :r, 'x', 'y')"
PAGE = "SELECT token FROM loginetl_rederive_page(:seq, '', 10000)"


def test_the_unmasker_cannot_dump_older_ciphertexts(rotated: tuple[World, Masker]) -> None:
    world, k2 = rotated
    with (
        attack("unmasker: loginetl_rederive_request, to page every older ciphertext under it"),
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        sql(world.unmasker, REQUEST, {"k": k2.key_id, "fp": k2.fingerprint, "r": REASON})
    seq = rederive_row(world, k2)  # a rederiver's committed row, ready to be used
    with (
        attack("unmasker: loginetl_rederive_page(...,10000) with a rederiver's committed row"),
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        sql(world.unmasker, PAGE, {"seq": seq})
    with attack("unmasker: keys rederive (CLI)"):
        refused = run(world.env(world.unmasker), "keys", "rederive", "--reason", REASON)
        assert refused.exit_code == 3, refused.output
        assert "needs loginetl_rederiver" in refused.stderr
    assert sql(world.owner, "SELECT db_role FROM unmask_audit WHERE outcome = 'rederive'") == [
        (role_of(world.rederiver),)
    ]


def test_the_unmasker_cannot_forge_an_alias(rotated: tuple[World, Masker]) -> None:
    world, k2 = rotated
    old = world.ip_tokens[0]
    other_value = k2.token("ip", world.values[world.ip_tokens[1]])  # a different ip's token
    seq = rederive_row(world, k2)
    with (
        attack("unmasker: loginetl_add_aliases joining two different ips for analysts"),
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        sql(world.unmasker, ADD, {"seq": seq, "t": old, "a": other_value, "f": "ip"})
    assert sql(world.owner, "SELECT count(*) FROM token_aliases") == [(0,)]


def test_the_rederiver_cannot_unmask(world: World) -> None:
    with (
        attack("rederiver: loginetl_unmask_request (its grant is rederive only)"),
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        sql(
            world.rederiver,
            "SELECT * FROM loginetl_unmask_request(:t, :r, NULL, NULL)",
            {"t": world.ip_tokens[0], "r": REASON},
        )


def test_a_forged_alias_already_stored_makes_rederive_refuse(
    rotated: tuple[World, Masker],
) -> None:
    world, k2 = rotated
    old = world.ip_tokens[0]
    forged = k2.token("ip", world.values[world.ip_tokens[1]])
    # Written the way a pre-0010 unmasker could: a valid k2 token, of the wrong value.
    seq = rederive_row(world, k2)
    assert sql(world.rederiver, ADD, {"seq": seq, "t": old, "a": forged, "f": "ip"}) == [(1,)]
    with attack("unmasker before 0010: forge an alias; keys rederive finds it", "detected"):
        done = run(world.env(world.rederiver), "keys", "rederive", "--reason", REASON)
        assert done.exit_code == 3, done.output
        assert "1 older tokens already alias to a different k2 token" in done.stderr
        assert not any(value in done.output for value in world.values.values())
        assert old not in done.output
        assert forged not in done.output
    # The forged row is left for the owner to delete; every other old token got its alias.
    assert sql(world.owner, "SELECT alias FROM token_aliases WHERE token = :t", {"t": old}) == [
        (forged,)
    ]
    assert sql(world.owner, "SELECT count(*) FROM token_aliases") == [(8,)]
    sql(world.owner, "DELETE FROM token_aliases WHERE token = :t", {"t": old})
    again = run(world.env(world.rederiver), "keys", "rederive", "--reason", REASON)
    assert again.exit_code == 0, again.output
    assert sql(world.owner, "SELECT alias FROM token_aliases WHERE token = :t", {"t": old}) == [
        (k2.token("ip", world.values[old]),)
    ]
