"""The package as pip builds it: its package list, its migrations and its version."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

from loginetl import __version__
from loginetl.cli import app
from loginetl.services import migrations

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_under_loginetl_is_listed_for_the_wheel() -> None:
    """pyproject.toml lists packages by hand (for the migrations mapping): miss none."""
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "loginetl").rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == on_disk | {"loginetl._migrations"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"loginetl._migrations": "migrations"}


def test_migrations_are_found_by_package_and_every_revision_file_counts() -> None:
    """Alembic resolves the package:path location to the one migrations/ tree."""
    scripts = migrations._scripts()
    assert Path(scripts.dir).resolve() == (ROOT / "migrations").resolve()
    files = list((ROOT / "migrations" / "versions").glob("*.py"))
    assert len({r.revision for r in migrations.history()}) == len(files) >= 1
    # The cheap head read (no Alembic import, used by stats) agrees with Alembic's.
    assert migrations.heads() == tuple(sorted(scripts.get_heads()))


def test_version_comes_from_the_installed_metadata() -> None:
    assert __version__ == version("loginetl") == PYPROJECT["project"]["version"]
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"loginetl {__version__}\n"


def test_shell_completion_is_offered_and_completes_subcommands() -> None:
    script = str(Path(sys.executable).parent / "loginetl")
    shown = subprocess.run(
        [script, "--show-completion", "bash"], capture_output=True, text=True, check=True
    )
    assert "complete -o default -F _loginetl_completion loginetl" in shown.stdout
    completed = subprocess.run(
        [script],
        env={
            **os.environ,
            "_LOGINETL_COMPLETE": "complete_bash",
            "COMP_WORDS": "loginetl migrate up",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split() == ["upgrade"]
