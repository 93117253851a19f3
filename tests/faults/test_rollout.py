"""make faults, issue 11: what producers and deployments bring, with real processes.

Each scenario publishes a known set of messages (unique user ids, so a duplicate row
shows), does what a hostile producer or a rolling deploy does, and checks through
``account`` that sent = loaded + dead-lettered with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from loginetl.actions.seed import send_bodies
from loginetl.config import Settings
from loginetl.core.attributes import (
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_SENT_AT,
    ATTR_REPLAYS,
    sign,
)
from loginetl.core.batch import ATTR_DETAIL, ATTR_REASON
from loginetl.core.keyring import Keyring
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.e2e.conftest import count_rows
from tests.faults.conftest import (
    account,
    consume_process,
    env_for,
    fault_bodies,
    finish,
    wait_until,
)

pytestmark = pytest.mark.slow


def publish(sqs: SqsService, url: str, bodies: list[str]) -> None:
    assert send_bodies(sqs, url, bodies) == (len(bodies), 0)


def test_forged_and_out_of_range_attributes_mixed_into_a_large_batch(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("forged", 2000)
    valid, invalid = bodies[:2000], bodies[2000:]
    stranger = Keyring("a1", {"a1": b"not-loginetl's-key-but-32-bytes!"})
    hostile: list[dict[str, str]] = [
        {ATTR_ORIGINAL_SENT_AT: "9" * 18},  # killed consume with OSError
        {ATTR_ORIGINAL_SENT_AT: "-1"},
        {ATTR_ORIGINAL_MESSAGE_ID: "one-id-for-all"},  # would collapse them into one row
        {ATTR_REPLAYS: "9" * 40},
        {ATTR_REASON: "Not A Reason <b>", ATTR_DETAIL: "d" * 5000},
    ]
    outbound = [OutboundMessage(b) for b in valid[:1500]]
    for i, body in enumerate(valid[1500:]):
        attributes = hostile[i % len(hostile)]
        if i % 2:  # half of them "signed", with a key loginetl does not hold
            attributes = sign(attributes, body, stranger)
        outbound.append(OutboundMessage(body, attributes))
    assert sqs.send(fault_queues[0], outbound) == []
    publish(sqs, fault_queues[0], invalid)
    code, summary, err = finish(
        consume_process(env_for(settings), "--workers", "2", "--idle-exit", "6")
    )
    assert code == 0, err
    assert summary["forged_attributes_ignored"] == 500
    result = account(
        "11.1 forged/out-of-range loginetl-* attributes on 500 of 2000",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


def test_a_row_the_database_rejects_inside_a_batch_of_valid_ones(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:  # this test's own database
        conn.execute(
            text(
                "ALTER TABLE user_logins ADD CONSTRAINT no_refused_devices "
                "CHECK (device_type <> 'refused')"
            )
        )
    engine.dispose()
    bodies, users = fault_bodies("dbreject", 1000)
    refused = [
        json.dumps(
            {
                "user_id": f"refused-{i}",
                "app_version": "1.0",
                "device_type": "refused",
                "ip": f"10.7.0.{i + 1}",
                "locale": None,
                "device_id": f"r-{i}",
            }
        )
        for i in range(3)
    ]
    publish(sqs, fault_queues[0], bodies[:400] + refused + bodies[400:])
    code, summary, err = finish(
        consume_process(env_for(settings), "--workers", "2", "--idle-exit", "6")
    )
    assert code == 0, err
    assert summary["dead_lettered_by_reason"].get("rejected_by_database") == 3
    seen: dict[str, str | None] = {}
    for _ in range(20):  # look at the DLQ without taking anything from it
        batch = sqs.receive(fault_queues[1], max_messages=10, wait_seconds=1, visibility_timeout=30)
        seen |= {m.message_id: m.attributes.get(ATTR_DETAIL) for m in batch if "refused" in m.body}
        sqs.set_visibility(fault_queues[1], batch, 0)
        if len(seen) == 3:
            break
    details = set(seen.values())
    assert details == {"SQLSTATE 23514, constraint no_refused_devices"}
    result = account(
        "11.2 a CHECK violation inside batches of valid rows (bisected)",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5 + 3,
    )
    assert result.exact, result


def test_a_lock_longer_than_the_statement_timeout_while_following(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("locked", 1500)
    publish(sqs, fault_queues[0], bodies[:300])
    worker = consume_process(
        env_for(settings), "--follow", "--workers", "2", "--statement-timeout", "1"
    )
    engine = create_engine(settings.database_url)
    try:
        wait_until(lambda: count_rows(settings.database_url) == 300, what="first rows")
        with engine.begin() as conn:  # what a migration does: ACCESS EXCLUSIVE, for 8 s
            conn.execute(text("LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE"))
            publish(sqs, fault_queues[0], bodies[300:])
            time.sleep(8)  # > 1 s statement timeout, > 4 s visibility timeout
            assert worker.poll() is None, "consume must ride out the lock"
        wait_until(
            lambda: count_rows(settings.database_url) == len(users), timeout=120, what="rows"
        )
    finally:
        engine.dispose()
        worker.send_signal(signal.SIGTERM)
        code, summary, err = finish(worker)
    assert code == 0, err
    assert summary["transient_errors"] >= 1
    assert summary["duplicates_skipped"] == 0  # the heartbeat kept every batch hidden
    result = account(
        "11.3 user_logins locked 8 s > statement timeout 1 s (--follow)",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


def test_a_commit_slower_than_the_visibility_timeout(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("slowcommit", 600)
    publish(sqs, fault_queues[0], bodies)
    # Every transaction is held open 6 s before COMMIT; the queue's visibility is 4 s.
    env = env_for(settings, LOGINETL_FAILPOINT="sleep_before_commit:6")
    code, summary, err = finish(consume_process(env, "--workers", "3", "--idle-exit", "6"))
    assert code == 0, err
    assert summary["received"] == len(bodies)  # nothing was delivered twice
    assert summary["duplicates_skipped"] == 0
    result = account(
        "11.4 every commit 6 s, visibility timeout 4 s",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result


class _DenyingProxy(ThreadingHTTPServer):
    """Forwards SQS's JSON API to LocalStack, but answers one action AccessDenied."""

    def __init__(self, upstream_port: int, deny: str) -> None:
        self.upstream_port, self.deny = upstream_port, deny
        super().__init__(("127.0.0.1", 0), _DenyingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _DenyingHandler(BaseHTTPRequestHandler):
    server: _DenyingProxy
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target", "").endswith("." + self.server.deny):
            payload = json.dumps(
                {
                    "__type": "com.amazon.coral.service#AccessDeniedException",
                    "message": "User is not authorized to perform: sqs:" + self.server.deny,
                }
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-query-error", "AccessDenied;Sender")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request("POST", self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def denying_proxy(sqs_endpoint: str) -> Iterator[_DenyingProxy]:
    proxy = _DenyingProxy(int(sqs_endpoint.rsplit(":", 1)[1]), "ReceiveMessage")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_an_sqs_endpoint_that_answers_access_denied(
    settings: Settings,
    sqs: SqsService,
    fault_queues: tuple[str, str],
    denying_proxy: _DenyingProxy,
) -> None:
    bodies, users = fault_bodies("denied", 200)
    publish(sqs, fault_queues[0], bodies)
    started = time.monotonic()
    # --follow rides out outages forever: a denial is not one, so it must still stop.
    denied = consume_process(env_for(settings, AWS_ENDPOINT_URL=denying_proxy.url), "--follow")
    try:
        code, _, err = finish(denied, timeout=60)
    finally:
        if denied.poll() is None:  # it took the denial for an outage: stop it for the report
            denied.kill()
            denied.wait()
    elapsed = time.monotonic() - started
    assert code == 2, err
    assert elapsed < 20
    sentences = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(sentences) == 1, err
    assert "AccessDenied" in sentences[0]
    assert "grant sqs:ReceiveMessage" in sentences[0]
    code, _, err = finish(consume_process(env_for(settings), "--idle-exit", "6"))
    assert code == 0, err
    result = account(
        f"11.5 ReceiveMessage denied: exit 2 in {elapsed:.0f} s, then a permitted run",
        settings.database_url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result
