"""AWS Lambda entry point: ``loginetl.lambda_handler.handler`` for an SQS event source
mapping with ``FunctionResponseTypes: [ReportBatchItemFailures]``.

Each invocation runs consume's path on the event's records: verify loginetl's attributes
-> parse, validate, mask, seal (actions/prepare.py) -> one transaction for the batch
(actions/load.py: transient failures retried briefly, data refusals bisected) -> the
rejects to the DLQ with the same signed attributes consume gives them
(actions/acknowledge.py). A reject is dead-lettered here rather than left to the queue's
RedrivePolicy: it is then reported as done and deleted at once, instead of being retried
maxReceiveCount times and reaching the DLQ without its reason. The answer lists the
records the event source must leave in the queue: rejects the DLQ did not take (one too
big to carry the attributes reaches the DLQ later, by the RedrivePolicy). A batch whose
load cannot commit (the database down past a short retry) raises: the invocation fails,
every record comes back, and Lambda counts the error and slows its polling. On a FIFO
queue the handler stops at the first failure and reports it and every later record, as
AWS requires: a reject that cannot be dead-lettered is not even tried, nor is anything
after it.

Deleting is the event source mapping's job: it deletes every record not listed. A crash
between the commit and the answer redelivers the whole batch; the rows' unique
idempotency key (the SQS MessageId, or the signed original id of a replayed copy) makes
the second load skip them.

Settings come from the environment as for the CLI (``LOGINETL_DATABASE_URL`` or
``LOGINETL_DATABASE_URL_FILE``, ``LOGINETL_DLQ``, ``AWS_REGION``, ``LOGINETL_KEYS_DIR``
pointing at a mounted copy of ``loginetl keys export-consumer``'s set). The engine, the
SQS client and the keys are built on the first invocation and reused while the execution
environment stays warm.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from loginetl.actions.acknowledge import Acknowledger, DeadLettered
from loginetl.actions.load import Loader
from loginetl.actions.prepare import prepare_isolating, trust_all
from loginetl.actions.retry_policy import Fatal, Outage
from loginetl.config import Settings
from loginetl.core.attributes import AttributeKeys
from loginetl.core.batch import InboundMessage, RejectedMessage
from loginetl.core.fifo import first_failure_onwards, without
from loginetl.core.lambda_event import batch_response, is_fifo, messages_of
from loginetl.core.masking import Masker
from loginetl.core.vault_crypto import VaultSealer
from loginetl.errors import ConfigError, LoginetlError
from loginetl.services import db, failpoints, keys, migrations
from loginetl.services.sqs import SqsService

log = logging.getLogger("loginetl.lambda")  # Lambda's root handler sends it to CloudWatch

RETRY_SECONDS = 10.0  # a transient database failure is retried this long; then the invocation fails
STATEMENT_TIMEOUT_MS = 30_000
_HOUSEKEEPING_SECONDS = 3600.0  # partitions ahead, as consume checks them


@dataclass
class _Runtime:
    """What a warm execution environment keeps between invocations."""

    settings: Settings
    masker: Masker
    sealer: VaultSealer
    attribute_keys: AttributeKeys
    sqs: SqsService
    dlq_url: str
    loader: Loader
    acknowledger: Acknowledger
    partitions_checked: float = float("-inf")


_runtime: _Runtime | None = None
_retry_budget = [RETRY_SECONDS]  # this invocation's, set by handler from its context
_lock = threading.Lock()


def _settings(environ: Mapping[str, str]) -> Settings:
    """Settings from the environment; the database URL may be a mounted secret file."""
    url_file = environ.get("LOGINETL_DATABASE_URL_FILE")
    database_url = None
    if url_file:
        try:
            database_url = Path(url_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"cannot read LOGINETL_DATABASE_URL_FILE {url_file!r} ({error.strerror})"
            ) from None
    return Settings.load(environ, database_url=database_url)


def _build(environ: Mapping[str, str]) -> _Runtime:
    settings = _settings(environ)
    masker = keys.load_masker(settings.keys_dir)
    sealer = VaultSealer(keys.load_public_key(settings.keys_dir))
    attribute_keys = keys.load_attribute_keys(settings.keys_dir)
    engine = db.make_engine(
        settings.database_url, pool_size=1, statement_timeout_ms=STATEMENT_TIMEOUT_MS
    )
    try:
        db.require_utf8(engine)
        migrations.require_compatible(engine)
        sqs = SqsService.for_settings(settings, max_connections=4)
        dlq_url = sqs.queue_url(settings.dlq_name)
    except BaseException:
        engine.dispose()  # not cached: the next invocation starts again
        raise
    return _Runtime(
        settings=settings,
        masker=masker,
        sealer=sealer,
        attribute_keys=attribute_keys,
        sqs=sqs,
        dlq_url=dlq_url,
        loader=Loader(
            engine,
            stop=threading.Event(),  # never set: an invocation ends by returning
            new_outage=lambda: Outage(_retry_budget[0], follow=False),
            wait_out=_wait_out,
        ),
        # The event source mapping deletes; this acknowledger only dead-letters.
        acknowledger=Acknowledger(
            sqs,
            "",
            dlq_url,
            attribute_keys,
            workers=1,
            on_delete_failures=lambda _: None,
            on_fatal=lambda _: None,
        ),
    )


def _wait_out(outage: Outage, error: LoginetlError) -> None:
    """Back off before retrying the write; Fatal once the retry budget has passed."""
    delay = outage.next_delay(error)
    log.warning("%s; retrying in %.1fs", error, delay)
    time.sleep(delay)


def runtime(environ: Mapping[str, str] | None = None) -> _Runtime:
    """The warm environment's runtime, built on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _build(os.environ if environ is None else environ)
        return _runtime


def reset() -> None:
    """Forget the cached runtime (closing its connections): a cold start, for tests."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.loader.engine.dispose()
            _runtime.acknowledger.close()
        _runtime = None


def retry_seconds(context: object) -> float:
    """How long to retry a transient database failure: RETRY_SECONDS, or a third of the
    invocation's remaining time if that is less, so the failure is reported (and the
    records come back) before Lambda's timeout would kill the invocation mid-write."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return RETRY_SECONDS
    try:
        left = float(remaining()) / 1000
    except (TypeError, ValueError):
        return RETRY_SECONDS
    return max(0.5, min(RETRY_SECONDS, left / 3))


def handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """Load one SQS event's records; return the partial batch response."""
    messages = messages_of(event)
    if not messages:
        return batch_response([])
    rt = runtime()
    _retry_budget[0] = retry_seconds(context)
    _housekeeping(rt)
    outcome = process(rt, messages, fifo=is_fifo(event))
    log.info(
        "records=%d loaded=%d duplicates=%d dead_lettered=%d failed=%d forged_attributes=%d",
        len(messages),
        outcome.loaded,
        outcome.duplicates,
        outcome.dead_lettered,
        len(outcome.failed),
        outcome.forged_attributes_ignored,
    )
    return batch_response(outcome.failed)


@dataclass(frozen=True)
class Outcome:
    """What one invocation did with its records; failed are left for redelivery."""

    loaded: int
    duplicates: int
    dead_lettered: int
    failed: list[InboundMessage]
    forged_attributes_ignored: int = 0


def process(rt: _Runtime, messages: Sequence[InboundMessage], *, fifo: bool) -> Outcome:
    """consume's steps for one event's records; raise when the batch could not commit."""
    trusted, forged = trust_all(messages, rt.attribute_keys)
    cache = rt.loader.cache()  # a purge since it was filled: the load seals again
    prepare = partial(
        prepare_isolating, masker=rt.masker, sealer=rt.sealer, envelope=rt.settings.envelope
    )
    batch = prepare(trusted, known_tokens=cache.tokens)
    if fifo:
        # A reject too big for the DLQ will fail: on FIFO, neither load nor dead-letter it
        # or anything after it (those are reported as failed, as AWS requires).
        cut = first_failure_onwards(trusted, rt.acknowledger.undeliverable(batch.rejected))
        out = {m.message_id for m in cut}
        batch = replace(
            without(batch, cut),
            rejected=[r for r in batch.rejected if r.message.message_id not in out],
        )
    try:
        loaded = rt.loader.load(batch, cache=cache, reseal=prepare)
    except Fatal as fatal:  # nothing was dead-lettered yet: the whole batch is retried
        raise fatal.error from None
    failpoints.hit("crash_after_commit")
    dead = _dead_letter(rt, [*batch.rejected, *loaded.refused])
    done = {m.message_id for m in (*loaded.messages, *dead.accepted)}
    return Outcome(
        loaded=loaded.inserted,
        duplicates=len(loaded.messages) - loaded.inserted,
        dead_lettered=len(dead.accepted),
        failed=_failed(messages, done, fifo=fifo),
        forged_attributes_ignored=forged,
    )


def _housekeeping(rt: _Runtime) -> None:
    """Keep next months' partitions ahead (on a cold start, then hourly); never fatal."""
    if time.monotonic() - rt.partitions_checked < _HOUSEKEEPING_SECONDS:
        return
    rt.partitions_checked = time.monotonic()
    try:
        db.ensure_partitions(rt.loader.engine)
    except Exception as error:
        log.warning("could not create partitions ahead (%s)", db.describe(error))


def _dead_letter(rt: _Runtime, rejected: Sequence[RejectedMessage]) -> DeadLettered:
    try:
        return rt.acknowledger.dead_letter(rejected)
    except LoginetlError as error:  # e.g. SendMessage denied: these stay in the queue
        log.error("could not dead-letter %d reject(s) (%s)", len(rejected), error)
        return DeadLettered([], Counter(), len(rejected))


def _failed(
    messages: Sequence[InboundMessage], done: set[str], *, fifo: bool
) -> list[InboundMessage]:
    """Every record not done; on FIFO, from the first such record on, all of them."""
    failed = [m for m in messages if m.message_id not in done]
    return first_failure_onwards(messages, failed) if fifo else failed
