"""Peak memory of consume over a backlog of maximum-size bodies (issue 11, point 6).

SQS accepts bodies up to 1 MiB; consume dead-letters bodies over ``--max-body-bytes``
(256 KiB by default) and bounds what a worker gathers by body bytes
(``ConsumeOptions.gather_bytes``) as well as by count, so a backlog of large messages
cannot grow its memory with the batch size. This measures it: N bodies of exactly the
limit (valid logins padded with an ignored field), consumed with bench/run.py's workers,
peak RSS read from VmHWM as run.py does.

Called from bench/run.py as ``large_bodies(bench, run_consume, messages=N)`` (bench/ is
on sys.path when run.py runs); run alone: ``python bench/large_bodies.py [N]`` measures
256 KiB bodies, 1 MiB bodies against the default limit (dead-lettered), and 1 MiB bodies
with ``--max-body-bytes 1048576``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from loginetl.core.messages import MAX_BODY_BYTES


def padded_body(index: int, size: int) -> str:
    """A valid login body of exactly ``size`` bytes (ASCII), padded by an ignored field."""
    login = {
        "user_id": f"big-{index}",
        "app_version": "1.2.3",
        "device_type": "ios",
        "ip": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}",
        "locale": None,
        "device_id": f"dev-{index}",
        "pad": "",
    }
    room = size - len(json.dumps(login))
    login["pad"] = "x" * room
    body = json.dumps(login)
    assert len(body) == size, (len(body), size)
    return body


def large_bodies(
    bench: Any,
    run_consume: Callable[..., tuple[dict[str, Any], float, float]],
    *,
    messages: int = 200,
    body_bytes: int = MAX_BODY_BYTES,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> dict[str, Any]:
    """Consume ``messages`` bodies of ``body_bytes`` each; return counts, seconds, peak RSS.

    Bodies over ``max_body_bytes`` (consume's --max-body-bytes) are dead-lettered
    ``too_large``: a producer flooding 1 MiB bodies against the default limit.
    """
    bodies = [padded_body(i, body_bytes) for i in range(messages)]
    queue, dlq, _ = bench.fresh_queue(bodies)
    database = bench.fresh_database()
    summary, wall, peak_mb = run_consume(
        bench.env(database, queue, dlq),
        *("--max", str(messages), "--idle-exit", "5", "--max-body-bytes", str(max_body_bytes)),
    )
    return {
        "messages": messages,
        "body_bytes": body_bytes,
        "max_body_bytes": max_body_bytes,
        "loaded": summary["loaded"],
        "dead_lettered": summary["dead_lettered"],
        "seconds": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }


def main() -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    import run  # bench/run.py: its environment (LocalStack, PostgreSQL, keys) and runner

    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    mib = 1024 * 1024
    with run.environment() as bench:
        for body_bytes, limit in (
            (MAX_BODY_BYTES, MAX_BODY_BYTES),
            (mib, MAX_BODY_BYTES),
            (mib, mib),
        ):
            figures = large_bodies(
                bench,
                run.run_consume,
                messages=messages,
                body_bytes=body_bytes,
                max_body_bytes=limit,
            )
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
