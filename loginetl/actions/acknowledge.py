"""Finish what a batch received: dead-letter the rejects, delete what is done, release.

A message is deleted only after its row is committed or its DLQ copy accepted; the DLQ
copy carries signed loginetl attributes (core/attributes.py), so its identity survives
the round trip and cannot be forged on the way. Deletes run on a small pool beside the
next receive: they follow a commit already made, and a failed one is harmless
(the redelivery is skipped as a duplicate). A FIFO dead-letter queue gets each copy in the
original's message group, with a deduplication id derived from the original message id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loginetl.actions.visibility import Hold
from loginetl.core.attributes import sign
from loginetl.core.batch import InboundMessage, RejectedMessage, dead_letter_attributes
from loginetl.core.fifo import deduplication_id, is_fifo
from loginetl.core.keyring import Keyring
from loginetl.core.messages import body_bytes
from loginetl.errors import ConfigError, LoginetlError
from loginetl.services import failpoints
from loginetl.services.sqs import OutboundMessage, SqsService

log = logging.getLogger("loginetl.consume")

SQS_MAX_MESSAGE_BYTES = 1024 * 1024


def _size(message: OutboundMessage) -> int:
    """SQS's measure: body plus each attribute's name, type and value, in UTF-8 bytes."""
    return body_bytes(message.body) + sum(
        len(name.encode()) + len("String") + len(value.encode())
        for name, value in message.attributes.items()
    )


@dataclass(frozen=True)
class DeadLettered:
    """What the DLQ accepted (with each one's reason) and how many it did not."""

    accepted: list[InboundMessage]
    reasons: dict[str, str]  # accepted message id -> reason code
    failed: int
    unsent: list[InboundMessage] = field(default_factory=list)  # the ``failed`` ones


class Acknowledger:
    """Dead-letters, deletes and releases for one queue and its DLQ."""

    def __init__(
        self,
        sqs: SqsService,
        queue_url: str,
        dlq_url: str,
        attribute_keys: Keyring,
        *,
        workers: int,
        on_delete_failures: Callable[[int], None],
        on_fatal: Callable[[LoginetlError], None],
    ) -> None:
        self.sqs, self.queue_url, self.dlq_url = sqs, queue_url, dlq_url
        self.fifo = is_fifo(dlq_url)
        self.attribute_keys = attribute_keys
        self.on_delete_failures = on_delete_failures
        self.on_fatal = on_fatal
        # Two deleters a worker: a batch's deletes take as many round trips as its receives
        # (one call per 10), so with one they became the limit once calls cost 20-50 ms.
        self._pool = ThreadPoolExecutor(max_workers=workers * 2, thread_name_prefix="delete")
        self._pending = threading.BoundedSemaphore(workers * 2)  # a slow endpoint cannot pile up

    def dead_letter(self, rejected: Sequence[RejectedMessage]) -> DeadLettered:
        """Send rejects to the DLQ with their (signed) reason; report what it accepted."""
        if not rejected:
            return DeadLettered([], {}, 0)
        now = datetime.now(UTC)
        outbound = [self._outbound(r, now) for r in rejected]
        # SQS refuses a message over 1 MiB (body and attributes): do not even try, it would
        # only cost a copy of the body in memory and a failed call. It stays in the queue
        # until the RedrivePolicy moves it.
        too_big = {i for i, m in enumerate(outbound) if _size(m) > SQS_MAX_MESSAGE_BYTES}
        sendable = [i for i in range(len(outbound)) if i not in too_big]
        try:
            failed = too_big | {
                sendable[j] for j in self.sqs.send(self.dlq_url, [outbound[i] for i in sendable])
            }
        except ConfigError:
            raise
        except LoginetlError as error:
            log.warning("dead-letter queue unavailable (%s); rejects stay in the queue", error)
            failed = set(range(len(outbound)))
        accepted = [r for i, r in enumerate(rejected) if i not in failed]
        failpoints.hit("crash_after_dead_letter", when=bool(accepted))
        return DeadLettered(
            [r.message for r in accepted],
            {r.message.message_id: r.rejection.reason for r in accepted},
            len(failed),
            [r.message for i, r in enumerate(rejected) if i in failed],
        )

    def _outbound(self, rejected: RejectedMessage, now: datetime) -> OutboundMessage:
        """The DLQ copy: signed reason and identity."""
        attributes = dead_letter_attributes(rejected, first_seen=now)
        return signed_copy(
            rejected.message, attributes, self.attribute_keys, "dead-letter", self.fifo
        )

    def delete_later(self, messages: Sequence[InboundMessage], hold: Hold) -> None:
        """Delete on the pool; the batch stays under the heartbeat until it is done."""
        self._pending.acquire()
        self._pool.submit(self._delete, messages, hold)

    def _delete(self, messages: Sequence[InboundMessage], hold: Hold) -> None:
        try:
            failed = len(self.sqs.delete(self.queue_url, messages))
        except ConfigError as error:
            self.on_fatal(error)
            failed = len(messages)
        except LoginetlError as error:
            log.warning("delete failed (%s); the messages will be redelivered and skipped", error)
            failed = len(messages)
        finally:
            hold.release()
            self._pending.release()
        if failed:
            self.on_delete_failures(failed)

    def release(self, messages: Sequence[InboundMessage]) -> int:
        """Make messages visible again at once; return how many SQS did not release."""
        if not messages:
            return 0
        try:
            return len(self.sqs.set_visibility(self.queue_url, messages, 0))
        except LoginetlError as error:
            log.warning("could not release messages (%s); they reappear after timeout", error)
            return len(messages)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def signed_copy(
    message: InboundMessage, attributes: dict[str, str], keys: Keyring, purpose: str, fifo: bool
) -> OutboundMessage:
    """A copy of ``message`` to send on, its loginetl attributes signed; to a FIFO queue in
    the original's group, deduplicated per delivery and ``purpose`` (a resend of this
    delivery's copy is dropped, a later trip through the queues is not)."""
    signed = sign(attributes, message.body, keys)
    if not fifo:
        return OutboundMessage(message.body, signed)
    return OutboundMessage(
        message.body,
        signed,
        # SQS gives every message on a FIFO queue a group; "loginetl" only if it did not.
        group_id=message.group_id or "loginetl",
        deduplication_id=deduplication_id(purpose, message),
    )
