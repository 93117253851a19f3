#!/usr/bin/env python3
"""`stats` at 1M and at 10M rows side by side (issues 16 part 1 and 18 part 3).

Builds (or reuses) one database per size holding a year of logins: 13 monthly partitions
of create_date, loaded_at spread over the days, one vault entry per token, and every
rollup rebuilt from the table (bench/rollup_rebuild.sql). Then times ``stats``:

- in-process: ``actions.stats.table_stats_on`` on a warm connection, and ``actions.stats.stats``
  (engine, schema check, aggregates, dispose) without the queues; best of 5 each;
- as the operator runs it: ``loginetl stats --no-queues`` and ``loginetl stats`` (queues
  on the bench's LocalStack, 1,000 messages queued and 200 in the DLQ, which stats
  samples), each a fresh process, best of 5.

A database is reused only if its marker (a comment on the database, written last) says it
is complete, of this layout and size, at this code's schema head, migrated by these very
revision files (a digest: a re-chained migration keeps the head's name) and built today
(the data is laid out backwards from today); otherwise it is dropped and rebuilt.

  python bench/stats_scale.py [--quick] [--rebuild]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text

ROOT = Path(__file__).resolve().parents[1]
LOGINETL = str(Path(sys.executable).parent / "loginetl")
LAYOUT = 2  # bump when populate()'s data or indexes change: a reused database must match it
REPEATS = 5
SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (20_000, 200_000)
DAYS = 365
QUEUED, DEAD = 1_000, 200  # messages in the queue and in its DLQ while stats runs
# Tables filled in bulk: their indexes are dropped first and rebuilt after (a sorted build
# is several times faster than maintaining b-trees row by row on random md5 keys).
BULK_TABLES = ("user_logins", "pii_vault", "token_users", "token_stats", "user_stats")


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _head() -> str:
    from loginetl.services.migrations import _scripts

    return ",".join(sorted(_scripts().get_heads()))


def _migrations_digest() -> str:
    """Of every revision file and every SQL file the baseline runs: an edited object keeps
    the head's name."""
    digest = hashlib.sha256()
    files = [
        *(ROOT / "migrations" / "versions").glob("*.py"),
        *(ROOT / "loginetl" / "sql").rglob("*.sql"),
    ]
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _marker(rows: int) -> str:
    today = datetime.now(UTC).date().isoformat()
    return json.dumps(
        {
            "rows": rows,
            "layout": LAYOUT,
            "head": _head(),
            "migrations": _migrations_digest(),
            "built": today,
        }
    )


def _shape(rows: int) -> dict[str, int]:
    """Distinct users and tokens in proportion to the rows (as at 1M in bench/run.py)."""
    return {
        "rows": rows,
        "users": rows * 3 // 10,
        "ips": rows * 45 // 100,
        "devs": rows * 35 // 100,
    }


def _fill_logins(conn: Connection, s: dict[str, int]) -> None:
    """``rows`` logins in create_date order over the last DAYS days, as a year is loaded.

    Token i of a field is 'k1:' || md5(field || i) || md5('x'): 67 characters like a real
    token; the multipliers are primes coprime with the counts, so every token occurs.
    """
    conn.execute(
        text(
            "INSERT INTO user_logins (idempotency_key, user_id, device_type, masked_ip, "
            "masked_device_id, locale, app_version, app_version_raw, create_date, sent_at, "
            "loaded_at) "
            "SELECT 'seed-' || g, 'u' || (g % :users), "
            "(ARRAY['ios', 'android', 'web'])[1 + g % 3], "
            "'k1:' || md5('ip' || ((g * 7919) % :ips)) || md5('x'), "
            "'k1:' || md5('dev' || ((g * 104729) % :devs)) || md5('y'), "
            "CASE WHEN g % 3 = 0 THEN NULL ELSE 'L' || (g % 14) END, "
            "(g % 6) * 1000000 + (g % 10) * 1000, (g % 6) || '.' || (g % 10), "
            "day, sent, least(sent + (g % 900) * interval '1 second', now()) "
            "FROM (SELECT g, day, (day + ((g * 37) % 86400) * interval '1 second') "
            "        AT TIME ZONE 'UTC' AS sent "
            "      FROM (SELECT g, current_date - :last + ((g - 1) * :days / :rows)::int AS day "
            "            FROM generate_series(1::bigint, :rows) g) d) t"
        ),
        {**s, "days": DAYS, "last": DAYS - 1},
    )


def _fill_vault(conn: Connection, s: dict[str, int]) -> None:
    """One sealed-size entry per token (32 + 12 + 31 bytes), generated, not scanned for."""
    for field, prefix, suffix, n in (
        ("ip", "ip", "x", s["ips"]),
        ("device_id", "dev", "y", s["devs"]),
    ):
        conn.execute(
            text(
                "INSERT INTO pii_vault (token, pii_field, recipient, ephemeral_public_key, "
                "nonce, ciphertext) "
                "SELECT t, :field, 'seed', k || k, substr(k, 1, 12), k || substr(k, 1, 15) "
                "FROM (SELECT 'k1:' || md5(:prefix || i) || md5(:suffix) AS t, "
                "             decode(md5(i::text), 'hex') AS k "
                "      FROM generate_series(0, :n - 1) i) v"
            ),
            {"field": field, "prefix": prefix, "suffix": suffix, "n": n},
        )


def _index_definitions(conn: Connection, table: str) -> tuple[list[str], list[str]]:
    """(statements that drop, statements that rebuild) the table's keys and indexes."""
    constraints = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(:t) AND contype IN ('p', 'u')"
        ),
        {"t": f"public.{table}"},
    ).all()
    indexes = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename = :t AND indexname <> ALL (:keys)"
        ),
        {"t": table, "keys": [name for name, _ in constraints]},
    ).all()
    drop = [f'ALTER TABLE public.{table} DROP CONSTRAINT "{n}"' for n, _ in constraints]
    drop += [f'DROP INDEX public."{n}"' for n, _ in indexes]
    build = [f'ALTER TABLE public.{table} ADD CONSTRAINT "{n}" {d}' for n, d in constraints]
    # pg_indexes prints a partitioned table's index as "ON ONLY": built so, it would cover
    # the parent alone, and every partition would be left without it.
    build += [d.replace(" ON ONLY ", " ON ", 1) for _, d in indexes]
    return drop, build


def _autovacuum(conn: Connection, enabled: bool) -> None:
    tables = conn.execute(
        text(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    ).scalars()
    for table in list(tables):
        setting = "RESET (autovacuum_enabled)" if enabled else "SET (autovacuum_enabled = off)"
        conn.execute(text(f"ALTER TABLE {table} {setting}"))


def _rollup_rebuild() -> str:
    """Every rollup rebuilt from user_logins (bench/rollup_rebuild.sql)."""
    return (ROOT / "bench" / "rollup_rebuild.sql").read_text(encoding="utf-8")


def populate(url: str, rows: int) -> dict[str, float]:
    """Fill a database at the schema head with a year of ``rows`` logins; seconds per step."""
    steps: dict[str, float] = {}
    shape = _shape(rows)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=2)

    def timed(name: str, conn: Connection, *statements: str) -> None:
        started = time.monotonic()
        for statement in statements:
            conn.execute(text(statement))
        steps[name] = steps.get(name, 0.0) + time.monotonic() - started

    with engine.connect() as conn:
        for setting in ("work_mem = '512MB'", "maintenance_work_mem = '1GB'"):
            conn.execute(text(f"SET {setting}"))
        conn.execute(text("SET synchronous_commit = off"))
        conn.execute(text("SET TimeZone = 'UTC'"))
        # 13 monthly partitions back from this month (the default partition stays empty).
        conn.execute(
            text("SELECT loginetl_ensure_partitions(current_date - :back, 13)"), {"back": DAYS}
        )
        _autovacuum(conn, enabled=False)
        rebuild: list[str] = []
        for table in BULK_TABLES:
            drop, build = _index_definitions(conn, table)
            timed("drop indexes", conn, *drop)
            rebuild += build
        started = time.monotonic()
        vault_error: list[BaseException] = []

        def vault() -> None:  # beside the logins: another backend, another core
            try:
                with engine.connect() as other:
                    other.execute(text("SET synchronous_commit = off"))
                    _fill_vault(other, shape)
            except BaseException as error:  # re-raised below
                vault_error.append(error)

        beside = threading.Thread(target=vault)
        beside.start()
        _fill_logins(conn, shape)
        beside.join()
        if vault_error:
            raise vault_error[0]
        steps["fill logins + vault"] = time.monotonic() - started
        # Rollups first (they read user_logins, indexes or not), then every index.
        rollups = [s for s in _rollup_rebuild().split(";\n") if s.strip()]
        timed("rebuild rollups", conn, *rollups)
        timed("build indexes", conn, *rebuild)
        _autovacuum(conn, enabled=True)
        timed("vacuum analyze", conn, "VACUUM (ANALYZE)")
        conn.execute(text(f"COMMENT ON DATABASE \"{engine.url.database}\" IS '{_marker(rows)}'"))
    engine.dispose()
    return {k: round(v, 1) for k, v in steps.items()}


def database_for(bench: Any, rows: int, *, rebuild: bool = False) -> tuple[str, dict[str, Any]]:
    """The URL of a complete database of ``rows`` at the head, reused or built now."""
    from loginetl.services import db, migrations

    name = f"loginetl_statsbench_{rows}"
    admin = create_engine(f"{bench.pg_base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        marker = conn.execute(
            text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"
            ),
            {"n": name},
        ).scalar()
        if marker == _marker(rows) and not rebuild:
            admin.dispose()
            return f"{bench.pg_base}/{name}", {"reused": True}
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{bench.pg_base}/{name}"
    engine = db.make_engine(url, pool_size=1)
    migrations.upgrade(engine)
    engine.dispose()
    started = time.monotonic()
    steps = populate(url, rows)
    return url, {"reused": False, "build_seconds": round(time.monotonic() - started, 1), **steps}


def _best(run: Any) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def in_process(url: str) -> dict[str, float]:
    """Best-of-5 seconds of stats in this process: on a warm pool, and the whole action."""
    from loginetl.actions.stats import stats, table_stats_on
    from loginetl.config import Settings
    from loginetl.services import db

    engine = db.make_engine(url, pool_size=1)
    with engine.connect() as conn:
        table_stats_on(conn)  # a warm connection and cache
        warm = _best(lambda: table_stats_on(conn))
    engine.dispose()
    settings = Settings.load({"LOGINETL_DATABASE_URL": url})
    action = _best(lambda: stats(settings, include_queues=False))
    return {"table_stats_warm": round(warm, 4), "action_no_queues": round(action, 4)}


def as_the_operator(bench: Any, urls: list[str]) -> list[dict[str, float]]:
    """Best-of-5 seconds of ``loginetl stats`` in a fresh process, per database.

    The runs alternate between the databases, so a burst of load on this shared machine
    falls on every size alike and the ratio between them compares like with like.
    """
    from loginetl.actions.seed import send_bodies

    # Queues with a backlog and a DLQ to sample (stats samples up to 100 of it, then
    # releases them), so the SQS part is what an operator meets, not two empty queues.
    queue, dlq, _ = bench.fresh_queue([json.dumps({"n": i}) for i in range(QUEUED)])
    _, failed = send_bodies(bench.sqs, bench.sqs.queue_url(dlq), ["{}"] * DEAD, workers=8)
    assert failed == 0, f"{failed} sends to the DLQ failed"
    times: list[dict[str, list[float]]] = [{"cli_no_queues": [], "cli": []} for _ in urls]
    for _ in range(REPEATS):
        for url, taken in zip(urls, times, strict=True):
            for key, args in (("cli_no_queues", ["--no-queues"]), ("cli", [])):
                started = time.perf_counter()
                subprocess.run(
                    [LOGINETL, "stats", *args],
                    env=bench.env(url, queue, dlq),
                    check=True,
                    stdout=subprocess.DEVNULL,
                    timeout=300,
                )
                taken[key].append(time.perf_counter() - started)
    return [{key: round(min(values), 3) for key, values in taken.items()} for taken in times]


def forget_times(bench: Any, url: str) -> dict[str, float]:
    """forget's database work for one user (the dry run's preview; the request, the erasure
    and its purge, each committed) on a copy of ``url``: best of REPEATS users."""
    from loginetl.services import db

    name = url.rsplit("/", 1)[1]
    copy = f"{name}_forget"
    admin = create_engine(f"{bench.pg_base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "{name}" STRATEGY FILE_COPY'))
    engine = db.make_engine(f"{bench.pg_base}/{copy}", pool_size=1)
    dry, real = [], []
    try:
        with engine.connect() as conn:
            users = (
                conn.execute(
                    text("SELECT user_id FROM user_logins TABLESAMPLE SYSTEM (1) LIMIT :n"),
                    {"n": REPEATS},
                )
                .scalars()
                .all()
            )
        for user in users:
            with engine.connect() as conn:
                started = time.perf_counter()
                conn.execute(text("SELECT * FROM loginetl_forget_preview(:u)"), {"u": user}).one()
                dry.append(time.perf_counter() - started)
            started = time.perf_counter()
            with engine.begin() as conn:
                seq = conn.execute(
                    text("SELECT audit_seq FROM loginetl_forget_request(:u, 'bench', NULL, NULL)"),
                    {"u": user},
                ).scalar_one()
            with engine.begin() as conn:
                conn.execute(text("SELECT * FROM loginetl_forget(:s, :u)"), {"s": seq, "u": user})
            real.append(time.perf_counter() - started)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
        admin.dispose()
    return {"forget_dry_s": round(min(dry), 3), "forget_s": round(min(real), 3)}


def stats_scale(bench: Any, *, quick: bool = False, rebuild: bool = False) -> dict[str, Any]:
    """Build or reuse each size's database and measure stats and forget on it; the figures
    by size."""
    sizes: list[dict[str, Any]] = []
    urls = []
    for rows in QUICK_SIZES if quick else SIZES:
        log(f"stats scale: a year of {rows:,} logins (reused if complete and at head)")
        url, build = database_for(bench, rows, rebuild=rebuild)
        log(f"  database ready: {build}; timing stats in-process, best of {REPEATS}")
        sizes.append({"rows": rows, "build": build, **in_process(url)})
        log(f"  forget, dry and real, on a copy, best of {REPEATS} users")
        sizes[-1].update(forget_times(bench, url))
        urls.append(url)
    log(f"stats scale: loginetl stats in a fresh process, best of {REPEATS}, sizes alternating")
    for size, figures in zip(sizes, as_the_operator(bench, urls), strict=True):
        size.update(figures)
    return {"sizes": sizes, "quick": quick}


def checks(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, figure, target, met) rows for bench/run.py's report; None: information."""
    small, big = r["sizes"][0], r["sizes"][-1]
    n = f"{small['rows'] / 1e6:g}M / {big['rows'] / 1e6:g}M rows"

    def pair(key: str, unit: str = "s") -> str:
        return f"{small[key]:.3f} / {big[key]:.3f} {unit}"

    ratio = big["cli_no_queues"] / small["cli_no_queues"]
    quick = r.get("quick", False)

    def verdict(ok: bool) -> bool | None:  # --quick's sizes are not the targets' (10M)
        return None if quick else ok

    def target(text: str) -> str:
        return "not measured" if quick else text

    forget_ratio = big["forget_s"] / small["forget_s"]
    dry_ratio = big["forget_dry_s"] / small["forget_dry_s"]
    return [
        (
            f"loginetl stats --no-queues, fresh process, best of {REPEATS} ({n})",
            pair("cli_no_queues"),
            target("< 1 s at 10M"),
            verdict(big["cli_no_queues"] < 1),
        ),
        (
            f"  loginetl stats with the queues (LocalStack, {QUEUED:,} queued, {DEAD} in the DLQ)",
            pair("cli"),
            target("< 1 s at 10M"),
            verdict(big["cli"] < 1),
        ),
        (
            "  10M / 1M, the whole command without the queues",
            f"{ratio:.2f}",
            target("<= 1.5"),
            verdict(ratio <= 1.5),
        ),
        (
            f"forget one user: request, erase, purge, each committed ({n})",
            pair("forget_s"),
            target("< 1 s at 10M"),
            verdict(big["forget_s"] < 1),
        ),
        (
            "  10M / 1M, forget",
            f"{forget_ratio:.2f}",
            target("<= 1.5"),
            verdict(forget_ratio <= 1.5),
        ),
        (
            f"forget --dry-run's preview ({n})",
            pair("forget_dry_s"),
            target("< 1 s at 10M"),
            verdict(big["forget_dry_s"] < 1),
        ),
        (
            "  10M / 1M, the preview",
            f"{dry_ratio:.2f}",
            target("<= 1.5"),
            verdict(dry_ratio <= 1.5),
        ),
        (
            "  in-process: actions.stats.stats, no queues (information)",
            pair("action_no_queues"),
            "-",
            None,
        ),
        (
            "  in-process: table_stats_on on a warm connection (information)",
            pair("table_stats_warm"),
            "-",
            None,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k and 200k rows, a smoke run")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even a complete database")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from run import environment

    with environment() as bench:
        result = stats_scale(bench, quick=args.quick, rebuild=args.rebuild)
    print(json.dumps(result, indent=2))
    rows = checks(result)
    width = max(len(name) for name, *_ in rows)
    for name, measured, target, ok in rows:
        verdict = "-" if ok is None else "met" if ok else "NOT MET"
        print(f"{name:<{width}}  {measured:<18} {target:<13} {verdict}")
    sys.exit(0 if all(ok is not False for *_, ok in rows) else 1)


if __name__ == "__main__":
    main()
