"""Batch preparation: idempotency keys, in-batch duplicates, original send times, DLQ attrs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from loginetl.core.batch import (
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_SENT_AT,
    InboundMessage,
    dead_letter_attributes,
    prepare_batch,
)
from loginetl.core.masking import Masker
from loginetl.core.vault_crypto import VaultSealer

MASKER = Masker("k1", bytes(range(32)))
SEALER = VaultSealer(X25519PrivateKey.generate().public_key())
SENT = datetime(2026, 11, 24, 23, 59, tzinfo=UTC)


def message(message_id: str, body: str, **attributes: str) -> InboundMessage:
    return InboundMessage(message_id, f"rh-{message_id}", body, SENT, 1, attributes)


def login(ip: str = "10.0.0.1", device_id: str = "111-22-3333") -> str:
    return json.dumps(
        {
            "user_id": "u1",
            "app_version": "1.2",
            "device_type": "ios",
            "ip": ip,
            "locale": None,
            "device_id": device_id,
        }
    )


def test_duplicate_keys_in_one_batch_become_one_row() -> None:
    batch = prepare_batch(
        [
            message("m1", login()),
            message("m1", login()),
            message("m2", login(), **{ATTR_ORIGINAL_MESSAGE_ID: "m1"}),
        ],
        masker=MASKER,
        sealer=SEALER,
    )
    assert [r.idempotency_key for r in batch.rows] == ["m1"]
    assert batch.duplicates_in_batch == 2
    assert len(batch.loadable) == 3


def test_original_identity_survives_a_move() -> None:
    original = datetime(2026, 1, 31, 12, tzinfo=UTC)
    moved = message(
        "new-id",
        login(),
        **{
            ATTR_ORIGINAL_MESSAGE_ID: "orig",
            ATTR_ORIGINAL_SENT_AT: str(int(original.timestamp() * 1000)),
        },
    )
    row = prepare_batch([moved], masker=MASKER, sealer=SEALER).rows[0]
    assert row.idempotency_key == "orig"
    assert row.sent_at == original
    assert row.create_date == date(2026, 1, 31)


def test_create_date_is_the_utc_date_of_sending() -> None:
    row = prepare_batch([message("m1", login())], masker=MASKER, sealer=SEALER).rows[0]
    assert row.create_date == date(2026, 11, 24)


def test_each_distinct_token_is_sealed_once_and_known_ones_not_at_all() -> None:
    bodies = [login("10.0.0.1", "d1"), login("10.0.0.1", "d2"), login("10.0.0.2", "d1")]
    batch = prepare_batch(
        [message(f"m{i}", b) for i, b in enumerate(bodies)], masker=MASKER, sealer=SEALER
    )
    assert len(batch.vault_entries) == 4
    known = {MASKER.token("ip", "10.0.0.1")}
    again = prepare_batch(
        [message(f"m{i}", b) for i, b in enumerate(bodies)],
        masker=MASKER,
        sealer=SEALER,
        known_tokens=known,
    )
    assert len(again.vault_entries) == 3


def test_rows_hold_tokens_not_plaintext() -> None:
    row = prepare_batch(
        [message("m1", login("10.9.8.7", "555-44-3333"))], masker=MASKER, sealer=SEALER
    ).rows[0]
    assert "10.9.8.7" not in repr(row)
    assert "555-44-3333" not in repr(row)


def test_dead_letter_attributes_name_the_reason_and_never_the_values() -> None:
    batch = prepare_batch([message("m1", login(ip="10.0.0.300"))], masker=MASKER, sealer=SEALER)
    attributes = dead_letter_attributes(batch.rejected[0], first_seen=SENT)
    assert attributes["loginetl-reason"] == "invalid_ip"
    assert attributes[ATTR_ORIGINAL_MESSAGE_ID] == "m1"
    assert attributes[ATTR_ORIGINAL_SENT_AT] == str(int(SENT.timestamp() * 1000))
    assert "10.0.0.300" not in json.dumps(attributes)
    assert "111-22-3333" not in json.dumps(attributes)


class _BrokenMasker(Masker):
    """A masker with a bug that one value trips."""

    def token(self, field: str, value: str) -> str:  # type: ignore[override]
        if value == "trips-the-bug":
            raise RuntimeError("bug")
        return super().token(field, value)  # type: ignore[arg-type]


def test_an_unexpected_error_masking_one_message_rejects_that_message_alone() -> None:
    masker = _BrokenMasker("k1", bytes(range(32)))
    batch = prepare_batch(
        [
            message("a", login()),
            message("b", login(device_id="trips-the-bug")),
            message("c", login(ip="10.0.0.3")),
        ],
        masker=masker,
        sealer=SEALER,
    )
    assert [m.message_id for m in batch.loadable] == ["a", "c"]
    assert len(batch.rows) == 2
    assert [
        (r.message.message_id, r.rejection.reason, r.rejection.detail) for r in batch.rejected
    ] == [("b", "preparation_failed", "RuntimeError")]
