"""``stats``: what has been loaded, the duplicate analysis, and the queues' state."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    vault_entries: int | None  # None where the role may not read the vault
    rollups_pending: int  # loaded rows the distinct counts and shared tokens do not count yet
    top_shared_ips: list[SharedToken]
    top_shared_devices: list[SharedToken]
    by_device_type: list[tuple[str, int]]
    by_locale: list[tuple[str | None, int]]
    by_app_version: list[tuple[str, int]]
    loads_per_hour: list[tuple[datetime, int]]


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


def _vault_entries(engine: Engine) -> int | None:
    try:
        return _scalar(engine, "SELECT count(*) FROM pii_vault")
    except ProgrammingError:  # no grant on the vault (the analyst role): say so, not fail
        return None


def _top_shared(engine: Engine, pii_field: str, limit: int) -> list[SharedToken]:
    query = text(
        "SELECT token, users, logins FROM token_stats WHERE pii_field = :field AND users > 1 "
        "ORDER BY users DESC, logins DESC, token LIMIT :limit"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"field": pii_field, "limit": limit})
        return [SharedToken(r[0], r[1], r[2]) for r in rows]


_BREAKDOWN_COLUMNS = frozenset({"device_type", "locale", "app_version_raw"})


def _breakdown(engine: Engine, column: str, limit: int) -> list[tuple[str | None, int]]:
    if column not in _BREAKDOWN_COLUMNS:  # interpolated below: only our own literals
        raise ValueError(column)
    query = text(
        f"SELECT {column}, count(*) FROM user_logins GROUP BY {column} "
        f"ORDER BY count(*) DESC, {column} NULLS LAST LIMIT :limit"
    )
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(query, {"limit": limit})]


def _loads_per_hour(engine: Engine, since: timedelta) -> list[tuple[datetime, int]]:
    query = text(
        "SELECT date_trunc('hour', loaded_at) AS hour, count(*) FROM user_logins "
        "WHERE loaded_at >= now() - :since GROUP BY hour ORDER BY hour"
    )
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(query, {"since": since})]


def table_stats(
    engine: Engine, *, top: int = 5, since: timedelta = timedelta(hours=24)
) -> TableStats:
    """Compute the aggregates; independent queries run side by side on their own connections.

    Distinct counts and the most shared tokens come from the rollups (token_stats,
    user_stats), which consume folds from the loaded rows about once a second; rows not
    folded yet are counted in rollups_pending.
    """
    count = "SELECT count(*) FROM "
    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = pool.submit(_scalar, engine, count + "user_logins")
        users = pool.submit(_scalar, engine, count + "user_stats")
        ips = pool.submit(_scalar, engine, count + "token_stats WHERE pii_field = 'ip'")
        devices = pool.submit(_scalar, engine, count + "token_stats WHERE pii_field = 'device_id'")
        vault = pool.submit(_vault_entries, engine)
        pending = pool.submit(db.pending_rollups, engine)
        shared_ips = pool.submit(_top_shared, engine, "ip", top)
        shared_devices = pool.submit(_top_shared, engine, "device_id", top)
        device_types = pool.submit(_breakdown, engine, "device_type", top)
        locales = pool.submit(_breakdown, engine, "locale", top)
        versions = pool.submit(_breakdown, engine, "app_version_raw", top)
        hours = pool.submit(_loads_per_hour, engine, since)
    return TableStats(
        rows=rows.result(),
        distinct_users=users.result(),
        distinct_masked_ips=ips.result(),
        distinct_masked_devices=devices.result(),
        vault_entries=vault.result(),
        rollups_pending=pending.result(),
        top_shared_ips=shared_ips.result(),
        top_shared_devices=shared_devices.result(),
        by_device_type=[(k or "", n) for k, n in device_types.result()],
        by_locale=locales.result(),
        by_app_version=[(k or "", n) for k, n in versions.result()],
        loads_per_hour=hours.result(),
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
                table = table_stats(engine, top=top, since=since)
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
