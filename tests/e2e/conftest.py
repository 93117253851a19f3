"""Helpers for end-to-end tests: publish, count, drain."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from loginetl.actions.seed import send_bodies
from loginetl.config import Settings
from loginetl.core.batch import InboundMessage
from loginetl.core.demo import generate_bodies
from loginetl.services.sqs import SqsService

# Bodies that must each be dead-lettered, independent of the generator.
INVALID_BODIES = [
    "not json at all",
    json.dumps({"foo": "oops_wrong_msg_type", "bar": "123"}),
    json.dumps(["a", "list"]),
    json.dumps(
        {
            "user_id": "u",
            "app_version": "1",
            "device_type": "ios",
            "ip": "1.2.3.999",
            "locale": None,
            "device_id": "d",
        }
    ),
    json.dumps(
        {
            "user_id": "u",
            "app_version": "v1",
            "device_type": "ios",
            "ip": "1.2.3.4",
            "locale": None,
            "device_id": "d",
        }
    ),
]


def consume_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``loginetl consume --json --idle-exit 1`` in-process; return its summary."""
    from typer.testing import CliRunner

    from loginetl.cli import app

    result = CliRunner().invoke(app, ["consume", "--json", "--idle-exit", "1", *args], env=env)
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def count_rows(database_url: str, where: str = "TRUE") -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(text(f"SELECT count(*) FROM user_logins WHERE {where}")).scalar_one()
            )
    finally:
        engine.dispose()


def drain(sqs: SqsService, url: str) -> list[InboundMessage]:
    """Receive and delete everything in a queue."""
    out: list[InboundMessage] = []
    while batch := sqs.receive(url, max_messages=10, wait_seconds=1):
        out += batch
        sqs.delete(url, batch)
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def publish(sqs: SqsService, queues: tuple[str, str]) -> Callable[[list[str]], None]:
    def send(bodies: list[str]) -> None:
        sent, failed = send_bodies(sqs, queues[0], bodies)
        assert (sent, failed) == (len(bodies), 0)

    return send


@pytest.fixture
def valid_bodies() -> Callable[[int, int], list[str]]:
    def make(count: int, seed: int = 0) -> list[str]:
        return list(generate_bodies(count, seed=seed, malformed_share=0))

    return make


__all__ = ["INVALID_BODIES", "Settings", "count_rows", "drain", "wait_for"]
