"""``stats``: what has been loaded, the duplicate analysis, and the queues' state."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from loginetl.config import Settings
from loginetl.core.batch import ATTR_FIRST_SEEN, ATTR_REASON
from loginetl.errors import LoginetlError, Refused, SchemaNotAtHead
from loginetl.services import db, migrations
from loginetl.services.migrations import SchemaStatus

if TYPE_CHECKING:  # boto3 is imported by queue_stats: `stats --no-queues` never loads it
    from loginetl.services.sqs import QueueDepth


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
    rollups_pending: int  # loaded rows the figures below do not count yet (folded ~1/s)
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


def _scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def _vault_entries(engine: Engine, *, exact: bool) -> tuple[int | None, int | None]:
    """(exact count or None, the planner's estimate or None) where the role may read the vault.

    An exact count scans the vault (it grows with the data), so it is asked for; the
    estimate (pg_class.reltuples, kept by autovacuum) costs nothing.
    """
    query = text(
        "SELECT has_table_privilege('public.pii_vault', 'SELECT'), "
        "(SELECT reltuples FROM pg_class WHERE oid = 'public.pii_vault'::regclass)"
    )
    with engine.connect() as conn:
        allowed, reltuples = conn.execute(query).one()
        if not allowed:  # the analyst role: say so, not fail
            return None, None
        estimate = int(reltuples) if reltuples is not None and reltuples >= 0 else None
        if not exact:
            return None, estimate
        return int(conn.execute(text("SELECT count(*) FROM pii_vault")).scalar_one()), estimate


def _top_shared(engine: Engine, pii_field: str, limit: int) -> list[SharedToken]:
    query = text(
        "SELECT token, users, logins FROM token_stats WHERE pii_field = :field AND users > 1 "
        "ORDER BY users DESC, logins DESC, token LIMIT :limit"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"field": pii_field, "limit": limit})
        return [SharedToken(r[0], r[1], r[2]) for r in rows]


def _totals(engine: Engine) -> dict[str, int]:
    """Rows and distinct counts: a handful of rollup rows, whatever the table's size."""
    query = text(
        "SELECT metric, value FROM rollup_totals UNION ALL "
        "SELECT 'rows', coalesce(sum(logins), 0) FROM rollup_months WHERE logins > 0"
    )
    with engine.connect() as conn:
        return {str(metric): int(value) for metric, value in conn.execute(query)}


def _months(engine: Engine) -> list[tuple[date, int]]:
    query = text("SELECT month, logins FROM rollup_months WHERE logins > 0 ORDER BY month")
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(query)]


def _breakdowns(engine: Engine, limit: int) -> dict[str, list[tuple[str | None, int]]]:
    """The top values of device_type, locale and app_version (rollup_breakdown)."""
    query = text(
        "SELECT dimension, value, logins FROM ("
        "  SELECT dimension, value, logins, row_number() OVER ("
        "    PARTITION BY dimension ORDER BY logins DESC, value NULLS LAST) AS rank"
        "  FROM rollup_breakdown WHERE logins > 0) ranked "
        "WHERE rank <= :limit ORDER BY dimension, rank"
    )
    found: dict[str, list[tuple[str | None, int]]] = {
        "device_type": [],
        "locale": [],
        "app_version": [],
    }
    with engine.connect() as conn:
        for dimension, value, logins in conn.execute(query, {"limit": limit}):
            found[str(dimension)].append((value, int(logins)))
    return found


def _loads_per_hour(engine: Engine, since: timedelta) -> list[tuple[datetime, int]]:
    query = text(
        "SELECT loaded_hour, logins FROM rollup_hourly "
        "WHERE loaded_hour >= date_trunc('hour', now() - :since) AND logins > 0 "
        "ORDER BY loaded_hour"
    )
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(query, {"since": since})]


def table_stats(
    engine: Engine,
    *,
    top: int = 5,
    since: timedelta = timedelta(hours=24),
    count_vault: bool = False,
) -> TableStats:
    """Compute the aggregates from the rollups, side by side on their own connections.

    Every figure comes from a rollup the fold keeps (migration 0011), so the time does
    not grow with user_logins; rows loaded but not folded yet (about a second's worth
    while consume runs) are counted in rollups_pending. Only ``count_vault`` scans.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        totals = pool.submit(_totals, engine)
        vault = pool.submit(_vault_entries, engine, exact=count_vault)
        pending = pool.submit(db.pending_rollups, engine)
        shared_ips = pool.submit(_top_shared, engine, "ip", top)
        shared_devices = pool.submit(_top_shared, engine, "device_id", top)
        breakdowns = pool.submit(_breakdowns, engine, top)
        months = pool.submit(_months, engine)
        hours = pool.submit(_loads_per_hour, engine, since)
    counted = totals.result()
    vault_exact, vault_estimate = vault.result()
    by = breakdowns.result()
    held = months.result()
    return TableStats(
        rows=counted.get("rows", 0),
        distinct_users=counted.get("users", 0),
        distinct_masked_ips=counted.get("ip_tokens", 0),
        distinct_masked_devices=counted.get("device_tokens", 0),
        vault_entries=vault_exact,
        vault_entries_estimate=vault_estimate,
        rollups_pending=pending.result(),
        top_shared_ips=shared_ips.result(),
        top_shared_devices=shared_devices.result(),
        by_device_type=[(k or "", n) for k, n in by["device_type"]],
        by_locale=by["locale"],
        by_app_version=[(k or "", n) for k, n in by["app_version"]],
        loads_per_hour=hours.result(),
        oldest_month=held[0][0] if held else None,
        rows_per_month=held,
    )


def queue_stats(settings: Settings, *, dlq_sample: int = 100) -> QueueStats:
    """Read both queues' depths and sample the DLQ's reasons; an outage is reported, not raised.

    Only the DLQ is sampled: receiving from the main queue would raise receive counts
    toward its dead-letter threshold. The DLQ has no such threshold.
    """
    from loginetl.services.sqs import SqsService

    sqs = SqsService.for_settings(settings)
    try:
        main = sqs.depth(sqs.queue_url(settings.queue_name))
        dlq_url = sqs.queue_url(settings.dlq_name)
        dead = sqs.depth(dlq_url)
        # No more than SQS says is there: an empty DLQ, or the poll after the last message,
        # would cost a whole long poll (1 s) of every stats run (measured by make bench).
        wanted = min(dlq_sample, dead.visible)
        sample = sqs.sample(dlq_url, count=wanted, visibility_timeout=20) if wanted else []
        if sample:
            sqs.set_visibility(dlq_url, sample, 0)
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
    with db.engine_for(settings.database_url, pool_size=4) as engine:
        schema = migrations.status(engine)
        if not schema.current:
            raise SchemaNotAtHead(
                "the database has no loginetl schema; run: loginetl migrate upgrade"
            )
        with db.translate_errors(engine, "read statistics"):
            try:
                table = table_stats(engine, top=top, since=since, count_vault=count_vault)
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
