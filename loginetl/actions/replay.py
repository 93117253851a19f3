"""``replay-dlq``: move dead-lettered messages back to the source queue, safely.

Send to the source first, then delete from the DLQ: a crash in between leaves a copy in
both, never in neither, and the copy carries the original message id, so the consumer's
idempotent insert absorbs it. From a FIFO DLQ, each message goes back in its original
message group, in SequenceNumber order, with a deduplication id (a rerun after a crash
between the send and the delete is dropped by SQS); a group whose message stays behind in
the DLQ is not received further in the same run, so its order survives.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from loginetl.actions.acknowledge import signed_copy
from loginetl.config import Settings
from loginetl.core.attributes import trust
from loginetl.core.batch import ATTR_REASON, InboundMessage, replay_attributes
from loginetl.core.envelope import EnvelopeMode, EnvelopeRejection, parse_message
from loginetl.core.fifo import in_group_order, is_fifo
from loginetl.core.keyring import Keyring
from loginetl.core.limits import SQS_BATCH
from loginetl.core.pacing import DEFAULT_HOLD_SECONDS, RampedRate
from loginetl.errors import LoginetlError
from loginetl.services import failpoints, keys
from loginetl.services.sqs import OutboundMessage, SqsService

_STALE_RECEIVES = 3  # receives bringing only messages already seen before we call it done
UNKNOWN_REASON = "unknown"  # dead-lettered by SQS's RedrivePolicy, not by loginetl


@dataclass(frozen=True)
class DryRunVerdicts:
    """For one original reason: how many would load now, and why the rest would fail."""

    would_load: int
    would_fail: dict[str, int]


@dataclass(frozen=True)
class ReplayResult:
    """Counts that reconcile: examined = moved + skipped + failed."""

    dry_run: bool
    examined: int
    moved: int
    skipped: int
    failed: int
    delete_failures: int
    by_reason: dict[str, int]
    dry_run_verdicts: dict[str, DryRunVerdicts] = field(default_factory=dict)
    unverified: int = 0  # selected, but their loginetl attributes did not verify
    failed_by_reason: dict[str, int] = field(default_factory=dict)  # failed, split by why


@dataclass(frozen=True)
class NativeMoveResult:
    """What SQS's own StartMessageMoveTask reported."""

    status: str
    moved: int
    to_move: int | None
    failure_reason: str | None


UNPREPARABLE = "unpreparable"  # its attributes or body made replay fail unexpectedly


@dataclass(frozen=True)
class _Entry:
    """One received DLQ message, with what replay believes of its attributes."""

    message: InboundMessage
    trusted: InboundMessage  # only the loginetl-* attributes that verified
    reason: str  # the verified reason; the raw label when it did not verify
    unverified: bool


def _entry(message: InboundMessage, attribute_keys: Keyring, now: datetime) -> _Entry:
    """What consume would believe of it (core.attributes.trust), and the reason to select by."""
    verified = trust(message.attributes, message.body, attribute_keys, now=now)
    reason = verified.attributes.get(ATTR_REASON)
    if reason is None:
        reason = message.attributes.get(ATTR_REASON)
    return _Entry(
        message,
        replace(message, attributes=verified.attributes),
        reason or UNKNOWN_REASON,
        verified.dropped,
    )


class _Replay:
    def __init__(
        self,
        sqs: SqsService,
        queue_url: str,
        dlq_url: str,
        *,
        attribute_keys: Keyring,
        max_messages: int | None,
        reason: str | None,
        dry_run: bool,
        rate: float | None,
        hold_seconds: int,
        on_progress: Callable[[int], None] | None,
        envelope: EnvelopeMode = "auto",
    ) -> None:
        self.sqs, self.queue_url, self.dlq_url = sqs, queue_url, dlq_url
        self.fifo = is_fifo(queue_url)
        self.envelope = envelope
        self.attribute_keys = attribute_keys
        self.unverified = 0
        self.max_messages, self.reason, self.dry_run = max_messages, reason, dry_run
        self.pacing = RampedRate(rate) if rate else None
        self.hold_seconds = hold_seconds
        self.on_progress = on_progress
        self.held: list[InboundMessage] = []
        self.seen: set[str] = set()
        self.by_reason: Counter[str] = Counter()
        self.moved = self.skipped = self.failed = self.delete_failures = 0
        self.failed_by_reason: Counter[str] = Counter()
        self.verdicts: dict[str, Counter[str]] = defaultdict(Counter)

    def _budget(self) -> int:
        if self.max_messages is None:
            return SQS_BATCH
        done = self.moved + self.failed + (sum(self.by_reason.values()) if self.dry_run else 0)
        return max(0, min(SQS_BATCH, self.max_messages - done))

    def run(self) -> ReplayResult:
        stale = 0
        try:
            while (budget := self._budget()) > 0:
                batch = self.sqs.receive(
                    self.dlq_url,
                    max_messages=budget,
                    wait_seconds=1,
                    visibility_timeout=self.hold_seconds,
                )
                if not batch:
                    break
                fresh = [m for m in in_group_order(batch) if m.message_id not in self.seen]
                # Seen before: its hold ran out during a long run. Hold it again, skip it.
                self.held += [m for m in batch if m.message_id in self.seen]
                stale = 0 if fresh else stale + 1
                if stale >= _STALE_RECEIVES:
                    break
                self.seen.update(m.message_id for m in fresh)
                entries = self._entries(fresh)
                wanted = [e for e in entries if self.reason in (None, e.reason)]
                self.held += [e.message for e in entries if e not in wanted]
                self.skipped += len(entries) - len(wanted)
                self.by_reason.update(e.reason for e in wanted)
                self.unverified += sum(e.unverified for e in wanted)
                if self.dry_run:
                    self._judge(wanted)
                    self.held += [e.message for e in wanted]
                else:
                    self._move(wanted)
                if self.on_progress is not None:
                    self.on_progress(len(fresh))
        finally:
            if self.held:  # skipped, judged or unsent: visible again for the next run
                self.sqs.set_visibility(self.dlq_url, self.held, 0)
        return ReplayResult(
            dry_run=self.dry_run,
            examined=len(self.seen),
            moved=self.moved,
            skipped=self.skipped + (sum(self.by_reason.values()) if self.dry_run else 0),
            failed=self.failed,
            delete_failures=self.delete_failures,
            by_reason=dict(sorted(self.by_reason.items())),
            dry_run_verdicts={
                reason: DryRunVerdicts(
                    would_load=counts.pop("load", 0), would_fail=dict(sorted(counts.items()))
                )
                for reason, counts in sorted(self.verdicts.items())
            },
            unverified=self.unverified,
            failed_by_reason=dict(sorted(self.failed_by_reason.items())),
        )

    def _fail(self, message: InboundMessage, why: str) -> None:
        """One bad message costs that message: held in the DLQ, counted with a reason."""
        self.failed += 1
        self.failed_by_reason[why] += 1
        self.held.append(message)

    def _entries(self, messages: list[InboundMessage]) -> list[_Entry]:
        now = datetime.now(UTC)
        entries = []
        for message in messages:
            try:
                entries.append(_entry(message, self.attribute_keys, now))
            except Exception as error:  # any surprise costs this message only
                self._fail(message, f"{UNPREPARABLE} ({type(error).__name__})")
        return entries

    def _judge(self, entries: list[_Entry]) -> None:
        for entry in entries:
            try:
                # Unwrapped exactly as consume would (--envelope), so an SNS notification
                # around a now-valid login is judged "load", not missing_field.
                outcome = parse_message(entry.message.body, envelope=self.envelope)
                verdict = (
                    outcome.rejection.reason if isinstance(outcome, EnvelopeRejection) else "load"
                )
            except Exception as error:  # any surprise costs this message only
                verdict = f"{UNPREPARABLE} ({type(error).__name__})"
            self.verdicts[entry.reason][verdict] += 1

    def _move(self, entries: list[_Entry]) -> None:
        ready: list[tuple[InboundMessage, OutboundMessage]] = []
        for entry in entries:
            try:
                ready.append((entry.message, self._outbound(entry.message, entry.trusted)))
            except Exception as error:  # any surprise costs this message only
                self._fail(entry.message, f"{UNPREPARABLE} ({type(error).__name__})")
        if not ready:
            return
        messages = [m for m, _ in ready]
        if self.pacing is not None:
            time.sleep(self.pacing.wait_before(len(messages), time.monotonic()))
        failed = set(self.sqs.send(self.queue_url, [o for _, o in ready]))
        sent = [m for i, m in enumerate(messages) if i not in failed]
        self.held += [m for i, m in enumerate(messages) if i in failed]
        self.failed += len(failed)
        if failed:
            self.failed_by_reason["send_failed"] += len(failed)
        self.moved += len(sent)
        failpoints.hit("crash_after_replay_send", when=bool(sent))
        if sent:
            # Harmless if it fails: the copy in the source queue is absorbed on load.
            self.delete_failures += len(self.sqs.delete(self.dlq_url, sent))

    def _outbound(self, message: InboundMessage, trusted: InboundMessage) -> OutboundMessage:
        """The copy for the source queue: verified identity only, signed again; to a FIFO
        queue in the DLQ copy's group (the original's), deduplicated per DLQ delivery."""
        copy = replace(trusted, group_id=message.group_id)
        return signed_copy(
            copy, replay_attributes(trusted), self.attribute_keys, "replay", self.fifo
        )


def replay_dlq(
    settings: Settings,
    *,
    max_messages: int | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    rate: float | None = None,
    hold_seconds: int = DEFAULT_HOLD_SECONDS,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Move (or, with dry_run, judge) DLQ messages back to the source queue.

    ``on_start`` is told the DLQ's approximate depth first (for a progress bar).
    """
    attribute_keys = keys.load_keyring(settings.keys_dir, keys.ATTRIBUTE_FILE)
    sqs = SqsService.for_settings(settings)
    queue_url, dlq_url = sqs.queue_url(settings.queue_name), sqs.queue_url(settings.dlq_name)
    if on_start is not None:
        on_start(sqs.depth(dlq_url).visible)
    return _Replay(
        sqs,
        queue_url,
        dlq_url,
        attribute_keys=attribute_keys,
        max_messages=max_messages,
        reason=reason,
        dry_run=dry_run,
        rate=rate,
        hold_seconds=hold_seconds,
        on_progress=on_progress,
        envelope=settings.envelope,
    ).run()


def replay_native(
    settings: Settings,
    *,
    rate: int | None = None,
    poll_seconds: float = 1.0,
    timeout_seconds: float = 3600.0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> NativeMoveResult:
    """Use SQS's StartMessageMoveTask and follow it until it ends."""
    sqs = SqsService.for_settings(settings)
    dlq_arn = sqs.queue_arn(sqs.queue_url(settings.dlq_name))
    queue_arn = sqs.queue_arn(sqs.queue_url(settings.queue_name))
    handle = sqs.start_move_task(dlq_arn, queue_arn, rate)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        tasks = [t for t in sqs.move_tasks(dlq_arn) if t.get("TaskHandle") in (handle, None)]
        task = tasks[0] if tasks else {}
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        to_move = task.get("ApproximateNumberOfMessagesToMove")
        if on_progress is not None:
            on_progress(moved, to_move)
        status = str(task.get("Status", "RUNNING"))
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            return NativeMoveResult(status, moved, to_move, task.get("FailureReason"))
        time.sleep(poll_seconds)
    raise LoginetlError(
        f"the message move task did not finish within {timeout_seconds:.0f}s; "
        "it keeps running in SQS (see ListMessageMoveTasks)"
    )
