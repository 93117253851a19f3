"""docs/cli.md is the Typer app's own help, regenerated: stale, it fails here."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from loginetl.cli import app

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from cli_reference import reference  # noqa: E402


def test_the_cli_reference_is_the_apps_own_help() -> None:
    checked_in = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert checked_in == reference(), "docs/cli.md is stale: run make docs"


def test_help_groups_the_commands_by_who_runs_them() -> None:
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"}).output
    for panel, first in (
        ("Pipeline", "consume"),
        ("Privacy staff", "unmask"),
        ("Schema", "migrate"),
        ("Maintenance", "retention"),
    ):
        after = shown[shown.index(f"─ {panel} ") :]
        assert after.split("\n")[1].split()[1] == first, after
