#!/usr/bin/env python3
"""Start, check and stop a host-run LocalStack (SQS, SNS, EventBridge) without Docker.

Used by the Makefile and by the test fixtures, so both run the endpoint the same way.
Standard library only: it runs under the project's Python and starts LocalStack under
its own Python 3.12+ virtualenv (``.localstack-venv``).

  python tools/localstack.py start [--port 4566] [--state-dir .run/localstack]
  python tools/localstack.py stop  [--state-dir .run/localstack]
  python tools/localstack.py status [--port 4566]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".localstack-venv" / "bin" / "python"
# SNS and EventBridge for the envelope tests (a topic subscribed to a queue, a rule with a
# queue or a topic as its target): real deliveries, not hand-built envelopes. SNS is native;
# EventBridge needs moto-ext and crontab in the pinned set.
SERVICES = ("sqs", "sns", "events")


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_ready(port: int) -> bool:
    """True once LocalStack's health endpoint reports every service available or running."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/_localstack/health", timeout=2
        ) as response:
            services = json.load(response).get("services", {})
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return all(services.get(name) in ("available", "running") for name in SERVICES)


def start(port: int, state_dir: Path, timeout: float = 60.0) -> int:
    """Start LocalStack on 127.0.0.1:port; return its pid once it is ready."""
    if not VENV_PYTHON.exists():
        raise SystemExit(
            f"LocalStack is not installed ({VENV_PYTHON} missing); run: make localstack-venv"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SERVICES": ",".join(SERVICES),
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",
        "PERSISTENCE": "0",
        "DNS_ADDRESS": "0",
        "OVERRIDE_IN_DOCKER": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "SQS_ENDPOINT_STRATEGY": "path",
        "FILESYSTEM_ROOT": str(state_dir / "fs"),
    }
    for inherited in ("VIRTUAL_ENV", "PYENV_VERSION"):
        env.pop(inherited, None)
    # Its sitecustomize keeps a FIFO group closed while any of it is in flight, as AWS does.
    env["PYTHONPATH"] = str(ROOT / "tools" / "localstack_site")
    log = (state_dir / "localstack.log").open("ab")
    process = subprocess.Popen(
        [str(VENV_PYTHON), "-m", "localstack.runtime.main"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the caller's terminal does not reach it
    )
    (state_dir / "localstack.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"LocalStack exited with code {process.returncode}; see {state_dir}/localstack.log"
            )
        if is_ready(port):
            return process.pid
        time.sleep(0.25)
    stop_pid(process.pid)
    raise SystemExit(f"LocalStack was not ready in {timeout:.0f}s; see {state_dir}/localstack.log")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".run" / "localstack")
    args = parser.parse_args()
    pid_file = args.state_dir / "localstack.pid"
    if args.action == "status":
        print("ready" if is_ready(args.port) else "not running")
        sys.exit(0 if is_ready(args.port) else 1)
    if args.action == "start":
        if is_ready(args.port):
            print(f"LocalStack already answering on 127.0.0.1:{args.port}")
            return
        started = time.monotonic()
        pid = start(args.port, args.state_dir)
        print(
            f"LocalStack (SQS, SNS, EventBridge) ready on http://127.0.0.1:{args.port} "
            f"(pid {pid}, {time.monotonic() - started:.1f}s)"
        )
        return
    if not pid_file.exists():
        print("LocalStack: no pid file; nothing to stop")
        return
    stop_pid(int(pid_file.read_text()))
    pid_file.unlink()
    print("LocalStack stopped")


if __name__ == "__main__":
    main()
