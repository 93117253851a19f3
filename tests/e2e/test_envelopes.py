"""SNS and EventBridge envelopes, and end-to-end lag, against real LocalStack SNS and SQS."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.attributes import ATTR_ORIGINAL_MESSAGE_ID, ATTR_REASON
from loginetl.services.sqs import SqsService
from tests.conftest import PUBLIC_SAMPLE, consume_process, finish
from tests.e2e.conftest import consume_json, count_rows, drain, wait_for

runner = CliRunner()
Bodies = Callable[..., list[str]]


def invoke(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def keys_in_db(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT idempotency_key FROM user_logins ORDER BY 1"))
            return [str(r[0]) for r in rows]
    finally:
        engine.dispose()


@pytest.fixture
def sns(sqs_endpoint: str) -> Any:
    return boto3.client(
        "sns",
        region_name="us-east-1",
        endpoint_url=sqs_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def topic(sns: Any, sqs: SqsService, queues: tuple[str, str]) -> Iterator[Callable[[bool], str]]:
    """Make SNS topics subscribed to the test's queue; return each topic's ARN."""
    made: list[str] = []
    queue_arn = sqs.queue_arn(queues[0])

    def make(raw_delivery: bool) -> str:
        arn = str(sns.create_topic(Name=f"logins-{uuid.uuid4().hex[:12]}")["TopicArn"])
        sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true" if raw_delivery else "false"},
        )
        made.append(arn)
        return arn

    yield make
    for arn in made:
        sns.delete_topic(TopicArn=arn)


def publish(sns: Any, topic_arn: str, bodies: list[str]) -> list[str]:
    """Publish each body through SNS; return SNS's MessageIds."""
    return [str(sns.publish(TopicArn=topic_arn, Message=b)["MessageId"]) for b in bodies]


def eventbridge(detail: Any, *, event_id: str | None = None, at: datetime | None = None) -> str:
    """An EventBridge event as a rule with an SQS target delivers it."""
    return json.dumps(
        {
            "version": "0",
            "id": event_id or str(uuid.uuid4()),
            "detail-type": "user.login",
            "source": "com.example.app",
            "account": "000000000000",
            "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def send(sqs: SqsService, queue_url: str, bodies: list[str]) -> list[str]:
    return [
        str(sqs.client.send_message(QueueUrl=queue_url, MessageBody=b)["MessageId"]) for b in bodies
    ]


def wait_visible(sqs: SqsService, queue_url: str, count: int) -> None:
    wait_for(lambda: sqs.depth(queue_url).visible >= count, timeout=30, what="SNS deliveries")


# -- SNS, raw delivery off and on --------------------------------------------------------------


def test_sns_with_raw_delivery_off_and_on_loads_every_login_once(
    cli_env: dict[str, str],
    settings: Settings,
    sns: Any,
    sqs: SqsService,
    queues: tuple[str, str],
    topic: Callable[[bool], str],
    valid_bodies: Bodies,
) -> None:
    wrapped, raw = topic(False), topic(True)
    sns_ids = publish(sns, wrapped, valid_bodies(5, 1))
    publish(sns, raw, valid_bodies(4, 2))
    wait_visible(sqs, queues[0], 9)
    summary = consume_json(cli_env, "--envelope", "auto")
    assert (summary["loaded"], summary["dead_lettered"], summary["duplicates_skipped"]) == (9, 0, 0)
    keys = keys_in_db(settings.database_url)
    assert len(keys) == 9
    # Wrapped ones are keyed by the notification's MessageId, raw ones by SQS's MessageId.
    assert sorted(k for k in keys if k.startswith("sns:")) == sorted(f"sns:{i}" for i in sns_ids)
    assert sqs.depth(queues[0]).visible == 0
    assert drain(sqs, queues[1]) == []


def test_without_unwrapping_an_sns_notification_is_missing_field(
    cli_env: dict[str, str],
    settings: Settings,
    sns: Any,
    sqs: SqsService,
    queues: tuple[str, str],
    topic: Callable[[bool], str],
    valid_bodies: Bodies,
) -> None:
    publish(sns, topic(False), valid_bodies(2, 3))
    wait_visible(sqs, queues[0], 2)
    summary = consume_json(cli_env, "--envelope", "none")
    assert summary["dead_lettered_by_reason"] == {"missing_field": 2}
    assert count_rows(settings.database_url) == 0


def test_an_sns_redelivery_with_a_new_sqs_message_id_loads_once(
    cli_env: dict[str, str],
    settings: Settings,
    sns: Any,
    sqs: SqsService,
    queues: tuple[str, str],
    topic: Callable[[bool], str],
    valid_bodies: Bodies,
) -> None:
    (sns_id,) = publish(sns, topic(False), valid_bodies(1, 4))
    wait_visible(sqs, queues[0], 1)
    (delivered,) = sqs.receive(queues[0], max_messages=1, wait_seconds=2)
    sqs.set_visibility(queues[0], [delivered], 0)
    # SNS delivers the same notification again: same body, a new SQS message.
    (copy_id,) = send(sqs, queues[0], [delivered.body])
    assert copy_id != delivered.message_id
    first = consume_json(cli_env, "--max", "1", "--workers", "1")
    again = consume_json(cli_env)
    assert (
        first["loaded"] + again["loaded"],
        first["duplicates_skipped"] + again["duplicates_skipped"],
    ) == (1, 1)
    # And once more, in a later run on its own (not only inside one batch).
    send(sqs, queues[0], [delivered.body])
    later = consume_json(cli_env)
    assert (later["loaded"], later["duplicates_skipped"]) == (0, 1)
    assert keys_in_db(settings.database_url) == [f"sns:{sns_id}"]
    assert drain(sqs, queues[1]) == []


# -- EventBridge ------------------------------------------------------------------------------


@pytest.fixture
def events(sqs_endpoint: str) -> Any:
    return boto3.client(
        "events",
        region_name="us-east-1",
        endpoint_url=sqs_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def rule_to(events: Any, target_arn: str) -> str:
    """An EventBridge rule on the default bus for this test's own source, targeting
    ``target_arn`` (a queue or a topic); return the source to put events with."""
    source = f"com.example.app.{uuid.uuid4().hex[:12]}"
    name = f"logins-{uuid.uuid4().hex[:12]}"
    events.put_rule(Name=name, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=name, Targets=[{"Id": "target", "Arn": target_arn}])
    return source


def put_events(events: Any, source: str, details: list[Any]) -> list[str]:
    """PutEvents, one entry each; return EventBridge's event ids."""
    ids = []
    for detail in details:
        answer = events.put_events(
            Entries=[{"Source": source, "DetailType": "user.login", "Detail": json.dumps(detail)}]
        )
        assert answer["FailedEntryCount"] == 0
        ids.append(str(answer["Entries"][0]["EventId"]))
    return ids


def test_eventbridge_deliveries_load_keyed_by_their_id_and_a_redelivery_is_skipped(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    events: Any,
    queues: tuple[str, str],
    valid_bodies: Bodies,
) -> None:
    source = rule_to(events, sqs.queue_arn(queues[0]))
    ids = put_events(events, source, [json.loads(b) for b in valid_bodies(3, 5)])
    other = put_events(events, source, [{"orderId": "o-1"}])  # another event type on the bus
    wait_visible(sqs, queues[0], 4)
    # EventBridge delivers at least once: a second delivery of one event is a new SQS
    # message with the same body. Send one of the real deliveries' bodies again.
    delivered = sqs.receive(queues[0], max_messages=10, wait_seconds=1, visibility_timeout=30)
    sqs.set_visibility(queues[0], delivered, 0)
    first = next(m for m in delivered if json.loads(m.body)["id"] == ids[0])
    send(sqs, queues[0], [first.body])
    summary = consume_json(cli_env)  # --envelope auto recognises EventBridge's shape
    assert (summary["loaded"], summary["duplicates_skipped"]) == (3, 1)
    assert summary["dead_lettered_by_reason"] == {"envelope_not_login": 1}
    assert keys_in_db(settings.database_url) == sorted(f"eventbridge:{i}" for i in ids)
    dead = drain(sqs, queues[1])
    assert [m.attributes[ATTR_ORIGINAL_MESSAGE_ID] for m in dead] == [f"eventbridge:{other[0]}"]


def test_eventbridge_through_an_sns_topic_fans_out_and_loads_once_per_queue(
    cli_env: dict[str, str],
    settings: Settings,
    sns: Any,
    sqs: SqsService,
    events: Any,
    queues: tuple[str, str],
    valid_bodies: Bodies,
) -> None:
    # A rule targets a topic; the topic fans the event out to the queue (raw delivery, so
    # the event arrives as EventBridge sent it) and to a second subscriber queue.
    arn = str(sns.create_topic(Name=f"logins-{uuid.uuid4().hex[:12]}")["TopicArn"])
    second = sqs.client.create_queue(QueueName=f"fan-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    for queue_arn in (sqs.queue_arn(queues[0]), sqs.queue_arn(second)):
        sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    ids = put_events(events, rule_to(events, arn), [json.loads(b) for b in valid_bodies(3, 6)])
    wait_visible(sqs, queues[0], 3)
    wait_visible(sqs, second, 3)
    summary = consume_json(cli_env)
    assert (summary["loaded"], summary["dead_lettered"]) == (3, 0)
    assert keys_in_db(settings.database_url) == sorted(f"eventbridge:{i}" for i in ids)
    # The second queue's copies, consumed into the same table, are the same events.
    fanned = consume_json({**cli_env, "LOGINETL_QUEUE": second.rsplit("/", 1)[-1]})
    assert (fanned["loaded"], fanned["duplicates_skipped"]) == (0, 3)
    sns.delete_topic(TopicArn=arn)
    sqs.client.delete_queue(QueueUrl=second)


# -- malformed envelopes ------------------------------------------------------------------------


def test_malformed_envelopes_are_dead_lettered_with_their_own_reasons(
    cli_env: dict[str, str],
    settings: Settings,
    sns: Any,
    sqs: SqsService,
    queues: tuple[str, str],
    topic: Callable[[bool], str],
    valid_bodies: Bodies,
) -> None:
    good = json.loads(valid_bodies(1, 6)[0])
    wrapped = topic(False)
    (not_login_id,) = publish(sns, wrapped, ["just a string, not a login"])
    publish(sns, wrapped, [json.dumps({**good, "ip": "300.1.1.1"})])
    wait_visible(sqs, queues[0], 2)
    forged = json.dumps(
        {"Type": "Notification", "MessageId": "../x", "TopicArn": "arn:x", "Message": "{}"}
    )
    send(
        sqs,
        queues[0],
        [
            forged,  # an id no SNS would give
            json.dumps({"Type": "Notification", "TopicArn": "arn:x", "Message": {"a": 1}}),
            eventbridge("a string detail"),
            eventbridge({"orderId": "o-1"}),  # another event type on the bus
            json.dumps(good),  # and a plain login, which loads
        ],
    )
    summary = consume_json(cli_env)
    expected = {"envelope_invalid": 3, "envelope_not_login": 2, "invalid_ip": 1}
    assert summary["dead_lettered_by_reason"] == expected
    assert (summary["loaded"], summary["dead_lettered"]) == (1, 6)
    assert count_rows(settings.database_url) == 1
    dead = drain(sqs, queues[1])
    assert len(dead) == 6
    by_reason: dict[str, list[str]] = {}
    for message in dead:
        by_reason.setdefault(message.attributes[ATTR_REASON], []).append(
            message.attributes[ATTR_ORIGINAL_MESSAGE_ID]
        )
    assert {r: len(ids) for r, ids in by_reason.items()} == expected
    # An envelope that parsed keeps its identity in the DLQ; a malformed one has SQS's.
    assert f"sns:{not_login_id}" in by_reason["envelope_not_login"]
    assert not any(i.startswith("sns:") for i in by_reason["envelope_invalid"])


def test_a_strict_mode_dead_letters_a_plain_login(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Bodies,
) -> None:
    send(sqs, queues[0], valid_bodies(2, 7))
    summary = consume_json(cli_env, "--envelope", "sns")
    assert summary["dead_lettered_by_reason"] == {"envelope_invalid": 2}
    assert count_rows(settings.database_url) == 0


def test_an_unknown_envelope_mode_is_refused_with_exit_2(cli_env: dict[str, str]) -> None:
    output = invoke(cli_env, "consume", "--envelope", "xml", code=2)
    assert "auto, none, sns, eventbridge" in output
    env = {**cli_env, "LOGINETL_ENVELOPE": "soap"}
    assert "LOGINETL_ENVELOPE" in invoke(env, "peek", code=2)


def test_the_public_sample_still_loads_99_with_envelope_auto(
    cli_env: dict[str, str], settings: Settings, queues: tuple[str, str]
) -> None:
    invoke(cli_env, "seed", "--from-file", str(PUBLIC_SAMPLE), "--json")
    summary = consume_json(cli_env, "--envelope", "auto")
    assert (summary["loaded"], summary["dead_lettered_by_reason"]) == (99, {"missing_field": 1})
    assert count_rows(settings.database_url) == 99


# -- peek and replay-dlq see through the envelope ----------------------------------------------


def test_peek_and_replay_dry_run_show_the_unwrapped_verdict(
    cli_env: dict[str, str],
    settings: Settings,
    sns: Any,
    sqs: SqsService,
    queues: tuple[str, str],
    topic: Callable[[bool], str],
    valid_bodies: Bodies,
) -> None:
    (sns_id,) = publish(sns, topic(False), valid_bodies(1, 8))
    wait_visible(sqs, queues[0], 1)
    (shown,) = json.loads(invoke(cli_env, "peek", "--json"))["messages"]
    assert (shown["verdict"], shown["envelope"]) == ("load", "sns")
    assert shown["idempotency_key"] == f"sns:{sns_id}"
    assert shown["row"]["masked_ip"].startswith("k1:")
    none = json.loads(invoke(cli_env, "peek", "--json", "--envelope", "none"))["messages"]
    assert none[0]["verdict"] == "missing_field"
    # An operator forgot the envelope: consumed with none, it is dead-lettered missing_field.
    assert consume_json(cli_env, "--envelope", "none")["dead_lettered"] == 1
    dry = json.loads(invoke(cli_env, "replay-dlq", "--dry-run", "--json"))
    assert dry["dry_run_verdicts"] == {"missing_field": {"would_load": 1, "would_fail": {}}}
    dry_none = json.loads(
        invoke(cli_env, "replay-dlq", "--dry-run", "--json", "--envelope", "none")
    )
    assert dry_none["dry_run_verdicts"]["missing_field"]["would_load"] == 0
    moved = json.loads(invoke(cli_env, "replay-dlq", "--json"))
    assert moved["moved"] == 1
    assert consume_json(cli_env)["loaded"] == 1
    assert keys_in_db(settings.database_url) == [f"sns:{sns_id}"]


# -- end-to-end lag ----------------------------------------------------------------------------


def test_lag_in_the_summary_covers_the_time_a_message_waited(
    cli_env: dict[str, str],
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Bodies,
) -> None:
    send(sqs, queues[0], valid_bodies(3, 9))
    time.sleep(2.5)
    started = time.monotonic()
    summary = consume_json(cli_env)
    took = time.monotonic() - started
    assert summary["loaded"] == 3
    assert 2.5 <= summary["lag_p50_seconds"] <= summary["lag_p99_seconds"]
    assert summary["lag_p99_seconds"] <= 2.5 + took + 1
    assert summary["lag_max_seconds"] == summary["lag_p99_seconds"]


def test_lag_uses_an_envelope_time_but_never_a_fresher_one_than_sqs(
    cli_env: dict[str, str],
    sqs: SqsService,
    events: Any,
    queues: tuple[str, str],
    valid_bodies: Bodies,
) -> None:
    older, forged, far = (json.loads(b) for b in valid_bodies(3, 10))
    now = datetime.now(UTC)
    source = rule_to(events, sqs.queue_arn(queues[0]))
    # Real deliveries with the event time a PutEvents caller may set: 40 s ago (EventBridge
    # retried), 30 s ahead, and an hour ahead: outside the bound, dead-lettered (its day
    # cannot be trusted).
    for detail, at in ((older, -40), (forged, 30), (far, 3600)):
        answer = events.put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": "user.login",
                    "Detail": json.dumps(detail),
                    "Time": now + timedelta(seconds=at),
                }
            ]
        )
        assert answer["FailedEntryCount"] == 0
    wait_visible(sqs, queues[0], 3)
    time.sleep(2)
    summary = consume_json(cli_env)
    assert summary["loaded"] == 2
    assert summary["dead_lettered_by_reason"] == {"envelope_invalid": 1}
    assert summary["lag_max_seconds"] >= 40
    assert 2 <= summary["lag_p50_seconds"] < 40  # the forged one: from SQS's SentTimestamp


def test_lag_is_a_prometheus_histogram(
    cli_env: dict[str, str], sqs: SqsService, queues: tuple[str, str], valid_bodies: Bodies
) -> None:
    send(sqs, queues[0], valid_bodies(4, 11))
    time.sleep(1.5)
    with socket.socket() as sock:  # a free loopback port for --metrics-port
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = consume_process(cli_env, "--follow", "--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"

    def scraped() -> str:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    try:
        wait_for(lambda: "loginetl_consume_lag_seconds_count 4.0" in scraped(), what="4 lags")
        body = scraped()
    finally:
        process.terminate()
        code, summary, _ = finish(process)
    assert code == 0
    assert 'loginetl_consume_lag_seconds_bucket{le="1.0"} 0.0' in body  # each waited 1.5 s+
    assert 'loginetl_consume_lag_seconds_bucket{le="+Inf"} 4.0' in body
    assert summary["lag_p50_seconds"] >= 1.5
