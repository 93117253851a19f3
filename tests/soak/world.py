"""What the soak runs: its own PostgreSQL and LocalStack, a breakable SQS path, and the
loginetl processes it keeps alive (4 ``consume --follow``, 1 ``fold --follow``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from sqlalchemy.engine import make_url

from loginetl.services import db, keys, migrations
from loginetl.services.sqs import SqsService, make_client
from tests.conftest import LOGINETL
from tests.faults.conftest import PrivatePostgres, localstack_tool
from tests.faults.proxy import Proxy

VISIBILITY = 20  # seconds; the consumers' heartbeat extends it while a batch is held
# Far above what kills and redeliveries add, so SQS's own redrive (a valid message in the
# DLQ with no reason) never acts: loginetl, not the backstop, is under test.
MAX_RECEIVES = 1000
CONSUME_ARGS = ("consume", "--follow", "--json", "--envelope", "auto", "--statement-timeout", "3")


class World:
    """The soak's cluster, LocalStack, proxy, keys and queues; ``close`` removes them all."""

    def __init__(self, run_dir: Path, seed: int) -> None:
        self.run_dir = run_dir
        self.closers: list[Callable[[], None]] = []
        # Held by close and by whatever starts the cluster again (a pg-restart fault's
        # thread): once closed, nothing the soak started comes back.
        self.lock = threading.Lock()
        self.closed = False
        self.pg = PrivatePostgres()
        self.closers.append(self.pg.destroy)
        # fifo-order judges the order of commits, which only commit timestamps tell: two
        # transactions overlap, and the one that started (loaded_at) first may commit last.
        with (self.pg.data / "postgresql.conf").open("a") as conf:
            conf.write("track_commit_timestamp = on\n")
        self.pg.stop()
        self.pg.start()
        try:
            self._start(seed)
        except BaseException:  # a failed or interrupted start leaves nothing running
            self.close()
            raise

    def _start(self, seed: int) -> None:
        run_dir = self.run_dir
        self.url = make_url(self.pg.url).set(database=f"loginetl_soak_{seed}")
        self.database_url = self.url.render_as_string(hide_password=False)
        db.ensure_database(self.database_url)
        engine = db.make_engine(self.database_url, pool_size=1)
        migrations.upgrade(engine)
        engine.dispose()
        self.ls_port = localstack_tool.free_port()
        ls_pid = localstack_tool.start(self.ls_port, run_dir / "localstack", timeout=180)
        self.closers.append(lambda: localstack_tool.stop_pid(ls_pid))
        self.endpoint = f"http://127.0.0.1:{self.ls_port}"
        self.proxy = Proxy(self.ls_port)  # the loginetl processes' only way to SQS
        self.closers.append(self.proxy.pause)
        self.keys_dir = run_dir / "keys"
        keys.init_keys(self.keys_dir)
        self.sqs = SqsService(make_client(region="us-east-1", endpoint_url=self.endpoint))
        self.client: Any = boto3.client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        name = f"soak-{seed}"
        self.queues: dict[str, tuple[str, str]] = {
            "std": self.sqs.create_queues(
                name, f"{name}-dlq", max_receive_count=MAX_RECEIVES, visibility_timeout=VISIBILITY
            ),
            "fifo": self.sqs.create_queues(
                f"{name}.fifo",
                f"{name}-dlq.fifo",
                max_receive_count=MAX_RECEIVES,
                visibility_timeout=VISIBILITY,
            ),
        }
        self.names = {"std": (name, f"{name}-dlq"), "fifo": (f"{name}.fifo", f"{name}-dlq.fifo")}

    def env(self, pair: str = "std") -> dict[str, str]:
        """The environment of a loginetl process on ``pair``, through the proxy."""
        queue, dlq = self.names[pair]
        return {
            **os.environ,
            "LOGINETL_DATABASE_URL": self.database_url,
            "LOGINETL_QUEUE": queue,
            "LOGINETL_DLQ": dlq,
            "AWS_ENDPOINT_URL": self.proxy.url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "LOGINETL_KEYS_DIR": str(self.keys_dir),
        }

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for close in reversed(self.closers):
                with contextlib.suppress(Exception):
                    close()
            self.closers.clear()


@dataclass
class Slot:
    """One long-lived loginetl process the soak keeps running (restarted when it ends)."""

    name: str
    args: tuple[str, ...]
    pair: str
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    expected_end: str | None = None  # set by a kill: how this process is meant to end
    exits: list[tuple[float, int | None, str | None]] = field(default_factory=list)


class Supervisor:
    """Starts the slots, restarts any that ends, and samples the consumers' RSS."""

    def __init__(self, world: World, clock: Callable[[], float], note: Callable[..., None]):
        self.world = world
        self.clock = clock
        self.note = note
        self.logs = world.run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.slots = [
            Slot("consume-std-1", CONSUME_ARGS, "std"),
            Slot("consume-std-2", CONSUME_ARGS, "std"),
            Slot("consume-fifo-1", CONSUME_ARGS, "fifo"),
            Slot("consume-fifo-2", CONSUME_ARGS, "fifo"),
            Slot("fold", ("fold", "--follow", "--json", "--interval", "1"), "std"),
        ]
        self.rss: list[tuple[float, str, float, int]] = []  # (at, slot, age, kB)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)
        self.thread.start()

    def _spawn(self, slot: Slot) -> None:
        log = (self.logs / f"{slot.name}.log").open("ab")
        slot.process = subprocess.Popen(
            [LOGINETL, *slot.args],
            env=self.world.env(slot.pair),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches the soak only; it stops them
        )
        log.close()
        slot.started = self.clock()
        slot.expected_end = None

    def signal(self, name: str, signum: int) -> int | None:
        """Send ``signum`` to a slot's process; return its pid (None if it is between lives)."""
        with self.lock:
            slot = next(s for s in self.slots if s.name == name)
            if slot.process is None or slot.process.poll() is not None:
                return None
            slot.expected_end = signal.Signals(signum).name
            slot.process.send_signal(signum)
            return slot.process.pid

    def _loop(self) -> None:
        last_sample = 0.0
        while not self.stopping.wait(0.5):
            with self.lock:
                for slot in self.slots:
                    assert slot.process is not None
                    code = slot.process.poll()
                    if code is None:
                        continue
                    slot.exits.append((self.clock(), code, slot.expected_end))
                    if self.stopping.is_set():
                        return  # the soak is stopping: nothing starts again
                    if slot.expected_end is None or code not in (0, -9, -15):
                        self.note("exit", f"{slot.name} exited {code} on its own (restarted)")
                    self._spawn(slot)
            if time.monotonic() - last_sample >= 5:
                last_sample = time.monotonic()
                self._sample_rss()

    def _sample_rss(self) -> None:
        now = self.clock()
        for slot in self.slots:
            if not slot.name.startswith("consume") or slot.process is None:
                continue
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{slot.process.pid}/status").read_text()
                kb = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
                self.rss.append((now, slot.name, now - slot.started, kb))

    def all_running(self) -> bool:
        with self.lock:
            return all(s.process is not None and s.process.poll() is None for s in self.slots)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every slot (a graceful stop must exit 0), then SIGKILL what is left."""
        self.stopping.set()
        self.thread.join(timeout=10)
        codes: dict[str, int | None] = {}
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.process is None:
                continue
            try:
                codes[slot.name] = slot.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                slot.process.kill()
                codes[slot.name] = None
                slot.process.wait()
        return codes

    def kill_all(self) -> None:
        """The cleanup path: SIGKILL whatever is still running."""
        self.stopping.set()
        with self.lock:  # not while the loop restarts one
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is None:
                    with contextlib.suppress(OSError):
                        slot.process.kill()
                        slot.process.wait(timeout=10)


def run_cli(world: World, log: Path, *args: str, pair: str = "std", timeout: float = 180) -> int:
    """A one-off loginetl command, its output appended to ``log``; its exit code (-1: timeout)."""
    with log.open("ab") as out:
        try:
            return subprocess.run(
                [LOGINETL, *args],
                env=world.env(pair),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            return -1
