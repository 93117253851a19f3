"""make faults: break things on purpose, with real processes, and count.

Each scenario sends a known set of messages (unique user ids, so a duplicate row would
show), breaks something, lets the system recover, and checks
sent = loaded + dead-lettered with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import create_engine, text

from loginetl.actions.seed import send_bodies
from loginetl.config import Settings
from loginetl.core.batch import ATTR_REASON
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.faults.conftest import (
    LOGINETL,
    PrivatePostgres,
    account,
    consume_process,
    env_for,
    fault_bodies,
    finish,
    wait_until,
)
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.slow


def rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM user_logins")).scalar_one())
    except Exception:
        return -1
    finally:
        engine.dispose()


def publish(sqs: SqsService, url: str, bodies: list[str]) -> None:
    assert send_bodies(sqs, url, bodies) == (len(bodies), 0)


@pytest.mark.parametrize("point", ["crash_before_commit", "crash_after_commit"])
def test_kill_9_mid_batch_then_rerun(
    point: str, settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies(point, 800)
    publish(sqs, fault_queues[0], bodies)
    # The second of three batches (300, 300, 200 with the default --batch-size): mid-run.
    crashed = consume_process(env_for(settings, LOGINETL_FAILPOINT=f"{point}:2"), "--workers", "2")
    code, _, _ = finish(crashed)
    assert code == -signal.SIGKILL
    again = consume_process(env_for(settings), "--idle-exit", "8")
    code, summary, err = finish(again)
    assert code == 0, err
    if point == "crash_after_commit":
        assert summary["duplicates_skipped"] >= 1  # the committed batch came back and was skipped
    result = account(
        f"1. kill -9 {point.replace('_', ' ')}", settings.database_url, sqs, fault_queues, users, 5
    )
    assert result.exact, result


def test_database_cut_off_then_stopped_for_10s_while_following(
    private_postgres: PrivatePostgres,
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
) -> None:
    bodies, users = fault_bodies("pgdown", 3000)
    publish(sqs, fault_queues[0], bodies)
    env = env_for(settings, LOGINETL_DATABASE_URL=private_postgres.url)
    # One receive a transaction: many small batches, so the outage lands mid-run.
    worker = consume_process(env, "--follow", "--workers", "2", "--batch-size", "10")
    try:
        wait_until(lambda: rows(private_postgres.url) > 300, what="first rows")
        engine = create_engine(
            private_postgres.url.replace("/loginetl", "/postgres"), isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = 'loginetl' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        engine.dispose()
        assert killed >= 1
        time.sleep(1)
        private_postgres.stop()
        time.sleep(10)
        assert worker.poll() is None, "--follow must keep running through the outage"
        private_postgres.start()
        wait_until(lambda: rows(private_postgres.url) == len(users), timeout=120, what="all rows")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code, summary, err = finish(worker)
    assert code == 0, err
    assert summary["transient_errors"] >= 1
    result = account(
        "2. connections killed, PostgreSQL down 10 s (--follow)",
        private_postgres.url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


def test_sqs_unreachable_at_start_and_restarted_mid_run(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str], sqs_endpoint: str
) -> None:
    proxy = Proxy(int(sqs_endpoint.rsplit(":", 1)[1]))
    proxy.pause()
    env = env_for(settings, AWS_ENDPOINT_URL=proxy.url)
    started = time.monotonic()
    code, _, err = finish(consume_process(env))
    assert code == 2
    assert "cannot reach the SQS endpoint" in err
    assert time.monotonic() - started < 60
    bodies, users = fault_bodies("sqsdown", 3000)
    publish(sqs, fault_queues[0], bodies)
    proxy.resume()
    worker = consume_process(env, "--workers", "2", "--idle-exit", "8", "--retry-seconds", "60")
    wait_until(lambda: rows(settings.database_url) > 300, what="first rows")
    proxy.pause()
    time.sleep(6)
    proxy.resume()
    code, summary, err = finish(worker)
    proxy.pause()
    assert code == 0, err
    assert summary["transient_errors"] >= 1
    result = account(
        "3. SQS unreachable at start (exit 2), cut 6 s mid-run",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


def test_dlq_unavailable_keeps_the_invalid_message_in_the_queue(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("dlqdown", 200)
    valid, invalid = bodies[:200], bodies[200:]
    publish(sqs, fault_queues[0], valid[:100])
    worker = consume_process(env_for(settings), "--follow", "--workers", "2")
    try:
        wait_until(lambda: rows(settings.database_url) == 100, what="first rows")
        sqs.client.delete_queue(QueueUrl=fault_queues[1])  # the DLQ goes away mid-run
        publish(sqs, fault_queues[0], valid[100:] + invalid)
        wait_until(lambda: rows(settings.database_url) == 200, what="all valid rows")
        time.sleep(2)
    finally:
        worker.send_signal(signal.SIGTERM)
        code, summary, err = finish(worker)
    assert code == 0, err
    assert summary["dead_letter_failures"] >= 5
    assert summary["dead_lettered"] == 0
    depth = sqs.depth(fault_queues[0])
    assert depth.visible + depth.in_flight == 5  # not deleted: they come back
    sqs.create_queues(
        settings.queue_name, settings.dlq_name, max_receive_count=20, visibility_timeout=4
    )
    code, summary, err = finish(consume_process(env_for(settings), "--idle-exit", "8"))
    assert code == 0, err
    assert summary["dead_lettered"] == 5
    result = account(
        "4. DLQ deleted mid-run while invalid messages arrive",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


def test_four_processes_with_redeliveries(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("four", 1500)
    publish(sqs, fault_queues[0], bodies)
    # First deliveries stall 1.5 s against a 1 s visibility timeout: every batch is
    # redelivered to another receiver while the first still holds it.
    env = env_for(settings, LOGINETL_FAILPOINT="sleep_on_first_delivery:1.5")
    workers = [
        consume_process(env, "--workers", "3", "--visibility-timeout", "1", "--idle-exit", "6")
        for _ in range(4)
    ]
    summaries = []
    for worker in workers:
        code, summary, err = finish(worker, timeout=300)
        assert code == 0, err
        summaries.append(summary)
    assert sum(s["duplicates_skipped"] for s in summaries) > 0  # redeliveries really happened
    result = account(
        "5. four processes, visibility 1 s < first-delivery stall 1.5 s",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


def test_replay_interrupted_and_rerun(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("replay", 1000)
    valid = [b for b in bodies if '"user_id": "replay-' in b]
    assert (
        sqs.send(
            fault_queues[1],
            [OutboundMessage(b, {ATTR_REASON: "invalid_app_version"}) for b in valid],
        )
        == []
    )
    env = {**os.environ, **env_for(settings)}
    replay = subprocess.Popen(
        [LOGINETL, "replay-dlq", "--rate", "200", "--hold-seconds", "5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: sqs.depth(fault_queues[0]).visible > 200, what="replay under way")
    replay.send_signal(signal.SIGKILL)
    replay.wait(timeout=10)
    wait_until(
        lambda: sqs.depth(fault_queues[1]).in_flight == 0, timeout=30, what="held messages back"
    )
    subprocess.run([LOGINETL, "replay-dlq"], env=env, check=True, capture_output=True, timeout=120)
    code, _, err = finish(consume_process(env_for(settings), "--idle-exit", "8"))
    assert code == 0, err
    result = account(
        "6. replay-dlq killed (-9) mid-run, rerun",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        0,
    )
    assert result.exact, result


def test_sigterm_while_a_batch_is_open(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("sigterm", 600)
    publish(sqs, fault_queues[0], bodies)
    worker = consume_process(
        env_for(settings, LOGINETL_FAILPOINT="sleep_before_commit:2"),
        "--follow",
        "--workers",
        "2",
        "--batch-size",
        "10",  # small batches, so some are still waiting to be received at the signal
    )
    time.sleep(3.0)  # the first batches are inside their open transactions now
    before = rows(settings.database_url)
    worker.send_signal(signal.SIGTERM)
    code, summary, err = finish(worker, timeout=30)
    assert code == 0, err
    assert summary["stopped_because"] == "stop_requested"
    assert rows(settings.database_url) == summary["loaded"] > before  # the open batches committed
    assert sqs.depth(fault_queues[0]).in_flight == 0
    code, _, err = finish(consume_process(env_for(settings), "--idle-exit", "8"))
    assert code == 0, err
    result = account(
        "7. SIGTERM with batches open", settings.database_url, sqs, fault_queues, users, 5
    )
    assert result.exact, result
