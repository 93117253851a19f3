"""Start-up: ``loginetl --help`` and friends beside ``alembic --help`` (issue 18, point 1).

Each command is a fresh process from the same virtualenv, run in turn (one round of
every command, five rounds), so a noisy moment on this shared machine hits them alike;
the figure is each command's best round. Alembic is the yardstick the issue names: a
CLI over SQLAlchemy whose ``--help`` the operator already knows.

Called from bench/run.py as ``startup()``; run alone: ``python bench/startup.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
# What the operator types, the loginetl ones first; the yardstick last.
COMMANDS: dict[str, list[str]] = {
    "loginetl --help": [str(BIN / "loginetl"), "--help"],
    "loginetl stats --help": [str(BIN / "loginetl"), "stats", "--help"],
    "loginetl --version": [str(BIN / "loginetl"), "--version"],
    "alembic --help": [str(BIN / "alembic"), "--help"],
}
YARDSTICK = "alembic --help"


def startup(rounds: int = 5, env: dict[str, str] | None = None) -> dict[str, float]:
    """Best-of-``rounds`` wall seconds of each command in ``COMMANDS``, run side by side."""
    env = dict(os.environ if env is None else env)
    env.setdefault("COLUMNS", "100")  # the same help layout whatever the terminal
    best = {name: float("inf") for name in COMMANDS}
    for _ in range(rounds):
        for name, argv in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: round(seconds, 3) for name, seconds in best.items()}


def startup_rows(figures: dict[str, float]) -> list[tuple[str, str, str, bool]]:
    """bench/run.py's checks() rows: each loginetl command beside the yardstick."""
    yardstick = figures[YARDSTICK]
    return [
        (
            f"{'start-up: ' if i == 0 else '  '}`{name}` vs `{YARDSTICK}` (best of 5)",
            f"{seconds:.3f} s vs {yardstick:.3f} s",
            f"<= {YARDSTICK}",
            seconds <= yardstick,
        )
        for i, (name, seconds) in enumerate((n, s) for n, s in figures.items() if n != YARDSTICK)
    ]


if __name__ == "__main__":
    for name, measured, target, met in startup_rows(startup()):
        print(f"{name:<58} {measured:<20} {target:<18} {'met' if met else 'NOT MET'}")
