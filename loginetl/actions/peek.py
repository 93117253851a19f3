"""``peek``: look at queue health and a few messages as they would be loaded, safely.

SQS has no read without a receive, and every receive raises a message's
ApproximateReceiveCount toward the RedrivePolicy's maxReceiveCount. So peek hides what
it receives only briefly, releases it at once, and stops at any message its own receive
brought to the threshold, where one more receive would move it to the DLQ.

A producer can set any ``loginetl-*`` attribute, so peek believes them exactly as consume
does (``core.attributes.trust``): the id, send time and row it shows are those consume
would load, and a DLQ reason that did not verify is marked unverified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from loginetl.config import Settings
from loginetl.core.attributes import trust
from loginetl.core.batch import (
    ATTR_DETAIL,
    ATTR_FIRST_SEEN,
    ATTR_REASON,
    InboundMessage,
    LoginRow,
    mask_event,
    parse_batch,
)
from loginetl.core.envelope import EnvelopeMode, kind_of
from loginetl.core.keyring import Keyring
from loginetl.core.masking import Masker
from loginetl.errors import Refused
from loginetl.services import keys
from loginetl.services.sqs import QueueDepth, SqsService

_PEEK_VISIBILITY = 20  # seconds; long enough to collect a sample, short if peek dies


@dataclass(frozen=True)
class QueueHealth:
    """The counters an on-call engineer reads first."""

    queue: str
    depth: QueueDepth
    dlq: str
    dlq_depth: QueueDepth


@dataclass(frozen=True)
class PeekedMessage:
    """One message as it would be loaded; no plaintext PII."""

    message_id: str
    idempotency_key: str
    receive_count: int
    max_receive_count: int | None
    sent_at: datetime
    verdict: str  # "load" or a reason code
    detail: str
    row: LoginRow | None
    dlq_reason: str | None
    dlq_detail: str | None
    first_seen: str | None
    at_threshold: bool
    # False when a loginetl-* attribute did not verify: the DLQ fields above are then the
    # raw labels (shown as unverified), and the id and times are SQS's own, as consume uses.
    attributes_verified: bool = True
    envelope: str = "none"  # "sns" or "eventbridge" when the body was unwrapped


@dataclass(frozen=True)
class PeekResult:
    """Health, the sample, and the oldest send time seen in it."""

    health: QueueHealth
    source: str  # "queue" or "dlq"
    messages: list[PeekedMessage]
    oldest_sent_at: datetime | None
    attribute_keys_missing: bool = False  # no attribute-keys.json: nothing of loginetl's verified


def describe_message(
    message: InboundMessage,
    masker: Masker,
    max_receive_count: int | None,
    *,
    attribute_keys: Keyring | None,
    now: datetime,
    envelope: EnvelopeMode = "auto",
) -> PeekedMessage:
    """Unwrap, validate and mask one message exactly as consume would, attributes included."""
    verified = trust(message.attributes, message.body, attribute_keys, now=now)
    # What did not verify is still worth seeing in a DLQ, but only as a label.
    shown = verified.attributes if not verified.dropped else message.attributes
    parsed = parse_batch([replace(message, attributes=verified.attributes)], envelope=envelope)
    if parsed.rejected:
        trusted, rejection = parsed.rejected[0].message, parsed.rejected[0].rejection
        verdict, detail, row = rejection.reason, rejection.detail, None
    else:
        trusted, event = parsed.events[0]
        verdict, detail, row = "load", "", mask_event(event, trusted, masker)
    return PeekedMessage(
        message_id=message.message_id,
        idempotency_key=trusted.idempotency_key,
        receive_count=message.receive_count,
        max_receive_count=max_receive_count,
        sent_at=trusted.original_sent_at,
        verdict=verdict,
        detail=detail,
        row=row,
        dlq_reason=shown.get(ATTR_REASON),
        dlq_detail=shown.get(ATTR_DETAIL),
        first_seen=shown.get(ATTR_FIRST_SEEN),
        at_threshold=max_receive_count is not None and message.receive_count >= max_receive_count,
        attributes_verified=not verified.dropped,
        envelope=kind_of(trusted.envelope_id),
    )


def attribute_keys_of(settings: Settings) -> Keyring | None:
    """The attribute keys, or None on a host without the file (then nothing is believed)."""
    if not (settings.keys_dir / keys.ATTRIBUTE_FILE).exists():
        return None
    return keys.load_keyring(settings.keys_dir, keys.ATTRIBUTE_FILE)


def queue_health(sqs: SqsService, settings: Settings) -> tuple[QueueHealth, str, str]:
    """Depths of the queue and its DLQ; also return both URLs."""
    url, dlq_url = sqs.queue_url(settings.queue_name), sqs.queue_url(settings.dlq_name)
    health = QueueHealth(settings.queue_name, sqs.depth(url), settings.dlq_name, sqs.depth(dlq_url))
    return health, url, dlq_url


def peek(
    settings: Settings, *, count: int = 10, from_dlq: bool = False, force: bool = False
) -> PeekResult:
    """Show health and up to ``count`` messages; refuses at the dead-letter threshold."""
    masker = keys.load_masker(settings.keys_dir)
    attribute_keys = attribute_keys_of(settings)
    sqs = SqsService.for_settings(settings)
    health, url, dlq_url = queue_health(sqs, settings)
    source_url = dlq_url if from_dlq else url
    limit = None if from_dlq else health.depth.max_receive_count
    if limit is not None and limit <= 1 and not force:
        raise Refused(
            f"{settings.queue_name} dead-letters a message after {limit} receive; peeking would "
            "take that receive from the consumer. Use --force to peek anyway"
        )
    received: list[InboundMessage] = []
    try:
        received = sqs.sample(source_url, count=count, visibility_timeout=_PEEK_VISIBILITY)
    finally:
        if received:
            sqs.set_visibility(source_url, received, 0)
    now = datetime.now(UTC)
    described = [
        describe_message(
            m, masker, limit, attribute_keys=attribute_keys, now=now, envelope=settings.envelope
        )
        for m in received
    ]
    at_threshold = [m for m in described if m.at_threshold]
    if at_threshold and not force:
        raise Refused(
            f"{len(at_threshold)} message(s) in {settings.queue_name} have now been received "
            f"{limit} of {limit} times; one more receive moves them to the DLQ without a reason. "
            "peek released them and shows nothing; let `loginetl consume` take them now, "
            "or use --force to show them anyway"
        )
    return PeekResult(
        health=health,
        source="dlq" if from_dlq else "queue",
        messages=described,
        oldest_sent_at=min((m.sent_at for m in described), default=None),
        attribute_keys_missing=attribute_keys is None,
    )
