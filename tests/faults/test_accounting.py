"""The fault suite's accounting can say "no": a test of the test.

Each case builds, by hand, the outcome a broken consume would leave (a message
dead-lettered twice, a row loaded twice, a message left in the queue) and checks that
``account`` reports it. Fast and not marked slow: it runs in ``make test`` too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text

from loginetl.config import Settings
from loginetl.core.batch import ATTR_ORIGINAL_MESSAGE_ID, InboundMessage, prepare_batch
from loginetl.core.vault_crypto import VaultSealer
from loginetl.services import db, keys
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.faults.conftest import account, fault_bodies


def load_by_hand(settings: Settings, bodies: list[str], *, ids: list[str]) -> None:
    """Commit rows as consume would (the same write), without any queue."""
    now = datetime.now(UTC)
    messages = [InboundMessage(i, "", b, now) for i, b in zip(ids, bodies, strict=True)]
    batch = prepare_batch(
        messages,
        masker=keys.load_masker(settings.keys_dir),
        sealer=VaultSealer(keys.load_public_key(settings.keys_dir)),
    )
    engine = db.make_engine(settings.database_url, pool_size=1)
    db.write_batch(engine, batch.rows, batch.vault_entries)
    engine.dispose()


def dead_letter_by_hand(sqs: SqsService, dlq_url: str, bodies: list[str], ids: list[str]) -> None:
    outbound = [
        OutboundMessage(b, {ATTR_ORIGINAL_MESSAGE_ID: i}) for b, i in zip(bodies, ids, strict=True)
    ]
    assert sqs.send(dlq_url, outbound) == []


def scenario(
    settings: Settings, sqs: SqsService, queues: tuple[str, str]
) -> tuple[list[str], list[str], set[str]]:
    bodies, users = fault_bodies("acct", 6)
    valid, invalid = bodies[:6], bodies[6:]
    load_by_hand(settings, valid, ids=[f"v{i}" for i in range(6)])
    dead_letter_by_hand(sqs, queues[1], invalid, [f"x{i}" for i in range(5)])
    return valid, invalid, users


def test_an_exact_outcome_is_exact(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    _, _, users = scenario(settings, sqs, fault_queues)
    result = account("t", settings.database_url, sqs, fault_queues, users, 5, record=False)
    assert (result.sent, result.loaded, result.dead_lettered) == (11, 6, 5)
    assert result.exact, result


def test_a_message_dead_lettered_twice_is_a_duplicate(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    _, invalid, users = scenario(settings, sqs, fault_queues)
    dead_letter_by_hand(sqs, fault_queues[1], invalid[:1], ["x0"])  # the same original id again
    result = account("t", settings.database_url, sqs, fault_queues, users, 5, record=False)
    assert (result.dead_lettered, result.duplicated, result.dlq_duplicated) == (6, 1, 1)
    assert not result.exact


def test_a_row_loaded_twice_is_a_duplicate(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    valid, _, users = scenario(settings, sqs, fault_queues)
    load_by_hand(settings, valid[:1], ids=["v0-under-another-key"])
    result = account("t", settings.database_url, sqs, fault_queues, users, 5, record=False)
    assert (result.loaded, result.duplicated, result.dlq_duplicated) == (6, 1, 0)
    assert result.rollups_exact  # the fold counted the extra row; the recount agrees
    assert not result.exact


def test_a_message_left_in_the_queue_is_not_exact(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    _, _, users = scenario(settings, sqs, fault_queues)
    unloaded = json.dumps({"user_id": "acct-extra"})
    assert sqs.send(fault_queues[0], [OutboundMessage(unloaded)]) == []
    result = account("t", settings.database_url, sqs, fault_queues, users, 5, record=False)
    assert result.left_in_queues == 1
    assert not result.exact


def test_a_missing_row_and_a_missing_dlq_copy_are_lost(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    bodies, users = fault_bodies("acct", 6)
    load_by_hand(settings, bodies[:5], ids=[f"v{i}" for i in range(5)])
    dead_letter_by_hand(sqs, fault_queues[1], bodies[6:10], [f"x{i}" for i in range(4)])
    result = account("t", settings.database_url, sqs, fault_queues, users, 5, record=False)
    assert (result.loaded, result.dead_lettered, result.lost) == (5, 4, 2)
    assert not result.exact


def test_a_row_without_its_vault_entry_is_not_exact(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    _, _, users = scenario(settings, sqs, fault_queues)
    engine = db.make_engine(settings.database_url, pool_size=1)
    try:
        db.fold(engine, wait=True)
        with engine.begin() as conn:  # as a purge that judged wrong would leave it
            conn.execute(
                text("DELETE FROM pii_vault WHERE ctid = (SELECT min(ctid) FROM pii_vault)")
            )
    finally:
        engine.dispose()
    result = account("t", settings.database_url, sqs, fault_queues, users, 5, record=False)
    assert (result.lost, result.duplicated, result.rollups_exact) == (0, 0, True)
    assert not result.vault_complete
    assert not result.exact
