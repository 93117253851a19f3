#!/usr/bin/env python3
"""make bench: throughput, memory and scale figures for loginetl, side by side in one run.

Each target is a ratio against a baseline measured in the same run (this machine is
shared and noisy), except the absolute ceilings the issue sets (rows/s, MB, seconds).
Every baseline gets what consume gets: the raw-drain ceiling uses consume's client
(keep-alive, pool size), its receive gathering and its pipelined deletes. Prints every
figure beside its target, writes bench/results/<UTC date>.json (a --quick run:
<UTC date>-quick.json, so a smoke run never overwrites the day's real figures), and exits 1
if any target is missed.

  python bench/run.py [--quick]     (--quick: small counts, every stage, ~1-2 minutes;
                                     its figures exercise the bench, they prove nothing)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import localstack as localstack_tool  # noqa: E402
from latency import latency_checks, latency_stage  # noqa: E402
from load_ceiling import ceiling_rows, checkpoint, copy_ceiling, stage_messages  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from startup import startup, startup_rows  # noqa: E402  (bench/ is on sys.path)

from loginetl.actions.seed import send_bodies  # noqa: E402
from loginetl.core.batch import InboundMessage, mask_batch, parse_batch  # noqa: E402
from loginetl.core.demo import generate_bodies  # noqa: E402
from loginetl.core.limits import SQS_BATCH  # noqa: E402
from loginetl.core.messages import LoginEvent, parse_login  # noqa: E402
from loginetl.core.vault_crypto import VaultSealer  # noqa: E402
from loginetl.services import db, keys, migrations  # noqa: E402
from loginetl.services.sqs import SqsService, make_client  # noqa: E402

LOGINETL = str(Path(sys.executable).parent / "loginetl")
WORKERS = 4  # consume's default --workers
BATCH = 300  # consume's default --batch-size
# The load stage against its ceiling (the same rows and vault entries COPYed into the same
# tables, nothing else, same run): the writers alone, and loaded + settled + folded.
WRITER_TARGET = 0.8
END_TO_END_TARGET = 0.5


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- environment -------------------------------------------------------------------------


class Bench:
    def __init__(self, pg_base: str, endpoint: str, keys_dir: Path) -> None:
        self.pg_base, self.endpoint, self.keys_dir = pg_base, endpoint, keys_dir
        self.sqs = SqsService(
            make_client(region="us-east-1", endpoint_url=endpoint, max_connections=16)
        )
        self.databases: list[str] = []

    def admin(self) -> Any:
        return create_engine(f"{self.pg_base}/postgres", isolation_level="AUTOCOMMIT")

    def _create(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (from ``template``'s files), dropped at the end."""
        how = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        engine = self.admin()
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{how}'))
        engine.dispose()
        self.databases.append(name)
        return f"{self.pg_base}/{name}"

    def fresh_database(self) -> str:
        url = self._create(f"loginetl_bench_{uuid.uuid4().hex[:8]}")
        migrating = db.make_engine(url, pool_size=1)
        migrations.upgrade(migrating)
        migrating.dispose()
        return url

    def copy_of(self, url: str) -> str:
        """A new database made from ``url``'s."""
        source = url.rsplit("/", 1)[1]
        return self._create(f"{source}_{uuid.uuid4().hex[:4]}", template=source)

    def drop_databases(self) -> None:
        engine = self.admin()
        with engine.connect() as conn:
            for name in self.databases:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    def fresh_queue(self, bodies: list[str]) -> tuple[str, str, str]:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        url, _ = self.sqs.create_queues(name, f"{name}-dlq")
        _, failed = send_bodies(self.sqs, url, bodies, workers=8)
        assert failed == 0, f"{failed} sends failed"
        return name, f"{name}-dlq", url

    def env(self, database_url: str, queue: str, dlq: str) -> dict[str, str]:
        return {
            **os.environ,
            "LOGINETL_DATABASE_URL": database_url,
            "LOGINETL_QUEUE": queue,
            "LOGINETL_DLQ": dlq,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "LOGINETL_KEYS_DIR": str(self.keys_dir),
        }


def count(url: str, sql: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = int(conn.execute(text(sql)).scalar_one())
    engine.dispose()
    return value


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak RSS of the process's current image, in MB (0 once it has gone).

    Not getrusage's ru_maxrss: Linux carries that across exec, so a child forked from
    this (large) bench process would report the bench's own size.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_consume(env: dict[str, str], *args: str) -> tuple[dict[str, Any], float, float]:
    """Run consume as a child; return its JSON summary, wall seconds and peak RSS (MB)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [LOGINETL, "consume", "--json", "--workers", str(WORKERS), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _peak_rss_mb(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    wall = time.monotonic() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"consume failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1]), wall, peak[0]


def valid_count(bodies: list[str]) -> int:
    return sum(isinstance(parse_login(b), LoginEvent) for b in bodies)


# -- the measurements --------------------------------------------------------------------


def raw_drain(bench: Bench, bodies: list[str], endpoint: str | None = None) -> float:
    """The endpoint's ceiling for consume's own pattern, with nothing else to do.

    Same as consume: WORKERS receivers (consume's are one per worker, receiving the next
    batch while the worker loads the last: never more than WORKERS receives in flight) on
    a client built like consume's (keep-alive, a pooled connection per thread), receives
    gathered while they come back full up to BATCH messages, and each batch deleted by a
    pool of WORKERS * 2 threads (at most WORKERS * 2 batches pending) while its receiver
    goes on to the next receive. Timed
    from the first receive to the last delete, so the final empty poll is not counted.
    ``endpoint``: drain through another endpoint (bench/latency.py's delaying proxy).
    """
    _, _, url = bench.fresh_queue(bodies)
    sqs = SqsService(
        make_client(
            region="us-east-1",
            endpoint_url=endpoint or bench.endpoint,
            max_connections=WORKERS * 4 + 4,
            read_timeout=22,
        )
    )
    deleter = ThreadPoolExecutor(max_workers=WORKERS * 2, thread_name_prefix="delete")
    pending = threading.BoundedSemaphore(WORKERS * 2)
    lock = threading.Lock()
    deleted = [0]
    last_delete = [0.0]

    def delete(batch: list[InboundMessage]) -> None:
        try:
            failed = sqs.delete(url, batch)
        finally:
            pending.release()
        with lock:
            deleted[0] += len(batch) - len(failed)
            last_delete[0] = time.monotonic()

    def drain() -> None:
        while batch := sqs.receive(url, max_messages=SQS_BATCH, wait_seconds=1):
            while len(batch) % SQS_BATCH == 0 and len(batch) < BATCH:
                more = sqs.receive(url, max_messages=SQS_BATCH, wait_seconds=0)
                batch += more
                if len(more) < SQS_BATCH:
                    break
            pending.acquire()
            deleter.submit(delete, batch)

    threads = [threading.Thread(target=drain) for _ in range(WORKERS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deleter.shutdown(wait=True)
    assert deleted[0] == len(bodies), (deleted[0], len(bodies))
    return len(bodies) / (last_delete[0] - started)


def seed_style_baseline(bench: Bench, bodies: list[str]) -> float:
    """The take-home written plainly: one receive at a time, INSERT+COMMIT per row,
    DeleteMessage per message, unkeyed SHA-256."""
    _, _, url = bench.fresh_queue(bodies)
    database = bench.fresh_database()
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(database)
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, dbname=u.database)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE baseline_logins (user_id varchar(128), device_type varchar(32), "
            "masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), "
            "app_version integer, create_date date)"
        )
    conn.commit()
    client = bench.sqs.client
    started = time.monotonic()
    handled = 0
    while True:
        response = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            handled += 1
            try:
                doc = json.loads(message["Body"])
                row = (
                    doc["user_id"],
                    doc["device_type"],
                    hashlib.sha256(doc["ip"].encode()).hexdigest(),
                    hashlib.sha256(doc["device_id"].encode()).hexdigest(),
                    doc.get("locale"),
                    int(doc["app_version"].replace(".", "")[:9] or 0),
                    datetime.now(UTC).date(),
                )
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO baseline_logins VALUES (%s,%s,%s,%s,%s,%s,%s)", row)
                conn.commit()
            except (KeyError, ValueError, TypeError, AttributeError):
                conn.rollback()
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    elapsed = time.monotonic() - started - 1.0
    conn.close()
    assert handled == len(bodies)
    return len(bodies) / elapsed


def _rollup_rebuild() -> str:
    """Every rollup rebuilt from user_logins (the bench's backfill; bench/rollup_rebuild.sql)."""
    return (ROOT / "bench" / "rollup_rebuild.sql").read_text(encoding="utf-8")


def populate(database: str, rows: int) -> None:
    """Give a fresh database ``rows`` existing logins, their vault entries and rollups.

    Built in bulk by SQL (the rollups rebuilt from the table), so the load stage
    meets indexes and a vault of a realistic size, not an empty table (the stats stage
    builds its own year of data: bench/stats_scale.py).
    Tokens have the shape of real ones and never collide with those the load makes.
    """
    engine = create_engine(database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO user_logins (idempotency_key, user_id, device_type, masked_ip, "
                "masked_device_id, locale, app_version, app_version_raw, create_date, sent_at) "
                "SELECT 'seed-' || g, 'u' || (g % 300000), "
                "CASE WHEN g % 2 = 0 THEN 'ios' ELSE 'android' END, "
                "'k1:' || md5('ip' || ((g::bigint * 7919) % 450000)) || md5('x'), "
                "'k1:' || md5('dev' || ((g::bigint * 104729) % 350000)) || md5('y'), "
                "CASE WHEN g % 3 = 0 THEN NULL ELSE 'L' || (g % 14) END, "
                "(g % 6) * 1000000 + (g % 10) * 1000, (g % 6) || '.' || (g % 10), "
                "current_date, now() - (g % 86400) * interval '1 second' "
                f"FROM generate_series(1, {rows}) g"
            )
        )
        for field, column in (("ip", "masked_ip"), ("device_id", "masked_device_id")):
            # One sealed entry per token, of a real entry's size (32 + 12 + ~31 bytes).
            conn.execute(
                text(
                    "INSERT INTO pii_vault (token, pii_field, recipient, ephemeral_public_key, "
                    f"nonce, ciphertext) SELECT t, '{field}', 'seed', "
                    "decode(md5(t) || md5(t || 'e'), 'hex'), substr(decode(md5(t || 'n'), 'hex'), 1, 12), "
                    "decode(md5(t || 'c') || md5(t || 'd'), 'hex') "
                    f"FROM (SELECT DISTINCT {column} AS t FROM user_logins) tokens"
                )
            )
        conn.execute(text("SET TimeZone = 'UTC'"))
        conn.execute(text(_rollup_rebuild()))
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def load_stage(
    bench: Bench, database: str, rows: int, batch_size: int, *, fold_beside: bool
) -> dict[str, float]:
    """Batches already masked and sealed, as the ceiling's are -> one transaction each,
    WORKERS writers, timed until every row is loaded, its vault entries settled and the
    rollups folded. With ``fold_beside`` the fold worker runs beside the writers (settle
    and fold every second, as `loginetl fold --follow` runs); without, the writers run
    alone, as the ceiling's COPYs do, and the fold drains after them.

    ``database`` already holds data (see ``populate``). Returns rows/s end to end, the
    writers' rate, and the last fold's seconds. Masking and sealing stay outside the clock,
    as for the ceiling: their cost is in consume's own figures (consume vs the raw drain).
    """
    engine = db.make_engine(database, pool_size=WORKERS + 1)
    db.ensure_partitions(engine)
    checkpoint(engine)  # as the ceiling (bench/load_ceiling.py) starts
    before = count(database, "SELECT count(*) FROM user_logins")
    vault_before = count(database, "SELECT count(*) FROM pii_vault")
    masker = keys.load_masker(bench.keys_dir)
    sealer = VaultSealer(keys.load_public_key(bench.keys_dir))
    messages = stage_messages(rows)  # all-new values: two new vault entries a row
    masked = [
        mask_batch(parse_batch(messages[s : s + batch_size]), masker=masker, sealer=sealer)
        for s in range(0, rows, batch_size)
    ]
    chunks = iter(masked)
    lock = threading.Lock()
    writers_done = threading.Event()
    folded = [0, 0]
    behind = [0.0]  # the most the figures lagged the loads, read after each round

    def load() -> None:  # WORKERS writers side by side, as consume's workers are
        while True:
            with lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            db.write_batch(engine, chunk.rows, chunk.vault_entries)

    def fold(wait: bool) -> None:
        done = db.fold(engine, wait=wait)
        folded[0] += done.settled or 0
        folded[1] += done.folded or 0

    def fold_worker() -> None:  # the fold worker: a round about once a second
        while not writers_done.wait(1.0):
            fold(wait=False)
            with engine.connect() as conn:
                behind[0] = max(behind[0], db.backlog_on(conn).behind_seconds)

    threads = [threading.Thread(target=load) for _ in range(WORKERS)]
    folder = threading.Thread(target=fold_worker if fold_beside else writers_done.wait)
    started = time.monotonic()
    folder.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writers_elapsed = time.monotonic() - started
    writers_done.set()
    folder.join()
    final_started = time.monotonic()
    fold(wait=True)
    elapsed = time.monotonic() - started
    final_fold = time.monotonic() - final_started
    engine.dispose()
    assert count(database, "SELECT count(*) FROM user_logins") == before + rows
    assert count(database, "SELECT count(*) FROM pii_vault") == vault_before + 2 * rows
    assert count(database, "SELECT count(*) FROM vault_inbox") == 0
    assert count(database, "SELECT count(*) FROM rollup_pending") == 0
    assert folded == [2 * rows, rows], (folded, rows)
    return {
        "rows_s": rows / elapsed,
        "writers_rows_s": rows / writers_elapsed,
        "final_fold_seconds": final_fold,
        "behind_seconds_max": behind[0],
    }


def scale_out(bench: Bench, bodies: list[str], processes: int) -> dict[str, Any]:
    queue, dlq, _ = bench.fresh_queue(bodies)
    database = bench.fresh_database()
    env = bench.env(database, queue, dlq)
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [LOGINETL, "consume", "--json", "--workers", str(WORKERS), "--idle-exit", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    summaries = []
    for child in children:
        out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(err[-2000:])
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    busy = max(s["busy_seconds"] for s in summaries)
    rows = count(database, "SELECT count(*) FROM user_logins")
    dead = bench.sqs.depth(bench.sqs.queue_url(dlq)).visible
    valid = valid_count(bodies)
    return {
        "processes": processes,
        "msg_per_s": round(sum(s["received"] for s in summaries) / busy, 1),
        "rows": rows,
        "expected_rows": valid,
        "dead_lettered": dead,
        "expected_dead_lettered": len(bodies) - valid,
        "exact": rows == valid and dead == len(bodies) - valid,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def large_bodies_stage(bench: Bench, messages: int) -> dict[str, Any] | None:
    """Peak RSS over a backlog of maximum-size bodies (bench/large_bodies.py)."""
    from large_bodies import large_bodies

    result: dict[str, Any] = large_bodies(bench, run_consume, messages=messages)
    return result


# -- main --------------------------------------------------------------------------------


@contextmanager
def environment() -> Iterator[Bench]:
    pg_base = (
        os.environ.get("LOGINETL_TEST_PG")
        or subprocess.run(
            [str(ROOT / "tools" / "ensure-postgres.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    state = Path(tempfile.mkdtemp(prefix="loginetl-bench-"))
    port = localstack_tool.free_port()
    pid = localstack_tool.start(port, state / "localstack")
    keys.init_keys(state / "keys")
    bench = Bench(pg_base, f"http://127.0.0.1:{port}", state / "keys")
    try:
        yield bench
    finally:
        bench.drop_databases()
        localstack_tool.stop_pid(pid)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, every stage, for a smoke run"
    )
    args = parser.parse_args()
    if args.quick:
        n, big, load_rows, seeded, big_bodies_n = 2_000, 5_000, 6_000, 20_000, 20
    else:
        n, big, load_rows, seeded, big_bodies_n = 20_000, 100_000, 200_000, 1_000_000, 400
    bodies = list(generate_bodies(n, seed=7, malformed_share=0.01))
    results: dict[str, Any] = {
        "messages": n,
        "workers": WORKERS,
        "batch_size": BATCH,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load_rows": load_rows,
        "seeded_rows": seeded,
    }
    log("0. start-up: loginetl --help, stats --help, --version beside alembic --help")
    results["startup"] = startup()
    with environment() as bench:
        log(f"1. raw drain ceiling, {n:,} messages, {WORKERS} receivers, pipelined deletes")
        results["raw_drain_msg_s"] = round(raw_drain(bench, bodies), 1)
        log("2. loginetl consume")
        queue, dlq, _ = bench.fresh_queue(bodies)
        database = bench.fresh_database()
        _, wall, rss_small = run_consume(bench.env(database, queue, dlq), "--max", str(n))
        results["consume_msg_s"] = round(n / wall, 1)
        results["consume_exact"] = count(
            database, "SELECT count(*) FROM user_logins"
        ) == valid_count(bodies)
        results["rss_mb_small"] = round(rss_small, 1)
        log("3. seed-style baseline")
        results["baseline_msg_s"] = round(seed_style_baseline(bench, bodies), 1)
        log(f"4. load stage: {seeded:,} rows first, then {load_rows:,} at {BATCH}/batch + fold")
        database = bench.fresh_database()
        populate(database, seeded)
        log("   its ceiling: the same rows COPYed into the same tables, nothing else")
        try:  # information beside a target: its failure costs its lines, not the run
            results["load_ceiling"] = copy_ceiling(
                bench.pg_base, database.rsplit("/", 1)[1], bench.keys_dir, load_rows, BATCH, WORKERS
            )
        except Exception as error:
            first_line = str(error).splitlines()[0] if str(error) else ""  # no DETAIL rows
            log(f"   the ceiling could not be measured: {type(error).__name__}: {first_line}")
            results["load_ceiling"] = {"unavailable": type(error).__name__}
        log("   the writers alone, then the fold")
        alone = load_stage(bench, bench.copy_of(database), load_rows, BATCH, fold_beside=False)
        results["load_writers_rows_s"] = round(alone["writers_rows_s"], 1)
        results["load_fold_after_rows_s"] = round(alone["rows_s"], 1)
        log("   the writers with the fold worker beside them")
        load = load_stage(bench, database, load_rows, BATCH, fold_beside=True)
        results["load_rows_s"] = round(load["rows_s"], 1)
        results["load_writers_beside_rows_s"] = round(load["writers_rows_s"], 1)
        results["load_final_fold_seconds"] = round(load["final_fold_seconds"], 2)
        results["fold_behind_seconds_max"] = round(load["behind_seconds_max"], 2)
        log("5. stats on a year of logins, 1M and 10M rows (bench/stats_scale.py)")
        from stats_scale import stats_scale

        results["stats_scale"] = stats_scale(bench, quick=args.quick)
        log(f"6. peak memory at {big:,} messages")
        big_bodies = list(generate_bodies(big, seed=8, malformed_share=0.01))
        queue, dlq, _ = bench.fresh_queue(big_bodies)
        database = bench.fresh_database()
        _, _, rss_big = run_consume(bench.env(database, queue, dlq), "--max", str(big))
        results["rss_mb_big"] = round(rss_big, 1)
        log("7. scale-out")
        results["scale_out"] = [scale_out(bench, bodies, p) for p in (1, 2, 4)]
        log("8. maximum-size bodies (256 KiB, the default --max-body-bytes)")
        results["large_bodies"] = large_bodies_stage(bench, big_bodies_n)
        log(f"9. under latency: raw drain and consume, {n:,} messages, 20 and 50 ms a call")
        results["latency"] = latency_stage(
            bench, bodies, run_consume=run_consume, raw_drain=raw_drain, count=count,
            valid=valid_count(bodies),
        )  # fmt: skip
    sys.exit(0 if report(results) else 1)


def load_checks(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The load stage against its ceiling: the writers alone, and end to end."""
    ceiling = r["load_ceiling"]
    indexed = ceiling.get("indexed_rows_s")
    on = f"{r['batch_size']}/batch, on {r['seeded_rows']:,} rows"
    rows: list[tuple[str, str, str, bool | None]] = []
    for name, key, target in (
        (f"load stage, the writers alone (consume's transactions), {on}", "load_writers_rows_s",
         WRITER_TARGET),
        ("load stage end to end: loaded, settled and folded, the fold worker beside",
         "load_rows_s", END_TO_END_TARGET),
        ("  the writers beside the fold worker (information)", "load_writers_beside_rows_s",
         None),
        ("  end to end with the fold after the writers (information)", "load_fold_after_rows_s",
         None),
    ):  # fmt: skip
        if key not in r:  # a results file from before these figures were kept
            continue
        if target is None:
            figure = f"{r[key]:,.0f} rows/s" + (
                f", {r[key] / indexed:.2f} x the ceiling" if indexed else ""
            )
            rows.append((name, figure, "-", None))
            continue
        if indexed is None:
            figure, ok = f"{r[key]:,.0f} rows/s; no ceiling to compare with", False
        else:
            figure, ok = (
                f"{r[key] / indexed:.2f} x the ceiling ({r[key]:,.0f} rows/s)",
                (r[key] >= target * indexed),
            )
        # --quick's few rows time connection set-up more than storage: no verdict from them.
        rows.append(
            (
                name,
                figure,
                "not measured" if r["quick"] else f">= {target} x",
                None if r["quick"] else ok,
            )
        )
    rows += ceiling_rows(r)
    rows.append(
        ("  its last fold, after the writers (information)",
         f"{r['load_final_fold_seconds']:.2f} s", "-", None)
    )  # fmt: skip
    rows.append(
        ("  fold behind: the most stats lagged the loads after a round (information)",
         f"{r['fold_behind_seconds_max']:.1f} s", "-", None)
    )  # fmt: skip
    return rows


def checks(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, figure, target, met); met None marks a figure shown for information."""
    from stats_scale import checks as stats_scale_checks

    result: list[tuple[str, str, str, bool | None]] = [
        *startup_rows(r["startup"]),
        (
            "consume vs raw drain ceiling (same client, gathering, pipelined deletes)",
            f"{r['consume_msg_s'] / r['raw_drain_msg_s']:.0%} "
            f"({r['consume_msg_s']:,.0f} / {r['raw_drain_msg_s']:,.0f} msg/s)",
            ">= 85%",
            r["consume_msg_s"] >= 0.85 * r["raw_drain_msg_s"],
        ),
        (
            "consume vs seed-style baseline",
            f"{r['consume_msg_s'] / r['baseline_msg_s']:.1f}x "
            f"(baseline {r['baseline_msg_s']:,.0f} msg/s)",
            ">= 4x",
            r["consume_msg_s"] >= 4 * r["baseline_msg_s"],
        ),
        (
            "consume loaded exactly the valid messages",
            str(r["consume_exact"]),
            "True",
            r["consume_exact"],
        ),
        *load_checks(r),
        *stats_scale_checks(r["stats_scale"]),
        (
            "peak RSS, big vs small backlog",
            f"{r['rss_mb_big']:.0f} MB vs {r['rss_mb_small']:.0f} MB",
            "within 20%",
            r["rss_mb_big"] <= 1.2 * r["rss_mb_small"],
        ),
        ("peak RSS, big backlog", f"{r['rss_mb_big']:.0f} MB", "< 150 MB", r["rss_mb_big"] < 150),
    ]
    for s in r["scale_out"]:
        result.append(
            (
                f"{s['processes']} consume process(es): total msg/s, rows exact",
                f"{s['msg_per_s']:,.0f} msg/s, {s['rows']:,}/{s['expected_rows']:,} rows, "
                f"{s['dead_lettered']}/{s['expected_dead_lettered']} DLQ",
                "exact",
                s["exact"],
            )
        )
    big = r["large_bodies"]
    result.append(
        (
            f"maximum-size bodies: {big['messages']} x {big['body_bytes']:,} B, peak RSS "
            "vs the small backlog's",
            f"{big['peak_rss_mb']:.0f} MB vs {r['rss_mb_small']:.0f} MB, {big['loaded']} loaded",
            "<= 1.5x",
            big["peak_rss_mb"] <= 1.5 * r["rss_mb_small"] and big["loaded"] == big["messages"],
        )
    )
    return result + latency_checks(r["latency"])


def write_results(r: dict[str, Any], directory: Path, now: datetime) -> Path:
    """Write one run's figures to directory/<UTC date>.json (-quick.json for a --quick run).

    One dated file a day keeps the history machine-readable beside the code that made it;
    a later full run the same day replaces the earlier one.
    """
    day = now.astimezone(UTC).strftime("%Y-%m-%d")
    out = directory / f"{day}{'-quick' if r['quick'] else ''}.json"
    directory.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": day, **r}, indent=2, default=str) + "\n")
    return out


def report(r: dict[str, Any]) -> bool:
    """Print every figure beside its target; write the dated results; True if all were met."""
    rows = checks(r)
    width = max(len(c[0]) for c in rows)
    print(
        f"\nloginetl bench ({r['messages']:,} messages, {r['workers']} receivers per process"
        f"{', QUICK: small counts, figures not comparable to the targets' if r['quick'] else ''})"
    )
    print(f"{'measure':<{width}}  {'measured':<44} {'target':<17} met")
    for name, measured, target, ok in rows:
        verdict = "-" if ok is None else "met" if ok else "NOT MET"
        print(f"{name:<{width}}  {measured:<44} {target:<17} {verdict}")
    missed = [name.strip() for name, _, _, ok in rows if ok is False]
    r["targets_met"] = {name.strip(): ok for name, _, _, ok in rows if ok is not None}
    r["all_targets_met"] = not missed
    out = write_results(r, ROOT / "bench" / "results", datetime.now(UTC))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    if missed:
        print(f"NOT MET: {len(missed)} target(s): " + "; ".join(missed))
    return not missed


if __name__ == "__main__":
    main()
