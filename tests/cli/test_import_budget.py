"""Start-up stays cheap: --help and --version load no database, AWS or crypto library.

Issue 18: every command used to import SQLAlchemy, boto3, Alembic, cryptography and
prometheus_client at start (~0.37 s), --help included. Each check runs in a fresh
interpreter, since this test process has long since imported all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

# Slow to import, and needed only by commands that reach a service or a key.
HEAVY = (
    "boto3",
    "botocore",
    "sqlalchemy",
    "psycopg2",
    "cryptography",
    "prometheus_client",
    "alembic",
)

# Runs in a fresh interpreter: import the app, then render every --help and --version
# in turn (the real Typer app, in-process); reports what each run newly loaded.
_PROBE = """
import json, sys
heavy = json.loads(sys.argv[1])
def loaded():
    return sorted(m for m in heavy if m in sys.modules)
from loginetl.cli.app import app
from typer.main import get_command
from typer.testing import CliRunner
report = {"import loginetl.cli.app": {"exit_code": 0, "output": "", "loaded": loaded()}}
def paths(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, [*prefix, name])
runs = [[*path, "--help"] for path in paths(get_command(app), [])]
runs.append(["--version"])
for args in runs:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    report[" ".join(args)] = {
        "exit_code": result.exit_code, "output": result.output, "loaded": loaded()
    }
print(json.dumps(report))
"""


def _probe(**env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    # A database URL SQLAlchemy would reject: --help must not even parse it.
    return _probe(LOGINETL_DATABASE_URL="mysql://nobody@nowhere/x")


def test_every_help_and_version_renders(probe: dict[str, Any]) -> None:
    runs = {args: run for args, run in probe.items() if args != "import loginetl.cli.app"}
    # Every command and group, walked from the app: a new command is covered on its own.
    for expected in ("--help", "stats --help", "audit list --help", "keys rederive --help"):
        assert expected in runs
    assert len(runs) >= 20, sorted(runs)
    for args, run in runs.items():
        assert run["exit_code"] == 0, (args, run["output"])
        assert "Traceback" not in run["output"], args
    assert runs["--version"]["output"].startswith("loginetl ")
    assert "Usage: loginetl stats" in runs["stats --help"]["output"]
    assert "Example: loginetl stats" in runs["stats --help"]["output"]


def test_import_and_help_load_no_heavy_library(probe: dict[str, Any]) -> None:
    """Each run reports what was loaded after it, so the first offender is named."""
    offenders = [(args, run["loaded"]) for args, run in probe.items() if run["loaded"]]
    assert offenders == [], f"first loaded by `{offenders[0][0]}`: {offenders[0][1]}"


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        # stats --no-queues: boto3 only when queue_stats runs; nothing seals or opens.
        ("loginetl.actions.stats", ("boto3", "botocore", "cryptography", "prometheus_client")),
        ("loginetl.actions.seed", ("sqlalchemy", "psycopg2", "alembic", "cryptography")),
        ("loginetl.actions.unmask", ("boto3", "botocore", "prometheus_client")),
        ("loginetl.actions.audit", ("boto3", "botocore", "alembic", "prometheus_client")),
        ("loginetl.actions.migrate", ("boto3", "botocore", "cryptography", "prometheus_client")),
        ("loginetl.actions.peek", ("sqlalchemy", "psycopg2", "alembic", "prometheus_client")),
        ("loginetl.actions.replay", ("sqlalchemy", "psycopg2", "alembic", "prometheus_client")),
        # consume serves /metrics only with --metrics-port.
        ("loginetl.actions.consume", ("prometheus_client",)),
        ("loginetl.config", HEAVY),
    ],
)
def test_each_action_imports_only_what_it_uses(module: str, must_not_load: tuple[str, ...]) -> None:
    code = (
        f"import sys, {module}; "
        f"print(' '.join(m for m in {list(must_not_load)!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == [], f"import {module} loaded {result.stdout.strip()}"


def test_stats_without_queues_never_loads_boto3(database_url: str) -> None:
    """The real command on a real database: the SQS client is not even imported."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from loginetl.cli import app\n"
        "result = CliRunner().invoke(app, ['stats', '--no-queues', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '\"rows\": 0' in result.output, result.output\n"
        "print(' '.join(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "LOGINETL_DATABASE_URL": database_url},
    )
    assert result.stdout.split() == []
