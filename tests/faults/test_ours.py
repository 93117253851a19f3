"""make faults, issue 25: a failure that is ours stops the line; only theirs goes to the DLQ.

Valid traffic meets a fault the messages do not explain (a constraint or a trigger that
refuses every row, a sealer that fails, an unexpected exception in the write). consume
must stop with exit 1 and one sentence naming the cause, dead-letter nothing and leave
every message in the queue; the Lambda must raise, so the whole batch comes back. Once
the fault is fixed, a rerun loads every message exactly once. Beside them, the FIFO
promise with the DLQ taken away mid-run: a group's message behind a reject the DLQ did
not take is not committed until the reject has been dead-lettered.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from loginetl import lambda_handler
from loginetl.actions.seed import send_bodies
from loginetl.config import Settings
from loginetl.errors import LoginetlError
from loginetl.services.sqs import SqsService
from tests.e2e.test_lambda import Mapping, forget_runtime
from tests.faults.conftest import (
    account,
    consume_process,
    env_for,
    fault_bodies,
    finish,
    left_in,
    wait_until,
)

pytestmark = pytest.mark.slow

VALID = 200


def execute(url: str, *statements: str) -> None:
    """Run statements as the owner, on this test's own database."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def users_loaded(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        users = list(
            conn.execute(text("SELECT user_id FROM user_logins ORDER BY loaded_at, id")).scalars()
        )
    engine.dispose()
    return users


# fault -> (SQL that breaks it, SQL that fixes it, failpoint, words the stop must say)
FAULTS: dict[str, tuple[list[str], list[str], str, str]] = {
    "a constraint that refuses every row": (
        [
            "ALTER TABLE user_logins ADD CONSTRAINT botched_rule CHECK (user_id = 'nobody')",
        ],
        ["ALTER TABLE user_logins DROP CONSTRAINT botched_rule"],
        "",
        "refused every row of a batch (SQLSTATE 23514, constraint botched_rule)",
    ),
    "a trigger that raises": (
        [
            "CREATE FUNCTION botched() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM 1 / 0; RETURN NEW; END $$",
            "CREATE TRIGGER botched BEFORE INSERT ON user_logins "
            "FOR EACH ROW EXECUTE FUNCTION botched()",
        ],
        ["DROP TRIGGER botched ON user_logins", "DROP FUNCTION botched()"],
        "",
        "refused every row of a batch (SQLSTATE 22012)",
    ),
    "a sealer that fails": ([], [], "raise_in_prepare:1", "masking and sealing failed"),
    "an unexpected exception in the write": (
        [],
        [],
        "raise_in_write:1",
        "unexpected RuntimeError, a fault of loginetl's",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing(
    fault: str, settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    breaks, fixes, failpoint, says = FAULTS[fault]
    bodies, users = fault_bodies(f"ours-{len(fault)}", VALID)
    assert send_bodies(sqs, fault_queues[0], bodies[:VALID]) == (VALID, 0)
    execute(settings.database_url, *breaks)
    env = env_for(settings, **({"LOGINETL_FAILPOINT": failpoint} if failpoint else {}))
    code, _, err = finish(consume_process(env, "--workers", "2", "--idle-exit", "4"))
    assert code == 1, err
    assert says in err.strip().splitlines()[-1], err  # the sentence the operator reads last
    assert users_loaded(settings.database_url) == []
    assert left_in(sqs, fault_queues[1]) == 0  # nothing dead-lettered
    depth = sqs.depth(fault_queues[0])
    assert depth.visible + depth.in_flight == VALID  # every message kept, none deleted

    execute(settings.database_url, *fixes)
    code, summary, err = finish(consume_process(env_for(settings), "--idle-exit", "6"))
    assert code == 0, err
    assert summary["dead_lettered"] == 0
    result = account(f"25.1 consume, {fault}, then fixed", settings.database_url, sqs,
                     fault_queues, users, 0)  # fmt: skip
    assert result.exact, result


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Settings], None]]:
    def point_at(settings: Settings) -> None:
        for name, value in env_for(settings).items():
            monkeypatch.setenv(name, value)
        forget_runtime()

    yield point_at
    forget_runtime()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failure_that_is_ours_fails_the_lambda_invocation_and_dead_letters_nothing(
    fault: str,
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
    in_lambda: Callable[[Settings], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    breaks, fixes, failpoint, says = FAULTS[fault]
    bodies, users = fault_bodies(f"ours-lambda-{len(fault)}", 30)
    assert send_bodies(sqs, fault_queues[0], bodies[:30]) == (30, 0)
    in_lambda(settings)
    execute(settings.database_url, *breaks)
    if failpoint:
        monkeypatch.setenv("LOGINETL_FAILPOINT", failpoint)
    mapping = Mapping(sqs, fault_queues[0])
    for _ in range(3):
        records = mapping.poll()
        assert records
        with pytest.raises(LoginetlError) as raised:
            lambda_handler.handler({"Records": records}, None)
        assert says in str(raised.value)
        mapping.apply(records, None)  # the invocation failed: every record comes back
    assert users_loaded(settings.database_url) == []
    assert left_in(sqs, fault_queues[1]) == 0

    execute(settings.database_url, *fixes)
    monkeypatch.delenv("LOGINETL_FAILPOINT", raising=False)
    mapping.run(timeout=120)
    assert mapping.reported == []
    result = account(f"25.2 Lambda, {fault}, then fixed", settings.database_url, sqs,
                     fault_queues, users, 0)  # fmt: skip
    assert result.exact, result


def fifo_pair(settings: Settings, sqs: SqsService) -> tuple[Settings, str, str]:
    suffix = uuid.uuid4().hex[:12]
    fifo = Settings.load(
        environ={},
        database_url=settings.database_url,
        queue_name=f"login-{suffix}.fifo",
        dlq_name=f"login-{suffix}-dlq.fifo",
        endpoint_url=settings.endpoint_url,
        keys_dir=settings.keys_dir,
    )
    url, dlq_url = sqs.create_queues(
        fifo.queue_name, fifo.dlq_name, max_receive_count=20, visibility_timeout=4
    )
    return fifo, url, dlq_url


def publish_group_with_a_reject(sqs: SqsService, url: str, tag: str) -> set[str]:
    """[g ok, g broken, g ok, h ok] on a FIFO queue; return the valid users."""
    good, _ = fault_bodies(tag, 3)
    g0, g2, h0 = (json.loads(b) for b in good[:3])
    sends = [("g", g0), ("g", "not json"), ("g", g2), ("h", h0)]
    for i, (group, body) in enumerate(sends):
        sqs.client.send_message(
            QueueUrl=url,
            MessageBody=body if isinstance(body, str) else json.dumps(body),
            MessageGroupId=f"{tag}-{group}",
            MessageDeduplicationId=str(i),
        )
        time.sleep(0.003)
    return {g0["user_id"], g2["user_id"], h0["user_id"]}


def take_the_dlq_away(sqs: SqsService, dlq_url: str) -> Callable[[], None]:
    """Delete the FIFO DLQ; return what brings it back (same name, same URL)."""
    attributes = sqs.client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])
    name = dlq_url.rsplit("/", 1)[-1]
    sqs.client.delete_queue(QueueUrl=dlq_url)

    def bring_back() -> None:
        kept = {"FifoQueue", "ContentBasedDeduplication", "VisibilityTimeout"}
        sqs.client.create_queue(
            QueueName=name,
            Attributes={k: v for k, v in attributes["Attributes"].items() if k in kept},
        )

    return bring_back


def assert_reject_before_the_rest_of_its_group(url: str, users: set[str], dead: list[str]) -> None:
    """Every row once, the reject in the DLQ once, and g's rows in g's order."""
    loaded = users_loaded(url)
    assert sorted(loaded) == sorted(users)
    assert dead == ["not json"]
    g0, g2, _h0 = sorted(users)
    assert loaded.index(g0) < loaded.index(g2)


def test_fifo_dlq_taken_away_mid_run_holds_the_group_back_in_consume(
    settings: Settings, sqs: SqsService, tmp_path: Path
) -> None:
    fifo, url, dlq_url = fifo_pair(settings, sqs)
    tag = "fifo-consume"
    users = publish_group_with_a_reject(sqs, url, tag)
    gate = tmp_path / "gate"
    env = env_for(
        fifo,
        LOGINETL_FAILPOINT="hold_after_receive:1",
        LOGINETL_FAILPOINT_GATE=str(gate),
    )
    worker = consume_process(env, "--workers", "1", "--idle-exit", "8")
    wait_until(lambda: sqs.depth(url).in_flight == 4, what="the batch received")
    bring_back = take_the_dlq_away(sqs, dlq_url)
    gate.touch()
    g0, _g2, h0 = sorted(users)
    wait_until(lambda: len(users_loaded(fifo.database_url)) >= 2, what="the first commit")
    assert sorted(users_loaded(fifo.database_url)) == [g0, h0]  # g2 waits behind the reject
    time.sleep(5)  # past the visibility timeout: the reject comes back, the DLQ still gone
    assert sorted(users_loaded(fifo.database_url)) == [g0, h0]
    bring_back()
    code, summary, err = finish(worker)
    assert code == 0, err
    dead = [m.body for m in sqs.receive(dlq_url, max_messages=10, wait_seconds=1)]
    assert_reject_before_the_rest_of_its_group(fifo.database_url, users, dead)
    assert summary["dead_lettered"] == 1


def test_fifo_dlq_taken_away_mid_run_holds_the_group_back_in_the_lambda(
    settings: Settings, sqs: SqsService, in_lambda: Callable[[Settings], None]
) -> None:
    fifo, url, dlq_url = fifo_pair(settings, sqs)
    tag = "fifo-lambda"
    users = publish_group_with_a_reject(sqs, url, tag)
    in_lambda(fifo)
    lambda_handler.runtime()  # warm: the DLQ's URL is known, as in a running function
    bring_back = take_the_dlq_away(sqs, dlq_url)
    mapping = Mapping(sqs, url)
    records = mapping.poll()
    assert len(records) == 4
    response = mapping.invoke(records)
    assert response is not None
    by_body = {r["body"]: r["messageId"] for r in records}
    g0, g2, h0 = sorted(users)
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    stuck_and_behind = [by_body["not json"], *(i for b, i in by_body.items() if g2 in b)]
    assert reported == stuck_and_behind
    assert sorted(users_loaded(fifo.database_url)) == [g0, h0]
    mapping.apply(records, response)
    time.sleep(4.5)
    assert sorted(users_loaded(fifo.database_url)) == [g0, h0]
    bring_back()
    mapping.run(timeout=60)
    dead = [m.body for m in sqs.receive(dlq_url, max_messages=10, wait_seconds=1)]
    assert_reject_before_the_rest_of_its_group(fifo.database_url, users, dead)
