"""Issue 11 end to end: producers' attributes, rows the database refuses, replays that
re-sign, the database encoding and a schema ahead of the code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl.actions import replay as replay_module
from loginetl.actions.consume import ConsumeOptions, Consumer
from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.attributes import (
    ATTR_KEY_ID,
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_SENT_AT,
    ATTR_REPLAYS,
    ATTR_TAG,
    sign,
    verify,
)
from loginetl.core.batch import ATTR_DETAIL, ATTR_REASON, InboundMessage
from loginetl.core.vault_crypto import PlainVaultEntry, SealedVaultEntry, VaultSealer
from loginetl.services import db, keys
from loginetl.services.keys import ATTRIBUTE_FILE, load_keyring
from loginetl.services.migrations import BASELINE, COMPAT_TABLE
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.e2e.conftest import INVALID_BODIES, consume_json, count_rows, drain

runner = CliRunner()
Publish = Callable[[list[str]], None]


def test_a_producer_set_attribute_never_stops_consume(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    bodies = valid_bodies(30, 11)
    hostile = [{ATTR_ORIGINAL_SENT_AT: "9" * 18}, {ATTR_ORIGINAL_SENT_AT: "1" * 300}, {}]
    sqs.send(queues[0], [OutboundMessage(b, hostile[i % 3]) for i, b in enumerate(bodies)])
    summary = consume_json(cli_env)
    assert (summary["loaded"], summary["forged_attributes_ignored"]) == (30, 20)
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        oldest = conn.execute(text("SELECT min(create_date) FROM user_logins")).scalar_one()
    engine.dispose()
    assert oldest == datetime.now(UTC).date()  # SQS's own SentTimestamp applied


def test_rows_the_database_refuses_are_found_and_dead_lettered_alone(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            text("ALTER TABLE user_logins ADD CONSTRAINT no_x CHECK (device_type <> 'x-refused')")
        )
    engine.dispose()
    bodies = valid_bodies(40, 12)
    refused = json.loads(bodies[0]) | {"device_type": "x-refused", "user_id": "refused-one"}
    publish([*bodies[1:20], json.dumps(refused), *bodies[20:]])
    summary = consume_json(cli_env)
    assert summary["loaded"] == 39
    assert summary["dead_lettered_by_reason"] == {"rejected_by_database": 1}
    (dead,) = drain(sqs, queues[1])
    verified = verify(
        dead.attributes,
        dead.body,
        load_keyring(settings.keys_dir, ATTRIBUTE_FILE),
        now=datetime.now(UTC),
    )
    assert not verified.dropped  # what consume writes to the DLQ is signed
    assert verified.attributes[ATTR_REASON] == "rejected_by_database"
    assert verified.attributes[ATTR_DETAIL] == "SQLSTATE 23514, constraint no_x"
    assert count_rows(settings.database_url) == 39


def test_replay_re_signs_and_drops_identity_an_old_or_forged_dlq_message_claims(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
) -> None:
    publish([INVALID_BODIES[3]])  # an invalid ip: dead-lettered by consume, signed
    assert consume_json(cli_env)["dead_lettered"] == 1
    (signed,) = drain(sqs, queues[1])
    sqs.send(queues[1], [OutboundMessage(signed.body, dict(signed.attributes))])
    # What an older loginetl left in the DLQ: the same attributes, unsigned.
    old = {
        ATTR_ORIGINAL_MESSAGE_ID: "older-loginetl-id",
        ATTR_REASON: "invalid_ip",
        ATTR_REPLAYS: "4",
    }
    sqs.send(queues[1], [OutboundMessage(INVALID_BODIES[4], old)])
    result = json.loads(runner.invoke(app, ["replay-dlq", "--json"], env=cli_env).stdout)
    assert (result["moved"], result["unverified"]) == (2, 1)
    moved = {m.body: m for m in drain(sqs, queues[0])}
    attribute_keys = load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    now = datetime.now(UTC)
    again = verify(moved[signed.body].attributes, signed.body, attribute_keys, now=now)
    assert not again.dropped
    assert again.attributes[ATTR_ORIGINAL_MESSAGE_ID] == signed.attributes[ATTR_ORIGINAL_MESSAGE_ID]
    assert again.attributes[ATTR_REPLAYS] == "1"
    upgraded = verify(
        moved[INVALID_BODIES[4]].attributes, INVALID_BODIES[4], attribute_keys, now=now
    )
    assert not upgraded.dropped  # re-signed, but with the DLQ copy's own identity
    assert upgraded.attributes[ATTR_ORIGINAL_MESSAGE_ID] != "older-loginetl-id"
    assert upgraded.attributes[ATTR_REPLAYS] == "1"


def test_one_hostile_dlq_message_costs_replay_only_that_message(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attribute_keys = load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    good, bad, odd = valid_bodies(3, 14)
    signed = sign({ATTR_REASON: "invalid_app_version"}, good, attribute_keys)
    # A real key id with a non-ASCII tag: compare_digest raised TypeError on it.
    hostile = {ATTR_REASON: "invalid_app_version", ATTR_KEY_ID: attribute_keys.current}
    hostile[ATTR_TAG] = "é" * 64
    assert sqs.send(queues[1], [OutboundMessage(good, signed), OutboundMessage(bad, hostile)]) == []
    result = runner.invoke(app, ["replay-dlq", "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["moved"], summary["failed"], summary["unverified"]) == (2, 0, 1)
    drain(sqs, queues[0])

    # Anything unexpected while preparing one message: that message is held and counted.
    real = replay_module.replay_attributes

    def explode_on_odd(message: InboundMessage) -> dict[str, str]:
        if message.body == odd:
            raise RuntimeError("unexpected")
        return real(message)

    monkeypatch.setattr(replay_module, "replay_attributes", explode_on_odd)
    to_send = [OutboundMessage(b, {ATTR_REASON: "invalid_app_version"}) for b in (good, odd)]
    assert sqs.send(queues[1], to_send) == []
    result = runner.invoke(app, ["replay-dlq", "--json"], env=cli_env)
    assert result.exit_code == 1, result.output  # a failure, reported, not a crash
    summary = json.loads(result.stdout)
    assert (summary["examined"], summary["moved"], summary["failed"]) == (2, 1, 1)
    assert summary["failed_by_reason"] == {"unpreparable (RuntimeError)": 1}
    assert [m.body for m in drain(sqs, queues[1])] == [odd]  # held in the DLQ, visible again


def test_replay_by_reason_selects_on_the_verified_reason_and_counts_raw_labels(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    attribute_keys = load_keyring(settings.keys_dir, ATTRIBUTE_FILE)
    genuine, forged, other = valid_bodies(3, 15)
    assert (
        sqs.send(
            queues[1],
            [
                OutboundMessage(
                    genuine, sign({ATTR_REASON: "invalid_ip"}, genuine, attribute_keys)
                ),
                OutboundMessage(forged, {ATTR_REASON: "invalid_ip"}),  # a raw label, unsigned
                OutboundMessage(other, sign({ATTR_REASON: "invalid_json"}, other, attribute_keys)),
            ],
        )
        == []
    )
    result = runner.invoke(app, ["replay-dlq", "--reason", "invalid_ip", "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["moved"], summary["skipped"], summary["unverified"]) == (2, 1, 1)
    assert {m.body for m in drain(sqs, queues[0])} == {genuine, forged}


@pytest.fixture
def sql_ascii_env(cli_env: dict[str, str], sql_ascii_url: str) -> dict[str, str]:
    return {**cli_env, "LOGINETL_DATABASE_URL": sql_ascii_url}


def test_consume_refuses_a_non_utf8_database(
    sql_ascii_env: dict[str, str], queues: tuple[str, str]
) -> None:
    result = runner.invoke(app, ["consume", "--idle-exit", "1"], env=sql_ascii_env)
    assert result.exit_code == 2
    assert "encoded SQL_ASCII, not UTF8" in result.output


def _move_schema_to(database_url: str, revision: str, compatible_with: str | None) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        if compatible_with is not None:
            conn.execute(
                text(f"INSERT INTO {COMPAT_TABLE} VALUES (:r, :c)"),
                {"r": revision, "c": compatible_with},
            )
    engine.dispose()


def test_consume_runs_on_a_schema_ahead_that_declares_it_compatible(
    cli_env: dict[str, str],
    settings: Settings,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    _move_schema_to(settings.database_url, "1.2", BASELINE)
    publish(valid_bodies(5, 13))
    assert consume_json(cli_env)["loaded"] == 5


def test_consume_refuses_a_schema_ahead_that_does_not(
    cli_env: dict[str, str], settings: Settings, queues: tuple[str, str]
) -> None:
    _move_schema_to(settings.database_url, "1.2", None)
    result = runner.invoke(app, ["consume", "--idle-exit", "1"], env=cli_env)
    assert result.exit_code == 2
    assert "1.2 does not declare itself compatible" in result.output


class _SealerWithABug(VaultSealer):
    """Fails a whole seal call when one value is in it, as a bug in a dependency might."""

    def seal(self, entries: Iterable[PlainVaultEntry]) -> list[SealedVaultEntry]:
        entries = list(entries)
        if any(e.plaintext == "dev-trips-the-bug" for e in entries):
            raise ValueError("bug")
        return super().seal(entries)


def test_an_unexpected_error_preparing_a_batch_dead_letters_only_the_message_at_fault(
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    bodies = valid_bodies(25, 14)
    culprit = json.loads(bodies[0]) | {"device_id": "dev-trips-the-bug", "user_id": "culprit"}
    publish([*bodies[1:], json.dumps(culprit)])
    engine = db.make_engine(settings.database_url, pool_size=2)
    try:
        summary = Consumer(
            sqs=sqs,
            engine=engine,
            masker=keys.load_masker(settings.keys_dir),
            sealer=_SealerWithABug(keys.load_public_key(settings.keys_dir)),
            attribute_keys=keys.load_keyring(settings.keys_dir, keys.ATTRIBUTE_FILE),
            queue_url=queues[0],
            dlq_url=queues[1],
            options=ConsumeOptions(workers=1, idle_exit_seconds=1),
        ).run()
    finally:
        engine.dispose()
    assert (summary.loaded, summary.dead_lettered_by_reason) == (24, {"preparation_failed": 1})
    (dead,) = drain(sqs, queues[1])
    assert json.loads(dead.body)["user_id"] == "culprit"
    assert dead.attributes[ATTR_DETAIL] == "ValueError"


def test_a_body_too_large_for_the_dlq_stays_in_the_queue_and_consume_goes_on(
    cli_env: dict[str, str], publish: Publish, valid_bodies: Callable[..., list[str]]
) -> None:
    publish(["x" * (1024 * 1024), *valid_bodies(5, 15)])  # SQS's maximum: no room for attributes
    summary = consume_json(cli_env)
    assert (summary["loaded"], summary["dead_letter_failures"]) == (5, 1)
