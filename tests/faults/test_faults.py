"""make faults: break things on purpose, with real processes, and count.

Each scenario sends a known set of messages (unique user ids, so a duplicate row would
show), breaks something, lets the system recover, and checks
sent = loaded + dead-lettered with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loginetl.actions.seed import send_bodies
from loginetl.config import Settings
from loginetl.core.batch import ATTR_REASON
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.faults.conftest import (
    LOGINETL,
    Accounting,
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


def tally(
    scenario: str,
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    users: set[str],
    database_url: str | None = None,
    **options: Any,
) -> Accounting:
    """``account`` for the usual case: the 5 invalid bodies, the test's database by default."""
    url = database_url or settings.database_url
    return account(scenario, url, sqs, queues, users, 5, **options)


def consume_under_way(
    server: PrivatePostgres,
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    tag: str,
    *args: str,
) -> tuple[dict[str, str], set[str], subprocess.Popen[str]]:
    """3,000 messages, consume into ``server`` with --retry-seconds 3, once rows arrive.

    One receive a transaction (--batch-size 10): many small batches, so an outage lands
    mid-run. Returns the environment, the valid users and the running consume.
    """
    bodies, users = fault_bodies(tag, 3000)
    publish(sqs, queues[0], bodies)
    env = env_for(settings, LOGINETL_DATABASE_URL=server.url)
    worker = consume_process(
        env, "--workers", "2", "--batch-size", "10", "--retry-seconds", "3", *args
    )
    wait_until(lambda: rows(server.url) > 300, what="first rows")
    return env, users, worker


def assert_rows_once_dlq_at_least_once(result: Accounting, users: set[str], copies: int) -> None:
    """Every row exactly once, nothing lost or left; the DLQ holds exactly ``copies`` extra
    copies, each of an original id already there (so peek and replay can tell them apart)."""
    assert (result.lost, result.left_in_queues, result.rollups_exact) == (0, 0, True), result
    assert result.duplicated == result.dlq_duplicated == copies, result
    assert result.loaded == len(users), result


def crash(settings: Settings, failpoint: str) -> None:
    """Run consume (2 workers) with a crash failpoint armed; it must die by SIGKILL there."""
    code, _, err = finish(
        consume_process(env_for(settings, LOGINETL_FAILPOINT=failpoint), "--workers", "2")
    )
    assert code == -signal.SIGKILL, err


def rerun(settings: Settings) -> dict[str, Any]:
    """Run consume again, unarmed, until idle; it must exit 0. Return its JSON summary."""
    code, summary, err = finish(consume_process(env_for(settings), "--idle-exit", "8"))
    assert code == 0, err
    return summary


@pytest.mark.parametrize("point", ["crash_before_commit", "crash_after_commit"])
def test_kill_9_mid_batch_then_rerun(
    point: str, settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies(point, 800)
    publish(sqs, fault_queues[0], bodies)
    # The second of three batches (300, 300, 200 with the default --batch-size): mid-run.
    crash(settings, f"{point}:2")
    summary = rerun(settings)
    if point == "crash_after_commit":
        assert summary["duplicates_skipped"] >= 1  # the committed batch came back and was skipped
    result = tally(f"1. kill -9 {point.replace('_', ' ')}", settings, sqs, fault_queues, users)
    assert result.exact, result


def test_database_cut_off_then_down_longer_than_retry_seconds_while_following(
    private_postgres: PrivatePostgres,
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
) -> None:
    # --retry-seconds 3 against a 10 s outage: only --follow's never-give-up keeps it alive.
    _, users, worker = consume_under_way(
        private_postgres, settings, sqs, fault_queues, "pgdown", "--follow"
    )
    try:
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
    result = tally(
        "2. backends killed, PostgreSQL down 10 s > --retry-seconds 3, --follow",
        settings,
        sqs,
        fault_queues,
        users,
        private_postgres.url,
    )
    assert result.exact, result


def test_database_down_longer_than_retry_seconds_without_follow(
    private_postgres: PrivatePostgres,
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
) -> None:
    # Visibility 120 s: only a release makes a batch visible again soon.
    env, users, worker = consume_under_way(
        private_postgres, settings, sqs, fault_queues, "pgexpire", "--visibility-timeout", "120"
    )
    stopped = time.monotonic()
    private_postgres.stop()
    code, _, err = finish(worker, timeout=120)
    waited = time.monotonic() - stopped
    assert code == 2, err
    assert "database write failed" in err
    assert "retrying in" in err
    assert waited >= 3  # it waited out --retry-seconds before giving up
    depth = sqs.depth(fault_queues[0])
    assert depth.in_flight == 0  # the batches in hand were released, not left hidden
    assert depth.visible > 0
    private_postgres.start()
    code, _, err = finish(consume_process(env, "--idle-exit", "8"))
    assert code == 0, err
    result = tally(
        "2b. PostgreSQL down > --retry-seconds 3, no --follow: exit 2, rerun",
        settings,
        sqs,
        fault_queues,
        users,
        private_postgres.url,
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
    # A cut between a batch's DLQ send and its delete brings the batch back: its rows are
    # skipped, its rejects dead-lettered again (at least once, as in scenario 8). The DLQ must
    # hold exactly the sends consume reported, nothing lost, no row twice.
    copies = summary["dead_lettered"] - 5
    result = tally(
        "3. SQS unreachable at start (exit 2), cut 6 s mid-run",
        settings,
        sqs,
        fault_queues,
        users,
        expected_dlq_copies=copies,
    )
    assert_rows_once_dlq_at_least_once(result, users, copies=copies)


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
    result = tally(
        "4. DLQ deleted mid-run while invalid messages arrive", settings, sqs, fault_queues, users
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
    # A batch's rejects are dead-lettered by every receiver that handles the batch: the
    # stalled first one and the one the redelivery went to. The DLQ, counted by receipt,
    # must hold exactly the sends the four processes reported, nothing lost or extra.
    sends = sum(s["dead_lettered"] for s in summaries)
    label = "5. four processes, visibility 1 s < first-delivery stall 1.5 s"
    result = tally(label, settings, sqs, fault_queues, users, expected_dlq_copies=sends - 5)
    assert_rows_once_dlq_at_least_once(result, users, copies=sends - 5)


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
    # Killed after its 30th send, before that batch's DLQ delete: a copy in both queues.
    replay = subprocess.run(
        [LOGINETL, "replay-dlq", "--rate", "200", "--hold-seconds", "5"],
        env={**env, "LOGINETL_FAILPOINT": "crash_after_replay_send:30"},
        capture_output=True,
        timeout=120,
    )
    assert replay.returncode == -signal.SIGKILL
    wait_until(
        lambda: sqs.depth(fault_queues[1]).in_flight == 0, timeout=30, what="held messages back"
    )
    # 300 sent, 290 deleted from the DLQ: ten messages are in both queues now.
    assert sqs.depth(fault_queues[0]).visible == 300
    assert sqs.depth(fault_queues[1]).visible == len(valid) - 290
    subprocess.run([LOGINETL, "replay-dlq"], env=env, check=True, capture_output=True, timeout=120)
    code, _, err = finish(consume_process(env_for(settings), "--idle-exit", "8"))
    assert code == 0, err
    result = account(
        "6. replay-dlq killed (-9) between a send and its DLQ delete, rerun",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        0,
    )
    assert result.exact, result


def test_sigterm_with_a_batch_open_and_a_receive_in_flight(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str], tmp_path: Path
) -> None:
    bodies, users = fault_bodies("sigterm", 600)
    publish(sqs, fault_queues[0], bodies)
    gate = tmp_path / "gate"
    # The worker holds its batch in an open transaction; its receiver's next receive (the
    # prefetch) comes back and is held before consume looks at its stop flag: the answer
    # reaches it after the signal.
    # Visibility 120 s: only an explicit release makes a message visible again in this test.
    worker = consume_process(
        env_for(
            settings,
            LOGINETL_FAILPOINT="hold_before_commit:1,hold_after_receive:2",
            LOGINETL_FAILPOINT_GATE=str(gate),
        ),
        "--follow",
        "--workers",
        "1",
        "--batch-size",
        "10",
        "--visibility-timeout",
        "120",
    )
    stderr = StderrWatcher(worker)
    try:
        wait_until(
            lambda: (
                open_transactions(settings.database_url) == 1
                and sqs.depth(fault_queues[0]).in_flight == 20
            ),
            what="one batch in an open transaction and one receive held",
        )
        assert rows(settings.database_url) == 0
        worker.send_signal(signal.SIGTERM)
        stderr.wait_for("stop requested")  # the stop flag is set: now let both go on
    finally:
        gate.touch()
    code, summary, err = stderr.finish()
    assert code == 0, err
    assert summary["stopped_because"] == "stop_requested"
    assert (summary["received"], summary["loaded"], summary["released"]) == (20, 10, 10)
    assert rows(settings.database_url) == 10  # the open batch committed after the signal
    depth = sqs.depth(fault_queues[0])
    assert (depth.in_flight, depth.visible) == (0, len(bodies) - 10)  # released, not timed out
    code, again, err = finish(consume_process(env_for(settings), "--idle-exit", "8"))
    assert code == 0, err
    # The released ten load now, once: nothing of this run was a redelivery of a loaded row.
    assert (again["loaded"], again["duplicates_skipped"]) == (len(users) - 10, 0)
    result = tally(
        "7. SIGTERM: a batch in its transaction, a receive in flight",
        settings,
        sqs,
        fault_queues,
        users,
    )
    assert result.exact, result


def test_kill_9_between_a_dlq_send_and_the_delete(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("dlqcrash", 800)
    publish(sqs, fault_queues[0], bodies)
    crash(settings, "crash_after_dead_letter:1")
    copies = sqs.depth(fault_queues[1]).visible  # accepted by the DLQ, never deleted upstream
    assert 1 <= copies <= 5
    summary = rerun(settings)
    assert summary["dead_lettered"] == 5  # the crashed batch's rejects came back, sent again
    result = tally(
        "8. kill -9 between a DLQ send and the delete",
        settings,
        sqs,
        fault_queues,
        users,
        expected_dlq_copies=copies,
    )
    assert_rows_once_dlq_at_least_once(result, users, copies=copies)


def fold_process(settings: Settings, failpoint: str | None = None) -> subprocess.Popen[str]:
    """``loginetl fold --json`` as a real child process (the fold worker, once)."""
    extra = {"LOGINETL_FAILPOINT": failpoint} if failpoint else {}
    return subprocess.Popen(
        [LOGINETL, "fold", "--json"],
        env={**os.environ, **env_for(settings, **extra)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("point", ["crash_in_fold", "crash_in_settle"])
def test_kill_9_inside_the_fold_worker(
    point: str,
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
) -> None:
    bodies, users = fault_bodies(point, 1500)
    publish(sqs, fault_queues[0], bodies)
    rerun(settings)  # consume appends; the fold worker is then killed mid-way, twice over
    process = fold_process(settings, f"{point}:1")
    _, err = process.communicate(timeout=180)
    assert process.returncode == -signal.SIGKILL, err
    # Every committed row is in the rollups or still pending, never both, never neither;
    # every appended vault entry is in the vault or still in the inbox.
    ledger = fold_ledger if point == "crash_in_fold" else settle_ledger
    done, waiting, total = ledger(settings.database_url)
    assert waiting > 0
    assert done + waiting == total
    again = fold_process(settings)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert json.loads(out)["behind_seconds"] == 0
    what = "rollup fold" if point == "crash_in_fold" else "settle of the vault inbox"
    result = tally(
        f"9. kill -9 inside the {what}, before its COMMIT", settings, sqs, fault_queues, users
    )
    assert result.exact, result


def test_a_fold_run_once_that_loses_its_database_says_so_in_one_sentence(
    settings: Settings,
) -> None:
    """``loginetl fold`` (no --follow) whose connection is cut mid-round: one sentence that
    names the database, exit 2 (unreachable), not "unexpected ... (a bug in loginetl)"."""
    url = make_url(settings.database_url)
    proxy = Proxy(url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    holder = create_engine(settings.database_url)
    try:
        with holder.connect() as conn:  # hold the settle turn: the fold waits, connected
            conn.execute(text("SELECT 1 FROM loginetl_locks WHERE name = 'settle' FOR UPDATE"))
            process = subprocess.Popen(
                [LOGINETL, "fold", "--json"],
                env={**os.environ, **env_for(settings, LOGINETL_DATABASE_URL=proxied)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%loginetl_settle_vault%'"
            )
            watcher = holder.execution_options(isolation_level="AUTOCOMMIT")  # fresh snapshots
            with watcher.connect() as watch:
                wait_until(
                    lambda: watch.execute(text(waiting)).scalar_one() == 1,
                    what="fold waits for the turn",
                )
            proxy.pause()  # the database is gone from the fold's side
            _, err = process.communicate(timeout=60)
            conn.rollback()
    finally:
        holder.dispose()
        proxy.pause()
    assert process.returncode == 2, err
    assert "cannot fold: PostgreSQL at" in err, err
    assert "is unreachable" in err, err
    assert "a bug in loginetl" not in err, err
    assert "Traceback" not in err, err


def test_kill_9_in_the_middle_of_a_delete_batch(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("deletecrash", 800)
    publish(sqs, fault_queues[0], bodies)
    # Killed after the first DeleteMessageBatch of a 300-message batch: 10 deleted, 290 not.
    crash(settings, "crash_mid_delete:1")
    summary = rerun(settings)
    assert summary["duplicates_skipped"] >= 290  # the undeleted rest came back, skipped
    result = tally(
        "10. kill -9 in the middle of a delete batch", settings, sqs, fault_queues, users
    )
    assert result.exact, result


# -- helpers -----------------------------------------------------------------------------


def open_transactions(url: str) -> int:
    """loginetl sessions of this database sitting inside an open transaction."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name = 'loginetl' AND state = 'idle in transaction'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def settle_ledger(url: str) -> tuple[int, int, int]:
    """(distinct tokens in the vault, distinct tokens in the inbox only, distinct tokens
    the rows hold)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored, waiting, held = conn.execute(
                text(
                    "WITH r AS (SELECT masked_ip t FROM user_logins "
                    "UNION SELECT masked_device_id FROM user_logins) "
                    "SELECT (SELECT count(*) FROM r WHERE EXISTS ("
                    "  SELECT 1 FROM pii_vault v WHERE v.token = r.t)), "
                    "(SELECT count(*) FROM r WHERE NOT EXISTS ("
                    "  SELECT 1 FROM pii_vault v WHERE v.token = r.t) AND EXISTS ("
                    "  SELECT 1 FROM vault_inbox i WHERE i.token = r.t)), "
                    "(SELECT count(*) FROM r)"
                )
            ).one()
    finally:
        engine.dispose()
    return int(stored), int(waiting), int(held)


def fold_ledger(url: str) -> tuple[int, int, int]:
    """(logins the rollups count, rows pending a fold, rows in the table)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counted, pending, loaded = conn.execute(
                text(
                    "SELECT (SELECT coalesce(sum(logins), 0) FROM user_stats), "
                    "(SELECT count(*) FROM rollup_pending), (SELECT count(*) FROM user_logins)"
                )
            ).one()
    finally:
        engine.dispose()
    return int(counted), int(pending), int(loaded)


class StderrWatcher:
    """Read a child's stderr as it comes, so a test can wait for a line instead of sleeping."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, fragment: str, timeout: float = 60) -> None:
        wait_until(lambda: any(fragment in line for line in self.lines), timeout, repr(fragment))

    def finish(self, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        lines = out.strip().splitlines()
        return (
            self.process.returncode,
            (json.loads(lines[-1]) if lines else {}),
            "".join(self.lines),
        )
