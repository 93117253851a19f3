"""``consume``: drain the login queue into PostgreSQL, at least once, idempotently.

Per batch (one receive, or several back to back while the queue keeps returning full
ones): parse -> validate -> mask -> one transaction (rows + vault) -> commit -> dead-letter
the rejects -> delete exactly what was committed or dead-lettered. A message is never
deleted before its row is committed or its DLQ copy accepted; a crash anywhere leaves it
in the queue, and a redelivery is absorbed by the unique idempotency key. The stats
rollups are folded from the committed rows about once a second, and once more at exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from loginetl.config import Settings
from loginetl.core.batch import InboundMessage, PreparedBatch, dead_letter_attributes, prepare_batch
from loginetl.core.masking import Masker
from loginetl.core.vault_crypto import VaultSealer
from loginetl.errors import ConfigError, LoginetlError, ServiceUnavailable
from loginetl.services import db, failpoints, keys, migrations
from loginetl.services.metrics import MetricsServer
from loginetl.services.sqs import MAX_BATCH, OutboundMessage, SqsService

log = logging.getLogger("loginetl.consume")

_VAULT_CACHE_LIMIT = 20_000  # tokens known committed; bounded so memory stays flat
_PARTITION_CHECK_SECONDS = 3600.0
_FOLD_SECONDS = 1.0  # how stale the stats rollups may get while consume runs
_FOLD_RETRY_SECONDS = 10.0  # after a failed fold (e.g. the database is down)


@dataclass(frozen=True)
class ConsumeOptions:
    """How long and how hard to consume."""

    max_messages: int | None = None
    idle_exit_seconds: float = 5.0
    follow: bool = False
    workers: int = 4
    batch_messages: int = 300  # per transaction, gathered only while receives come back full
    wait_seconds: int = 2
    visibility_timeout: int | None = None
    retry_seconds: float = 60.0  # how long a batch run waits out an outage; --follow waits forever

    def __post_init__(self) -> None:
        if self.max_messages is not None and self.max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if not 1 <= self.workers <= 64:
            raise ValueError("workers must be between 1 and 64")
        if not MAX_BATCH <= self.batch_messages <= 1000:
            raise ValueError(f"batch_messages must be between {MAX_BATCH} and 1000")
        if not 0 <= self.wait_seconds <= 20:
            raise ValueError("wait_seconds must be between 0 and 20 (SQS long-poll limit)")
        if self.idle_exit_seconds <= 0:
            raise ValueError("idle_exit_seconds must be positive")


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
    in_flight: int = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


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

    @property
    def exhausted(self) -> bool:
        return self._left is not None and self._left <= 0


class _Fatal(Exception):
    """Stop every worker: the wrapped error must reach the operator."""

    def __init__(self, error: LoginetlError) -> None:
        super().__init__(str(error))
        self.error = error


class Consumer:
    """Runs worker threads that each receive, load and acknowledge batches."""

    def __init__(
        self,
        *,
        sqs: SqsService,
        engine: Engine,
        masker: Masker,
        sealer: VaultSealer,
        queue_url: str,
        dlq_url: str,
        options: ConsumeOptions,
        stop: threading.Event | None = None,
    ) -> None:
        self.sqs = sqs
        self.engine = engine
        self.masker = masker
        self.sealer = sealer
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.options = options
        self.stop = stop or threading.Event()
        self._tally = _Tally()
        self._quota = _Quota(options.max_messages)
        self._last_activity = self._last_handled = self._started = time.monotonic()
        self._vault_cache: set[str] = set()
        # Deletes run beside the next receive: they follow a commit already made, and a
        # failed one is harmless. Bounded, so a slow endpoint cannot pile them up.
        self._deleter = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="delete")
        self._pending_deletes = threading.BoundedSemaphore(options.workers * 2)
        self._failure: LoginetlError | None = None
        self._stopped_because = ""
        self._visibility = options.visibility_timeout or sqs.depth(queue_url).visibility_timeout
        self._next_fold = 0.0
        self.on_batch: Callable[[float], None] | None = None  # batch latency, for metrics

    # -- public -----------------------------------------------------------------------

    def run(
        self,
        on_tick: Callable[[ConsumeSummary], None] | None = None,
        tick_seconds: float = 0.5,
    ) -> ConsumeSummary:
        """Consume until --max, idle, a stop request or a fatal error; return the counts."""
        self._ensure_partitions()
        self._fold_rollups()  # what a previous run left pending, e.g. after a kill
        self._started = self._last_activity = self._last_handled = time.monotonic()
        threads = [
            threading.Thread(target=self._worker, name=f"consume-{i}", daemon=True)
            for i in range(self.options.workers)
        ]
        for thread in threads:
            thread.start()
        partitions_checked = self._started
        while alive := [t for t in threads if t.is_alive()]:
            alive[0].join(timeout=tick_seconds)  # interruptible: signal handlers still run
            if on_tick is not None:
                on_tick(self.snapshot())
            if time.monotonic() - partitions_checked > _PARTITION_CHECK_SECONDS:
                partitions_checked = time.monotonic()
                self._ensure_partitions()
            if time.monotonic() >= self._next_fold:
                self._fold_rollups()
        self._deleter.shutdown(wait=True)
        self._fold_rollups(wait=True)  # leave the rollups exact for whoever runs stats next
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

    def _fold_rollups(self, *, wait: bool = False) -> None:
        """Fold committed rows into the stats rollups; never fatal (the rows are safe)."""
        try:
            folded = db.fold_rollups(self.engine, wait=wait)
        except Exception as error:
            log.warning("could not fold the stats rollups (%s)", db.describe(error))
            self._next_fold = time.monotonic() + _FOLD_RETRY_SECONDS
            return
        self._next_fold = time.monotonic() + _FOLD_SECONDS
        if folded:
            log.debug("folded %d row(s) into the stats rollups", folded)

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
                in_flight=t.in_flight,
                elapsed_seconds=time.monotonic() - self._started,
                busy_seconds=self._last_handled - self._started,
                stopped_because=self._stopped_because or "running",
            )

    # -- worker -----------------------------------------------------------------------

    def _finish(self, reason: str) -> None:
        if not self._stopped_because:
            self._stopped_because = reason

    def _worker(self) -> None:
        try:
            self._receive_loop()
        except _Fatal as fatal:
            self._failure = self._failure or fatal.error
            self._finish("error")
            self.stop.set()
        except Exception as error:  # a bug: stop everything rather than spin
            # The traceback may quote data (an exception's message): only with --debug.
            log.error(
                "consume worker failed unexpectedly (%s)",
                type(error).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self._failure = self._failure or LoginetlError(
                f"consume stopped on an unexpected {type(error).__name__}; rerun with --debug"
            )
            self._finish("error")
            self.stop.set()

    def _receive_loop(self) -> None:
        outage_since: float | None = None
        failures = 0
        while not self.stop.is_set():
            wanted = self._quota.take(MAX_BATCH)
            if wanted == 0:
                self._finish("max_reached")
                return
            try:
                messages = self._receive(wanted, wait_seconds=self.options.wait_seconds)
            except ServiceUnavailable as error:
                self._quota.give_back(wanted)
                outage_since = outage_since or time.monotonic()
                failures += 1
                self._wait_out_outage(error, outage_since, attempt=failures)
                continue
            except LoginetlError as error:  # e.g. the queue was deleted under us
                raise _Fatal(error) from None
            outage_since, failures = None, 0
            self._quota.give_back(wanted - len(messages))
            if len(messages) == MAX_BATCH:
                messages += self._receive_more(self.options.batch_messages - MAX_BATCH)
            if not messages:
                if self._idle_for() >= self.options.idle_exit_seconds and not self.options.follow:
                    self._finish("idle")
                    return
                continue
            self._last_activity = received_at = time.monotonic()
            self._tally.add(received=len(messages), in_flight=len(messages))
            failpoints.hit("hold_after_receive")
            try:
                if self.stop.is_set():
                    # Received after the stop request: not ours to finish; hand them back now.
                    self._release(messages)
                    break
                self._handle(messages)
            finally:
                self._tally.add(in_flight=-len(messages))
            self._last_handled = time.monotonic()
            if self.on_batch is not None:
                self.on_batch(self._last_handled - received_at)
        self._finish("stop_requested")

    def _receive(self, wanted: int, *, wait_seconds: int) -> list[InboundMessage]:
        return self.sqs.receive(
            self.queue_url,
            max_messages=wanted,
            wait_seconds=wait_seconds,
            visibility_timeout=self.options.visibility_timeout,
        )

    def _receive_more(self, room: int) -> list[InboundMessage]:
        """While the queue has a backlog, add receives to the batch (no waiting).

        One transaction then carries up to batch_messages rows: fewer round trips per row.
        Stops at the first short receive, so a trickle is never held back, and on any
        error, which the next regular receive will meet and handle.
        """
        more: list[InboundMessage] = []
        while room >= MAX_BATCH and not self.stop.is_set():
            wanted = self._quota.take(MAX_BATCH)
            if wanted == 0:
                break
            try:
                received = self._receive(wanted, wait_seconds=0)
            except LoginetlError:
                received = []
            self._quota.give_back(wanted - len(received))
            more += received
            room -= len(received)
            if len(received) < MAX_BATCH:
                break
        return more

    def _idle_for(self) -> float:
        return time.monotonic() - self._last_activity

    def _wait_out_outage(self, error: LoginetlError, since: float, attempt: int) -> None:
        """Back off during an outage; give up after retry_seconds unless following."""
        self._tally.add(transient_errors=1)
        if not self.options.follow and time.monotonic() - since > self.options.retry_seconds:
            raise _Fatal(error) from None
        delay = min(10.0, 0.5 * 2 ** min(attempt, 5))
        log.warning("%s; retrying in %.1fs", error, delay)
        self.stop.wait(delay)

    def _handle(self, messages: Sequence[InboundMessage]) -> None:
        batch = prepare_batch(
            messages, masker=self.masker, sealer=self.sealer, known_tokens=self._vault_cache
        )
        acknowledged: list[InboundMessage] = []
        if batch.loadable:
            failpoints.hit(
                "sleep_on_first_delivery", when=any(m.receive_count == 1 for m in messages)
            )
            inserted = self._commit(batch, messages)
            failpoints.hit("crash_after_commit")
            acknowledged += batch.loadable
            self._tally.add(
                loaded=inserted,
                duplicates_skipped=len(batch.loadable) - inserted,
                ignored_fields=batch.ignored_fields,
            )
        acknowledged += self._dead_letter(batch)
        if acknowledged:
            self._pending_deletes.acquire()
            self._deleter.submit(self._acknowledge, acknowledged)

    def _commit(self, batch: PreparedBatch, messages: Sequence[InboundMessage]) -> int:
        """Write the batch, retrying transient failures while keeping the messages hidden."""
        received_at = last_extended = time.monotonic()
        attempt = 0
        while True:
            try:
                inserted = db.write_batch(self.engine, batch.rows, batch.vault_entries)
            except Exception as error:
                if not db.is_transient(error):
                    self._release(messages)
                    log.error("database rejected a batch (%s); stopping", db.describe(error))
                    raise _Fatal(
                        LoginetlError(
                            f"the database rejected a batch ({db.describe(error)}); "
                            "the messages were released, nothing was deleted"
                        )
                    ) from None
                attempt += 1
                wrapped = ServiceUnavailable(f"database write failed ({db.describe(error)})")
                if self.stop.is_set():
                    self._release(messages)
                    raise _Fatal(wrapped) from None
                try:
                    self._wait_out_outage(wrapped, received_at, attempt)
                except _Fatal:
                    self._release(messages)
                    raise
                if time.monotonic() - last_extended > self._visibility / 2:
                    self._keep_hidden(messages)
                    last_extended = time.monotonic()
                continue
            self._remember_vault_tokens(batch)
            return inserted

    def _remember_vault_tokens(self, batch: PreparedBatch) -> None:
        if len(self._vault_cache) > _VAULT_CACHE_LIMIT:
            self._vault_cache.clear()
        self._vault_cache.update(e.token for e in batch.vault_entries)

    def _dead_letter(self, batch: PreparedBatch) -> list[InboundMessage]:
        """Send rejects to the DLQ with their reason; return those the DLQ accepted."""
        if not batch.rejected:
            return []
        now = datetime.now(UTC)
        outbound = [
            OutboundMessage(r.message.body, dead_letter_attributes(r, first_seen=now))
            for r in batch.rejected
        ]
        try:
            failed = set(self.sqs.send(self.dlq_url, outbound))
        except LoginetlError as error:
            log.warning("dead-letter queue unavailable (%s); rejects stay in the queue", error)
            failed = set(range(len(outbound)))
        accepted = [r for i, r in enumerate(batch.rejected) if i not in failed]
        failpoints.hit("crash_after_dead_letter", when=bool(accepted))
        with self._tally.lock:
            self._tally.dead_lettered.update(r.rejection.reason for r in accepted)
            # Left hidden until their visibility times out: a natural back-off for the DLQ.
            self._tally.dead_letter_failures += len(failed)
            self._tally.unfinished += len(failed)
        return [r.message for r in accepted]

    def _acknowledge(self, messages: Sequence[InboundMessage]) -> None:
        try:
            failed = len(self.sqs.delete(self.queue_url, messages))
        except LoginetlError as error:
            log.warning("delete failed (%s); the messages will be redelivered and skipped", error)
            failed = len(messages)
        finally:
            self._pending_deletes.release()
        if failed:
            self._tally.add(delete_failures=failed)

    def _keep_hidden(self, messages: Sequence[InboundMessage]) -> None:
        try:
            self.sqs.set_visibility(self.queue_url, messages, self._visibility)
        except LoginetlError as error:
            log.warning("could not extend visibility (%s)", error)

    def _release(self, messages: Sequence[InboundMessage]) -> None:
        """Make messages visible again at once, so another receiver can take them."""
        try:
            failed = len(self.sqs.set_visibility(self.queue_url, messages, 0))
        except LoginetlError as error:
            log.warning("could not release messages (%s); they reappear after timeout", error)
            failed = len(messages)
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
    if excess := keys.excess_for_consumer(settings.keys_dir):
        log.warning(
            "the keys directory holds more than consume needs (%s); give consumer hosts "
            "only the set from: loginetl keys export-consumer --to DIR",
            "; ".join(excess),
        )
    server: MetricsServer | None = None
    with db.engine_for(settings.database_url, pool_size=options.workers) as engine:
        migrations.require_head(engine)
        sqs = SqsService.for_settings(
            settings,
            max_connections=options.workers * 2 + 2,
            read_timeout=options.wait_seconds + 20,
        )
        if create_queues:
            queue_url, dlq_url = sqs.create_queues(settings.queue_name, settings.dlq_name)
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
            queue_url=queue_url,
            dlq_url=dlq_url,
            options=options,
            stop=stop,
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

    try:
        server = MetricsServer(host=host, port=port, snapshot=consumer.snapshot, check=check)
    except OSError as error:
        raise ConfigError(f"cannot serve metrics on {host}:{port} ({error.strerror})") from None
    consumer.on_batch = server.batch_seconds.observe
    server.start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, server.port)
    return server
