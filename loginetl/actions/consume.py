"""``consume``: drain the login queue into PostgreSQL, at least once, idempotently.

Per batch (one receive, or several back to back while the queue keeps returning full
ones, bounded by count and by body bytes), the pipeline the Lambda runs too
(pipeline.py): verify loginetl's attributes -> parse -> validate -> mask -> one
transaction (rows + vault) -> commit -> dead-letter the rejects; then this module deletes
exactly what was committed or dead-lettered. A message is never deleted before its row is
committed or its DLQ copy accepted; a crash anywhere leaves it in the queue, and a
redelivery is absorbed by the unique idempotency key. Anything wrong with one message
dead-letters that message alone; a failure the message does not explain stops consume
(exit 1) with the batch released; transient failures are retried while a heartbeat keeps
the batch hidden. consume only appends: the rollups and the vault are folded from what
it committed by `loginetl fold` (and `stats`), never by the writer role.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from loginetl.actions.acknowledge import Acknowledger
from loginetl.actions.load import Loader
from loginetl.actions.pipeline import Pipeline
from loginetl.actions.prefetch import Inline, Prefetcher
from loginetl.actions.retry_policy import Fatal, Outage
from loginetl.actions.visibility import Heartbeat, Hold
from loginetl.config import Settings
from loginetl.core import limits
from loginetl.core.batch import InboundMessage
from loginetl.core.envelope import EnvelopeMode
from loginetl.core.fifo import is_fifo
from loginetl.core.keyring import Keyring
from loginetl.core.lag import LagSample
from loginetl.core.masking import Masker
from loginetl.core.messages import MAX_BODY_BYTES, body_bytes
from loginetl.core.vault_crypto import VaultSealer
from loginetl.errors import ConfigError, LoginetlError, ServiceUnavailable
from loginetl.services import db, failpoints, keys, migrations
from loginetl.services.sqs import SqsService

if TYPE_CHECKING:  # prometheus_client is imported by _start_metrics, with --metrics-port
    from loginetl.services.metrics import MetricsServer

log = logging.getLogger("loginetl.consume")

_PARTITION_CHECK_SECONDS = 3600.0


@dataclass(frozen=True)
class ConsumeOptions:
    """How long and how hard to consume."""

    max_messages: int | None = None
    idle_exit_seconds: float = 5.0
    follow: bool = False
    workers: int = 4  # docs/performance.md#sizing-under-latency: why 4, when to raise it
    batch_messages: int = 300  # per transaction, gathered only while receives come back full
    wait_seconds: int = 2
    visibility_timeout: int | None = None
    retry_seconds: float = 60.0  # how long a batch run waits out an outage; --follow waits forever
    max_body_bytes: int = MAX_BODY_BYTES  # larger bodies are dead-lettered as too_large
    batch_bytes: int | None = None  # body bytes a worker gathers; default below
    statement_timeout_seconds: float = 60.0  # per statement; a timeout is retried (transient)
    prefetch: bool = True  # receive a worker's next batch while it loads the last (prefetch.py)

    def __post_init__(self) -> None:
        limits.MAX_MESSAGES.check("max_messages", self.max_messages)
        limits.IDLE_EXIT_SECONDS.check("idle_exit_seconds", self.idle_exit_seconds)
        limits.WORKERS.check("workers", self.workers)
        limits.BATCH_MESSAGES.check("batch_messages", self.batch_messages)
        limits.WAIT_SECONDS.check("wait_seconds", self.wait_seconds, "SQS long-poll limit")
        limits.VISIBILITY_TIMEOUT.check("visibility_timeout", self.visibility_timeout)
        limits.RETRY_SECONDS.check("retry_seconds", self.retry_seconds)
        limits.MAX_BODY_BYTES.check("max_body_bytes", self.max_body_bytes, "SQS's limit")
        limits.BATCH_BYTES.check("batch_bytes", self.batch_bytes, "one body of SQS's maximum")
        limits.STATEMENT_TIMEOUT_SECONDS.check(
            "statement_timeout_seconds", self.statement_timeout_seconds
        )

    @property
    def gather_bytes(self) -> int:
        """Most body bytes one batch gathers (4 MiB unless batch_bytes says otherwise).

        A worker holds one batch, or with the prefetch at most one and a half: the next
        is received ahead only while the batch being loaded is at most half of this."""
        return self.batch_bytes if self.batch_bytes is not None else 4 * 1024 * 1024


@dataclass(frozen=True)
class ConsumeSummary:
    """Counts for one run; they reconcile: received = loaded + duplicates_skipped +
    dead_lettered + released + unfinished."""

    received: int
    loaded: int
    duplicates_skipped: int
    dead_lettered: int
    dead_lettered_by_reason: dict[str, int]
    released: int
    unfinished: int
    delete_failures: int
    dead_letter_failures: int
    transient_errors: int
    ignored_fields: int
    in_flight: int
    elapsed_seconds: float
    busy_seconds: float  # start to the last batch handled: excludes the idle wait at the end
    stopped_because: str
    forged_attributes_ignored: int = 0  # messages whose loginetl-* attributes did not verify
    # Send (SQS SentTimestamp, or an envelope's earlier time) to commit, over committed
    # messages (InboundMessage.lag_from); None before the first commit.
    lag_p50_seconds: float | None = None
    lag_p99_seconds: float | None = None
    lag_max_seconds: float | None = None

    @property
    def messages_per_second(self) -> float:
        return self.received / self.busy_seconds if self.busy_seconds > 0 else 0.0


@dataclass
class _Tally:
    """Mutable counters shared by the workers, guarded by one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: int = 0
    loaded: int = 0
    duplicates_skipped: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    released: int = 0
    unfinished: int = 0
    delete_failures: int = 0
    dead_letter_failures: int = 0
    transient_errors: int = 0
    ignored_fields: int = 0
    forged_attributes_ignored: int = 0
    in_flight: int = 0
    lag: LagSample = field(default_factory=LagSample)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass
class _Gathering:
    """One worker's receive state: its last receive's largest body sizes the next."""

    largest: int = 0


@dataclass(frozen=True)
class _Received:
    """A batch received and gathered, under the heartbeat until it is acknowledged."""

    messages: list[InboundMessage]
    received_at: float  # monotonic, before the receive
    hold: Hold
    body_bytes: int


class _Quota:
    """Hands out the remaining ``--max`` budget to workers before each receive."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self, want: int) -> int:
        if self._left is None:
            return want
        with self._lock:
            granted = min(want, self._left)
            self._left -= granted
            return granted

    def give_back(self, unused: int) -> None:
        if self._left is not None and unused:
            with self._lock:
                self._left += unused


class Consumer:
    """Orchestrates worker threads that each receive, load and acknowledge batches.

    Policies live in their own modules: what a batch comes to (pipeline.py), error classes
    (core/error_classes.py), back-off (retry_policy.py), the write with its retries and
    bisection (load.py), the visibility heartbeat (visibility.py), dead-lettering, deletes
    and releases (acknowledge.py), attribute verification (core/attributes.py).
    """

    def __init__(
        self,
        *,
        sqs: SqsService,
        engine: Engine,
        masker: Masker,
        sealer: VaultSealer,
        attribute_keys: Keyring,
        queue_url: str,
        dlq_url: str,
        options: ConsumeOptions,
        stop: threading.Event | None = None,
        envelope: EnvelopeMode = "auto",
    ) -> None:
        self.sqs = sqs
        self.engine = engine
        self.masker = masker
        self.sealer = sealer
        self.attribute_keys = attribute_keys
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.fifo = is_fifo(queue_url)  # keep each message group's order
        self.options = options
        self.envelope = envelope
        self.stop = stop or threading.Event()
        self._tally = _Tally()
        self._quota = _Quota(options.max_messages)
        self._last_activity = self._last_handled = self._started = time.monotonic()
        self._failure: LoginetlError | None = None
        self._stopped_because = ""
        self._visibility = options.visibility_timeout or sqs.depth(queue_url).visibility_timeout
        self.on_batch: Callable[[float], None] | None = None  # batch latency, for metrics
        self.on_lag: Callable[[float], None] | None = None  # per committed message, for metrics
        self.loader = Loader(
            engine,
            stop=self.stop,
            new_outage=lambda: Outage(options.retry_seconds, options.follow),
            wait_out=self._wait_out,
        )
        self.heartbeat = Heartbeat(sqs, queue_url, self._visibility, on_fatal=self._fail)
        self.acknowledger = Acknowledger(
            sqs,
            queue_url,
            dlq_url,
            attribute_keys,
            workers=options.workers,
            on_delete_failures=lambda n: self._tally.add(delete_failures=n),
            on_fatal=self._fail,
        )
        self.pipeline = Pipeline(
            loader=self.loader,
            acknowledger=self.acknowledger,
            masker=masker,
            sealer=sealer,
            attribute_keys=attribute_keys,
            envelope=envelope,
            max_body_bytes=options.max_body_bytes,
        )

    # -- public -----------------------------------------------------------------------

    def run(
        self,
        on_tick: Callable[[ConsumeSummary], None] | None = None,
        tick_seconds: float = 0.5,
    ) -> ConsumeSummary:
        """Consume until --max, idle, a stop request or a fatal error; return the counts."""
        self._ensure_partitions()
        self._started = self._last_activity = self._last_handled = time.monotonic()
        threads = [
            threading.Thread(target=self._worker, name=f"consume-{i}", daemon=True)
            for i in range(self.options.workers)
        ]
        for thread in threads:
            thread.start()
        partitions_checked = self._started
        try:
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(timeout=tick_seconds)  # interruptible: signal handlers still run
                if on_tick is not None:
                    on_tick(self.snapshot())
                if time.monotonic() - partitions_checked > _PARTITION_CHECK_SECONDS:
                    partitions_checked = time.monotonic()
                    self._ensure_partitions()
            self.acknowledger.close()
        finally:
            self.heartbeat.close()
        self._finish("max_reached" if self._max_received() else "idle")  # if none said why
        if self._failure is not None:
            raise self._failure
        return self.snapshot()

    def _ensure_partitions(self) -> None:
        """Keep next months' partitions ahead of a long-running worker; never fatal."""
        try:
            made = db.ensure_partitions(self.engine)
        except Exception as error:
            log.warning("could not create partitions ahead (%s)", db.describe(error))
            return
        if made:
            log.info("created %d monthly partition(s) of user_logins", made)

    def snapshot(self) -> ConsumeSummary:
        """The counts so far (thread-safe)."""
        t = self._tally
        with t.lock:
            return ConsumeSummary(
                received=t.received,
                loaded=t.loaded,
                duplicates_skipped=t.duplicates_skipped,
                dead_lettered=sum(t.dead_lettered.values()),
                dead_lettered_by_reason=dict(sorted(t.dead_lettered.items())),
                released=t.released,
                unfinished=t.unfinished,
                delete_failures=t.delete_failures,
                dead_letter_failures=t.dead_letter_failures,
                transient_errors=t.transient_errors,
                ignored_fields=t.ignored_fields,
                forged_attributes_ignored=t.forged_attributes_ignored,
                in_flight=t.in_flight,
                elapsed_seconds=time.monotonic() - self._started,
                busy_seconds=self._last_handled - self._started,
                stopped_because=self._stopped_because or "running",
                lag_p50_seconds=_rounded(t.lag.percentile(50)),
                lag_p99_seconds=_rounded(t.lag.percentile(99)),
                lag_max_seconds=_rounded(t.lag.max if t.lag.count else None),
            )

    # -- worker -----------------------------------------------------------------------

    def _finish(self, reason: str) -> None:
        if not self._stopped_because:
            self._stopped_because = reason

    def _max_received(self) -> bool:
        limit = self.options.max_messages
        return limit is not None and self._tally.received >= limit

    def _fail(self, error: LoginetlError) -> None:
        """Stop everything with this error (from any thread)."""
        self._failure = self._failure or error
        self._stopped_because = "error"  # whatever stopped first, the error is why
        self.stop.set()

    def _worker(self) -> None:
        batches = self._batches()
        try:
            while (batch := batches.take()) is not None:
                try:
                    self._handle_received(batch)
                finally:
                    batches.done()
        except Fatal as fatal:
            self._fail(fatal.error)
        except Exception as error:  # a bug: stop everything rather than spin
            # The traceback may quote data (an exception's message): only with --debug.
            log.error(
                "consume worker failed unexpectedly (%s)",
                type(error).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self._fail(
                LoginetlError(
                    f"consume stopped on an unexpected {type(error).__name__}; rerun with --debug"
                )
            )
        finally:
            batches.close()  # after _fail set the stop flag: the receiver ends promptly

    def _batches(self) -> Prefetcher[_Received] | Inline[_Received]:
        """This worker's batches: received ahead on their own thread unless --no-prefetch."""
        fetch = partial(self._next_batch, _Gathering())
        if not self.options.prefetch:
            return Inline(fetch)
        return Prefetcher(
            fetch,
            # Only a batch of at most half of gather_bytes lets the next be received ahead,
            # so one worker holds at most 1.5 x gather_bytes of bodies.
            ahead=lambda batch: batch.body_bytes <= self.options.gather_bytes // 2,
            discard=self._give_back_unhandled,
            name=f"{threading.current_thread().name}-receive",
        )

    def _next_batch(self, gathering: _Gathering) -> _Received | None:
        """Receive and gather the next batch and put it under the heartbeat; None when
        this worker is done (--max reached, idle, or a stop requested)."""
        outage: Outage | None = None
        while not self.stop.is_set():
            wanted = self._quota.take(self._receive_size(gathering.largest))
            if wanted == 0:  # the rest of --max is received, or granted to other workers
                if self._max_received():
                    self._finish("max_reached")
                return None  # else the worker holding the grant says why it stopped
            received_at = time.monotonic()  # before the receive: visibility counts from it
            try:
                messages = self._receive(wanted, wait_seconds=self.options.wait_seconds)
            except ServiceUnavailable as error:
                self._quota.give_back(wanted)
                outage = outage or Outage(self.options.retry_seconds, self.options.follow)
                self._wait_out(outage, error)
                continue
            except LoginetlError as error:  # e.g. the queue was deleted under us, access denied
                raise Fatal(error) from None
            outage = None
            self._quota.give_back(wanted - len(messages))
            gathering.largest = max(
                (body_bytes(m.body) for m in messages), default=gathering.largest
            )
            if len(messages) == limits.SQS_BATCH:
                messages += self._receive_more(
                    self.options.batch_messages - limits.SQS_BATCH, messages
                )
            if not messages:
                if self._idle_for() >= self.options.idle_exit_seconds and not self.options.follow:
                    self._finish("idle")
                    return None
                continue
            self._last_activity = time.monotonic()
            self._tally.add(received=len(messages), in_flight=len(messages))
            failpoints.hit("hold_after_receive")
            if self.stop.is_set():
                # Received after the stop request: not ours to finish; hand them back now.
                self._release(messages)
                self._tally.add(in_flight=-len(messages))
                break
            # A frozen worker (the fault suite's stall) cannot heartbeat: stall before the hold.
            failpoints.hit(
                "sleep_on_first_delivery", when=any(m.receive_count == 1 for m in messages)
            )
            return _Received(
                messages,
                received_at,
                self.heartbeat.hold(messages, received_at),
                sum(body_bytes(m.body) for m in messages),
            )
        self._finish("stop_requested")
        return None

    def _handle_received(self, batch: _Received) -> None:
        """Load and acknowledge one batch, or hand it back if a stop came meanwhile."""
        if self.stop.is_set():  # received ahead, before the stop request: not ours to finish
            self._give_back_unhandled(batch)
            return
        try:
            self._handle(batch.messages, batch.hold)
        finally:
            self._tally.add(in_flight=-len(batch.messages))
        self._last_handled = time.monotonic()
        if self.on_batch is not None:
            self.on_batch(self._last_handled - batch.received_at)

    def _give_back_unhandled(self, batch: _Received) -> None:
        batch.hold.release()
        self._release(batch.messages)
        self._tally.add(in_flight=-len(batch.messages))

    def _receive_size(self, largest_body: int) -> int:
        """Ask for fewer than 10 messages while bodies are large, so one receive of them
        stays within gather_bytes (SQS bodies reach 1 MiB: 10 of them would be 10 MiB)."""
        if largest_body <= 0:
            return limits.SQS_BATCH
        return max(1, min(limits.SQS_BATCH, self.options.gather_bytes // largest_body))

    def _receive(self, wanted: int, *, wait_seconds: int) -> list[InboundMessage]:
        return self.sqs.receive(
            self.queue_url,
            max_messages=wanted,
            wait_seconds=wait_seconds,
            visibility_timeout=self.options.visibility_timeout,
        )

    def _receive_more(self, room: int, first: Sequence[InboundMessage]) -> list[InboundMessage]:
        """While the queue has a backlog, add receives to the batch (no waiting).

        One transaction then carries up to batch_messages rows: fewer round trips per row.
        Stops at the first short receive, so a trickle is never held back, on any error,
        which the next regular receive will meet and handle, and before another receive
        of maximum-size bodies could take the batch past batch_bytes.
        """
        more: list[InboundMessage] = []
        gathered = sum(body_bytes(m.body) for m in first)
        worst_receive = limits.SQS_BATCH * self.options.max_body_bytes
        while room >= limits.SQS_BATCH and not self.stop.is_set():
            if gathered + worst_receive > self.options.gather_bytes:
                break
            wanted = self._quota.take(limits.SQS_BATCH)
            if wanted == 0:
                break
            try:
                received = self._receive(wanted, wait_seconds=0)
            except LoginetlError:
                received = []
            self._quota.give_back(wanted - len(received))
            more += received
            room -= len(received)
            gathered += sum(body_bytes(m.body) for m in received)
            if len(received) < limits.SQS_BATCH:
                break
        return more

    def _idle_for(self) -> float:
        return time.monotonic() - self._last_activity

    def _wait_out(self, outage: Outage, error: LoginetlError) -> None:
        """Back off (jittered) during an outage; give up after retry_seconds unless following."""
        self._tally.add(transient_errors=1)
        delay = outage.next_delay(error)
        log.warning("%s; retrying in %.1fs", error, delay)
        self.stop.wait(delay)

    # -- one batch --------------------------------------------------------------------

    def _handle(self, messages: Sequence[InboundMessage], hold: Hold) -> None:
        """Run the pipeline on one batch; delete what is done, keep the rest hidden."""
        try:
            outcome = self.pipeline.process(messages, fifo=self.fifo)
        except BaseException as error:  # ours: nothing is deleted, all of it comes back
            hold.release()
            self._release(messages)
            if isinstance(error, LoginetlError):  # e.g. SendMessage to the DLQ denied
                raise Fatal(error) from None
            raise
        self._record_lag(outcome.loaded)
        with self._tally.lock:
            t = self._tally
            t.loaded += outcome.inserted
            t.duplicates_skipped += outcome.duplicates
            t.dead_lettered.update(outcome.by_reason)
            t.dead_letter_failures += outcome.dead_letter_failures
            t.unfinished += len(outcome.retry)  # hidden until their visibility times out
            t.ignored_fields += outcome.ignored_fields
            t.forged_attributes_ignored += outcome.forged_attributes_ignored
        if outcome.done:
            self.acknowledger.delete_later(outcome.done, hold)
        else:
            hold.release()

    def _record_lag(self, committed: Sequence[InboundMessage]) -> None:
        """Send-to-commit time of each committed message (summary and histogram)."""
        if not committed:
            return
        now = datetime.now(UTC)
        lags = [max(0.0, (now - m.lag_from).total_seconds()) for m in committed]
        with self._tally.lock:
            for seconds in lags:
                self._tally.lag.add(seconds)
        if self.on_lag is not None:
            for seconds in lags:
                self.on_lag(seconds)

    def _release(self, messages: Sequence[InboundMessage]) -> None:
        """Make messages visible again at once, so another receiver can take them."""
        failed = self.acknowledger.release(messages)
        self._tally.add(released=len(messages) - failed, unfinished=failed)


def consume(
    settings: Settings,
    options: ConsumeOptions,
    *,
    create_queues: bool = False,
    stop: threading.Event | None = None,
    on_tick: Callable[[ConsumeSummary], None] | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> ConsumeSummary:
    """Check keys, schema and queues, then consume; the CLI's ``consume`` in one call."""
    masker = keys.load_masker(settings.keys_dir)
    sealer = VaultSealer(keys.load_public_key(settings.keys_dir))
    attribute_keys = keys.load_keyring(settings.keys_dir, keys.ATTRIBUTE_FILE)
    if excess := keys.excess_for_consumer(settings.keys_dir):
        log.warning(
            "the keys directory holds more than consume needs (%s); give consumer hosts "
            "only the set from: loginetl keys export-consumer --to DIR",
            "; ".join(excess),
        )
    server: MetricsServer | None = None
    with db.engine_for(
        settings.database_url,
        pool_size=options.workers,
        statement_timeout_ms=int(options.statement_timeout_seconds * 1000),
    ) as engine:
        db.require_utf8(engine)
        migrations.require_compatible(engine)
        sqs = SqsService.for_settings(
            settings,
            # Per worker a receiver (the prefetch), a loader's DLQ sends and two deleters,
            # plus the heartbeat: a connection each, so every call reuses a kept-alive one.
            max_connections=options.workers * 4 + 4,
            read_timeout=options.wait_seconds + 20,
        )
        if create_queues:
            ensured = sqs.ensure_queues(settings.queue_name, settings.dlq_name)
            queue_url, dlq_url = ensured.url, ensured.dlq_url
            for name in ensured.created:
                log.info("created queue %s", name)
            for difference in ensured.differences:
                log.warning("%s; left as it is", difference)
        else:
            queue_url, dlq_url = (
                sqs.queue_url(settings.queue_name),
                sqs.queue_url(settings.dlq_name),
            )
        consumer = Consumer(
            sqs=sqs,
            engine=engine,
            masker=masker,
            sealer=sealer,
            attribute_keys=attribute_keys,
            queue_url=queue_url,
            dlq_url=dlq_url,
            options=options,
            stop=stop,
            envelope=settings.envelope,
        )
        if metrics_port is not None:
            server = _start_metrics(consumer, metrics_host, metrics_port)
        try:
            return consumer.run(on_tick=on_tick)
        finally:
            if server is not None:
                server.stop()


def _start_metrics(consumer: Consumer, host: str, port: int) -> MetricsServer:
    def check() -> dict[str, str]:
        services: dict[str, str] = {}
        for name, probe in (
            ("postgresql", lambda: db.ping(consumer.engine)),
            ("sqs", lambda: consumer.sqs.depth(consumer.queue_url)),
        ):
            try:
                probe()
                services[name] = "ok"
            except LoginetlError as error:
                services[name] = type(error).__name__
        return services

    from loginetl.services.metrics import MetricsServer  # prometheus_client: only when asked

    try:
        server = MetricsServer(host=host, port=port, snapshot=consumer.snapshot, check=check)
    except OSError as error:
        raise ConfigError(f"cannot serve metrics on {host}:{port} ({error.strerror})") from None
    consumer.on_batch = server.batch_seconds.observe
    consumer.on_lag = server.lag_seconds.observe
    server.start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, server.port)
    return server


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
