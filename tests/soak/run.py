"""Run the soak: start everything, inject the seed's faults, check the invariants at every
quiet point and at the end, print the verdict; exit 1 on any violation."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.soak import invariants as inv
from tests.soak.faults import KINDS, Injector, schedule, wait_for_threads
from tests.soak.producer import Ledger, Producer, Sent
from tests.soak.world import Supervisor, World

ROOT = Path(__file__).resolve().parents[2]
RATE = 25.0  # messages a second, both queues together
DRAIN_TIMEOUT = 300.0


class Soak:
    def __init__(self, seed: int, seconds: float, rate: float) -> None:
        self.seed = seed
        self.seconds = seconds
        self.rate = rate
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.run_dir = ROOT / ".run" / "soak" / f"{stamp}-{seed}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.output = (self.run_dir / "timeline.txt").open("a")
        self.started = time.monotonic()
        self.paused_since: float | None = None
        self.paused_total = 0.0
        self.timeline: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.violations: list[inv.Violation] = []
        self.checked: list[dict[str, Any]] = []
        self.injected: Counter[str] = Counter()
        self.dead = inv.DeadLetters()
        self.figures: dict[str, int] = {}
        self.rss_note = ""

    # -- the soak clock and the timeline -------------------------------------------------

    def clock(self) -> float:
        """Seconds of soak time: the wall clock less every quiet point."""
        now = self.paused_since if self.paused_since is not None else time.monotonic()
        return now - self.started - self.paused_total

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)
            self.output.write(line + "\n")
            self.output.flush()

    def note(self, kind: str, what: str) -> None:
        at = self.clock()
        with self.lock:
            self.timeline.append((at, kind, what))
        self.say(f"{at:8.1f}  {kind:<10} {what}")

    # -- the run -------------------------------------------------------------------------

    def run(self) -> int:
        self.say(
            f"soak seed {self.seed} ({self.seconds:.0f} s at {self.rate:.0f} msg/s); "
            f"replay: make soak SOAK_SEED={self.seed} SOAK_SECONDS={self.seconds:.0f}"
        )
        self.say(f"timeline and result: {self.run_dir}")
        faults = schedule(self.seed, self.seconds)
        quiet = quiet_points(self.seconds)
        self.say(f"{len(faults)} faults scheduled, quiet points at {quiet} s of soak time")
        (self.run_dir / "schedule.txt").write_text(
            "".join(f"{f.at:8.1f}  {f.describe()}\n" for f in faults)
        )
        wall = time.monotonic()
        world = World(self.run_dir, self.seed)
        supervisor = producer = None
        try:
            self.ledger = Ledger()
            urls = {pair: world.queues[pair][0] for pair in ("std", "fifo")}
            producer = Producer(world.client, urls, self.seed, self.rate, self.ledger, self.clock)
            supervisor = Supervisor(world, self.clock, self.note)
            injector = Injector(world, supervisor, producer, self.ledger, self.note, self.clock)
            self.started = time.monotonic()
            supervisor.start()
            producer.start()
            self.note("start", "4 consume --follow, 1 fold --follow, the producer")
            pending = list(faults)
            while self.clock() < self.seconds:
                if quiet and self.clock() >= quiet[0]:
                    quiet.pop(0)
                    self.quiet_point(world, supervisor, producer, injector, final=False)
                while pending and pending[0].at <= self.clock():
                    fault = pending.pop(0)
                    self.injected[fault.kind] += 1
                    self.note("fault", fault.describe())
                    injector.inject(fault)
                time.sleep(0.1)
            self.quiet_point(world, supervisor, producer, injector, final=True)
            producer.stop()
            codes = supervisor.stop()
            for name, code in codes.items():
                if code != 0:
                    self.violations.append(
                        inv.Violation(
                            "nothing-in-flight", f"{name} exited {code} on SIGTERM, not 0"
                        )
                    )
            # Every log line of every loginetl process, and everything the soak printed.
            pattern = inv.pii_pattern(self.ledger.pii)
            self.output.flush()
            files = [*sorted((self.run_dir / "logs").glob("*.log")), self.run_dir / "timeline.txt"]
            self.violations += inv.plaintext_in_files(files, pattern)
            for failure in injector.failures:
                self.note("command", failure)
        finally:
            try:
                if producer is not None:
                    producer.stop()
                if supervisor is not None:
                    supervisor.kill_all()
            finally:
                world.close()  # whatever stopping the others raised
        return self.verdict(time.monotonic() - wall)

    def quiet_point(
        self,
        world: World,
        supervisor: Supervisor,
        producer: Producer,
        injector: Injector,
        *,
        final: bool,
    ) -> None:
        """Pause the producer and the schedule, let everything drain, check, resume."""
        producer.pause()
        self.paused_since = time.monotonic()
        self.say(
            f"{self.clock():8.1f}  quiet      {'final ' if final else ''}quiet point: faults finish, queues drain"
        )
        wait_for_threads(injector, 600)
        world.proxy.delay = 0.0
        drained = self.drain(world, supervisor)
        for pair in ("std", "fifo"):
            self.dead.drain(world.client, world.queues[pair][1])
        left = inv.queue_left(world.client, [u for pair in world.queues.values() for u in pair])
        found: list[inv.Violation] = []
        if not drained or any(left.values()):
            found.append(inv.Violation("nothing-in-flight", f"after {DRAIN_TIMEOUT:.0f} s: {left}"))
        sent = self.ledger.snapshot()
        erased = set(self.ledger.erased)
        engine = create_engine(world.database_url, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                loaded, load_figures = inv.loaded_exactly_once(conn, sent, erased)
                found += loaded
                dlq, dlq_figures = inv.dlq_with_reason(sent, self.dead)
                found += dlq
                found += inv.fifo_order(conn, sent)
                found += inv.rollups_recount(conn)
                found += inv.vault_referenced(conn)
                found += inv.erased_gone(conn, erased)
                found += inv.audit_chain(conn, injector.forgets, injector.unmasks)
        finally:
            engine.dispose()
        verify = subprocess.run(
            [str(Path(sys.executable).parent / "loginetl"), "audit", "verify"],
            env=world.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if verify.returncode != 0:
            found.append(
                inv.Violation(
                    "audit-chain",
                    "loginetl audit verify exited "
                    f"{verify.returncode}: {verify.stdout[-300:]}{verify.stderr[-300:]}",
                )
            )
        dump = inv.dump_data(f"{world.pg.bindir}/pg_dump", world.database_url, world.pg.as_owner)
        found += inv.plaintext_in_tables(dump, inv.pii_pattern(self.ledger.pii))
        rss_note = ""
        if final:
            rss, rss_note = inv.rss_flat(supervisor.rss, self.seconds)
            found += rss
        figures = {
            **load_figures,
            **dlq_figures,
            "DLQ messages received": self.dead.received,
            "producer send errors": producer.errors,
        }
        self.figures = figures
        self.checked.append({"at": round(self.clock(), 1), "violations": len(found), **figures})
        names = sorted({v.invariant for v in found})
        self.say(
            f"{self.clock():8.1f}  check      {'final ' if final else ''}{figures}; "
            + (f"VIOLATED: {', '.join(names)}" if names else "every invariant holds")
            + (f"; rss: {rss_note}" if rss_note else "")
        )
        self.violations += found
        self.rss_note = rss_note
        if found and not (self.run_dir / "data.sql").exists():
            # The evidence, from the first check that failed: every table's data but the
            # vault's (no plaintext, checked above) and the ledger (synthetic ids, no PII).
            (self.run_dir / "data.sql").write_text(dump)
            (self.run_dir / "sent.jsonl").write_text(
                "".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in sent)
            )
        if not final:
            self.paused_total += time.monotonic() - (self.paused_since or time.monotonic())
            self.paused_since = None
            producer.running.set()

    def drain(self, world: World, supervisor: Supervisor) -> bool:
        """Wait until every slot runs, the queues are empty and nothing waits to be folded."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        engine = create_engine(world.database_url, pool_pre_ping=True)
        quiet_rounds = 0
        try:
            while time.monotonic() < deadline:
                try:
                    left = inv.queue_left(
                        world.client, [world.queues[p][0] for p in ("std", "fifo")]
                    )
                    with engine.connect() as conn:
                        waiting = conn.execute(
                            text(
                                "SELECT (SELECT count(*) FROM rollup_pending) + (SELECT count(*) FROM vault_inbox)"
                            )
                        ).scalar_one()
                except Exception:
                    left, waiting = {"?": 1}, 1
                quiet_rounds = (
                    quiet_rounds + 1
                    if not any(left.values()) and not waiting and supervisor.all_running()
                    else 0
                )
                if quiet_rounds >= 3:
                    return True
                time.sleep(2)
            return False
        finally:
            engine.dispose()

    # -- the verdict ---------------------------------------------------------------------

    def around(self, message: Sent) -> list[str]:
        return [
            f"{at:.1f} {kind} {what}"
            for at, kind, what in self.timeline
            if kind in ("fault", "fault-end", "exit") and message.at - 10 <= at <= message.at + 40
        ]

    def verdict(self, wall: float) -> int:
        by_name = {name: [v for v in self.violations if v.invariant == name] for name in inv.NAMES}
        self.say("")
        self.say(f"soak seed {self.seed}: {self.seconds:.0f} s of soak time, {wall:.0f} s wall")
        self.say("faults injected: " + ", ".join(f"{k} {self.injected[k]}" for k in KINDS))
        self.say(f"messages: {self.figures}")
        for name, found in by_name.items():
            verdict = "holds" if not found else "VIOLATED"
            extra = f" ({self.rss_note})" if name == "rss-flat" and self.rss_note else ""
            self.say(f"  {name:<20} {verdict}{extra}")
            for violation in found[:5]:
                self.say(f"      {violation.what}")
                for message in violation.messages[:5]:
                    self.say(
                        f"        message #{message.n} {message.kind} {message.wrap} "
                        f"{'fifo ' + str(message.group) if message.fifo else 'standard'} "
                        f"key {message.keys[0][:48]} sent at {message.at:.1f}"
                    )
                    for line in self.around(message)[:16]:
                        self.say(f"          around it: {line}")
        result = {
            "seed": self.seed,
            "seconds": self.seconds,
            "wall_seconds": round(wall),
            "faults": dict(self.injected),
            "messages": self.figures,
            "quiet_points": self.checked,
            "invariants": {n: ("holds" if not f else "violated") for n, f in by_name.items()},
            "rss": self.rss_note,
        }
        (self.run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        failed = [n for n, f in by_name.items() if f]
        self.say(
            f"soak seed {self.seed}: " + (f"FAILED: {', '.join(failed)}" if failed else "passed")
        )
        return 1 if failed else 0


def quiet_points(seconds: float) -> list[float]:
    """A quiet point every quarter of the run (at least a minute apart), then the end."""
    every = max(60.0, seconds / 4)
    points, at = [], every
    while at < seconds - 30:
        points.append(round(at, 1))
        at += every
    return points


def run_broken(name: str, argv: list[str]) -> int:
    """Run the soak on a copy of the tree with breakage ``name``; 0 if the soak caught it."""
    from tests.faults.breakages import BREAKAGES, broken_copy

    breakage = next((b for b in BREAKAGES if b.name == name), None)
    if breakage is None:
        print(f"no breakage {name!r}; one of: {', '.join(b.name for b in BREAKAGES)}")
        return 2
    copy = broken_copy(breakage)
    try:
        print(
            f"breakage {name}: {breakage.change} ({breakage.path}), soak run in {copy}", flush=True
        )
        code = subprocess.run(
            [sys.executable, "-m", "tests.soak", *argv],
            cwd=copy,
            env={**os.environ, "PYTHONPATH": str(copy)},
            check=False,
        ).returncode
        runs = sorted((copy / ".run" / "soak").glob("*/result.json"))
        if runs:
            target_dir = (
                ROOT / ".run" / "soak" / f"break-{name.replace(':', '-')}-{runs[-1].parent.name}"
            )
            shutil.copytree(
                runs[-1].parent, target_dir, ignore=shutil.ignore_patterns("keys", "localstack")
            )
        print(
            f"breakage {name}: "
            + ("the soak failed, as it must" if code == 1 else f"soak exit {code}: NOT caught")
        )
        return 0 if code == 1 else 1
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS") or 600)
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument(
        "--break", dest="breakage", default=None, help="a name from tests/faults/breakages.py"
    )
    args = parser.parse_args(argv)
    seed = (
        args.seed
        if args.seed is not None
        else int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1, 10**6))
    )
    if args.breakage:
        return run_broken(
            args.breakage,
            ["--seconds", str(args.seconds), "--seed", str(seed), "--rate", str(args.rate)],
        )

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(signum, stop)
    try:
        return Soak(seed, args.seconds, args.rate).run()
    except KeyboardInterrupt:
        print(f"soak seed {seed}: interrupted; everything it started is stopped", flush=True)
        return 130
