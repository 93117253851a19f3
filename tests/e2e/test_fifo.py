"""FIFO queues end to end: real LocalStack FIFO queues, real PostgreSQL, the real CLI."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.attributes import trust
from loginetl.core.batch import InboundMessage
from loginetl.errors import ConfigError
from loginetl.services.keys import ATTRIBUTE_FILE, load_keyring
from loginetl.services.sqs import SqsService
from tests.conftest import consume_process, env_for, finish
from tests.e2e.conftest import consume_json, count_rows, drain

runner = CliRunner()
GROUPS = 4
PER_GROUP = 6
PADDED_GROUP = 2  # its bodies are over 1 KiB: too_large at --max-body-bytes 1024
MALFORMED = {(1, 2): "not json", (3, 4): json.dumps({"user_id": "g3-04"})}


@pytest.fixture
def fifo_settings(database_url: str, sqs_endpoint: str, keys_dir: Path) -> Settings:
    suffix = uuid.uuid4().hex[:12]
    return Settings.load(
        environ={},
        database_url=database_url,
        queue_name=f"login-{suffix}.fifo",
        dlq_name=f"login-{suffix}-dlq.fifo",
        endpoint_url=sqs_endpoint,
        keys_dir=keys_dir,
    )


def body(group: int, index: int, good: dict[str, object]) -> str:
    if (group, index) in MALFORMED:
        return MALFORMED[(group, index)]
    fields = {**good, "user_id": f"g{group}-{index:02d}"}
    if group == PADDED_GROUP:
        fields["padding"] = "x" * 1200  # an unknown field: ignored, but counts towards the size
    return json.dumps(fields)


def publish_groups(sqs: SqsService, url: str, good: dict[str, object]) -> None:
    """Send GROUPS x PER_GROUP messages, the groups interleaved, each group in index order."""
    for index in range(PER_GROUP):
        for group in range(GROUPS):
            sqs.client.send_message(
                QueueUrl=url,
                MessageBody=body(group, index, good),
                MessageGroupId=f"group-{group}",
                MessageDeduplicationId=f"{group}-{index}",
            )
            time.sleep(0.003)  # SentTimestamp has millisecond resolution: keep them apart


def rows_by_group(database_url: str) -> dict[str, list[tuple[int, float, float]]]:
    """Per group: (index, sent_at, loaded_at) of every row, ordered by sent_at."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT user_id, extract(epoch FROM sent_at), extract(epoch FROM loaded_at) "
                "FROM user_logins ORDER BY sent_at, id"
            )
        ).all()
    engine.dispose()
    groups: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for user_id, sent_at, loaded_at in rows:
        group, index = user_id.split("-")
        groups[group].append((int(index), float(sent_at), float(loaded_at)))
    return groups


def assert_in_group_order(groups: dict[str, list[tuple[int, float, float]]]) -> None:
    for group, rows in groups.items():
        indexes = [index for index, _, _ in rows]
        assert indexes == sorted(indexes), f"{group}: sent_at order is not the send order"
        assert len({sent for _, sent, _ in rows}) == len(rows), f"{group}: sent_at ties"
        loaded = [loaded for _, _, loaded in rows]
        # loaded_at is the transaction's start: a later message never in an earlier commit.
        assert loaded == sorted(loaded), f"{group}: a later message was committed first"


def sample_all(sqs: SqsService, url: str) -> list[InboundMessage]:
    """Every message of a FIFO queue, received (hidden 30 s), then released."""
    seen = sqs.sample(url, count=100, visibility_timeout=30)
    sqs.set_visibility(url, seen, 0)
    return seen


def test_a_fifo_queue_needs_a_fifo_dead_letter_queue() -> None:
    with pytest.raises(ConfigError, match="FIFO queue needs a FIFO dead-letter queue"):
        Settings.load(environ={}, queue_name="logins.fifo", dlq_name="logins-dlq")
    with pytest.raises(ConfigError, match="FIFO"):
        Settings.load(environ={}, queue_name="logins", dlq_name="logins-dlq.fifo")
    with pytest.raises(ConfigError, match="not a valid SQS queue name"):
        Settings.load(environ={}, queue_name="a" * 76 + ".fifo", dlq_name="d.fifo")
    Settings.load(environ={}, queue_name="logins.fifo", dlq_name="dlq.fifo")  # a FIFO pair
    result = runner.invoke(
        app, ["consume", "--max", "1"], env={"LOGINETL_QUEUE": "l.fifo", "LOGINETL_DLQ": "d"}
    )
    assert result.exit_code == 2
    assert "FIFO dead-letter queue" in result.output


def test_fifo_pair_keeps_group_order_through_consume_the_dlq_and_replay(
    fifo_settings: Settings,
    sqs: SqsService,
    valid_bodies: Callable[..., list[str]],
) -> None:
    env = env_for(fifo_settings)
    # --create-queues makes the FIFO pair (nothing to consume yet).
    created = consume_json(env, "--create-queues")
    assert created["received"] == 0
    url, dlq_url = sqs.queue_url(fifo_settings.queue_name), sqs.queue_url(fifo_settings.dlq_name)
    for queue in (url, dlq_url):
        attributes = sqs.client.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])[
            "Attributes"
        ]
        assert (attributes["FifoQueue"], attributes["ContentBasedDeduplication"]) == (
            "true",
            "false",
        )
    assert (
        sqs.queue_arn(dlq_url)
        in json.loads(
            sqs.client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]["RedrivePolicy"]
        )["deadLetterTargetArn"]
    )

    publish_groups(sqs, url, json.loads(valid_bodies(1)[0]))
    first = consume_json(env, "--max-body-bytes", "1024", "--workers", "4")
    assert first["received"] == GROUPS * PER_GROUP
    assert first["loaded"] == (GROUPS - 1) * PER_GROUP - len(MALFORMED)
    assert first["dead_lettered_by_reason"] == {
        "invalid_json": 1,
        "missing_field": 1,
        "too_large": PER_GROUP,
    }
    assert (first["released"], first["unfinished"]) == (0, 0)
    assert_in_group_order(rows_by_group(fifo_settings.database_url))

    # The DLQ copies keep their group, in order, with signed reasons.
    dead = sample_all(sqs, dlq_url)
    assert len(dead) == PER_GROUP + len(MALFORMED)
    keys = load_keyring(fifo_settings.keys_dir, ATTRIBUTE_FILE)
    by_group: dict[str, list[InboundMessage]] = defaultdict(list)
    for message in sorted(dead, key=lambda m: m.sequence_number or 0):
        verified = trust(message.attributes, message.body, keys, now=datetime.now(UTC))
        assert not verified.dropped
        assert verified.attributes["loginetl-reason"] in (
            "invalid_json",
            "missing_field",
            "too_large",
        )
        by_group[message.group_id or ""].append(message)
    assert {g: len(ms) for g, ms in by_group.items()} == {
        "group-1": 1,
        "group-3": 1,
        f"group-{PADDED_GROUP}": PER_GROUP,
    }
    assert [json.loads(m.body)["user_id"] for m in by_group[f"group-{PADDED_GROUP}"]] == [
        f"g{PADDED_GROUP}-{i:02d}" for i in range(PER_GROUP)
    ]

    # Replay the too_large ones into the FIFO queue: same group, same order.
    replayed = runner.invoke(app, ["replay-dlq", "--reason", "too_large", "--json"], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout.strip().splitlines()[-1])["moved"] == PER_GROUP
    back = sample_all(sqs, url)
    assert {m.group_id for m in back} == {f"group-{PADDED_GROUP}"}
    assert [
        json.loads(m.body)["user_id"] for m in sorted(back, key=lambda m: m.sequence_number or 0)
    ] == [f"g{PADDED_GROUP}-{i:02d}" for i in range(PER_GROUP)]
    second = consume_json(env, "--workers", "4")
    assert (second["received"], second["loaded"], second["dead_lettered"]) == (
        PER_GROUP,
        PER_GROUP,
        0,
    )

    groups = rows_by_group(fifo_settings.database_url)
    assert {g: len(rows) for g, rows in groups.items()} == {
        "g0": PER_GROUP,
        "g1": PER_GROUP - 1,
        "g2": PER_GROUP,
        "g3": PER_GROUP - 1,
    }
    assert_in_group_order(groups)  # replayed rows keep the original sent_at, in order
    assert count_rows(fifo_settings.database_url) == GROUPS * PER_GROUP - len(MALFORMED)
    assert sqs.depth(url).visible == sqs.depth(url).in_flight == 0
    assert len(drain(sqs, dlq_url)) == len(MALFORMED)


def test_a_reject_the_fifo_dlq_cannot_take_holds_its_group_back(
    fifo_settings: Settings,
    sqs: SqsService,
    valid_bodies: Callable[..., list[str]],
) -> None:
    """A body too big to carry loginetl's attributes into the DLQ stays in the queue; the
    later messages of its group stay uncommitted and hidden with it, other groups load."""
    url, dlq_url = sqs.create_queues(fifo_settings.queue_name, fifo_settings.dlq_name)
    good = json.loads(valid_bodies(1)[0])
    sends = [
        ("a", json.dumps({**good, "user_id": "a-00"})),
        ("a", "x" * (1024 * 1024 - 64)),  # fits the queue, not the DLQ with attributes
        ("a", json.dumps({**good, "user_id": "a-02"})),
        ("b", json.dumps({**good, "user_id": "b-00"})),
        ("b", json.dumps({**good, "user_id": "b-01"})),
    ]
    for i, (group, text_body) in enumerate(sends):
        sqs.client.send_message(
            QueueUrl=url, MessageBody=text_body, MessageGroupId=group, MessageDeduplicationId=str(i)
        )
    summary = consume_json(env_for(fifo_settings), "--workers", "1")
    assert summary["received"] == 5
    assert summary["loaded"] == 3  # a-00, b-00, b-01
    assert summary["dead_letter_failures"] == 1
    assert summary["unfinished"] == 2  # the stuck one, and a-02 behind it: both left hidden
    assert summary["released"] == 0
    engine = create_engine(fifo_settings.database_url)
    with engine.connect() as conn:
        users = conn.execute(text("SELECT user_id FROM user_logins ORDER BY user_id")).scalars()
        assert list(users) == ["a-00", "b-00", "b-01"]
    engine.dispose()
    assert sqs.depth(dlq_url).visible == 0


def test_a_dead_letter_resent_after_a_crash_is_dropped_by_the_fifo_dlq(
    fifo_settings: Settings,
    sqs: SqsService,
    valid_bodies: Callable[..., list[str]],
) -> None:
    """kill -9 right after the FIFO DLQ accepted a batch's rejects (before the load and the
    delete): the rerun sends them again with the same deduplication ids, and SQS keeps one
    copy of each; the valid messages load once."""
    url, dlq_url = sqs.create_queues(fifo_settings.queue_name, fifo_settings.dlq_name)
    sqs.client.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
    bodies = [*valid_bodies(3), "not json", json.dumps(["a", "list"])]
    for i, text_body in enumerate(bodies):
        sqs.client.send_message(
            QueueUrl=url, MessageBody=text_body, MessageGroupId="g", MessageDeduplicationId=str(i)
        )
    env = env_for(fifo_settings)
    crashed = consume_process(
        {**env, "LOGINETL_FAILPOINT": "crash_after_dead_letter:1"}, "--idle-exit", "1"
    )
    code, _, _ = finish(crashed)
    assert code == -signal.SIGKILL
    assert count_rows(fifo_settings.database_url) == 0  # FIFO: rejects go first, then the load
    # Idle longer than the 2 s visibility, so the crashed run's messages are back in time.
    summary = consume_json(env, "--idle-exit", "4")
    assert (summary["received"], summary["loaded"], summary["dead_lettered"]) == (5, 3, 2)
    assert count_rows(fifo_settings.database_url) == 3
    dead = drain(sqs, dlq_url)
    assert sorted(m.body for m in dead) == sorted(bodies[3:])  # one copy each, not two


def test_the_endpoint_keeps_a_group_closed_while_any_of_it_is_in_flight(sqs: SqsService) -> None:
    """As AWS does (tools/localstack_site patches LocalStack 4.14, which reopens the group):
    one message of a group coming back does not let a later one reach another receiver."""
    client = sqs.client
    url = client.create_queue(
        QueueName=f"closed-{uuid.uuid4().hex[:8]}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    for i in range(1, 7):
        client.send_message(
            QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=f"d{i}"
        )

    def receive(visibility: int) -> list[dict[str, str]]:
        answer = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility
        )
        return answer.get("Messages", [])

    first = receive(60)
    assert [m["Body"] for m in first] == ["m1", "m2", "m3", "m4", "m5", "m6"][: len(first)]
    assert len(first) >= 3
    client.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    assert receive(60) == []  # m1 is back, but m2... are still in flight: the group stays shut
    for message in first[1:]:
        client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    again = [m["Body"] for m in receive(60)]
    assert again[:1] == ["m1"]  # none in flight: the group opens at its oldest message
    assert again == ["m1", "m2", "m3", "m4", "m5", "m6"][:1] + [
        f"m{i}" for i in range(len(first) + 1, len(first) + len(again))
    ]
