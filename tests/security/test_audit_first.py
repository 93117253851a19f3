"""Issue #26: nothing side-steps the audit, and no role watches or stalls another.

Each attack is played as a real login of its role over raw SQL: a caller who rolls back
learns nothing; a session with ``synchronous_commit = off`` gets nothing before its audit
row is on disk; the writer and the analyst see the same locks whatever an unmask found;
and a role holding every lock it can take, idle, stalls nobody past a bound.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from loginetl.services import db, keys, migrations
from tests.security.conftest import REASON, World, attack, role_of, run, session, sql

REQUEST = "SELECT * FROM loginetl_unmask_request(:t, :r, 'mallory', 'laptop')"
OPEN = "SELECT outcome, pii_field, ciphertext FROM loginetl_vault_open(:seq)"
APPEND = "SELECT * FROM loginetl_audit_append(:t, :f, :r, 'revealed', 'mallory', 'laptop')"
# What a watcher can read of another session's locks: the object's name, never its ids.
LOCKS = (
    "SELECT l.locktype, coalesce(l.relation::regclass::text, ''), l.mode, l.granted "
    "FROM pg_locks l WHERE l.pid = :pid ORDER BY 1, 2, 3"
)
ACTIVITY = (
    "SELECT usename, application_name, state, query, wait_event, xact_start "
    "FROM pg_stat_activity WHERE pid = :pid"
)
BOUND = 5.0  # the chain trigger's lock_timeout


def count(world: World) -> int:
    return int(sql(world.owner, "SELECT count(*) FROM unmask_audit")[0][0])


@pytest.fixture
def guesses(world: World) -> dict[str, str]:
    """Four guessed tokens, one of each kind: stored, erased, unknown, of an unknown key."""
    masker = keys.load_masker(world.keys_dir)
    erased = masker.token("ip", "203.0.113.40")
    sql(
        world.owner,
        "INSERT INTO erased_tokens (token, pii_field, audit_seq) VALUES (:t, 'ip', 0)",
        {"t": erased},
    )
    return {
        "released": world.ip_tokens[0],
        "erased": erased,
        "unknown_token": masker.token("ip", "203.0.113.41"),
        "unknown_key_id": "k9:" + "0" * 64,
        "malformed_token": "k1:not-a-token",
    }


# -- 1. audited before anything is learned -----------------------------------------------


def test_a_rolled_back_request_tells_nothing(world: World, guesses: dict[str, str]) -> None:
    answers = []
    for kind, token in guesses.items():
        with (
            attack(f"unmasker: BEGIN; request a {kind} token; read the answer; ROLLBACK"),
            session(world.unmasker) as conn,
        ):
            row = conn.execute(text(REQUEST), {"t": token, "r": REASON}).one()
            answers.append((row.outcome, row.pii_field))
            with pytest.raises(ProgrammingError, match="not committed"):
                conn.execute(text(OPEN), {"seq": row.audit_seq})
            conn.rollback()
    assert set(answers) == {("requested", None)}  # the same answer for every kind
    assert count(world) == 0


@pytest.mark.parametrize("ending", ["rollback", "disconnect", "cancel"])
def test_what_the_vault_told_is_always_behind_a_committed_request(
    world: World, guesses: dict[str, str], ending: str
) -> None:
    told = {}
    for kind, token in guesses.items():
        seq = sql(world.unmasker, REQUEST, {"t": token, "r": REASON})[0][0]
        with attack(f"unmasker: open a {kind} token, then {ending}: the request stays"):
            with session(world.unmasker) as conn:
                outcome, field, _ = conn.execute(text(OPEN), {"seq": seq}).one()
                told[kind] = (outcome, field)
                if ending == "cancel":
                    conn.execute(text("SET LOCAL statement_timeout = 50"))
                    with pytest.raises(DBAPIError, match="statement timeout"):
                        conn.execute(text("SELECT pg_sleep(1)"))
                if ending == "disconnect":
                    conn.invalidate()
                else:
                    conn.rollback()
            rows = sql(
                world.owner, "SELECT outcome, token FROM unmask_audit WHERE seq = :s", {"s": seq}
            )
            assert rows == [("requested", token[:200])]
    assert told == {
        "released": ("released", "ip"),
        "erased": ("erased", None),
        "unknown_token": ("unknown_token", None),
        "unknown_key_id": ("unknown_key_id", None),
        "malformed_token": ("malformed_token", None),
    }
    assert sql(world.owner, "SELECT DISTINCT outcome FROM unmask_audit") == [("requested",)]


def test_the_rederive_request_does_not_consult_the_vault(world: World) -> None:
    masker = keys.load_masker(world.keys_dir)
    with attack("rederiver: BEGIN; rederive_request for k1 and k7; compare; ROLLBACK"):
        answers = []
        for key_id in ("k1", "k7"):
            with session(world.rederiver) as conn:
                conn.execute(
                    text("SELECT * FROM loginetl_rederive_request(:k, :fp, :r, NULL, NULL)"),
                    {"k": key_id, "fp": masker.fingerprint, "r": REASON},
                ).one()
                answers.append("accepted")
                conn.rollback()
        assert answers == ["accepted", "accepted"]  # the deployed key is not told
    assert count(world) == 0


def test_a_rederive_to_a_key_not_deployed_is_refused_behind_its_row(world: World) -> None:
    keys.rotate_keyring(
        world.keys_dir, keys.HMAC_FILE
    )  # k2 current here, but no consumer wrote with it
    with attack("rederiver: keys rederive to a key the consumers do not write with yet"):
        refused = run(world.env(world.rederiver), "keys", "rederive", "--reason", REASON)
        assert refused.exit_code == 3, refused.output
        assert "write with now, not k2" in refused.stderr
    rows = sql(world.owner, "SELECT outcome, token FROM unmask_audit ORDER BY seq")
    assert [(o, t.split(":")[0]) for o, t in rows] == [("rederive", "rederive->k2")]
    assert sql(world.owner, "SELECT count(*) FROM token_aliases") == [(0,)]


# -- 2. durable before served ------------------------------------------------------------


def test_with_synchronous_commit_off_the_open_waits_for_the_flush(world: World) -> None:
    token = world.ip_tokens[1]
    behind, waited = 0, 0.0
    with (
        attack("unmasker: synchronous_commit = off; request, commit, open at once"),
        session(world.unmasker) as conn,
        session(world.owner) as owner,
    ):
        delay = owner.execute(
            text("SELECT current_setting('wal_writer_delay')::interval")
        ).scalar_one()
        owner.rollback()
        writer_cycles = 3 * delay.total_seconds()
        conn.execute(text("SET synchronous_commit = off"))
        conn.commit()
        for _ in range(20):
            seq = conn.execute(text(REQUEST), {"t": token, "r": REASON}).one().audit_seq
            conn.commit()  # acknowledged before it is on disk
            committed_at, not_on_disk = owner.execute(
                text(
                    "SELECT pg_current_wal_insert_lsn()::text, "
                    "pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn()"
                )
            ).one()
            owner.rollback()
            behind += bool(not_on_disk)
            started = time.monotonic()
            assert conn.execute(text(OPEN), {"seq": seq}).one().outcome == "released"
            took = time.monotonic() - started
            waited = max(waited, took)
            # By the time the vault answered, the WAL was flushed past the request's commit,
            # or (the tail page holding others' uncommitted records) every page before it,
            # and the WAL writer had had three cycles to flush the commit itself.
            whole, pages = owner.execute(
                text(
                    "SELECT pg_current_wal_flush_lsn() >= CAST(:lsn AS pg_lsn), "
                    "pg_current_wal_flush_lsn() >= CAST(:lsn AS pg_lsn) "
                    "- ((CAST(:lsn AS pg_lsn) - '0/0') % 8192)"
                ),
                {"lsn": committed_at},
            ).one()
            owner.rollback()
            assert whole or (pages and took >= writer_cycles), (committed_at, took)
            conn.rollback()
    print(f"\nnot on disk when the open began: {behind} of 20; longest open {waited:.3f} s")


def test_the_flush_wait_refuses_after_its_bound(world: World) -> None:
    with attack("owner: a WAL position never flushed: the wait refuses, hands out nothing"):
        started = time.monotonic()
        with pytest.raises(DBAPIError, match="not yet on disk"):
            sql(
                world.owner,
                "SELECT loginetl_await_durable(pg_current_wal_insert_lsn() + 1e12, '300 ms')",
            )
        assert time.monotonic() - started < 3
    for group in ("unmasker", "writer", "analyst", "rederiver"):
        with (
            attack(f"{group}: call the internal loginetl_await_durable"),
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            sql(getattr(world, group), "SELECT loginetl_await_durable('0/0', '1 s')")


# -- 3. nobody watches -------------------------------------------------------------------


def _watch(watcher: str, pid: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    return sql(watcher, LOCKS, {"pid": pid}), sql(watcher, ACTIVITY, {"pid": pid})


def test_writer_and_analyst_see_the_same_locks_whatever_the_unmask_found(
    world: World, guesses: dict[str, str]
) -> None:
    seen: dict[str, dict[str, object]] = {"writer": {}, "analyst": {}}
    for kind, token in guesses.items():
        seq = sql(world.unmasker, REQUEST, {"t": token, "r": REASON})[0][0]
        with session(world.unmasker) as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            # loginetl's own transaction: the database's outcome row, and for a released
            # token loginetl's 'revealed' row, then the watcher looks before COMMIT.
            outcome, field, _ = conn.execute(text(OPEN), {"seq": seq}).one()
            if outcome == "released":
                conn.execute(text(APPEND), {"t": token, "f": field, "r": REASON})
            for group in seen:
                locks, activity = _watch(getattr(world, group), pid)
                seen[group][kind] = locks
                usename, application, state, query, wait_event, xact_start = activity[0]
                assert usename == role_of(world.unmasker)  # PostgreSQL shows every login
                assert application == ""  # a raw session; loginetl's always says 'loginetl'
                assert (state, wait_event, xact_start) == (None, None, None)
                assert query == "<insufficient privilege>"
            conn.rollback()
    for group, by_kind in seen.items():
        with attack(f"{group}: tell released/erased/unknown apart from the unmasker's pg_locks"):
            assert len({repr(v) for v in by_kind.values()}) == 1, by_kind
            locks = by_kind["released"]
            assert not [lock for lock in locks if lock[0] == "advisory"]  # type: ignore[index]


def test_through_the_cli_each_outcome_follows_its_request(
    world: World, guesses: dict[str, str]
) -> None:
    # loginetl's own path: the request, then the database's outcome (and loginetl's).
    for kind in ("released", "unknown_token"):
        result = run(world.env(world.unmasker), "unmask", guesses[kind], "--reason", REASON)
        assert result.exit_code == (0 if kind == "released" else 4), result.output
    outcomes = [r[0] for r in sql(world.owner, "SELECT outcome FROM unmask_audit ORDER BY seq")]
    assert outcomes == ["requested", "released", "revealed", "requested", "unknown_token"]


# -- 4. nobody stalls --------------------------------------------------------------------


@contextlib.contextmanager
def holding(url: str, *statements: str) -> Iterator[Connection]:
    """An idle session of ``url`` that ran ``statements`` and keeps its transaction open."""
    with session(url) as conn:
        for statement in statements:
            conn.execute(text(statement), {"r": REASON, "t": "k1:" + "0" * 64})
        yield conn
        conn.rollback()


def test_no_other_role_can_take_the_chain_lock(world: World, eraser: str, maintainer: str) -> None:
    for group, url in (
        ("writer", world.writer),
        ("analyst", world.analyst),
        ("unmasker", world.unmasker),
        ("rederiver", world.rederiver),
        ("eraser", eraser),
        ("maintainer", maintainer),
    ):
        with (
            attack(f"{group}: LOCK TABLE unmask_audit IN SHARE UPDATE EXCLUSIVE MODE"),
            session(url) as conn,
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            conn.execute(text("LOCK TABLE unmask_audit IN SHARE UPDATE EXCLUSIVE MODE"))


def test_every_advisory_lock_loginetl_used_held_by_the_writer_stalls_no_unmask(
    world: World,
) -> None:
    keys_ = ("loginetl.unmask_audit", "loginetl.migrate")
    with (
        attack("writer: hold loginetl's advisory locks idle; an unmask still finishes"),
        holding(world.writer, *(f"SELECT pg_advisory_lock(hashtext('{k}'))" for k in keys_)),
    ):
        started = time.monotonic()
        result = run(world.env(world.unmasker), "unmask", world.ip_tokens[0], "--reason", REASON)
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started < BOUND


def _timed(action: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        action()
    except BaseException as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def test_an_idle_appender_stalls_nobody_past_the_bound(
    world: World, eraser: str, login_role: Callable[[str], str]
) -> None:
    holder = role_of(world.unmasker)
    other = login_role("loginetl_unmasker")
    with holding(world.unmasker, REQUEST) as idle:
        pid = idle.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with attack("unmasker: hold the audit log idle; an eraser's request fails in 5 s"):
            took, error = _timed(
                lambda: sql(
                    eraser,
                    "SELECT * FROM loginetl_forget_request('user-w-0', :r, NULL, NULL)",
                    {"r": REASON},
                )
            )
            assert error is not None
            assert BOUND - 0.5 < took < BOUND + 3, took
            assert f"held by login {holder} (backend pid {pid})" in str(error)
        with attack("unmasker: hold the audit log idle; another unmask fails in 5 s (CLI)"):
            started = time.monotonic()
            result = run(world.env(other), "unmask", world.ip_tokens[0], "--reason", REASON)
            took = time.monotonic() - started
            assert result.exit_code == 5, result.output
            assert f"held by login {holder} (backend pid {pid})" in result.stderr
            assert result.stdout == ""
            assert took < BOUND + 5, took
    # Once the holder's transaction ends, both go through.
    sql(eraser, "SELECT * FROM loginetl_forget_request('user-w-0', :r, NULL, NULL)", {"r": REASON})
    assert run(world.env(other), "unmask", world.ip_tokens[0], "--reason", REASON).exit_code == 0


def test_no_role_stalls_a_migrate(world: World, eraser: str) -> None:
    with (
        attack("writer: hold 'loginetl.migrate' and alembic_version idle; migrate still runs"),
        holding(
            world.writer,
            "SELECT pg_advisory_lock(hashtext('loginetl.migrate'))",
            "LOCK TABLE alembic_version IN ACCESS SHARE MODE",
        ),
        holding(eraser, "LOCK TABLE alembic_version IN ACCESS SHARE MODE"),
    ):
        engine = db.make_engine(world.owner, pool_size=1)
        try:
            started = time.monotonic()
            assert migrations.upgrade(engine).at_head
            assert time.monotonic() - started < BOUND
        finally:
            engine.dispose()
    for group in ("writer", "analyst", "unmasker", "rederiver"):
        with (
            attack(f"{group}: take the migrate lock (alembic_version, SHARE UPDATE EXCLUSIVE)"),
            session(getattr(world, group)) as conn,
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            conn.execute(text(migrations.MIGRATE_LOCK))
