"""Fixtures for the fault suite: a private PostgreSQL we may stop, a breakable SQS path,
and the table of figures printed at the end."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from loginetl.config import Settings
from loginetl.core.batch import InboundMessage
from loginetl.services import db, keys, migrations
from loginetl.services.sqs import SqsService
from tests.conftest import LOGINETL, consume_process, env_for, finish
from tests.rollups import rollups_exact

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import localstack as localstack_tool

FIGURES: list[dict[str, Any]] = []
# Every token a row holds has its vault entry, and nothing waits in the inbox.
VAULT_COMPLETE = """
SELECT NOT EXISTS (SELECT 1 FROM public.vault_inbox)
   AND NOT EXISTS (SELECT 1 FROM (SELECT masked_ip AS t FROM public.user_logins
                                  UNION SELECT masked_device_id FROM public.user_logins) r
                   WHERE NOT EXISTS (SELECT 1 FROM public.pii_vault v WHERE v.token = r.t))
"""


@dataclass(frozen=True)
class Accounting:
    """What really happened, each figure read independently of consume's own counters."""

    sent: int
    loaded: int  # distinct valid messages with a row (SQL)
    dead_lettered: int  # DLQ messages received, counted one by one (by receipt)
    lost: int  # valid messages without a row, invalid ones without a DLQ copy
    duplicated: int  # extra rows for one message + extra DLQ copies of one original id
    rollups_exact: bool  # stats' counts equal a recount: each row folded in exactly once
    left_in_queues: int = 0  # visible + in flight + delayed, queue and DLQ, after the count
    dlq_duplicated: int = 0  # the DLQ's share of ``duplicated``
    vault_complete: bool = True  # every token of every row has its vault entry, none waits

    @property
    def exact(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.rollups_exact
            and self.vault_complete
            and self.left_in_queues == 0
            and self.sent == self.loaded + self.dead_lettered
        )

    def __repr__(self) -> str:
        """What is wrong in capitals, then the figures, so a failed ``assert result.exact,
        result`` names its reason (tests/faults/breakages.py expects it by name)."""
        wrong = [
            name
            for name, bad in (
                ("LOST", self.lost),
                ("DUPLICATED", self.duplicated),
                ("ROLLUPS DIFFER FROM A RECOUNT", not self.rollups_exact),
                ("VAULT INCOMPLETE", not self.vault_complete),
                ("LEFT IN THE QUEUES", self.left_in_queues),
                ("SENT != LOADED + DEAD-LETTERED", self.sent != self.loaded + self.dead_lettered),
            )
            if bad
        ]
        figures = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"Accounting({'; '.join(wrong) + ': ' if wrong else ''}{figures})"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section(
        "fault scenarios: every row exactly once, every reject in the DLQ at least once"
    )
    terminalreporter.write_line(
        "rows by SQL, DLQ by receipt (one count a message received), queues by SQS depth"
    )
    terminalreporter.write_line(
        f"{'scenario':<72} {'sent':>6} {'loaded':>7} {'DLQ':>5} {'lost':>5} {'dup':>4} "
        f"{'left':>5} {'rollups':>7} {'vault':>5}  result"
    )
    for f in FIGURES:
        terminalreporter.write_line(
            f"{f['scenario']:<72} {f['sent']:>6} {f['loaded']:>7} {f['dead_lettered']:>5} "
            f"{f['lost']:>5} {f['duplicated']:>4} {f['left_in_queues']:>5} "
            f"{'yes' if f['rollups_exact'] else 'NO':>7} "
            f"{'yes' if f['vault_complete'] else 'NO':>5}  {f['result']}"
        )


def drain_by_receipt(sqs: SqsService, queue_url: str) -> list[InboundMessage]:
    """Receive until the queue is empty, keeping every message received (copies included).

    Each message is deleted once counted, so none can be counted twice; an empty receive
    ends the count only when SQS also reports nothing visible.
    """
    received: list[InboundMessage] = []
    while True:
        batch = sqs.receive(queue_url, max_messages=10, wait_seconds=1, visibility_timeout=60)
        if batch:
            received += batch
            sqs.delete(queue_url, batch)
        elif sqs.depth(queue_url).visible == 0:
            return received


def left_in(sqs: SqsService, queue_url: str) -> int:
    depth = sqs.depth(queue_url)
    return depth.visible + depth.in_flight + depth.delayed


def account(
    scenario: str,
    database_url: str,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_users: set[str],
    invalid: int,
    *,
    expected_dlq_copies: int = 0,
    record: bool = True,
) -> Accounting:
    """Count rows (SQL) and DLQ messages (by receipt) against what was sent.

    ``expected_dlq_copies``: extra DLQ copies the scenario expects (a crash between a DLQ
    send and the delete dead-letters the message again); the table then says "ok" only
    for exactly that many, and only on the DLQ side. ``record``: add a line to the table.
    """
    # The fold worker's part first, as it runs beside the consumers (consume only appends).
    folding = db.make_engine(database_url, pool_size=1)
    try:
        db.fold(folding, wait=True)
    finally:
        folding.dispose()
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id FROM user_logins")).scalars().all()
        rollups_ok = rollups_exact(conn)
        vault_ok = conn.execute(text(VAULT_COMPLETE)).scalar_one()
    engine.dispose()
    loaded = set(rows) & valid_users
    dead = drain_by_receipt(sqs, queues[1])
    by_original = Counter(m.idempotency_key for m in dead)
    dlq_duplicated = len(dead) - len(by_original)
    left = left_in(sqs, queues[0]) + left_in(sqs, queues[1])
    result = Accounting(
        sent=len(valid_users) + invalid,
        loaded=len(loaded),
        dead_lettered=len(dead),
        lost=len(valid_users - loaded) + max(0, invalid - len(by_original)),
        duplicated=len(rows) - len(set(rows)) + dlq_duplicated,
        rollups_exact=rollups_ok,
        vault_complete=bool(vault_ok),
        left_in_queues=left,
        dlq_duplicated=dlq_duplicated,
    )
    if record:
        FIGURES.append(
            {
                "scenario": scenario,
                **result.__dict__,
                "result": _verdict(result, expected_dlq_copies),
            }
        )
    return result


def _verdict(result: Accounting, expected_dlq_copies: int) -> str:
    if result.exact:
        return "ok"
    if (
        expected_dlq_copies
        and result.dlq_duplicated == result.duplicated == expected_dlq_copies
        and result.lost == 0
        and result.left_in_queues == 0
        and result.rollups_exact
        and result.vault_complete
        and result.sent + expected_dlq_copies == result.loaded + result.dead_lettered
    ):
        copies = "copy" if expected_dlq_copies == 1 else "copies"
        return f"ok: {expected_dlq_copies} extra DLQ {copies} (at least once)"
    return "FAILED"


def fault_bodies(tag: str, valid: int) -> tuple[list[str], set[str]]:
    """Valid bodies with unique user ids (so a duplicate row is visible) and 5 invalid ones."""
    users = {f"{tag}-{i}" for i in range(valid)}
    bodies = [
        json.dumps(
            {
                "user_id": u,
                "app_version": "1.2.3",
                "device_type": "ios",
                "ip": f"10.9.{i // 250}.{i % 250 + 1}",
                "locale": None,
                "device_id": f"d-{i}",
            }
        )
        for i, u in enumerate(sorted(users))
    ]
    invalid = ["{nope", "[1]", json.dumps({"user_id": tag}), json.dumps({"ip": None}), "42"]
    return bodies + invalid, users


# -- a PostgreSQL of our own -------------------------------------------------------------


class PrivatePostgres:
    """A throwaway cluster from the machine's binaries: ours to stop and start."""

    def __init__(self) -> None:
        self.bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.root = Path(tempfile.mkdtemp(prefix="loginetl-faults-pg-"))
        self.data = self.root / "data"
        self.port = localstack_tool.free_port()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bindir}/initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
            ],
            check=True,
            capture_output=True,
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/loginetl"

    def start(self) -> None:
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bindir}/pg_ctl",
                "-D",
                str(self.data),
                "-w",
                "-l",
                str(self.data / "server.log"),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.root}",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bindir}/pg_ctl",
                "-D",
                str(self.data),
                "-w",
                "-m",
                "fast",
                "stop",
            ],
            check=True,
            capture_output=True,
        )

    def destroy(self) -> None:
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bindir}/pg_ctl",
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        db.ensure_database(server.url)
        engine = db.make_engine(server.url, pool_size=1)
        migrations.upgrade(engine)
        engine.dispose()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def fault_queues(settings: Settings, sqs: SqsService) -> tuple[str, str]:
    """Queues with a short visibility timeout, so a crashed run's messages come back fast."""
    return sqs.create_queues(
        settings.queue_name, settings.dlq_name, max_receive_count=20, visibility_timeout=4
    )


def wait_until(predicate: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


__all__ = ["LOGINETL", "consume_process", "env_for", "finish", "keys"]
