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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from loginetl.config import Settings
from loginetl.services import db, keys, migrations
from loginetl.services.sqs import SqsService
from tests.conftest import LOGINETL, consume_process, env_for, finish
from tests.rollups import rollups_exact

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import localstack as localstack_tool

FIGURES: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Accounting:
    sent: int
    loaded: int
    dead_lettered: int
    lost: int
    duplicated: int
    rollups_exact: bool  # stats' counts equal a recount: each row folded in exactly once

    @property
    def exact(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.rollups_exact
            and self.sent == self.loaded + self.dead_lettered
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault scenarios: every message accounted for exactly once")
    terminalreporter.write_line(
        f"{'scenario':<64} {'sent':>6} {'loaded':>7} {'DLQ':>5} {'lost':>5} {'dup':>4} {'rollups':>7}  result"
    )
    for f in FIGURES:
        terminalreporter.write_line(
            f"{f['scenario']:<64} {f['sent']:>6} {f['loaded']:>7} {f['dead_lettered']:>5} "
            f"{f['lost']:>5} {f['duplicated']:>4} {'yes' if f['rollups_exact'] else 'NO':>7}  "
            f"{'ok' if f['exact'] else 'FAILED'}"
        )


def account(
    scenario: str,
    database_url: str,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_users: set[str],
    invalid: int,
) -> Accounting:
    """Count rows and DLQ messages against what was sent; record the line for the table."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id FROM user_logins")).scalars().all()
        rollups_ok = rollups_exact(conn)
    engine.dispose()
    loaded = set(rows) & valid_users
    dead_ids: set[str] = set()
    while batch := sqs.receive(queues[1], max_messages=10, wait_seconds=1):
        dead_ids.update(m.idempotency_key for m in batch)
        sqs.delete(queues[1], batch)
    main = sqs.depth(queues[0])
    assert (main.visible, main.in_flight) == (0, 0), "the queue still holds messages"
    result = Accounting(
        sent=len(valid_users) + invalid,
        loaded=len(loaded),
        dead_lettered=len(dead_ids),
        lost=len(valid_users - loaded) + max(0, invalid - len(dead_ids)),
        duplicated=len(rows) - len(set(rows)),
        rollups_exact=rollups_ok,
    )
    FIGURES.append({"scenario": scenario, **result.__dict__, "exact": result.exact})
    return result


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
