"""Turn one receive's worth of SQS messages into rows, vault entries and rejections.

Pure: the caller does the I/O (receive, commit, dead-letter, delete) around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Final

from loginetl.core.attributes import (
    ATTR_DETAIL,
    ATTR_FIRST_SEEN,
    ATTR_ORIGINAL_MESSAGE_ID,
    ATTR_ORIGINAL_SENT_AT,
    ATTR_REASON,
    ATTR_REPLAYS,
    original_sent_at,
)
from loginetl.core.envelope import EnvelopeMode, EnvelopeRejection, parse_message
from loginetl.core.masking import Masker
from loginetl.core.messages import ENVELOPE_INVALID, MAX_BODY_BYTES, LoginEvent, Rejection
from loginetl.core.vault_crypto import PlainVaultEntry, SealedVaultEntry, VaultSealer

# Message attributes loginetl sets when it moves a message (SQS gives a moved message a
# new MessageId and SentTimestamp, and the load must stay idempotent) live in
# core/attributes.py, which signs and verifies them; re-exported here for callers.
__all__ = [
    "ATTR_DETAIL",
    "ATTR_FIRST_SEEN",
    "ATTR_ORIGINAL_MESSAGE_ID",
    "ATTR_ORIGINAL_SENT_AT",
    "ATTR_REASON",
    "ATTR_REPLAYS",
]

# Reason codes for rejects that are not the body's fault as parsed (see messages.py).
PREPARATION_FAILED: Final = "preparation_failed"  # an unexpected error masking or sealing it
REJECTED_BY_DATABASE: Final = "rejected_by_database"  # detail: SQLSTATE and constraint name

# An envelope's own time (SNS Timestamp, EventBridge time) is believed only this close to
# the time SQS (or a verified loginetl attribute) gives: SNS and EventBridge deliver within
# seconds and retry for at most a day, so a producer forging an envelope can move its row's
# send time by at most a day back, and can never claim to be fresher than SQS saw it.
# The row's day comes from the envelope's time alone (it is in the body, the same in every
# delivery of one event), so an envelope whose time is missing or outside this bound is
# rejected, never loaded on SQS's day: a late redelivery can reach the DLQ, never a second
# row under the same key on another day.
ENVELOPE_TIME_MAX_AGE: Final = timedelta(hours=24)
ENVELOPE_TIME_MAX_AHEAD: Final = timedelta(minutes=1)
ENVELOPE_TIME_UNFIT: Final = (
    "the envelope's time is missing, or more than a day before or a minute after the time "
    "SQS sent it; the row's day must come from the envelope"
)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One received SQS message, with the parts the pipeline needs."""

    message_id: str
    receipt_handle: str = field(repr=False)
    body: str = field(repr=False)
    sent_at: datetime
    receive_count: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None  # a FIFO queue's MessageGroupId (set by SQS, never None there)
    sequence_number: int | None = None  # a FIFO queue's SequenceNumber: order within a group
    # Set by parse_batch when the body was an SNS/EventBridge envelope (core/envelope.py).
    envelope_id: str | None = None
    envelope_time: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """The id of the message as first published, surviving DLQ round trips.

        An envelope's id comes first: it is in the body, so every copy of one published
        event (an SNS or EventBridge redelivery, a DLQ round trip) carries it, whatever its
        SQS MessageId. Then loginetl's verified attribute, then SQS's MessageId.
        """
        return self.envelope_id or self.attributes.get(ATTR_ORIGINAL_MESSAGE_ID) or self.message_id

    @property
    def original_sent_at(self) -> datetime:
        """When the app first published it; ``create_date`` derives from this, not the move.

        An envelope's time when it lies within a day before the SQS/attribute time (so a
        redelivery of one event keeps one ``create_date``), else that time.
        """
        at = self.envelope_time
        return (
            at
            if at is not None and self.envelope_time_fits
            else original_sent_at(self.attributes, self.sent_at)
        )

    @property
    def envelope_time_fits(self) -> bool:
        """Whether the envelope's time is within the bound around SQS's (or the verified
        original) send time; a loaded envelope's row takes its day from it."""
        base = original_sent_at(self.attributes, self.sent_at)
        at = self.envelope_time
        return (
            at is not None and base - ENVELOPE_TIME_MAX_AGE <= at <= base + ENVELOPE_TIME_MAX_AHEAD
        )

    @property
    def lag_from(self) -> datetime:
        """Where end-to-end lag starts: never later than SQS's own SentTimestamp.

        A message loginetl moved (a DLQ replay) counts from its move, so replaying old
        rejects does not look like a stale queue.
        """
        if ATTR_ORIGINAL_SENT_AT in self.attributes:
            return self.sent_at
        return min(self.original_sent_at, self.sent_at)


@dataclass(frozen=True, slots=True)
class LoginRow:
    """One row of ``user_logins``: masked, ready to insert."""

    idempotency_key: str
    user_id: str
    device_type: str
    masked_ip: str
    masked_device_id: str
    locale: str | None
    app_version: int
    app_version_raw: str
    sent_at: datetime
    create_date: date


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message that cannot be loaded, and why."""

    message: InboundMessage
    rejection: Rejection


@dataclass(frozen=True)
class PreparedBatch:
    """What one batch becomes: rows and vault entries for one transaction, and rejects."""

    rows: list[LoginRow]
    vault_entries: list[SealedVaultEntry]
    loadable: list[InboundMessage]  # every valid message, in-batch duplicates included
    rejected: list[RejectedMessage]
    duplicates_in_batch: int
    ignored_fields: int


def mask_event(event: LoginEvent, message: InboundMessage, masker: Masker) -> LoginRow:
    """Build the masked row for a valid event."""
    sent_at = message.original_sent_at
    return LoginRow(
        idempotency_key=message.idempotency_key,
        user_id=event.user_id,
        device_type=event.device_type,
        masked_ip=masker.token("ip", event.ip),
        masked_device_id=masker.token("device_id", event.device_id),
        locale=event.locale,
        app_version=event.app_version,
        app_version_raw=event.app_version_raw,
        sent_at=sent_at,
        create_date=sent_at.astimezone(UTC).date(),
    )


@dataclass(frozen=True)
class ParsedBatch:
    """A batch after parsing and validation: events to load, and rejects."""

    events: list[tuple[InboundMessage, LoginEvent]]  # every valid message, in batch order
    rejected: list[RejectedMessage]


def parse_batch(
    messages: Iterable[InboundMessage],
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    envelope: EnvelopeMode = "auto",
) -> ParsedBatch:
    """Unwrap, parse and validate every message; never raises.

    A message that came in an envelope carries the envelope's id and time from here on
    (its idempotency key and send time), rejected or not.
    """
    events: list[tuple[InboundMessage, LoginEvent]] = []
    rejected: list[RejectedMessage] = []
    for message in messages:
        outcome = parse_message(message.body, envelope=envelope, max_body_bytes=max_body_bytes)
        if outcome.envelope_id is not None:
            message = replace(
                message, envelope_id=outcome.envelope_id, envelope_time=outcome.envelope_time
            )
        if isinstance(outcome, EnvelopeRejection):
            rejected.append(RejectedMessage(message, outcome.rejection))
        elif outcome.envelope_id is not None and not message.envelope_time_fits:
            rejected.append(
                RejectedMessage(message, Rejection(ENVELOPE_INVALID, ENVELOPE_TIME_UNFIT))
            )
        else:
            events.append((message, outcome.event))
    return ParsedBatch(events, rejected)


def mask_batch(
    parsed: ParsedBatch,
    *,
    masker: Masker,
    sealer: VaultSealer,
    known_tokens: set[str] | frozenset[str] = frozenset(),
) -> PreparedBatch:
    """Mask the events into rows and seal each new value once (one key agreement).

    ``known_tokens`` are tokens already committed to the vault (a cache of the caller's);
    they are not sealed again. Duplicates of one idempotency key inside the batch become one
    row, so they cannot fail the insert. An unexpected error masking one message rejects
    that message alone (``preparation_failed``), never the batch.
    """
    rows: dict[str, LoginRow] = {}
    plain: dict[str, PlainVaultEntry] = {}
    rejected = list(parsed.rejected)
    loadable: list[InboundMessage] = []
    duplicates = 0
    ignored = 0
    for message, event in parsed.events:
        if message.idempotency_key in rows:
            duplicates += 1
            ignored += event.ignored_fields
            loadable.append(message)
            continue
        try:
            row = mask_event(event, message, masker)
        except Exception as error:  # a bug must cost one message, not the batch
            rejected.append(
                RejectedMessage(message, Rejection(PREPARATION_FAILED, type(error).__name__))
            )
            continue
        ignored += event.ignored_fields
        loadable.append(message)
        rows[row.idempotency_key] = row
        for token, pii_field, value in (
            (row.masked_ip, "ip", event.ip),
            (row.masked_device_id, "device_id", event.device_id),
        ):
            if token not in known_tokens and token not in plain:
                plain[token] = PlainVaultEntry(token, pii_field, value)  # type: ignore[arg-type]
    return PreparedBatch(
        rows=list(rows.values()),
        vault_entries=sealer.seal(plain.values()),
        loadable=loadable,
        rejected=rejected,
        duplicates_in_batch=duplicates,
        ignored_fields=ignored,
    )


def prepare_batch(
    messages: Iterable[InboundMessage],
    *,
    masker: Masker,
    sealer: VaultSealer,
    known_tokens: set[str] | frozenset[str] = frozenset(),
    max_body_bytes: int = MAX_BODY_BYTES,
    envelope: EnvelopeMode = "auto",
) -> PreparedBatch:
    """Parse, validate, mask and seal a batch: parse_batch, then mask_batch."""
    return mask_batch(
        parse_batch(messages, max_body_bytes=max_body_bytes, envelope=envelope),
        masker=masker,
        sealer=sealer,
        known_tokens=known_tokens,
    )


def dead_letter_attributes(rejected: RejectedMessage, *, first_seen: datetime) -> dict[str, str]:
    """Attributes for the DLQ copy: why, and the original identity (value-free)."""
    message = rejected.message
    return {
        ATTR_REASON: rejected.rejection.reason,
        ATTR_DETAIL: rejected.rejection.detail,
        **_identity_attributes(message),
        ATTR_FIRST_SEEN: message.attributes.get(ATTR_FIRST_SEEN)
        or first_seen.astimezone(UTC).isoformat(timespec="seconds"),
        **(
            {ATTR_REPLAYS: message.attributes[ATTR_REPLAYS]}
            if ATTR_REPLAYS in message.attributes
            else {}
        ),
    }


def _identity_attributes(message: InboundMessage) -> dict[str, str]:
    return {
        ATTR_ORIGINAL_MESSAGE_ID: message.idempotency_key,
        ATTR_ORIGINAL_SENT_AT: str(int(message.original_sent_at.timestamp() * 1000)),
    }


def replay_attributes(message: InboundMessage) -> dict[str, str]:
    """Attributes for a DLQ message sent back to its source queue.

    The original identity travels with it, so a copy of something already loaded is
    skipped; the reject reason does not (the copy is not a reject yet).
    """
    replays = message.attributes.get(ATTR_REPLAYS, "0")
    attributes = {
        **_identity_attributes(message),
        ATTR_REPLAYS: str(int(replays) + 1 if replays.isdigit() else 1),
    }
    if ATTR_FIRST_SEEN in message.attributes:
        attributes[ATTR_FIRST_SEEN] = message.attributes[ATTR_FIRST_SEEN]
    return attributes
