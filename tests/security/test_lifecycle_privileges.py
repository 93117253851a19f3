"""forget and retention (0012): who may call them, and that they act only after the audit."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.security.conftest import REASON, World, attack, session, sql

FORGET_FUNCTIONS = (
    "SELECT * FROM loginetl_forget_preview('user-w-0')",
    "SELECT * FROM loginetl_forget_request('user-w-0', :r, NULL, NULL)",
    "SELECT * FROM loginetl_forget(1, 'user-w-0')",
)
RETENTION_FUNCTIONS = (
    "SELECT * FROM loginetl_retention_plan(13)",
    "SELECT * FROM loginetl_retention_request(13, :r, NULL, NULL)",
    "SELECT * FROM loginetl_retention_drop(1, 'user_logins_default', false)",
    "SELECT * FROM loginetl_retention_trim_default(1, 10)",
    "SELECT * FROM loginetl_retention_purge(1, 10)",
)
INTERNAL = (
    "SELECT * FROM loginetl_purge_candidates(10, 1)",
    "SELECT loginetl_user_ref('user-w-0')",
    "SELECT * FROM loginetl_old_partitions(current_date)",
)
SECRETS = ("erasure_secret", "erased_tokens", "vault_purge_candidates")


def _refused(url: str, statement: str) -> None:
    with pytest.raises(DBAPIError) as caught:
        sql(url, statement, {"r": REASON})
    assert getattr(caught.value.orig, "pgcode", None) == "42501", caught.value


def _rows(world: World) -> int:
    return int(sql(world.owner, "SELECT count(*) FROM user_logins")[0][0])


def test_only_the_eraser_may_forget_and_only_the_maintainer_may_apply_retention(
    world: World, eraser: str, maintainer: str
) -> None:
    before = _rows(world)
    others = {
        "writer": world.writer,
        "analyst": world.analyst,
        "unmasker": world.unmasker,
        "rederiver": world.rederiver,
    }
    for name, url in {**others, "maintainer": maintainer}.items():
        for statement in FORGET_FUNCTIONS:
            with attack(f"{name}: call a forget function ({statement.split('(')[0][14:]})"):
                _refused(url, statement)
    for name, url in {**others, "eraser": eraser}.items():
        for statement in RETENTION_FUNCTIONS:
            with attack(f"{name}: call a retention function ({statement.split('(')[0][14:]})"):
                _refused(url, statement)
    for name, url in {**others, "eraser": eraser, "maintainer": maintainer}.items():
        for statement in INTERNAL:
            with attack(f"{name}: call the internal {statement.split('(')[0].split()[-1]}"):
                _refused(url, statement)
        for table in SECRETS:
            with attack(f"{name}: read {table}"):
                _refused(url, f"SELECT * FROM public.{table}")
        with attack(f"{name}: DELETE from user_logins directly"):
            _refused(url, "DELETE FROM public.user_logins")
    assert _rows(world) == before


def test_every_function_file_pins_search_path() -> None:
    """Every function loginetl defines runs with search_path pg_catalog, pg_temp."""
    # Read from the SQL files themselves, so a new function cannot be left out.
    from pathlib import Path

    files = list((Path(__file__).parents[2] / "loginetl/sql/functions").glob("*.sql"))
    assert len(files) > 20
    for file in files:
        definition = file.read_text(encoding="utf-8")
        assert "SET search_path TO 'pg_catalog', 'pg_temp'" in definition, file.name


def test_search_path_is_pinned_in_the_catalog(world: World) -> None:
    rows = sql(
        world.owner,
        "SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND (p.proname LIKE 'loginetl_forget%' "
        "OR p.proname LIKE 'loginetl_retention%' OR p.proname IN ('loginetl_purge_candidates', "
        "'loginetl_user_ref', 'loginetl_old_partitions', 'loginetl_unmask_request'))",
    )
    assert len(rows) == 12  # the 11 of 0012 and the unmask request it redefines
    for name, definer, config in rows:
        assert definer, name
        assert "search_path=pg_catalog, pg_temp" in (config or []), (name, config)


def test_forget_acts_only_after_a_committed_request_of_the_same_user(
    world: World, eraser: str
) -> None:
    before = _rows(world)
    with attack("eraser: forget without any audit row", "refused"):
        _refused(eraser, "SELECT * FROM loginetl_forget(424242, 'user-w-0')")
    with attack("eraser: request and forget in one transaction (request not committed)"):
        with session(eraser) as conn:
            seq = conn.execute(
                text("SELECT audit_seq FROM loginetl_forget_request('user-w-0', :r, NULL, NULL)"),
                {"r": REASON},
            ).scalar_one()
            forget = text("SELECT * FROM loginetl_forget(:s, 'user-w-0')")
            with pytest.raises(DBAPIError) as caught:
                conn.execute(forget, {"s": seq})
        assert getattr(caught.value.orig, "pgcode", None) == "42501"
    seq = sql(
        eraser,
        "SELECT audit_seq FROM loginetl_forget_request('user-w-0', :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    with attack("eraser: a committed request for user-w-0 used to erase user-w-1"):
        _refused(eraser, f"SELECT * FROM loginetl_forget({seq}, 'user-w-1')")
    other = sql(
        world.unmasker,
        "SELECT audit_seq FROM loginetl_unmask_request(:t, :r, NULL, NULL)",
        {"t": world.ip_tokens[0], "r": REASON},
    )[0][0]
    with attack("eraser: an unmask row (another role's) as the request"):
        _refused(eraser, f"SELECT * FROM loginetl_forget({other}, 'user-w-0')")
    assert _rows(world) == before
    # The committed request works, and the audit row of what it did follows it in the chain.
    done = sql(eraser, f"SELECT logins, audit_seq FROM loginetl_forget({seq}, 'user-w-0')")
    assert done[0][0] == 1
    assert done[0][1] > seq
    chain = sql(world.owner, "SELECT seq, outcome, token FROM unmask_audit ORDER BY seq")
    outcomes = {s: o for s, o, _ in chain}
    assert outcomes[seq] == "forget_requested"
    assert outcomes[done[0][1]] == "forgotten"
    assert all("user-w-0" not in t for _, _, t in chain)  # a keyed hash, never the id
    assert _rows(world) == before - 1


def test_retention_acts_only_after_a_committed_request(world: World, maintainer: str) -> None:
    with attack("maintainer: drop a partition without a committed retention request"):
        _refused(
            maintainer, "SELECT * FROM loginetl_retention_drop(1, 'user_logins_default', true)"
        )
    seq = sql(
        maintainer,
        "SELECT audit_seq FROM loginetl_retention_request(1, :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    current = sql(
        world.owner, "SELECT 'user_logins_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')"
    )[0][0]
    for name in (current, "user_logins_default", "pii_vault", "unmask_audit"):
        with attack(f"maintainer: retention_drop of {name} (current month, default, not one)"):
            with pytest.raises(DBAPIError) as caught:
                sql(maintainer, f"SELECT * FROM loginetl_retention_drop({seq}, '{name}', false)")
            assert "not a partition of user_logins older than" in str(caught.value)
    assert sql(world.owner, f"SELECT to_regclass('public.{current}') IS NOT NULL")[0][0]
