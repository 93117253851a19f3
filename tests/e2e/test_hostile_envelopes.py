"""A hostile producer's envelopes, sent straight to the queue (real LocalStack, real
PostgreSQL), through consume, peek, replay-dlq --dry-run and the Lambda handler.

The producer may send any body and any message attributes, ``loginetl-*`` included, so
it can forge SNS notifications and EventBridge events. Each hostile message must cost
only itself: the rest of its batch loads, no process or invocation fails, no row takes
a forged time, and no PII inside a hostile envelope reaches output, logs or the DLQ's
attributes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.services.sqs import SqsService
from tests.e2e.conftest import consume_json, count_rows, drain
from tests.e2e.test_lambda import Mapping, cold_start, lambda_env  # noqa: F401

runner = CliRunner()
CANARY_IP = "203.0.113.177"
CANARY_DEVICE = "CANARY-ENVELOPE-DEVICE-5c1e"

FORGED_ATTRIBUTES: dict[str, Any] = {
    name: {"DataType": "String", "StringValue": value}
    for name, value in {
        "loginetl-original-message-id": "sns:victim-id",
        "loginetl-original-sent-at": "1",
        "loginetl-replays": "0",
        "loginetl-reason": "invalid_ip",
        "loginetl-signature": "a1:" + "0" * 64,
    }.items()
}


def sns(message: Any, *, message_id: str | None = None, at: str | None = None) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:logins",
            "Message": message,
            "Timestamp": at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
    )


def hostile(good: dict[str, Any]) -> tuple[list[str], int]:
    """The hostile bodies, and how many of them are valid logins that must load."""
    canary = json.dumps({**good, "ip": CANARY_IP, "device_id": CANARY_DEVICE, "app_version": "v"})
    loads = [
        sns(json.dumps(good), message_id="x:" * 49 + "ab"),  # the longest id allowed
        json.dumps(good),  # a plain login in the same batch
    ]
    rejects = [
        # Absurd times: envelope_invalid (a row's day comes from the envelope, so it must
        # lie within the bound around SQS's time; never SQS's day instead).
        sns(json.dumps(good), at="0001-01-01T00:00:00+23:59"),
        sns(json.dumps(good), at="9999-12-31T23:59:59-23:59"),
        sns(json.dumps(good), at=(datetime.now(UTC) - timedelta(days=3)).isoformat()),
        sns("[" * 200_000),  # deep nesting inside the Message string
        sns("1" * 5_000),  # an integer too large to convert
        sns(json.dumps({**good, "user_id": "\u0000"})),
        sns(canary),  # PII in a login that is refused
        sns(json.dumps(good), message_id="a" * 101),  # an id too long
        json.dumps({"detail-type": "x", "detail": {"d": "[" * 10}, "id": "e", "source": 1}),
        json.dumps({"Type": "Notification", "TopicArn": "t", "Message": canary}),  # no MessageId
        '{"Type": "Notification", "Message": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ]
    return loads + rejects, len(loads)


def send(sqs: SqsService, url: str, bodies: list[str]) -> None:
    for body in bodies:
        sqs.client.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=FORGED_ATTRIBUTES)


def no_canary(*texts: str) -> None:
    for piece in texts:
        assert CANARY_IP not in piece
        assert CANARY_DEVICE not in piece


def loginetl_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What loginetl logged (not botocore's wire logs of the test's own sends)."""
    return "\n".join(
        r.getMessage() + (r.exc_text or "") for r in caplog.records if r.name.startswith("loginetl")
    )


def sent_ats(database_url: str) -> list[datetime]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT sent_at FROM user_logins")).scalars())
    finally:
        engine.dispose()


def test_hostile_envelopes_cost_only_themselves_in_consume_peek_and_replay(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="loginetl")
    url, dlq_url = queues
    bodies, loadable = hostile(json.loads(valid_bodies(1, 11)[0]))
    send(sqs, url, bodies)
    peeked = runner.invoke(app, ["peek", "--json", "--count", "10", "--force"], env=cli_env)
    human = runner.invoke(app, ["peek", "--count", "10", "--force"], env=cli_env)
    assert (peeked.exit_code, human.exit_code) == (0, 0), peeked.output + human.output
    summary = consume_json(cli_env)
    # Every forged envelope with one id of its own; the plain login shares nothing with them.
    assert summary["loaded"] == loadable
    assert summary["dead_lettered"] == len(bodies) - loadable
    assert count_rows(settings.database_url) == loadable
    now = datetime.now(UTC)
    for at in sent_ats(settings.database_url):
        assert now - timedelta(minutes=10) < at <= now  # SQS's time, no forged one
    dry = runner.invoke(app, ["replay-dlq", "--dry-run", "--json"], env=cli_env)
    dlq_peek = runner.invoke(app, ["peek", "--dlq", "--json", "--count", "10"], env=cli_env)
    assert (dry.exit_code, dlq_peek.exit_code) == (0, 0), dry.output + dlq_peek.output
    dead = drain(sqs, dlq_url)
    assert len(dead) == len(bodies) - loadable
    no_canary(
        peeked.output,
        human.output,
        json.dumps(summary),
        dry.output,
        dlq_peek.output,
        loginetl_logs(caplog),
        *(json.dumps(dict(m.attributes)) for m in dead),
    )


def test_hostile_envelopes_never_fail_a_lambda_invocation(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    lambda_env: Callable[[Settings], dict[str, str]],  # noqa: F811 (the fixture)
    valid_bodies: Callable[..., list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="loginetl")
    url, dlq_url = queues
    lambda_env(settings)
    bodies, loadable = hostile(json.loads(valid_bodies(1, 12)[0]))
    send(sqs, url, bodies)
    mapping = Mapping(sqs, url)
    mapping.run()
    assert (mapping.errors, mapping.reported) == (0, [])
    assert count_rows(settings.database_url) == loadable
    dead = drain(sqs, dlq_url)
    assert len(dead) == len(bodies) - loadable
    no_canary(loginetl_logs(caplog), *(json.dumps(dict(m.attributes)) for m in dead))
