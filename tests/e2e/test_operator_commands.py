"""peek, replay-dlq, stats and consume's observability, end to end."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl import __version__
from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.attributes import ATTR_ORIGINAL_MESSAGE_ID, ATTR_ORIGINAL_SENT_AT, sign
from loginetl.core.batch import ATTR_REASON, replay_attributes
from loginetl.services import keys
from loginetl.services.keys import ATTRIBUTE_FILE, load_keyring
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.e2e.conftest import INVALID_BODIES, consume_json, count_rows, drain, wait_for

runner = CliRunner()
Publish = Callable[[list[str]], None]
LOGINETL = str(Path(sys.executable).parent / "loginetl")


def invoke(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def wide(env: dict[str, str], *args: str) -> str:
    """The real command in a wide terminal, so no table cell wraps; its stdout."""
    result = subprocess.run(
        [LOGINETL, *args],
        env={**os.environ, **env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def to_dlq(sqs: SqsService, dlq_url: str, bodies: list[str], reason: str) -> None:
    """Put messages in the DLQ as consume would have, with a reason."""
    assert sqs.send(dlq_url, [OutboundMessage(b, {ATTR_REASON: reason}) for b in bodies]) == []


# -- peek --------------------------------------------------------------------------------


def test_peek_shows_masked_rows_and_leaves_the_queue_as_it_was(
    cli_env: dict[str, str],
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    bodies = valid_bodies(8, 3)
    publish([*bodies, INVALID_BODIES[3]])
    before = sqs.depth(queues[0])
    out = invoke(cli_env, "peek", "--count", "20")
    data = json.loads(invoke(cli_env, "peek", "--count", "20", "--json"))
    after = sqs.depth(queues[0])
    assert (after.visible, after.in_flight) == (before.visible, 0)
    verdicts = Counter(m["verdict"] for m in data["messages"])
    assert verdicts == {"load": 8, "invalid_ip": 1}
    assert all(m["row"]["masked_ip"].startswith("k1:") for m in data["messages"] if m["row"])
    assert {m["receive_count"] for m in data["messages"]} == {2}  # two peeks, two receives
    assert data["health"]["depth"]["max_receive_count"] == 5
    pii = {v for b in bodies for k, v in json.loads(b).items() if k in ("ip", "device_id")}
    pii |= {"1.2.3.999"}
    assert [p for p in pii if p in out or p in json.dumps(data)] == []


def test_peek_refuses_when_its_receive_reached_the_threshold(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
) -> None:
    url, _ = sqs.create_queues(settings.queue_name, settings.dlq_name, max_receive_count=2)
    sqs.send(url, [OutboundMessage('{"user_id": "u"}')])
    sqs.set_visibility(url, sqs.receive(url, wait_seconds=1), 0)  # one earlier failed delivery
    out = invoke(cli_env, "peek", code=3)
    assert "2 of 2 times" in out
    assert "--force" in out
    assert sqs.depth(url).in_flight == 0  # released, nothing left hidden


def test_peek_refuses_a_queue_that_dead_letters_on_first_receive(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
) -> None:
    url, _ = sqs.create_queues(settings.queue_name, settings.dlq_name, max_receive_count=1)
    sqs.send(url, [OutboundMessage('{"user_id": "u"}')])
    assert "--force" in invoke(cli_env, "peek", code=3)
    assert sqs.depth(url).visible == 1


def test_peek_never_replays_terminal_escapes(
    cli_env: dict[str, str],
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    good = json.loads(valid_bodies(1)[0])
    hostile = json.dumps(
        {**good, "user_id": "\u001b]0;pwned\u0007\u001b[2J", "locale": "\u009b31m"}
    )
    to_dlq(sqs, queues[1], [hostile], "invalid_json")  # SQS itself refuses raw escapes
    out = invoke(cli_env, "peek", "--dlq")
    assert "\x1b" not in out
    assert "\x9b" not in out
    assert "\\x1b" in out  # shown, escaped


def test_peek_shows_a_message_as_consume_would_load_it_not_its_forged_attributes(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    (body,) = valid_bodies(1, 21)
    y2k = str(int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000))
    forged = {
        ATTR_ORIGINAL_MESSAGE_ID: "forged-idempotency-key",
        ATTR_ORIGINAL_SENT_AT: y2k,
        ATTR_REASON: "invalid_ip",
    }
    assert sqs.send(queues[0], [OutboundMessage(body, forged)]) == []
    (shown,) = json.loads(invoke(cli_env, "peek", "--json"))["messages"]
    assert shown["idempotency_key"] == shown["message_id"]
    assert shown["sent_at"].startswith(str(datetime.now(UTC).year))
    assert shown["row"]["create_date"] == str(datetime.now(UTC).date())
    assert shown["attributes_verified"] is False
    assert consume_json(cli_env)["loaded"] == 1
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        loaded = conn.execute(text("SELECT idempotency_key, create_date FROM user_logins")).one()
    engine.dispose()
    assert (loaded[0], str(loaded[1])) == (shown["idempotency_key"], shown["row"]["create_date"])


def test_peek_marks_a_dlq_reason_that_did_not_verify(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    signed_body, forged_body = valid_bodies(2, 22)
    attribute_keys = load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    signed = sign({ATTR_REASON: "invalid_json"}, signed_body, attribute_keys)
    messages = [
        OutboundMessage(signed_body, signed),
        OutboundMessage(forged_body, {ATTR_REASON: "invalid_ip"}),
    ]
    assert sqs.send(queues[1], messages) == []
    out = wide(cli_env, "peek", "--dlq")
    assert "DLQ reason: invalid_json" in out
    assert "DLQ reason (unverified): invalid_ip" in out
    assert "attribute-keys.json" not in out
    # An operator host without the attribute key file believes none of them, and says so once.
    no_attribute_keys = tmp_path / "operator-keys"
    shutil.copytree(settings.keys_dir, no_attribute_keys)
    (no_attribute_keys / keys.ATTRIBUTE_FILE).unlink()
    env = {**cli_env, "LOGINETL_KEYS_DIR": str(no_attribute_keys)}
    out = wide(env, "peek", "--dlq")
    assert out.count("no attribute-keys.json in the keys dir") == 1
    assert "DLQ reason (unverified): invalid_json" in out
    assert "DLQ reason (unverified): invalid_ip" in out
    data = json.loads(invoke(env, "peek", "--dlq", "--json"))
    assert data["attribute_keys_missing"] is True
    assert [m["attributes_verified"] for m in data["messages"]] == [False, False]


# -- replay-dlq --------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_reports_by_reason(
    cli_env: dict[str, str],
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    to_dlq(sqs, queues[1], valid_bodies(6, 4), "invalid_app_version")  # rule since fixed
    to_dlq(sqs, queues[1], INVALID_BODIES[:2], "missing_field")
    result = json.loads(invoke(cli_env, "replay-dlq", "--dry-run", "--json"))
    assert result["moved"] == 0
    assert result["examined"] == 8
    assert result["dry_run_verdicts"]["invalid_app_version"] == {"would_load": 6, "would_fail": {}}
    assert result["dry_run_verdicts"]["missing_field"]["would_load"] == 0
    dlq = sqs.depth(queues[1])
    assert (dlq.visible, dlq.in_flight) == (8, 0)
    assert sqs.depth(queues[0]).visible == 0


def test_replay_by_reason_after_a_rule_fix_loads_exactly_those(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    to_dlq(sqs, queues[1], valid_bodies(12, 5), "invalid_app_version")
    to_dlq(sqs, queues[1], INVALID_BODIES, "invalid_json")
    result = json.loads(invoke(cli_env, "replay-dlq", "--reason", "invalid_app_version", "--json"))
    assert (result["moved"], result["skipped"], result["failed"]) == (12, len(INVALID_BODIES), 0)
    assert result["examined"] == result["moved"] + result["skipped"] + result["failed"]
    assert consume_json(cli_env)["loaded"] == 12
    assert count_rows(settings.database_url) == 12
    remaining = drain(sqs, queues[1])
    assert {m.attributes[ATTR_REASON] for m in remaining} == {"invalid_json"}
    assert len(remaining) == len(INVALID_BODIES)


def test_replay_interrupted_and_rerun_loads_each_message_exactly_once(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    bodies = valid_bodies(400, 6)
    to_dlq(sqs, queues[1], bodies, "invalid_app_version")
    # A crash between send and delete, made exactly: copies sent, originals left in the DLQ.
    sample = sqs.receive(queues[1], max_messages=10, wait_seconds=1)
    attribute_keys = load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    sqs.send(
        queues[0],
        [
            OutboundMessage(m.body, sign(replay_attributes(m), m.body, attribute_keys))
            for m in sample
        ],
    )
    sqs.set_visibility(queues[1], sample, 0)
    # A crash at an arbitrary point: kill -9 mid-run.
    process = subprocess.Popen(
        [LOGINETL, "replay-dlq", "--rate", "150", "--hold-seconds", "5"],
        env={**os.environ, **cli_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: sqs.depth(queues[0]).visible > 60, what="replay under way")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert sqs.depth(queues[1]).visible + sqs.depth(queues[1]).in_flight > 0  # really cut short
    # The killed run left its held messages hidden; the rerun waits them out.
    wait_for(lambda: sqs.depth(queues[1]).in_flight == 0, timeout=30, what="held messages back")
    invoke(cli_env, "replay-dlq")
    assert sqs.depth(queues[1]).visible == 0
    summary = consume_json(cli_env)
    assert count_rows(settings.database_url) == len(bodies)
    assert summary["duplicates_skipped"] >= len(sample)


def test_native_move_task(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    to_dlq(sqs, queues[1], valid_bodies(7, 8), "invalid_app_version")
    result = runner.invoke(app, ["replay-dlq", "--native", "--json"], env=cli_env)
    if result.exit_code == 2 and "does not support" in result.output:
        pytest.skip("this endpoint has no StartMessageMoveTask")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "COMPLETED"
    assert consume_json(cli_env)["loaded"] == 7


def test_replay_flags_are_checked(cli_env: dict[str, str]) -> None:
    assert "is not a reason code" in invoke(cli_env, "replay-dlq", "--reason", "nope", code=2)
    assert "--native moves everything" in invoke(
        cli_env, "replay-dlq", "--native", "--dry-run", code=2
    )


# -- stats -------------------------------------------------------------------------------


def test_stats_match_counts_computed_independently(
    cli_env: dict[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
    sqs: SqsService,
    queues: tuple[str, str],
) -> None:
    bodies = valid_bodies(600, 9)
    publish(bodies + INVALID_BODIES)
    consume_json(cli_env)
    data = json.loads(
        invoke(cli_env, "stats", "--json", "--top", "3", "--since", "1h", "--count-vault")
    )
    docs = [json.loads(b) for b in bodies]
    ips = [str(ipaddress.ip_address(d["ip"])) for d in docs]
    table = data["table"]
    assert table["rows"] == len(docs)
    assert table["distinct_users"] == len({d["user_id"] for d in docs})
    assert table["distinct_masked_ips"] == len(set(ips))
    assert table["distinct_masked_devices"] == len({d["device_id"] for d in docs})
    assert table["vault_entries"] == len(set(ips)) + len({d["device_id"] for d in docs})
    assert dict(table["by_device_type"]) == dict(Counter(d["device_type"] for d in docs))
    users_per_ip: dict[str, set[str]] = {}
    for ip, doc in zip(ips, docs, strict=True):
        users_per_ip.setdefault(ip, set()).add(doc["user_id"])
    top = sorted((len(u) for u in users_per_ip.values()), reverse=True)[:3]
    assert [t["users"] for t in table["top_shared_ips"]] == top
    assert sum(n for _, n in table["loads_per_hour"]) == len(docs)
    assert sum(n for _, n in table["rows_per_month"]) == len(docs)
    assert dict(table["by_locale"]) == dict(Counter(d["locale"] for d in docs).most_common(3))
    assert data["schema"]["current"] == data["schema"]["heads"]
    assert data["loginetl_version"] == __version__
    queues_part = data["queues"]
    assert queues_part["main"]["visible"] == 0
    assert queues_part["dead_letter"]["visible"] == len(INVALID_BODIES)
    assert sum(queues_part["dlq_reasons_sampled"].values()) == len(INVALID_BODIES)
    assert sqs.depth(queues[1]).in_flight == 0  # the sample was released


def test_stats_samples_the_dlq_across_receives_and_releases_every_message(
    cli_env: dict[str, str], sqs: SqsService, queues: tuple[str, str]
) -> None:
    """The sample's receives and releases go out side by side: distinct messages, as many
    as asked (or as there are), and none left hidden."""
    to_dlq(sqs, queues[1], [f'{{"n": {i}}}' for i in range(25)], "invalid_json")
    to_dlq(sqs, queues[1], [f'{{"m": {i}}}' for i in range(12)], "schema")
    for asked, expected in ((23, 23), (100, 37)):
        data = json.loads(invoke(cli_env, "stats", "--json", "--dlq-sample", str(asked)))
        sampled = data["queues"]["dlq_reasons_sampled"]
        assert data["queues"]["dlq_sample_size"] == expected
        assert sum(sampled.values()) == expected
        assert set(sampled) <= {"invalid_json", "schema"}
        depth = sqs.depth(queues[1])
        assert (depth.visible, depth.in_flight) == (37, 0)  # every sampled message released
    assert set(sampled.items()) == {("invalid_json", 25), ("schema", 12)}


def test_stats_rejects_a_bad_window(cli_env: dict[str, str]) -> None:
    assert "e.g. 90m" in invoke(cli_env, "stats", "--since", "yesterday", code=2)


# -- observability -----------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:  # not listening yet
        return 0, ""


def test_metrics_and_health_endpoints(
    cli_env: dict[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from localstack import free_port

    port = free_port()
    publish(valid_bodies(40, 10) + INVALID_BODIES)
    process = subprocess.Popen(
        [
            LOGINETL,
            "--log-format",
            "json",
            "-v",
            "consume",
            "--follow",
            "--metrics-port",
            str(port),
        ],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz")[0] == 200, what="healthz")
        wait_for(
            lambda: (
                "loginetl_consume_loaded_total 40.0" in _get(f"http://127.0.0.1:{port}/metrics")[1]
            ),
            what="40 loaded in metrics",
        )
        metrics = _get(f"http://127.0.0.1:{port}/metrics")[1]
        assert 'loginetl_consume_dead_lettered_total{reason="invalid_ip"} 1.0' in metrics
        assert "loginetl_consume_batch_seconds_count" in metrics
        assert f'loginetl_build_info{{version="{__version__}"}} 1.0' in metrics
        assert "loginetl_consume_ready 1.0" in metrics
        assert 'loginetl_consume_service_up{service="sqs"} 1.0' in metrics
        health = json.loads(_get(f"http://127.0.0.1:{port}/healthz")[1])
        assert health == {"ready": True, "services": {"postgresql": "ok", "sqs": "ok"}}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any("metrics on" in entry["message"] for entry in logs)
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in logs)
