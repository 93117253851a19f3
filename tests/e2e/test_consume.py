"""consume end to end: real LocalStack SQS, real PostgreSQL, the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl import __version__
from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.attributes import sign
from loginetl.core.batch import ATTR_ORIGINAL_MESSAGE_ID, InboundMessage, prepare_batch
from loginetl.core.keyring import Keyring
from loginetl.core.vault_crypto import SealedVaultEntry, VaultOpener, VaultSealer
from loginetl.services import db, keys
from loginetl.services.keys import ATTRIBUTE_FILE, load_keyring
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.conftest import PUBLIC_SAMPLE
from tests.e2e.conftest import INVALID_BODIES, consume_json, count_rows, drain
from tests.rollups import pending, rollups_exact

runner = CliRunner()
Publish = Callable[[list[str]], None]


def commit_without_deleting(
    settings: Settings, sqs: SqsService, queue_url: str
) -> list[InboundMessage]:
    """A crash between commit and delete: load one receive, never delete it, release it."""
    received = sqs.receive(queue_url, max_messages=10, wait_seconds=1)
    batch = prepare_batch(
        received,
        masker=keys.load_masker(settings.keys_dir),
        sealer=VaultSealer(keys.load_public_key(settings.keys_dir)),
    )
    engine = db.make_engine(settings.database_url)
    db.write_batch(engine, batch.rows, batch.vault_entries)
    engine.dispose()
    sqs.set_visibility(queue_url, received, 0)
    return received


def test_public_sample_loads_99_and_dead_letters_1(
    cli_env: dict[str, str], settings: Settings, sqs: SqsService, queues: tuple[str, str]
) -> None:
    seeded = runner.invoke(app, ["seed", "--from-file", str(PUBLIC_SAMPLE), "--json"], env=cli_env)
    assert seeded.exit_code == 0, seeded.output
    summary = consume_json(cli_env)
    assert summary["received"] == 100
    assert summary["loaded"] == 99
    assert summary["dead_lettered"] == 1
    assert summary["dead_lettered_by_reason"] == {"missing_field": 1}
    assert summary["loginetl_version"] == __version__
    assert count_rows(settings.database_url) == 99
    depth = sqs.depth(queues[0])
    assert (depth.visible, depth.in_flight) == (0, 0)
    dead = drain(sqs, queues[1])
    assert [json.loads(m.body) for m in dead] == [{"foo": "oops_wrong_msg_type", "bar": "123"}]


def test_every_reject_reason_reaches_the_dlq_with_its_reason(
    cli_env: dict[str, str],
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    good = json.loads(valid_bodies(1)[0])
    cases = {
        "invalid_json": "{nope",
        "duplicate_key": '{"ip": "1.2.3.4", "ip": "5.6.7.8"}',
        "not_an_object": "[1, 2, 3]",
        "missing_field": json.dumps({k: v for k, v in good.items() if k != "user_id"}),
        "wrong_type": json.dumps({**good, "user_id": 42}),
        "empty_field": json.dumps({**good, "device_id": ""}),
        "too_long": json.dumps({**good, "locale": "x" * 40}),
        "invalid_text": json.dumps({**good, "user_id": "a\u0000b"}),
        "invalid_ip": json.dumps({**good, "ip": "300.1.1.1"}),
        "invalid_app_version": json.dumps({**good, "app_version": "1.2.3.4"}),
    }
    ids = {}
    for reason, body in cases.items():
        ids[reason] = sqs.client.send_message(QueueUrl=queues[0], MessageBody=body)["MessageId"]
    summary = consume_json(cli_env)
    assert summary["dead_lettered_by_reason"] == {reason: 1 for reason in cases}
    assert summary["loaded"] == 0
    dead = {m.attributes["loginetl-reason"]: m for m in drain(sqs, queues[1])}
    assert set(dead) == set(cases)
    for reason, message in dead.items():
        assert message.body == cases[reason]
        assert message.attributes[ATTR_ORIGINAL_MESSAGE_ID] == ids[reason]
        assert message.attributes["loginetl-first-seen"].endswith("+00:00")
        assert message.attributes["loginetl-detail"]
    assert sqs.depth(queues[0]).visible == 0


def test_redelivery_after_commit_is_absorbed(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    publish(valid_bodies(5))
    received = commit_without_deleting(settings, sqs, queues[0])

    summary = consume_json(cli_env)
    assert summary["received"] == 5
    assert summary["loaded"] == 5 - len(received)
    assert summary["duplicates_skipped"] == len(received)
    assert count_rows(settings.database_url) == 5


def test_a_replayed_copy_with_the_original_id_is_skipped(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    body = valid_bodies(1)[0]
    original = sqs.client.send_message(QueueUrl=queues[0], MessageBody=body)["MessageId"]
    assert consume_json(cli_env)["loaded"] == 1
    signed = sign(
        {ATTR_ORIGINAL_MESSAGE_ID: original}, body, load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    )
    sqs.send(queues[0], [OutboundMessage(body, signed)])
    summary = consume_json(cli_env)
    assert (summary["loaded"], summary["duplicates_skipped"]) == (0, 1)
    assert summary["forged_attributes_ignored"] == 0
    assert count_rows(settings.database_url) == 1


def test_a_producer_cannot_forge_an_original_id_to_get_a_login_deleted(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    first, second = valid_bodies(2)
    original = sqs.client.send_message(QueueUrl=queues[0], MessageBody=first)["MessageId"]
    assert consume_json(cli_env)["loaded"] == 1
    # Unsigned, and signed with a key loginetl does not hold: both are ignored.
    stranger = Keyring("a1", {"a1": b"s" * 32})
    sqs.send(
        queues[0],
        [
            OutboundMessage(second, {ATTR_ORIGINAL_MESSAGE_ID: original}),
            OutboundMessage(first, sign({ATTR_ORIGINAL_MESSAGE_ID: original}, first, stranger)),
        ],
    )
    summary = consume_json(cli_env)
    assert (summary["loaded"], summary["duplicates_skipped"]) == (2, 0)
    assert summary["forged_attributes_ignored"] == 2
    assert count_rows(settings.database_url) == 3


def test_two_spellings_of_one_ip_share_one_token_and_one_vault_entry(
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    good = json.loads(valid_bodies(1)[0])
    publish(
        [
            json.dumps({**good, "ip": "2001:DB8:0:0:0:0:0:1"}),
            json.dumps({**good, "ip": "2001:db8::1"}),
        ]
    )
    assert consume_json(cli_env)["loaded"] == 2
    folded = runner.invoke(app, ["fold", "--json"], env=cli_env)  # the worker's part
    assert folded.exit_code == 0, folded.output
    assert json.loads(folded.stdout)["settled"] == 2  # one ip token, one device token
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        tokens = conn.execute(text("SELECT DISTINCT masked_ip FROM user_logins")).scalars().all()
        vault = conn.execute(
            text(
                "SELECT token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext "
                "FROM pii_vault WHERE pii_field = 'ip'"
            )
        ).all()
    engine.dispose()
    assert len(tokens) == 1
    assert [v.token for v in vault] == tokens
    private = keys.load_private_key(settings.keys_dir / keys.PRIVATE_FILE)
    assert VaultOpener(private).open(SealedVaultEntry(*vault[0])) == "2001:db8::1"
    with pytest.raises(InvalidTag):
        VaultOpener(X25519PrivateKey.generate()).open(SealedVaultEntry(*vault[0]))


def test_no_plaintext_pii_in_pg_dump_or_in_the_output(
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    import subprocess

    from sqlalchemy.engine import make_url

    bodies = valid_bodies(300, 11)
    publish(bodies + INVALID_BODIES)
    result = runner.invoke(app, ["-v", "consume", "--idle-exit", "1"], env=cli_env)
    assert result.exit_code == 0, result.output
    stats = runner.invoke(app, ["stats", "--top", "50"], env=cli_env)
    assert stats.exit_code == 0, stats.output
    url = make_url(settings.database_url)
    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "--no-owner",
            url.database or "",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pii_vault" in dump
    assert "user_logins" in dump
    produced = dump + result.output + stats.output
    secrets = {v for b in bodies for k, v in json.loads(b).items() if k in ("ip", "device_id")}
    assert len(secrets) > 100
    leaked = sorted(s for s in secrets if s in produced)
    assert leaked == []
    assert count_rows(settings.database_url) == 300


def test_max_stops_after_that_many_messages(
    cli_env: dict[str, str],
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    publish(valid_bodies(45))
    summary = consume_json(cli_env, "--max", "20")
    assert summary["received"] == 20
    assert summary["stopped_because"] == "max_reached"
    assert sqs.depth(queues[0]).visible == 25


def test_max_on_an_empty_queue_stops_because_idle(
    cli_env: dict[str, str], queues: tuple[str, str]
) -> None:
    # Four workers: the first takes the whole --max 5 grant; the others, finding none
    # left, used to report max_reached though nothing was received.
    summary = consume_json(cli_env, "--max", "5", "--idle-exit", "1", "--wait-seconds", "0")
    assert summary["received"] == 0
    assert summary["stopped_because"] == "idle"


def test_create_queues_lets_consume_start_on_a_fresh_endpoint(
    cli_env: dict[str, str], sqs: SqsService, settings: Settings
) -> None:
    missing = runner.invoke(app, ["consume", "--idle-exit", "1"], env=cli_env)
    assert missing.exit_code == 2
    assert "--create-queues" in missing.output
    summary = consume_json(cli_env, "--create-queues")
    assert summary["received"] == 0
    depth = sqs.depth(sqs.queue_url(settings.queue_name))
    assert depth.max_receive_count == 5


def test_consume_needs_no_private_key(
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    (settings.keys_dir / keys.PRIVATE_FILE).unlink()
    publish(valid_bodies(3))
    assert consume_json(cli_env)["loaded"] == 3


def test_what_loads_left_unfolded_is_shown_by_stats_and_folded_by_fold(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    publish(valid_bodies(30))
    # consume only appends (and a kill -9 after a commit leaves the same): rows committed,
    # their deltas and vault entries waiting for the fold.
    received = commit_without_deleting(settings, sqs, queues[0])
    engine = db.make_engine(settings.database_url)
    assert pending(engine) == len(received)
    with engine.begin() as busy:  # the fold worker at work: stats does not wait for it
        busy.execute(
            text("SELECT 1 FROM loginetl_locks WHERE name IN ('fold', 'settle') FOR UPDATE")
        )
        stale = runner.invoke(app, ["stats", "--json", "--no-queues"], env=cli_env)
    table = json.loads(stale.stdout)["table"]
    assert table["rollups_pending"] == len(received)
    assert table["vault_pending"] > 0
    assert table["behind_seconds"] > 0  # stats says how far its figures lag

    folded = runner.invoke(app, ["fold", "--json"], env=cli_env)
    assert folded.exit_code == 0, folded.output
    summary = json.loads(folded.stdout)
    assert (summary["folded"], summary["settled"]) == (len(received), table["vault_pending"])
    assert (summary["pending_rows"], summary["vault_pending"], summary["behind_seconds"]) == (
        0,
        0,
        0,
    )
    with engine.connect() as conn:
        assert rollups_exact(conn)
    engine.dispose()
    consume_json(cli_env)  # the redelivered rest, and the same messages again: skipped
    stats = runner.invoke(app, ["stats", "--json", "--no-queues"], env=cli_env)
    table = json.loads(stats.stdout)["table"]
    assert (table["rows"], table["rollups_pending"], table["vault_pending"]) == (30, 0, 0)


def test_a_backlog_is_loaded_in_transactions_of_up_to_batch_size(
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    publish(valid_bodies(35))
    consume_json(cli_env, "--workers", "1", "--batch-size", "30")
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:  # rows of one transaction share its now(): loaded_at
        sizes = (
            conn.execute(
                text("SELECT count(*) FROM user_logins GROUP BY loaded_at ORDER BY 1 DESC")
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert sum(sizes) == 35
    assert sizes[0] > 10, sizes  # receives were gathered into one transaction
    assert sizes[0] <= 30, sizes


def test_a_batch_size_below_one_receive_is_refused(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["consume", "--batch-size", "5"], env=cli_env)
    assert result.exit_code == 2
    assert "--batch-size" in result.output
