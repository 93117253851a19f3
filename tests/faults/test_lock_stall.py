"""The stall scenario (issue #26): every role holds, idle, every lock it can take.

One idle session per loginetl group role takes each advisory lock loginetl has ever used
and every table lock its privileges allow (ACCESS SHARE where it may read, ROW EXCLUSIVE
where it may insert), and keeps its transaction open. While they sit there, unmask,
forget and consume run as other logins of their roles: each must finish, or fail within
its bound with one sentence, and nothing may be lost. Then an unmasker also holds the
audit log's chain lock (a request left uncommitted): the next appenders fail in 5 s,
naming it. Once the holders go, everything reruns cleanly.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from loginetl.config import Settings
from loginetl.services import keys
from loginetl.services.sqs import SqsService
from tests.faults.conftest import LOGINETL, account, consume_process, env_for, fault_bodies, finish
from tests.faults.test_faults import publish

pytestmark = pytest.mark.slow
REASON = "SEC-26 stall scenario, idle lock holders"
GROUPS = ("writer", "analyst", "unmasker", "rederiver", "eraser", "maintainer")
# Every advisory lock loginetl has taken (any role may take any advisory lock).
ADVISORY = (
    "loginetl.rollups",
    "loginetl.vault_epoch",
    "loginetl.partitions",
    "loginetl.unmask_audit",
    "loginetl.migrate",
)
CHAIN_BOUND = 5.0  # the audit chain's lock_timeout
PROCESS = 4.0  # a CLI process's own start-up and work, on a shared two-core machine
_TABLE_LOCKS = """
SELECT format('%I.%I', n.nspname, c.relname),
       CASE WHEN has_table_privilege(c.oid, 'INSERT') THEN 'ROW EXCLUSIVE'
            ELSE 'ACCESS SHARE' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
   AND has_table_privilege(c.oid, 'SELECT, INSERT')
 ORDER BY 1
"""


@dataclass(frozen=True)
class Ran:
    code: int
    seconds: float
    stderr: str


def _cli(settings: Settings, url: str, *args: str, timeout: float = 120) -> Ran:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [LOGINETL, *args],
            env={**os.environ, **env_for(settings, LOGINETL_DATABASE_URL=url)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Ran(-1, time.monotonic() - started, "(still running: killed)")
    return Ran(done.returncode, time.monotonic() - started, done.stderr.strip())


@contextlib.contextmanager
def _holding(url: str, *, chain: bool = False) -> Iterator[list[str]]:
    """An idle session holding every lock ``url``'s role can take; yields what it holds."""
    engine = create_engine(url)
    held: list[str] = []
    try:
        with engine.connect() as conn:
            _take_all(conn, held, chain=chain)
            yield held
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
    finally:
        engine.dispose()


def _take_all(conn: Connection, held: list[str], *, chain: bool) -> None:
    for name in ADVISORY:  # session-level; the first holder gets each one
        if conn.execute(
            text("SELECT pg_try_advisory_lock(hashtext(:n))"), {"n": name}
        ).scalar_one():
            held.append(f"advisory {name}")
    for relation, mode in conn.execute(text(_TABLE_LOCKS)).all():
        conn.execute(text(f"LOCK TABLE {relation} IN {mode} MODE"))
        held.append(f"{mode} {relation}")
    if chain:  # a request left uncommitted: the audit log's chain lock
        conn.execute(
            text("SELECT loginetl_unmask_request(:t, :r, NULL, NULL)"),
            {"t": "k1:" + "0" * 64, "r": REASON},
        )
        held.append("the audit chain")


@contextlib.contextmanager
def _everyone_holding(logins: dict[str, str], *, chain: bool = False) -> Iterator[int]:
    """Every group's holder at once (the unmasker's also holds the chain if asked)."""
    with contextlib.ExitStack() as stack:
        total = 0
        for group in GROUPS:
            held = stack.enter_context(_holding(logins[group], chain=chain and group == "unmasker"))
            total += len(held)
        yield total


def _rows(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(statement))]
    finally:
        engine.dispose()


def test_idle_holders_of_every_lock_stall_no_unmask(
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
    login_role: Callable[[str], str],
) -> None:
    holders = {g: login_role(f"loginetl_{g}") for g in GROUPS}
    workers = {g: login_role(f"loginetl_{g}") for g in ("writer", "unmasker", "eraser")}
    bodies, users = fault_bodies("stall", 60)
    publish(sqs, fault_queues[0], bodies)
    code, _, err = finish(
        consume_process(
            env_for(settings, LOGINETL_DATABASE_URL=workers["writer"]), "--idle-exit", "3"
        )
    )
    assert code == 0, err
    masker = keys.load_masker(settings.keys_dir)
    token = masker.token("ip", "10.9.0.1")  # the first message's ip
    unmask = ("unmask", token, "--reason", REASON)
    holder = make_url(holders["unmasker"]).username

    # Every lock every role can take, but no audit row left open: unmask finishes.
    with _everyone_holding(holders) as held:
        assert held >= 6 * 2 + len(ADVISORY)
        ran = _cli(settings, workers["unmasker"], *unmask)
        assert ran.code == 0, ran.stderr
        assert ran.seconds < PROCESS + 5, ran

    # And an unmasker also holds the audit log's chain: the next appenders fail in 5 s,
    # with one sentence naming it; nothing is revealed or erased (exit 5: an audited
    # transaction did not commit).
    with _everyone_holding(holders, chain=True):
        for args in (unmask, ("forget", "--user-id", "stall-1", "--reason", REASON, "--no-queues")):
            url = workers["unmasker" if args[0] == "unmask" else "eraser"]
            ran = _cli(settings, url, *args)
            assert ran.code == 5, ran
            assert CHAIN_BOUND <= ran.seconds < CHAIN_BOUND + PROCESS + 5, ran
            assert f"the audit log is held by login {holder} (backend pid" in ran.stderr, ran
            assert len(ran.stderr.splitlines()) == 1, ran.stderr

    # The holders gone, both go through, and the log verifies.
    assert _cli(settings, workers["unmasker"], *unmask).code == 0
    forgot = _cli(
        settings,
        workers["eraser"],
        *("forget", "--user-id", "stall-1", "--reason", REASON, "--no-queues"),
    )
    assert forgot.code == 0, forgot
    assert _cli(settings, settings.database_url, "audit", "verify").code == 0
    outcomes = [r[0] for r in _rows(settings.database_url, "SELECT outcome FROM unmask_audit")]
    assert outcomes.count("revealed") == 2
    assert outcomes.count("forgotten") == 1
    result = account(
        "stall. every role holds every lock it can take, idle; unmask, forget",
        settings.database_url,
        sqs,
        fault_queues,
        users - {"stall-1"},
        5,
    )
    assert result.exact, result


def test_idle_holders_of_every_lock_stall_no_consume_or_forget(
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
    login_role: Callable[[str], str],
) -> None:
    holders = {g: login_role(f"loginetl_{g}") for g in GROUPS}
    writer, eraser = login_role("loginetl_writer"), login_role("loginetl_eraser")
    bodies, users = fault_bodies("stall-consume", 60)
    publish(sqs, fault_queues[0], bodies)
    with _everyone_holding(holders):
        consumed = _cli(settings, writer, "consume", "--idle-exit", "3", timeout=40)
        forgot = _cli(
            settings,
            eraser,
            *("forget", "--user-id", "stall-consume-1", "--reason", REASON, "--no-queues"),
            timeout=40,
        )
    for ran in (consumed, forgot):
        assert ran.code != -1, ran  # finished, or failed, within its bound
        assert ran.code == 0 or len(ran.stderr.splitlines()) == 1, ran
    code, _, err = finish(
        consume_process(env_for(settings, LOGINETL_DATABASE_URL=writer), "--idle-exit", "3")
    )
    assert code == 0, err
    result = account(
        "stall. every role holds every lock it can take, idle; consume",
        settings.database_url,
        sqs,
        fault_queues,
        users - {"stall-consume-1"},  # forgotten on purpose: its row is gone, not lost
        5,
        record=False,
    )
    assert result.exact, result
