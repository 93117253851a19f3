"""``stats``: what has been loaded, the duplicate analysis, and the queues' state."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError

from loginetl.config import Settings
from loginetl.core import limits
from loginetl.core.attributes import ATTR_FIRST_SEEN, ATTR_REASON
from loginetl.errors import LoginetlError, Refused, SchemaNotAtHead
from loginetl.services import db, migrations
from loginetl.services.migrations import SchemaStatus

if TYPE_CHECKING:
    from loginetl.core.batch import InboundMessage
    from loginetl.services.sqs import QueueDepth, SqsService


@dataclass(frozen=True)
class SharedToken:
    """A masked value and how many distinct users share it."""

    token: str
    users: int
    logins: int


@dataclass(frozen=True)
class TableStats:
    """Aggregates over ``user_logins`` and the vault (no plaintext involved)."""

    rows: int
    distinct_users: int
    distinct_masked_ips: int
    distinct_masked_devices: int
    vault_entries: int | None  # exact, with count_vault; None where not asked or not allowed
    vault_entries_estimate: int | None  # the planner's (pg_class); None where not allowed
    rollups_pending: int  # loaded rows the figures below do not count yet
    vault_pending: int  # sealed entries loads appended that are not settled in the vault yet
    behind_seconds: float  # age of the oldest of either: how far the figures lag the loads
    top_shared_ips: list[SharedToken]
    top_shared_devices: list[SharedToken]
    by_device_type: list[tuple[str, int]]
    by_locale: list[tuple[str | None, int]]
    by_app_version: list[tuple[str, int]]
    loads_per_hour: list[tuple[datetime, int]]
    oldest_month: date | None  # of create_date, the partition key: what retention keeps
    rows_per_month: list[tuple[date, int]]


@dataclass(frozen=True)
class QueueStats:
    """Depths of the queue and its DLQ, or why they could not be read."""

    queue: str
    dlq: str
    main: QueueDepth | None
    dead_letter: QueueDepth | None
    error: str | None = None
    dlq_sample_size: int = 0  # DLQ reasons are counted over a sample of this many messages
    dlq_reasons_sampled: dict[str, int] = field(default_factory=dict)
    dlq_oldest_first_seen: str | None = None


@dataclass(frozen=True)
class Stats:
    """Everything ``loginetl stats`` reports."""

    schema: SchemaStatus
    table: TableStats
    queues: QueueStats | None


# Every figure in one statement, so one connection and one round trip answer `stats`
# (a pool of four connections cost four connection set-ups, each several round trips,
# which against a remote server outweigh these reads). Each part reads a rollup the fold
# keeps or a small catalogue row, so the time does not grow with user_logins: top shared
# tokens are an index-only scan of n entries (token_stats_top_idx), the hours a range of
# rollup_hourly's key; the backlog counts only what is not folded yet.
_TABLE_STATS = """
SELECT
  (SELECT coalesce(json_object_agg(metric, value), '{}') FROM rollup_totals) AS totals,
  (SELECT coalesce(sum(logins), 0) FROM rollup_months WHERE logins > 0) AS rows,
  (SELECT json_build_array(pending_rows, inbox_entries, behind)
     FROM ($BACKLOG) b) AS backlog,
  (SELECT coalesce(json_agg(json_build_array(token, users, logins)), '[]') FROM (
     SELECT token, users, logins FROM token_stats WHERE pii_field = 'ip' AND users > 1
     ORDER BY users DESC, logins DESC, token LIMIT :top) t) AS shared_ips,
  (SELECT coalesce(json_agg(json_build_array(token, users, logins)), '[]') FROM (
     SELECT token, users, logins FROM token_stats WHERE pii_field = 'device_id' AND users > 1
     ORDER BY users DESC, logins DESC, token LIMIT :top) t) AS shared_devices,
  (SELECT coalesce(json_agg(json_build_array(dimension, value, logins)
                            ORDER BY dimension, rank), '[]') FROM (
     SELECT dimension, value, logins, row_number() OVER (
       PARTITION BY dimension ORDER BY logins DESC, value NULLS LAST) AS rank
     FROM rollup_breakdown WHERE logins > 0) ranked WHERE rank <= :top) AS breakdowns,
  (SELECT coalesce(json_agg(json_build_array(month, logins) ORDER BY month), '[]')
     FROM rollup_months WHERE logins > 0) AS months,
  (SELECT coalesce(json_agg(json_build_array(
            extract(epoch FROM loaded_hour)::bigint, logins) ORDER BY loaded_hour), '[]')
     FROM rollup_hourly
     WHERE loaded_hour >= date_trunc('hour', now() - :since) AND logins > 0) AS hours,
  has_table_privilege('public.pii_vault', 'SELECT') AS vault_allowed,
  (SELECT reltuples FROM pg_class WHERE oid = 'public.pii_vault'::regclass) AS vault_estimate
""".replace("$BACKLOG", db.BACKLOG)


def _shared(found: list[list[object]]) -> list[SharedToken]:
    return [SharedToken(str(t), int(str(users)), int(str(n))) for t, users, n in found]


def table_stats_on(
    conn: Connection,
    *,
    top: int = 5,
    since: timedelta = timedelta(hours=24),
    count_vault: bool = False,
) -> TableStats:
    """The aggregates, on a connection the caller holds: one statement, one more with
    ``count_vault``.

    Rows loaded but not folded yet are counted in rollups_pending, vault entries not
    settled yet in vault_pending, and the oldest of them is behind_seconds old. Only
    ``count_vault`` scans (the vault, which grows with the data); otherwise the vault's
    size is the planner's estimate (pg_class.reltuples, kept by autovacuum), and None
    where the role may not read the vault (the analyst).
    """
    r = conn.execute(text(_TABLE_STATS), {"top": top, "since": since}).one()
    counted = {str(metric): int(value) for metric, value in r.totals.items()}
    pending, inbox, behind = r.backlog
    by: dict[str, list[tuple[str | None, int]]] = {
        "device_type": [],
        "locale": [],
        "app_version": [],
    }
    for dimension, value, logins in r.breakdowns:
        by[str(dimension)].append((value, int(logins)))
    held = [(date.fromisoformat(month), int(logins)) for month, logins in r.months]
    estimate = None
    vault_exact = None
    if r.vault_allowed:
        reltuples = r.vault_estimate
        estimate = int(reltuples) if reltuples is not None and reltuples >= 0 else None
        if count_vault:
            vault_exact = int(conn.execute(text("SELECT count(*) FROM pii_vault")).scalar_one())
    return TableStats(
        rows=int(r.rows),
        distinct_users=counted.get("users", 0),
        distinct_masked_ips=counted.get("ip_tokens", 0),
        distinct_masked_devices=counted.get("device_tokens", 0),
        vault_entries=vault_exact,
        vault_entries_estimate=estimate,
        rollups_pending=int(pending),
        vault_pending=int(inbox),
        behind_seconds=float(behind),
        top_shared_ips=_shared(r.shared_ips),
        top_shared_devices=_shared(r.shared_devices),
        by_device_type=[(k or "", n) for k, n in by["device_type"]],
        by_locale=by["locale"],
        by_app_version=[(k or "", n) for k, n in by["app_version"]],
        loads_per_hour=[
            (datetime.fromtimestamp(epoch, UTC), int(logins)) for epoch, logins in r.hours
        ],
        oldest_month=held[0][0] if held else None,
        rows_per_month=held,
    )


_SQS_CALLS_AT_ONCE = 10  # make_client's default connection pool


def _sample(
    sqs: SqsService, pool: ThreadPoolExecutor, url: str, wanted: int
) -> list[InboundMessage]:
    """Up to ``wanted`` distinct DLQ messages, hidden for 20 s: the receives at once first,
    then one at a time for what they missed (SQS may return fewer than asked)."""
    if wanted <= 0:
        return []
    asks = [min(limits.SQS_BATCH, wanted - i) for i in range(0, wanted, limits.SQS_BATCH)]
    waves = [
        pool.submit(sqs.receive, url, max_messages=n, wait_seconds=1, visibility_timeout=20)
        for n in asks
    ]
    seen = {m.message_id: m for wave in waves for m in wave.result()}
    if 0 < len(seen) < wanted:
        more = sqs.sample(url, count=wanted - len(seen), visibility_timeout=20)
        seen.update((m.message_id, m) for m in more)
    return list(seen.values())


def queue_stats(settings: Settings, *, dlq_sample: int = 100) -> QueueStats:
    """Read both queues' depths and sample the DLQ's reasons; an outage is reported, not raised.

    Only the DLQ is sampled: receiving from the main queue would raise receive counts
    toward its dead-letter threshold. The DLQ has no such threshold.
    """
    from loginetl.services.sqs import SqsService  # boto3: only when the queues are asked for

    sqs = SqsService.for_settings(settings)
    # The queue's chain and the DLQ's run side by side, and the DLQ's receives and
    # releases go out together: against a real endpoint every call is a round trip
    # (~20 ms), and one after another the sample of 100 alone was ~20 of them.
    with ThreadPoolExecutor(max_workers=_SQS_CALLS_AT_ONCE) as pool:
        try:
            main_depth = pool.submit(lambda: sqs.depth(sqs.queue_url(settings.queue_name)))
            dlq_url = sqs.queue_url(settings.dlq_name)
            dead = sqs.depth(dlq_url)
            # No more than SQS says is there: an empty DLQ, or the poll after the last
            # message, would cost a whole long poll (1 s) of every stats run.
            sample = _sample(sqs, pool, dlq_url, min(dlq_sample, dead.visible))
            releases = [
                pool.submit(sqs.set_visibility, dlq_url, sample[i : i + limits.SQS_BATCH], 0)
                for i in range(0, len(sample), limits.SQS_BATCH)
            ]
            for release in releases:
                release.result()
            main = main_depth.result()
        except LoginetlError as error:
            return QueueStats(settings.queue_name, settings.dlq_name, None, None, str(error))
    first_seen = [m.attributes[ATTR_FIRST_SEEN] for m in sample if ATTR_FIRST_SEEN in m.attributes]
    return QueueStats(
        settings.queue_name,
        settings.dlq_name,
        main,
        dead,
        dlq_sample_size=len(sample),
        dlq_reasons_sampled=dict(Counter(m.attributes.get(ATTR_REASON, "unknown") for m in sample)),
        dlq_oldest_first_seen=min(first_seen, default=None),
    )


def stats(
    settings: Settings,
    *,
    top: int = 5,
    since: timedelta = timedelta(hours=24),
    include_queues: bool = True,
    dlq_sample: int = 100,
    count_vault: bool = False,
) -> Stats:
    """Collect table, schema and (optionally) queue statistics."""
    # One connection for the schema check and every figure (see _TABLE_STATS).
    with (
        db.engine_for(settings.database_url, pool_size=1) as engine,
        db.translate_errors(engine, "read statistics"),
        engine.connect() as conn,
    ):
        schema = migrations.status_on(conn)
        if not schema.current:
            raise SchemaNotAtHead(
                "the database has no loginetl schema; run: loginetl migrate upgrade"
            )
        try:
            # What loads left to fold, one bounded chunk of it, before the figures are
            # read; a `loginetl fold` worker folds the rest (and never waits on this).
            db.fold_once_on(conn)
            table = table_stats_on(conn, top=top, since=since, count_vault=count_vault)
        except ProgrammingError as error:
            if getattr(error.orig, "pgcode", None) != db.INSUFFICIENT_PRIVILEGE:
                raise
            raise Refused(  # e.g. the writer role, which may not read tokens back
                "this database role may not read the rollups; run stats as a login "
                "role in loginetl_analyst"
            ) from None
    return Stats(
        schema=schema,
        table=table,
        queues=queue_stats(settings, dlq_sample=dlq_sample) if include_queues else None,
    )
