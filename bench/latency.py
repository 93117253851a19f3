"""consume and the raw drain under network latency (issue 16, point 2).

On loopback an SQS call costs ~0.5 ms; against AWS ~10-30 ms. Both consume and the raw
drain (bench/run.py ``raw_drain``: consume's client, concurrency, gathering and
pipelined deletes, with nothing else to do) are run through bench/latency_proxy.py,
which delays every HTTP request by a fixed time, so the ratio shows what consume's own
round trips and commits cost when calls are slow.

``latency_stage`` is wired into bench/run.py; ``sweep`` measures consume's msg/s per
process against --workers and the delay (docs/performance.md's sizing table):

  python bench/latency.py sweep [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_proxy import LatencyProxy


def _port(endpoint: str) -> int:
    port = urlsplit(endpoint).port
    assert port is not None, endpoint
    return port


def latency_stage(
    bench: Any,
    bodies: list[str],
    *,
    run_consume: Callable[..., tuple[dict[str, Any], float, float]],
    raw_drain: Callable[..., float],
    count: Callable[[str, str], int],
    valid: int,
    delays_ms: Sequence[int] = (20, 50),
) -> list[dict[str, Any]]:
    """For each delay: the raw drain's msg/s and consume's, both from the first receive to
    the last delete (consume's process start shown apart, as wall-time msg/s)."""
    results = []
    for delay_ms in delays_ms:
        with LatencyProxy(_port(bench.endpoint), delay_ms / 1000) as proxy:
            raw = raw_drain(bench, bodies, endpoint=proxy.url)
            queue, dlq, _ = bench.fresh_queue(bodies)
            database = bench.fresh_database()
            env = {**bench.env(database, queue, dlq), "AWS_ENDPOINT_URL": proxy.url}
            summary, wall, _ = run_consume(env, "--max", str(len(bodies)))
            delayed = proxy.requests
        results.append(
            {
                "delay_ms": delay_ms,
                "raw_drain_msg_s": round(raw, 1),
                # Timed as the raw drain is: from the workers' start (the first receive) to
                # the last delete, and consume's final fold besides. Its process start
                # (interpreter, imports, schema and queue checks, ~1-1.5 s here) is a fixed
                # cost the loopback comparison already carries: shown apart.
                "consume_msg_s": round(summary["received"] / summary["elapsed_seconds"], 1),
                "consume_wall_msg_s": round(len(bodies) / wall, 1),
                "consume_steady_msg_s": round(summary["received"] / summary["busy_seconds"], 1),
                # wall = start (interpreter, imports, checks) + elapsed; elapsed = busy + tail
                "consume_start_seconds": round(wall - summary["elapsed_seconds"], 2),
                "consume_tail_seconds": round(
                    summary["elapsed_seconds"] - summary["busy_seconds"], 2
                ),
                "exact": count(database, "SELECT count(*) FROM user_logins") == valid,
                "requests_delayed": delayed,
            }
        )
    return results


def latency_checks(stages: list[dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    """bench/run.py checks() rows: consume >= 0.9 x the raw drain at each delay."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for s in stages:
        ratio = s["consume_msg_s"] / s["raw_drain_msg_s"]
        rows.append(
            (
                f"consume vs raw drain, {s['delay_ms']} ms added to every SQS call, rows exact",
                f"{ratio:.0%} ({s['consume_msg_s']:,.0f} / {s['raw_drain_msg_s']:,.0f} msg/s)"
                f"{'' if s['exact'] else ', ROWS NOT EXACT'}",
                ">= 90%",
                ratio >= 0.9 and s["exact"],
            )
        )
        rows.append(
            (
                "  the same, consume by wall time: its process start included (information)",
                f"{s['consume_wall_msg_s'] / s['raw_drain_msg_s']:.0%} "
                f"({s['consume_wall_msg_s']:,.0f} msg/s, start {s['consume_start_seconds']:.1f} s)",
                "-",
                None,
            )
        )
    return rows


def sweep(
    bench: Any,
    run_consume: Callable[..., tuple[dict[str, Any], float, float]],
    *,
    workers: Sequence[int] = (1, 2, 4, 8, 16),
    delays_ms: Sequence[int] = (0, 20, 50),
    seconds: float = 8.0,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """consume's msg/s per process for each --workers and delay (0: straight to LocalStack).

    Each run gets a backlog of about ``seconds`` of work at the rate the sizing rule
    predicts, and reports the steady rate (received / busy seconds: the process start
    and the final fold left out) beside the wall-time rate.
    """
    from loginetl.core.demo import generate_bodies

    out = []
    for delay_ms in delays_ms:
        for w in workers:
            guess = min(2_000.0, w * 10 / (delay_ms / 1000 + 0.003))
            n = max(500, int(guess * seconds) // 100 * 100)
            bodies = list(generate_bodies(n, seed=w * 100 + delay_ms, malformed_share=0.01))
            queue, dlq, _ = bench.fresh_queue(bodies)
            database = bench.fresh_database()
            env = bench.env(database, queue, dlq)
            proxy = LatencyProxy(_port(bench.endpoint), delay_ms / 1000) if delay_ms else None
            if proxy is not None:
                env["AWS_ENDPOINT_URL"] = proxy.url
            try:
                summary, wall, rss = run_consume(env, "--max", str(n), "--workers", str(w), *extra)
            finally:
                if proxy is not None:
                    proxy.pause()
            row = {
                "delay_ms": delay_ms,
                "workers": w,
                "extra": " ".join(extra),
                "messages": n,
                "steady_msg_s": round(summary["received"] / summary["busy_seconds"], 1),
                "wall_msg_s": round(n / wall, 1),
                "peak_rss_mb": round(rss, 1),
            }
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["sweep", "stage"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--delays", default="0,20,50")
    parser.add_argument("--no-prefetch", action="store_true", help="sweep consume --no-prefetch")
    args = parser.parse_args()
    import run  # bench/run.py: its environment (LocalStack, PostgreSQL, keys) and runner

    with run.environment() as bench:
        if args.what == "sweep":
            rows = sweep(
                bench,
                run.run_consume,
                workers=[int(w) for w in args.workers.split(",")],
                delays_ms=[int(d) for d in args.delays.split(",")],
                seconds=2 if args.quick else 8,
                extra=["--no-prefetch"] if args.no_prefetch else [],
            )
            name = "latency_sweep_no_prefetch.json" if args.no_prefetch else "latency_sweep.json"
            (Path(__file__).parent / name).write_text(json.dumps(rows, indent=2) + "\n")
        else:
            from loginetl.core.demo import generate_bodies

            bodies = list(generate_bodies(2_000 if args.quick else 10_000, seed=7))
            stages = latency_stage(
                bench,
                bodies,
                run_consume=run.run_consume,
                raw_drain=run.raw_drain,
                count=run.count,
                valid=run.valid_count(bodies),
                delays_ms=[int(d) for d in args.delays.split(",") if int(d)],
            )
            print(json.dumps(stages, indent=2))
            for row in latency_checks(stages):
                print(row)


if __name__ == "__main__":
    main()
