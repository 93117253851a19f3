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


def met(figures: dict[str, float]) -> bool:
    """True if no loginetl command starts slower than the yardstick."""
    return all(s <= figures[YARDSTICK] for name, s in figures.items() if name != YARDSTICK)


if __name__ == "__main__":
    figures = startup()
    for name, seconds in figures.items():
        print(f"{name:<24} {seconds:.3f} s")
    print(f"every loginetl command <= {YARDSTICK}: {'met' if met(figures) else 'NOT MET'}")
