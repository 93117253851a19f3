"""The fault schedule (drawn from the seed) and how each fault is injected.

The schedule is a list of (soak time, kind, target, duration) drawn from ``random.Random(seed)``
before anything runs; soak time stops during quiet points, so rerunning with a seed injects
the same faults in the same order at the same offsets. Each fault runs on its own thread, so
they overlap.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.soak.producer import Ledger, Producer
from tests.soak.world import Supervisor, World, run_cli

# kind -> weight. Every fault the fault suite knows, as a kind of its own.
KINDS = {
    "kill-9": 6,
    "sigterm": 4,
    "backend-kill": 3,
    "pg-restart": 1.5,
    "sqs-cut": 2,
    "sqs-latency": 2,
    "table-lock": 3,
    "migrate": 1,
    "forget": 1.5,
    "retention": 1,
    "replay-dlq": 1.5,
    "unmask": 1.5,
}
SLOTS = ("consume-std-1", "consume-std-2", "consume-fifo-1", "consume-fifo-2", "fold")
LOCKABLE = ("user_logins", "rollup_pending", "vault_inbox", "pii_vault", "user_stats")
REASON = "SOAK-28 chaos soak"
FORGET_GRACE = 45.0  # seconds after a retired user's last row loads before it is forgotten


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    target: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        shown = "" if self.kind in ("forget", "unmask") else self.target  # an rng draw
        parts = [self.kind, shown, f"{self.seconds:.1f}s" if self.seconds else ""]
        return " ".join(p for p in parts if p)


def schedule(seed: int, seconds: float, mean_gap: float = 5.0) -> list[Fault]:
    """Faults over [10 s, seconds - 20 s], exponential gaps, kinds by weight."""
    rng = random.Random(seed)
    kinds, weights = list(KINDS), list(KINDS.values())
    faults: list[Fault] = []
    at = 10.0
    while True:
        at += rng.expovariate(1 / mean_gap)
        if at > seconds - 20:
            return faults
        kind = rng.choices(kinds, weights)[0]
        target, length = "", 0.0
        if kind in ("kill-9", "sigterm"):
            target = rng.choice(SLOTS)
        elif kind == "pg-restart":
            length = rng.uniform(2, 8)
        elif kind in ("sqs-cut", "sqs-latency"):
            length = rng.uniform(3, 12)
            target = f"{rng.uniform(0.1, 1.0):.2f}s" if kind == "sqs-latency" else ""
        elif kind == "table-lock":
            target, length = rng.choice(LOCKABLE), rng.uniform(2, 10)
        elif kind in ("replay-dlq", "unmask", "forget"):
            target = rng.choice(("std", "fifo")) if kind == "replay-dlq" else str(rng.random())
        faults.append(Fault(round(at, 2), kind, target, round(length, 2)))


class Injector:
    """Runs each scheduled fault on a thread of its own; records what happened."""

    def __init__(
        self,
        world: World,
        supervisor: Supervisor,
        producer: Producer,
        ledger: Ledger,
        note: Callable[..., None],
        clock: Callable[[], float],
    ) -> None:
        self.world = world
        self.supervisor = supervisor
        self.producer = producer
        self.ledger = ledger
        self.note = note
        self.clock = clock
        self.threads: list[threading.Thread] = []
        self.cli_log = world.run_dir / "logs" / "cli.log"
        self.unmasks = 0
        self.forgets = 0
        self.failures: list[str] = []  # a fault's command that failed where it must not
        # Overlapping SQS faults: the path is cut while any cut lasts, and as slow as the
        # slowest spike under way.
        self.sqs_lock = threading.Lock()
        self.cuts = 0
        self.delays: list[float] = []
        # Overlapping restarts: PostgreSQL is down while any lasts.
        self.pg_lock = threading.Lock()
        self.pg_down = 0

    def inject(self, fault: Fault) -> None:
        thread = threading.Thread(target=self._run, args=(fault,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def busy(self) -> bool:
        self.threads = [t for t in self.threads if t.is_alive()]
        return bool(self.threads)

    def _run(self, fault: Fault) -> None:
        try:
            outcome = getattr(self, "_" + fault.kind.replace("-", "_"))(fault)
        except OperationalError:  # another fault cut its session or stopped the server
            outcome = "cut short by an overlapping fault (its session was lost)"
        except Exception as error:
            outcome = f"error: {type(error).__name__}"
        self.note("fault-end", f"{fault.describe()}: {outcome}")

    # -- processes -----------------------------------------------------------------------

    def _kill_9(self, fault: Fault) -> str:
        pid = self.supervisor.signal(fault.target, signal.SIGKILL)
        return f"pid {pid}" if pid else "between lives"

    def _sigterm(self, fault: Fault) -> str:
        pid = self.supervisor.signal(fault.target, signal.SIGTERM)
        return f"pid {pid}" if pid else "between lives"

    # -- PostgreSQL ----------------------------------------------------------------------

    def _admin(self) -> Any:
        return create_engine(
            self.world.database_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True
        )

    def _backend_kill(self, fault: Fault) -> str:
        engine = self._admin()
        try:
            with engine.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        return f"{killed} backends"

    def _pg_restart(self, fault: Fault) -> str:
        with self.pg_lock:
            self.pg_down += 1
            if self.pg_down == 1:
                self.world.pg.stop()
        time.sleep(fault.seconds)
        with self.pg_lock, self.world.lock:
            self.pg_down -= 1
            if self.world.closed:
                return "not restarted: the soak is closing"
            if self.pg_down == 0:
                self.world.pg.start()
                return "back"
        return "back when the other restart ends"

    def _table_lock(self, fault: Fault) -> str:
        engine = create_engine(self.world.database_url, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                conn.execute(text("SET lock_timeout = '20s'"))
                conn.execute(text(f"LOCK TABLE public.{fault.target} IN ACCESS EXCLUSIVE MODE"))
                time.sleep(fault.seconds)
                conn.rollback()
        finally:
            engine.dispose()
        return "released"

    # -- SQS -----------------------------------------------------------------------------

    def _sqs_cut(self, fault: Fault) -> str:
        with self.sqs_lock:
            self.cuts += 1
            if self.cuts == 1:
                self.world.proxy.pause()
        time.sleep(fault.seconds)
        with self.sqs_lock:
            self.cuts -= 1
            if self.cuts == 0:
                self.world.proxy.resume()
        return "back" if self.cuts == 0 else "back (another cut goes on)"

    def _sqs_latency(self, fault: Fault) -> str:
        delay = float(fault.target.rstrip("s"))
        with self.sqs_lock:
            self.delays.append(delay)
            self.world.proxy.delay = max(self.delays)
        time.sleep(fault.seconds)
        with self.sqs_lock:
            self.delays.remove(delay)
            self.world.proxy.delay = max(self.delays, default=0.0)
        return "back"

    # -- commands ------------------------------------------------------------------------

    def _cli(self, *args: str, pair: str = "std", retries: int = 6) -> int:
        """Run a command; retry while an overlapping fault (an outage) refuses it (exit 2)."""
        code = -1
        for _ in range(retries):
            code = run_cli(self.world, self.cli_log, *args, pair=pair)
            if code != 2:
                return code
            time.sleep(5)
        return code

    def _check(self, what: str, code: int) -> str:
        if code != 0:
            self.failures.append(f"{what} exited {code}")
        return f"exit {code}"

    def _migrate(self, fault: Fault) -> str:
        return self._check("migrate upgrade", self._cli("migrate", "upgrade"))

    def _retention(self, fault: Fault) -> str:
        args = ("retention", "apply", "--keep", "13mo", "--reason", REASON)
        return self._check("retention apply", self._cli(*args))

    def _replay_dlq(self, fault: Fault) -> str:
        args = ("replay-dlq", "--max", "40", "--envelope", "auto")
        return self._check(f"replay-dlq ({fault.target})", self._cli(*args, pair=fault.target))

    def _forget(self, fault: Fault) -> str:
        """Retire a user, wait until each of its valid messages has its row, then forget it.

        The wait (and a grace of two visibility timeouts) keeps a redelivery of a message
        loaded before the forget from bringing the user back: that is not what forget
        promises, and the soak would report it as ``erased-gone``.
        """
        user = self.producer.retire(random.Random(fault.target))
        keys = {s.keys[0] for s in self.ledger.snapshot() if s.valid and s.user_id == user}
        deadline = time.monotonic() + 300
        engine = create_engine(self.world.database_url, pool_pre_ping=True)
        try:
            while time.monotonic() < deadline:
                try:
                    with engine.connect() as conn:
                        have = set(
                            conn.execute(
                                text("SELECT idempotency_key FROM user_logins WHERE user_id = :u"),
                                {"u": user},
                            ).scalars()
                        )
                except Exception:
                    have = set()
                if keys <= have:
                    break
                time.sleep(2)
            else:
                return f"{user}: rows never all loaded, not forgotten"
        finally:
            engine.dispose()
        time.sleep(FORGET_GRACE)
        code = self._cli("forget", "--user-id", user, "--reason", REASON, "--no-queues")
        if code == 0:
            with self.ledger.lock:
                self.ledger.erased[user] = self.clock()
            self.forgets += 1
        return f"{user} ({len(keys)} rows): " + self._check("forget", code)

    def _unmask(self, fault: Fault) -> str:
        """Unmask one stored ip token; the plaintext is compared, never written anywhere."""
        engine = create_engine(self.world.database_url, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                token = conn.execute(
                    text(
                        "SELECT masked_ip FROM user_logins ORDER BY idempotency_key "
                        "OFFSET floor(:r * (SELECT count(*) FROM user_logins)) LIMIT 1"
                    ),
                    {"r": float(fault.target)},
                ).scalar()
        finally:
            engine.dispose()
        if token is None:
            return "no row yet"
        import subprocess

        from tests.conftest import LOGINETL

        done = subprocess.run(
            [LOGINETL, "unmask", str(token), "--reason", REASON],
            env=self.world.env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        with self.cli_log.open("a") as log:
            log.write(f"unmask exited {done.returncode} (its output is not kept)\n{done.stderr}")
        if done.returncode != 0:
            self.failures.append(f"unmask exited {done.returncode}")
            return f"exit {done.returncode}"
        self.unmasks += 1
        revealed = done.stdout.strip() in self.ledger.pii
        if not revealed:
            self.failures.append("unmask revealed a value the producer never sent")
        return "exit 0, the value sent" if revealed else "exit 0, NOT a value sent"


def wait_for_threads(injector: Injector, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while injector.busy():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


__all__ = ["KINDS", "Fault", "Injector", "Path", "schedule", "wait_for_threads"]
