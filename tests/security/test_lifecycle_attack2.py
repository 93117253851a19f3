"""An attacker's second look at forget and retention (0012): ids, reasons, detached months."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError

from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.services import db
from tests.security.conftest import REASON, World, _masked, attack, fold_as_owner, run, sql

pytestmark = pytest.mark.security

# Ids that are not user-w-0 but look like it, match it as a pattern, or are degenerate.
NOT_THE_USER = (
    "%",
    "user-w-%",
    "user-w-_",
    "user-w-0 ",
    " user-w-0",
    "USER-W-0",
    "us\u0435r-w-0",  # Cyrillic small ie
    "user\u2011w\u20110",  # non-breaking hyphens
    "user-w-0\u200b",  # zero-width space
    ".*",
    "user-w-0' OR '1'='1",
)


def _logins(world: World) -> dict[str, int]:
    rows = sql(world.owner, "SELECT user_id, count(*) FROM user_logins GROUP BY 1")
    return {u: int(n) for u, n in rows}


def _forget(url: str, user_id: str) -> int:
    seq = sql(
        url,
        "SELECT audit_seq FROM loginetl_forget_request(:u, :r, NULL, NULL)",
        {"u": user_id, "r": REASON},
    )[0][0]
    return int(
        sql(url, "SELECT logins FROM loginetl_forget(:s, :u)", {"s": seq, "u": user_id})[0][0]
    )


def test_eraser_removes_exactly_one_user_id_never_a_pattern_or_lookalike(
    world: World, eraser: str
) -> None:
    before = _logins(world)
    assert before["user-w-0"] == 1
    for user_id in NOT_THE_USER:
        with attack(f"eraser: forget {user_id!a} (pattern, lookalike, padding) takes nobody"):
            assert _forget(eraser, user_id) == 0
    for user_id in ("", "x" * 129):
        with attack(f"eraser: forget an id of length {len(user_id)}"):
            with pytest.raises(DBAPIError) as caught:
                _forget(eraser, user_id)
            assert getattr(caught.value.orig, "pgcode", None) == "22023"
    with attack("eraser: forget NULL"), pytest.raises(DBAPIError):
        sql(eraser, "SELECT * FROM loginetl_forget(1, NULL)")
    assert _logins(world) == before
    # The refs of the lookalikes all differ from the real one's: no collision by folding.
    refs = {
        t for (t,) in sql(world.owner, "SELECT token FROM unmask_audit WHERE outcome = 'forgotten'")
    }
    assert len(refs) == len(NOT_THE_USER)


def test_a_reason_naming_the_user_id_never_reaches_the_audit_log(world: World, eraser: str) -> None:
    """The audit log holds a keyed hash of the user id; a reason must not undo that."""
    env = world.env(eraser)
    for reason in ("DSR-77 erase user-w-0 on request", "DSR-77 erasure for USER-W-0 please"):
        with attack("eraser: the user id in clear through --reason"):
            result = run(env, "forget", "--user-id", "user-w-0", "--reason", reason, "--no-queues")
            assert result.exit_code == 2, result.output
            assert "user-w-0" not in result.output.lower()
    leaked = sql(
        world.owner,
        "SELECT count(*) FROM unmask_audit WHERE lower(concat(token, reason)) LIKE '%user-w-0%'",
    )[0][0]
    assert leaked == 0
    assert _logins(world)["user-w-0"] == 1


def test_a_reason_naming_the_user_id_is_refused_to_raw_sql_too(world: World, eraser: str) -> None:
    """The database refuses it where the attacker stands, not only our CLI."""
    for reason in ("DSR-77 erase user-w-0 on request", "DSR-77 erasure for USER-W-0 please"):
        with (
            attack("eraser: raw SQL, the user id in clear in the request's reason"),
            pytest.raises(DBAPIError, match="must not contain the user id"),
        ):
            sql(
                eraser,
                "SELECT audit_seq FROM loginetl_forget_request(:u, :r, NULL, NULL)",
                {"u": "user-w-0", "r": reason},
            )
    # A ticket number that merely contains the id's characters inside a word still passes.
    sql(
        eraser,
        "SELECT audit_seq FROM loginetl_forget_request(:u, :r, NULL, NULL)",
        {"u": "w-0", "r": "DSR-77 erasure request xw-0x (ticket)"},
    )


def test_forget_says_it_cannot_reach_months_retention_detached(
    world: World, eraser: str, maintainer: str
) -> None:
    """A detached month is a plain table holding user ids in clear: forget cannot touch it."""
    sql(
        world.owner,
        "CREATE TABLE public.user_logins_2020_01 PARTITION OF public.user_logins "
        "FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')",
    )
    plain = {"203.0.113.9": f"device-{uuid.uuid4().hex[:8]}"}
    rows, sealed, _ = _masked(world.keys_dir, plain, "old")
    old = [dataclasses.replace(r, create_date=date(2020, 1, 15)) for r in rows]
    engine = db.make_engine(world.writer)
    try:
        db.write_batch(engine, old, sealed)
    finally:
        engine.dispose()
    seq = sql(
        maintainer,
        "SELECT audit_seq FROM loginetl_retention_request(1, :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    sql(maintainer, f"SELECT * FROM loginetl_retention_drop({seq}, 'user_logins_2020_01', true)")
    result = run(
        world.env(eraser),
        "forget",
        "--user-id",
        "user-old-0",
        "--reason",
        REASON,
        "--no-queues",
        "--json",
    )
    assert result.exit_code == 0, result.output
    # The row is still there, user id in clear: forget must say so rather than imply done.
    left = sql(
        world.owner, "SELECT count(*) FROM public.user_logins_2020_01 WHERE user_id = 'user-old-0'"
    )[0][0]
    assert left == 1
    assert "detached" in result.output


def _load_open(conn: Connection, rows: list[LoginRow], sealed: list[SealedVaultEntry]) -> None:
    """The writer's load (db.write_batch), its transaction left open for the caller."""
    conn.execute(text("SELECT 1"))  # begin, so that conn.commit() commits the load
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(db._PREPARE_STAGING)
        cursor.copy_expert("COPY pg_temp.loginetl_staged_vault FROM STDIN", db._copy_vault(sealed))
        cursor.copy_expert("COPY pg_temp.loginetl_staged_logins FROM STDIN", db._copy_rows(rows))
        cursor.execute(db._MOVE_STAGED)
    finally:
        cursor.close()


def _in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as error:  # re-raised by the test
            errors.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, errors


def _vault_has(world: World, token: str) -> bool:
    """Whether the vault holds the token, once the fold worker has settled the inbox."""
    fold_as_owner(world)
    return bool(
        sql(world.owner, "SELECT count(*) FROM pii_vault WHERE token = :t", {"t": token})[0][0]
    )


@pytest.mark.parametrize("first", ["load", "forget"])
def test_purge_never_deletes_the_vault_entry_of_a_token_a_concurrent_load_references(
    world: World, eraser: str, first: str
) -> None:
    """user-w-0 is the only holder of an ip; a writer loads user-x-0 from the same ip while
    forget erases user-w-0 (two sessions, each holding its transaction open in turn)."""
    shared_ip = "198.51.100.1"  # user-w-0's
    rows, sealed, values = _masked(world.keys_dir, {shared_ip: "device-x"}, "x")
    token = rows[0].masked_ip
    assert values[token] == shared_ip
    assert _vault_has(world, token)
    seq = sql(
        eraser,
        "SELECT audit_seq FROM loginetl_forget_request('user-w-0', :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    bounded = {"options": "-c statement_timeout=20000"}  # a deadlock fails, never hangs
    writer = create_engine(world.writer, connect_args=bounded)
    other = create_engine(eraser, connect_args=bounded)
    try:
        with writer.connect() as load, other.connect() as erase:
            do_forget = lambda: erase.execute(  # noqa: E731
                text("SELECT * FROM loginetl_forget(:s, 'user-w-0')"), {"s": seq}
            ).one()
            do_load = lambda: _load_open(load, rows, sealed)  # noqa: E731
            held, (late, late_commit) = (
                (load, (do_forget, erase)) if first == "load" else (erase, (do_load, load))
            )
            (do_load if first == "load" else do_forget)()
            thread, errors = _in_thread(late)
            time.sleep(1.0)
            with attack(f"eraser: purge while a load is in flight ({first} first): it waits"):
                assert thread.is_alive(), errors
            held.commit()
            thread.join(30)
            assert not thread.is_alive()
            assert not errors, errors
            late_commit.commit()
    finally:
        writer.dispose()
        other.dispose()
    with attack(f"eraser: the purge deletes the vault entry a concurrent load needs ({first})"):
        assert _logins(world).get("user-w-0") is None
        assert _logins(world)["user-x-0"] == 1
        assert _vault_has(world, token)


def test_a_forget_by_raw_sql_that_skips_its_signed_heads_is_named_by_audit_verify(
    world: World, eraser: str
) -> None:
    signed = run(
        world.env(eraser), "forget", "--user-id", "user-w-1", "--reason", REASON, "--no-queues"
    )
    assert signed.exit_code == 0, signed.output
    assert _forget(eraser, "user-w-0") == 1  # two audit rows, neither signed
    head = sql(world.owner, "SELECT max(seq) FROM unmask_audit")[0][0]
    with attack("eraser: erase by raw SQL and leave the rows unsigned", "detected"):
        report = run(world.env(world.owner), "audit", "verify")
        assert f"rows {head - 1}-{head} are unsigned" in report.output, report.output


def test_dry_run_writes_nothing(world: World, eraser: str, maintainer: str) -> None:
    def state() -> list[tuple[object, ...]]:
        return sql(
            world.owner,
            "SELECT (SELECT count(*) FROM unmask_audit), (SELECT count(*) FROM user_logins), "
            "(SELECT count(*) FROM pii_vault), (SELECT count(*) FROM erased_tokens), "
            "(SELECT count(*) FROM rollup_pending), (SELECT count(*) FROM audit_heads)",
        )

    before = state()
    forget = run(
        world.env(eraser),
        "forget", "--user-id", "user-w-0", "--reason", REASON, "--dry-run", "--no-queues",
    )  # fmt: skip
    assert forget.exit_code == 0, forget.output
    retention = run(
        world.env(maintainer),
        "retention",
        "apply",
        "--keep",
        "1mo",
        "--reason",
        REASON,
        "--dry-run",
    )
    assert retention.exit_code == 0, retention.output
    with attack("eraser/maintainer: --dry-run leaves a trace or removes something"):
        assert state() == before


def test_maintainer_cannot_steer_drop_through_a_partition_name(
    world: World, maintainer: str
) -> None:
    """A real old partition whose name is SQL: only that partition goes."""
    name = 'user_logins_x"; DROP TABLE public.pii_vault; --'
    quoted = '"user_logins_x""; DROP TABLE public.pii_vault; --"'
    sql(
        world.owner,
        f"CREATE TABLE public.{quoted} PARTITION OF public.user_logins "
        "FOR VALUES FROM ('2019-01-01') TO ('2019-02-01')",
    )
    seq = sql(
        maintainer,
        "SELECT audit_seq FROM loginetl_retention_request(1, :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    with attack("maintainer: a partition name carrying SQL runs it"):
        sql(
            maintainer,
            "SELECT * FROM loginetl_retention_drop(:s, :p, false)",
            {"s": seq, "p": name},
        )
        assert sql(world.owner, "SELECT to_regclass('public.pii_vault') IS NOT NULL")[0][0]
        assert sql(world.owner, "SELECT to_regclass(:q) IS NULL", {"q": f"public.{quoted}"})[0][0]


def test_retention_trims_old_rows_of_the_default_partition_with_their_rollups(
    world: World, maintainer: str
) -> None:
    """A 2018 login lands in user_logins_default (no partition); retention takes it and
    its counts, and leaves no user id behind in the rollups."""
    rows, sealed, _ = _masked(world.keys_dir, {"203.0.113.77": "device-2018"}, "d")
    old = [dataclasses.replace(r, create_date=date(2018, 3, 1)) for r in rows]
    engine = db.make_engine(world.writer)
    try:
        db.write_batch(engine, old, sealed)
    finally:
        engine.dispose()
    fold_as_owner(world)
    assert sql(world.owner, "SELECT count(*) FROM user_logins_default")[0][0] == 1
    seq = sql(
        maintainer,
        "SELECT audit_seq FROM loginetl_retention_request(1, :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    assert (
        sql(maintainer, f"SELECT logins FROM loginetl_retention_trim_default({seq}, 10)")[0][0] == 1
    )
    sql(maintainer, f"SELECT * FROM loginetl_retention_purge({seq}, 100)")
    with attack("maintainer: default-partition rows trimmed but still counted or named"):
        left = sql(
            world.owner,
            "SELECT (SELECT count(*) FROM user_stats WHERE user_id = 'user-d-0') "
            "+ (SELECT count(*) FROM token_users WHERE user_id = 'user-d-0') "
            "+ (SELECT count(*) FROM rollup_months WHERE month = '2018-03-01') "
            "+ (SELECT count(*) FROM rollup_pending) "
            "+ (SELECT count(*) FROM pii_vault WHERE token = :t)",
            {"t": rows[0].masked_ip},
        )[0][0]
        assert left == 0
