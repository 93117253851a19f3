"""AWS Lambda entry point: ``loginetl.lambda_handler.handler`` for an SQS event source
mapping with ``FunctionResponseTypes: [ReportBatchItemFailures]``.

Each invocation runs the pipeline consume runs (actions/pipeline.py) on the event's
records: this module only builds it once per warm environment and turns its outcome into
the partial batch response. A reject is dead-lettered here rather than left to the queue's
RedrivePolicy: it is then reported as done and deleted at once, instead of being retried
maxReceiveCount times and reaching the DLQ without its reason. The answer lists the
records the pipeline left to retry (a reject the DLQ did not take, and on FIFO what it
holds back in its group: Powertools' ``skip_group_on_error``, so a record of another group
is never reported after it was loaded or dead-lettered). A failure that is
ours (the database down past a short retry, or refusing every row; the masker or sealer
broken; SendMessage to the DLQ denied) raises: the invocation fails, every record comes
back, nothing was dead-lettered, and Lambda counts the error.

Deleting is the event source mapping's job: it deletes every record not listed. A crash
between the commit and the answer redelivers the whole batch; the rows' unique
idempotency key (the SQS MessageId, or the signed original id of a replayed copy) makes
the second load skip them.

Settings come from the environment as for the CLI (``LOGINETL_DATABASE_URL`` or
``LOGINETL_DATABASE_URL_FILE``, required: no local default here; ``LOGINETL_DLQ``,
``AWS_REGION``, ``LOGINETL_KEYS_DIR`` pointing at a mounted copy of ``loginetl keys
export-consumer``'s set). The engine, the SQS client and the keys are built on the first
invocation and reused while the execution environment stays warm.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from loginetl.actions.acknowledge import Acknowledger
from loginetl.actions.load import Loader
from loginetl.actions.pipeline import Pipeline
from loginetl.actions.retry_policy import Fatal, Outage
from loginetl.config import Settings
from loginetl.core.lambda_event import batch_response, from_fifo, messages_of
from loginetl.core.vault_crypto import VaultSealer
from loginetl.errors import ConfigError, LoginetlError
from loginetl.logs import quiet_chatty_libraries
from loginetl.services import db, keys, migrations
from loginetl.services.sqs import SqsService

log = logging.getLogger("loginetl.lambda")  # Lambda's root handler sends it to CloudWatch

RETRY_SECONDS = 10.0  # a transient database failure is retried this long; then the invocation fails
STATEMENT_TIMEOUT_MS = 30_000
_HOUSEKEEPING_SECONDS = 3600.0  # partitions ahead, as consume checks them
NO_DATABASE = (
    "the Lambda has no database setting: set LOGINETL_DATABASE_URL or "
    "LOGINETL_DATABASE_URL_FILE (it never falls back to a local default)"
)


@dataclass
class _Runtime:
    """What a warm execution environment keeps between invocations."""

    pipeline: Pipeline
    partitions_checked: float = float("-inf")

    @property
    def engine(self) -> Engine:
        return self.pipeline.loader.engine


_runtime: _Runtime | None = None
_retry_budget = [RETRY_SECONDS]  # this invocation's, set by handler from its context
_lock = threading.Lock()


def _settings(environ: Mapping[str, str]) -> Settings:
    """Settings from the environment; the database URL (required) may be a mounted file."""
    url_file = environ.get("LOGINETL_DATABASE_URL_FILE")
    database_url = environ.get("LOGINETL_DATABASE_URL")
    if url_file:
        try:
            database_url = Path(url_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"cannot read LOGINETL_DATABASE_URL_FILE {url_file!r} ({error.strerror})"
            ) from None
    if not database_url:
        log.error("%s", NO_DATABASE)
        raise ConfigError(NO_DATABASE)
    return Settings.load(environ, database_url=database_url)


def _build(environ: Mapping[str, str]) -> _Runtime:
    quiet_chatty_libraries()  # botocore at DEBUG would log a DLQ send's body: plaintext PII
    settings = _settings(environ)
    masker = keys.load_masker(settings.keys_dir)
    sealer = VaultSealer(keys.load_public_key(settings.keys_dir))
    attribute_keys = keys.load_keyring(settings.keys_dir, keys.ATTRIBUTE_FILE)
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
    loader = Loader(
        engine,
        stop=threading.Event(),  # never set: an invocation ends by returning
        new_outage=lambda: Outage(_retry_budget[0], follow=False),
        wait_out=_wait_out,
    )
    # The event source mapping deletes; this acknowledger only dead-letters.
    acknowledger = Acknowledger(
        sqs,
        "",
        dlq_url,
        attribute_keys,
        workers=1,
        on_delete_failures=lambda _: None,
        on_fatal=lambda _: None,
    )
    return _Runtime(
        Pipeline(
            loader=loader,
            acknowledger=acknowledger,
            masker=masker,
            sealer=sealer,
            attribute_keys=attribute_keys,
            envelope=settings.envelope,
        )
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
    try:
        outcome = rt.pipeline.process(messages, fifo=from_fifo(event))
    except Fatal as fatal:  # ours: every record comes back, nothing was dead-lettered
        raise fatal.error from None
    failed = outcome.retry  # on FIFO: a stuck record and what it held back in its group
    log.info(
        "records=%d loaded=%d duplicates=%d dead_lettered=%d failed=%d forged_attributes=%d",
        len(messages),
        outcome.inserted,
        outcome.duplicates,
        len(outcome.dead_lettered),
        len(failed),
        outcome.forged_attributes_ignored,
    )
    return batch_response(failed)


def _housekeeping(rt: _Runtime) -> None:
    """Keep next months' partitions ahead (on a cold start, then hourly); never fatal."""
    if time.monotonic() - rt.partitions_checked < _HOUSEKEEPING_SECONDS:
        return
    rt.partitions_checked = time.monotonic()
    try:
        db.ensure_partitions(rt.engine)
    except Exception as error:
        log.warning("could not create partitions ahead (%s)", db.describe(error))
