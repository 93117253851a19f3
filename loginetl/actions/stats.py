"""``stats``: what has been loaded, the duplicate analysis, and the queues' state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

from loginetl.config import Settings
from loginetl.errors import LoginetlError
from loginetl.services import db, migrations
from loginetl.services.migrations import SchemaStatus
from loginetl.services.sqs import QueueDepth, SqsService, make_client


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
    top_shared_ips: list[SharedToken]
    top_shared_devices: list[SharedToken]
    by_device_type: list[tuple[str, int]]
    by_locale: list[tuple[str | None, int]]
    by_app_version: list[tuple[str, int]]


@dataclass(frozen=True)
class QueueStats:
    """Depths of the queue and its DLQ, or why they could not be read."""

    queue: str
    dlq: str
    main: QueueDepth | None
    dead_letter: QueueDepth | None
    error: str | None = None


@dataclass(frozen=True)
class Stats:
    """Everything ``loginetl stats`` reports."""

    schema: SchemaStatus
    table: TableStats
    queues: QueueStats | None


def _top_shared(engine: Engine, column: str, limit: int) -> list[SharedToken]:
    # column is one of two literals chosen below, never user input.
    query = text(
        f"SELECT {column}, count(DISTINCT user_id) AS users, count(*) AS logins "
        f"FROM user_logins GROUP BY {column} HAVING count(DISTINCT user_id) > 1 "
        f"ORDER BY users DESC, logins DESC, {column} LIMIT :limit"
    )
    with engine.connect() as conn:
        return [SharedToken(r[0], r[1], r[2]) for r in conn.execute(query, {"limit": limit})]


def _breakdown(engine: Engine, column: str, limit: int) -> list[tuple[str | None, int]]:
    query = text(
        f"SELECT {column}, count(*) FROM user_logins GROUP BY {column} "
        f"ORDER BY count(*) DESC, {column} NULLS LAST LIMIT :limit"
    )
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(query, {"limit": limit})]


def table_stats(engine: Engine, *, top: int = 5) -> TableStats:
    """Compute the table aggregates."""
    with engine.connect() as conn:
        totals = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT user_id), count(DISTINCT masked_ip), "
                "count(DISTINCT masked_device_id) FROM user_logins"
            )
        ).one()
        vault: int | None
        try:
            vault = conn.execute(text("SELECT count(*) FROM pii_vault")).scalar_one()
        except Exception:  # the analyst role has no grant on the vault
            vault = None
    versions = _breakdown(engine, "app_version_raw", top)
    return TableStats(
        rows=totals[0],
        distinct_users=totals[1],
        distinct_masked_ips=totals[2],
        distinct_masked_devices=totals[3],
        vault_entries=vault,
        top_shared_ips=_top_shared(engine, "masked_ip", top),
        top_shared_devices=_top_shared(engine, "masked_device_id", top),
        by_device_type=[(k or "", n) for k, n in _breakdown(engine, "device_type", top)],
        by_locale=_breakdown(engine, "locale", top),
        by_app_version=[(k or "", n) for k, n in versions],
    )


def queue_stats(settings: Settings) -> QueueStats:
    """Read both queues' depths; an unreachable endpoint is reported, not raised."""
    sqs = SqsService(make_client(region=settings.region, endpoint_url=settings.endpoint_url))
    try:
        main = sqs.depth(sqs.queue_url(settings.queue_name))
        dead = sqs.depth(sqs.queue_url(settings.dlq_name))
    except LoginetlError as error:
        return QueueStats(settings.queue_name, settings.dlq_name, None, None, str(error))
    return QueueStats(settings.queue_name, settings.dlq_name, main, dead)


def stats(settings: Settings, *, top: int = 5, include_queues: bool = True) -> Stats:
    """Collect table, schema and (optionally) queue statistics."""
    engine = db.make_engine(settings.database_url, pool_size=1)
    try:
        schema = migrations.require_head(engine)
        with db.translate_errors(engine, "read statistics"):
            table = table_stats(engine, top=top)
    finally:
        engine.dispose()
    return Stats(
        schema=schema, table=table, queues=queue_stats(settings) if include_queues else None
    )
