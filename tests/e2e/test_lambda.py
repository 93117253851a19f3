"""The Lambda handler against real LocalStack and real PostgreSQL.

Each test plays Lambda's SQS event source mapping: receive from the queue, build the
event it would build, invoke ``handler``, then apply the partial batch response as the
mapping does (delete every record not reported; a reported one, or every record of an
invocation that raised, reappears after the visibility timeout). A crash between commit
and response is a real SIGKILL of a child process running the handler.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from loginetl import config, lambda_handler
from loginetl.config import Settings
from loginetl.core.attributes import trust
from loginetl.errors import LoginetlError
from loginetl.services import sqs as sqs_module
from loginetl.services.keys import ATTRIBUTE_FILE, load_keyring
from loginetl.services.sqs import SqsService
from tests.conftest import database_name, env_for
from tests.e2e.conftest import INVALID_BODIES, count_rows, drain

VISIBILITY = 2  # seconds: how soon a reported (or crashed) record comes back


@dataclass
class Mapping:
    """Lambda's SQS event source mapping, played against one queue."""

    sqs: SqsService
    url: str
    batch_size: int = 10
    invocations: int = 0
    errors: int = 0
    reported: list[str] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return self.sqs.queue_arn(self.url)

    def poll(self) -> list[dict[str, Any]]:
        """One ReceiveMessage as the mapping makes it; the records of its event."""
        raw = self.sqs.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        arn = self.arn
        return [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in raw
        ]

    def apply(self, records: list[dict[str, Any]], response: dict[str, Any] | None) -> None:
        """Delete every record the response does not report; None: the invocation failed."""
        if response is None:
            self.errors += 1
            return
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        self.reported += sorted(failed)
        done = [r for r in records if r["messageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
                    for i, r in enumerate(done[start : start + 10])
                ],
            )

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        self.invocations += 1
        try:
            return lambda_handler.handler({"Records": records}, None)
        except LoginetlError:
            return None

    def run(self, timeout: float = 90) -> None:
        """Poll, invoke and apply until the queue is empty, nothing in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.poll()
            if records:
                self.apply(records, self.invoke(records))
                continue
            depth = self.sqs.depth(self.url)
            if depth.visible == depth.in_flight == 0:
                return
        raise AssertionError("the queue did not drain")


def forget_runtime() -> None:
    """A Lambda cold start: the warm runtime goes, its connections closed."""
    warm, lambda_handler._runtime = lambda_handler._runtime, None
    if warm is not None:
        warm.engine.dispose()
        warm.pipeline.acknowledger.close()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Settings], dict[str, str]]:
    def point_at(settings: Settings) -> dict[str, str]:
        env = env_for(settings)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        forget_runtime()
        return env

    return point_at


@pytest.fixture(autouse=True)
def cold_start() -> Iterator[None]:
    forget_runtime()
    yield
    forget_runtime()


def short_visibility(sqs: SqsService, url: str) -> None:
    sqs.client.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(VISIBILITY)})


def crash_after_commit(env: dict[str, str], records: list[dict[str, Any]]) -> None:
    """Invoke the handler in a child that is SIGKILLed right after its COMMIT."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from loginetl.lambda_handler import handler\n"
            "print(json.dumps(handler(json.load(sys.stdin))))\n",
        ],
        input=json.dumps({"Records": records}),
        env={**os.environ, **env, "LOGINETL_FAILPOINT": "crash_after_commit:1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == ""  # no response reached the event source


def loginetl_connections(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = :db AND application_name = 'loginetl'"
            ),
            {"db": database_name(database_url)},
        ).scalar_one()
    engine.dispose()
    return int(count)


def dead_letters(settings: Settings, sqs: SqsService, dlq_url: str) -> dict[str, str]:
    """original message id -> verified reason, of everything drained from the DLQ."""
    keys = load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    out: dict[str, str] = {}
    for message in drain(sqs, dlq_url):
        verified = trust(message.attributes, message.body, keys, now=datetime.now(UTC))
        assert not verified.dropped
        original = verified.attributes.get("loginetl-original-message-id", message.message_id)
        assert original not in out, "dead-lettered twice"
        out[original] = verified.attributes.get("loginetl-reason", "unknown")
    return out


def test_every_message_ends_loaded_once_or_dead_lettered_across_a_crash_after_commit(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    lambda_env: Callable[[Settings], dict[str, str]],
    valid_bodies: Callable[..., list[str]],
) -> None:
    url, dlq_url = queues
    short_visibility(sqs, url)
    env = lambda_env(settings)
    bodies = valid_bodies(30) + INVALID_BODIES
    ids = {sqs.client.send_message(QueueUrl=url, MessageBody=b)["MessageId"]: b for b in bodies}
    mapping = Mapping(sqs, url)

    first = mapping.poll()
    crash_after_commit(env, first)
    committed = count_rows(settings.database_url)
    valid_in_first = sum(1 for r in first if r["body"] not in INVALID_BODIES)
    assert committed == valid_in_first > 0  # the commit happened, the response did not

    mapping.run()
    assert count_rows(settings.database_url) == 30
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        keys = set(conn.execute(text("SELECT idempotency_key FROM user_logins")).scalars())
    engine.dispose()
    assert keys == {i for i, b in ids.items() if b not in INVALID_BODIES}
    reasons = dead_letters(settings, sqs, dlq_url)
    assert set(reasons) == {i for i, b in ids.items() if b in INVALID_BODIES}
    assert sorted(reasons.values()) == sorted(
        ["invalid_json", "not_an_object", "missing_field", "invalid_ip", "invalid_app_version"]
    )
    assert mapping.reported == []
    assert mapping.errors == 0
    depth = sqs.depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)
    # Warm: one runtime, one database connection, across every invocation.
    assert mapping.invocations >= 4
    runtime = lambda_handler.runtime()
    assert lambda_handler.handler({"Records": []}, None) == {"batchItemFailures": []}
    assert lambda_handler.runtime() is runtime
    assert loginetl_connections(settings.database_url) == 1


def test_on_fifo_a_stuck_record_holds_its_group_back_and_is_reported_with_all_after_it(
    database_url: str,
    sqs_endpoint: str,
    keys_dir: Path,
    sqs: SqsService,
    lambda_env: Callable[[Settings], dict[str, str]],
    valid_bodies: Callable[..., list[str]],
) -> None:
    suffix = uuid.uuid4().hex[:12]
    settings = Settings.load(
        environ={},
        database_url=database_url,
        queue_name=f"login-{suffix}.fifo",
        dlq_name=f"login-{suffix}-dlq.fifo",
        endpoint_url=sqs_endpoint,
        keys_dir=keys_dir,
    )
    url, dlq_url = sqs.create_queues(settings.queue_name, settings.dlq_name)
    short_visibility(sqs, url)
    lambda_env(settings)
    good = json.loads(valid_bodies(1)[0])
    sends = [
        ("a", json.dumps({**good, "user_id": "a-00"})),
        ("b", json.dumps({**good, "user_id": "b-00"})),
        ("a", "x" * (1024 * 1024 - 64)),  # too_large, and too big for the DLQ with attributes
        ("b", json.dumps({**good, "user_id": "b-01"})),
        ("a", json.dumps({**good, "user_id": "a-02"})),
        ("c", "not json"),
    ]
    for i, (group, body) in enumerate(sends):
        sqs.client.send_message(
            QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=str(i)
        )
        time.sleep(0.003)
    mapping = Mapping(sqs, url)
    records = mapping.poll()
    assert sorted(r["body"] for r in records) == sorted(b for _, b in sends)
    stuck = next(i for i, r in enumerate(records) if r["body"].startswith("xxx"))
    assert 0 < stuck < len(records) - 1  # LocalStack hands out group a first: a-00, a-01, ...
    response = mapping.invoke(records)
    assert response is not None
    # The stuck reject and what it holds back in its group (Powertools' skip_group_on_error):
    # a record of another group is loaded or dead-lettered, and deleted.
    stuck_group = records[stuck]["attributes"]["MessageGroupId"]
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["messageId"] for r in records[stuck:] if r["attributes"]["MessageGroupId"] == stuck_group
    ]
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        users = list(conn.execute(text("SELECT user_id FROM user_logins ORDER BY id")).scalars())
    # consume's FIFO rule, the one pipeline's: nothing behind the stuck record in its group
    # commits; other groups load (in one transaction).
    expected = [
        json.loads(r["body"])["user_id"]
        for i, r in enumerate(records)
        if r["body"].startswith("{")
        and (i < stuck or r["attributes"]["MessageGroupId"] != stuck_group)
    ]
    assert sorted(users) == sorted(expected)
    mapping.apply(records, response)

    # The stuck one fails every invocation it is in, and holds its group back: those
    # records come back until the RedrivePolicy (maxReceiveCount 5) moves them to the DLQ,
    # keeping their group (then replay-dlq loads the valid ones). Every message ends
    # loaded once or in the DLQ once.
    mapping.run(timeout=120)
    with engine.connect() as conn:
        loaded = list(conn.execute(text("SELECT user_id FROM user_logins")).scalars())
    engine.dispose()
    dead = drain(sqs, dlq_url)
    by_id = {r["messageId"]: r for r in records}
    not_json = next(i for i, r in by_id.items() if r["body"] == "not json")
    assert len(loaded) == len(set(loaded))
    dead_ids = [m.attributes.get("loginetl-original-message-id", m.message_id) for m in dead]
    assert len(dead_ids) == len(set(dead_ids))
    loaded_ids = {r["messageId"] for r in records if r["body"].startswith("{")} - set(dead_ids)
    assert sorted(loaded) == sorted(json.loads(by_id[i]["body"])["user_id"] for i in loaded_ids)
    assert set(dead_ids) | loaded_ids == set(by_id)
    assert len(loaded) + len(dead) == len(sends)
    for message, original in zip(dead, dead_ids, strict=True):
        assert message.group_id == by_id[original]["attributes"]["MessageGroupId"]
        reason = message.attributes.get("loginetl-reason")  # None: moved by the redrive
        assert reason in (("invalid_json", None) if original == not_json else (None,))
    assert by_id[records[stuck]["messageId"]]["messageId"] in dead_ids


def test_a_database_outage_fails_the_invocation_and_nothing_is_lost(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    lambda_env: Callable[[Settings], dict[str, str]],
    valid_bodies: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, dlq_url = queues
    short_visibility(sqs, url)
    lambda_env(settings)
    monkeypatch.setattr(lambda_handler, "RETRY_SECONDS", 1.0)
    for body in valid_bodies(12):
        sqs.client.send_message(QueueUrl=url, MessageBody=body)
    mapping = Mapping(sqs, url)
    mapping.apply(warm := mapping.poll(), mapping.invoke(warm))  # warm: the engine exists
    assert count_rows(settings.database_url) == len(warm)

    name = database_name(settings.database_url)
    admin = create_engine(
        settings.database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
            {"d": name},
        )
    try:
        records = mapping.poll()
        assert records
        assert mapping.invoke(records) is None  # raised: the whole batch stays in the queue
        mapping.apply(records, None)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    mapping.run()
    assert count_rows(settings.database_url) == 12
    assert mapping.errors == 1
    assert mapping.reported == []
    assert drain(sqs, dlq_url) == []


def test_the_lambda_policy_grants_the_handler_and_its_mapping_exactly_what_they_use(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    lambda_env: Callable[[Settings], dict[str, str]],
    valid_bodies: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/iam/lambda.json: the handler's own SQS calls (recorded while it loads and
    dead-letters) plus the event source mapping's (AWS's documented three), nothing else."""
    from tests.services.test_iam_policy import ARN, DLQ, QUEUE, Recorder, _allows, _grants
    from tests.services.test_iam_policy import _needs as needs_of

    recorder = Recorder()
    make_client = sqs_module.make_client

    def recording_client(**kwargs: Any) -> Any:
        client = make_client(**kwargs)
        client.meta.events.register("before-parameter-build.sqs", recorder)
        return client

    monkeypatch.setattr(sqs_module, "make_client", recording_client)
    url, _ = queues
    lambda_env(settings)
    for body in [*valid_bodies(3), *INVALID_BODIES[:2]]:
        sqs.client.send_message(QueueUrl=url, MessageBody=body)
    mapping = Mapping(sqs, url)
    mapping.run()
    assert count_rows(settings.database_url) == 3
    names = {settings.queue_name: QUEUE, settings.dlq_name: DLQ}
    used = {
        (action, names[queue])
        for operation, params in recorder.take()
        for action, queue in needs_of(operation, params)
    }
    assert used == {("sqs:GetQueueUrl", DLQ), ("sqs:SendMessage", DLQ)}
    by_mapping = {
        (f"sqs:{a}", QUEUE) for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    }
    policy = json.loads(
        (Path(__file__).resolve().parents[2] / "deploy/iam/lambda.json").read_text()
    )
    assert all(_allows(policy, action, ARN.format(queue)) for action, queue in used | by_mapping)
    assert _grants(policy) == used | by_mapping


def test_the_handler_unwraps_envelopes_as_consume_does(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    lambda_env: Callable[[Settings], dict[str, str]],
    valid_bodies: Callable[..., list[str]],
) -> None:
    """The same prepare path: an EventBridge event loads keyed by its own id, so the same
    event delivered again in a new SQS message is skipped."""
    from tests.e2e.test_envelopes import eventbridge

    url, dlq_url = queues
    lambda_env(settings)
    event = eventbridge(json.loads(valid_bodies(1)[0]), event_id="evt-1")
    for _ in range(2):
        sqs.client.send_message(QueueUrl=url, MessageBody=event)
    Mapping(sqs, url).run()
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        keys = list(conn.execute(text("SELECT idempotency_key FROM user_logins")).scalars())
    engine.dispose()
    assert len(keys) == 1
    assert "evt-1" in keys[0]
    assert drain(sqs, dlq_url) == []


def test_the_retry_budget_leaves_time_before_the_lambda_timeout() -> None:
    class Context:
        def __init__(self, millis: int) -> None:
            self.millis = millis

        def get_remaining_time_in_millis(self) -> int:
            return self.millis

    assert lambda_handler.retry_seconds(None) == lambda_handler.RETRY_SECONDS
    assert lambda_handler.retry_seconds(Context(60_000)) == lambda_handler.RETRY_SECONDS
    assert lambda_handler.retry_seconds(Context(9_000)) == 3.0
    assert lambda_handler.retry_seconds(Context(100)) == 0.5


def test_the_handler_refuses_to_start_without_a_database_setting(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    lambda_env: Callable[[Settings], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lambda_env(settings)
    monkeypatch.delenv("LOGINETL_DATABASE_URL")
    monkeypatch.delenv("LOGINETL_DATABASE_URL_FILE", raising=False)
    # Were the handler to fall back to the CLI's default database, it must meet none: on
    # this machine that default may be the demo's database, which a handler would then
    # use (and this test would write to a database it did not create).
    monkeypatch.setattr(config, "DEFAULT_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    sqs.client.send_message(QueueUrl=queues[0], MessageBody="{}")
    records = Mapping(sqs, queues[0]).poll()
    with pytest.raises(LoginetlError) as raised:
        lambda_handler.handler({"Records": records}, None)
    sentence = "set LOGINETL_DATABASE_URL or LOGINETL_DATABASE_URL_FILE"
    assert sentence in str(raised.value)
    assert any(sentence in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert lambda_handler._runtime is None  # nothing cached: the next invocation tries again
