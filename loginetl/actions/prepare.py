"""From received messages to a prepared batch: the one path ``consume`` and the Lambda share.

verify loginetl's attributes (``trust_all``) -> unwrap, parse, validate, mask, seal
(``core.batch.prepare_batch``, the one place a body becomes a row) -> if that fails unexpectedly,
the same one message at a time, so a bug costs only the message that trips it
(``prepare_isolating``). When it trips every message that would have become a row, the
fault is ours (a broken masker or sealer), not theirs: Fatal, nothing dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from loginetl.actions.retry_policy import Fatal
from loginetl.core.attributes import trust
from loginetl.core.batch import (
    PREPARATION_FAILED,
    InboundMessage,
    PreparedBatch,
    RejectedMessage,
    prepare_batch,
)
from loginetl.core.envelope import EnvelopeMode
from loginetl.core.keyring import Keyring
from loginetl.core.masking import Masker
from loginetl.core.messages import MAX_BODY_BYTES, Rejection
from loginetl.core.vault_crypto import VaultSealer
from loginetl.errors import LoginetlError
from loginetl.services import failpoints

log = logging.getLogger("loginetl.consume")


def trust_all(
    messages: Sequence[InboundMessage], attribute_keys: Keyring
) -> tuple[list[InboundMessage], int]:
    """Keep only the loginetl-* attributes whose signature verifies and values are sane;
    return the messages and how many carried attributes that did not verify."""
    now = datetime.now(UTC)
    trusted: list[InboundMessage] = []
    forged = 0
    for message in messages:
        verified = trust(message.attributes, message.body, attribute_keys, now=now)
        forged += verified.dropped
        trusted.append(replace(message, attributes=verified.attributes))
    return trusted, forged


def prepare_isolating(
    messages: Sequence[InboundMessage],
    *,
    masker: Masker,
    sealer: VaultSealer,
    known_tokens: set[str] | frozenset[str] = frozenset(),
    max_body_bytes: int = MAX_BODY_BYTES,
    envelope: EnvelopeMode = "auto",
) -> PreparedBatch:
    """Prepare the batch; if that fails unexpectedly, find the message(s) at fault."""

    def prepare(some: Sequence[InboundMessage]) -> PreparedBatch:
        failpoints.hit("raise_in_prepare", when=bool(some))
        return prepare_batch(
            some,
            masker=masker,
            sealer=sealer,
            known_tokens=known_tokens,
            max_body_bytes=max_body_bytes,
            envelope=envelope,
        )

    try:
        return _not_ours(prepare(messages))
    except Exception as error:  # its text may quote a value: the type only, never the message
        if isinstance(error, Fatal):
            raise
        log.error(
            "preparing a batch failed (%s); preparing its messages one at a time",
            type(error).__name__,
        )
    good: list[InboundMessage] = []
    broken: list[RejectedMessage] = []
    for message in messages:
        try:
            prepare([message])
            good.append(message)
        except Exception as error:
            broken.append(
                RejectedMessage(message, Rejection(PREPARATION_FAILED, type(error).__name__))
            )
    batch = prepare(good)
    return _not_ours(replace(batch, rejected=[*batch.rejected, *broken]))


def _not_ours(batch: PreparedBatch) -> PreparedBatch:
    """The batch, unless preparing failed for every message that would have been a row."""
    failed = [r for r in batch.rejected if r.rejection.reason == PREPARATION_FAILED]
    if not failed or batch.rows:
        return batch
    why = sorted({r.rejection.detail for r in failed})
    log.error("preparing every message of a batch failed (%s); stopping", why[0])
    raise Fatal(
        LoginetlError(
            f"masking and sealing failed for every message of a batch ({', '.join(why[:3])}), "
            "so the fault is not the messages': check the keys directory and the loginetl "
            "version; the messages were released, nothing was dead-lettered"
        )
    )
