"""Bad flags and unreachable services: one clear sentence, a meaningful exit code, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.services import db, migrations

runner = CliRunner()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["consume", "--max", "0"], "--max"),
        (["consume", "--workers", "100"], "--workers"),
        (["consume", "--follow", "--idle-exit", "3"], "--idle-exit does nothing with --follow"),
        (["consume", "--bogus"], "--bogus"),
        (["seed", "--malformed-share", "2"], "--malformed-share"),
    ],
)
def test_bad_flags_say_what_is_wrong(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args, env={"LOGINETL_KEYS_DIR": "/nonexistent"})
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


def test_invalid_setting_fails_at_start() -> None:
    result = runner.invoke(app, ["stats"], env={"LOGINETL_DATABASE_URL": "mysql://x@y/z"})
    assert result.exit_code == 2
    assert "must point at PostgreSQL" in result.output


def test_invalid_setting_fails_before_a_prompt() -> None:
    """Settings are built when a command first asks (start-up, issue 18): before any question."""
    result = runner.invoke(
        app,
        ["migrate", "downgrade", "base"],
        env={"LOGINETL_DATABASE_URL": "mysql://x@y/z"},
        input="y\n",
    )
    assert result.exit_code == 2
    assert "must point at PostgreSQL" in result.output
    assert "Downgrade to" not in result.output


def test_missing_keys_are_one_sentence_and_exit_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["consume"], env={**cli_env, "LOGINETL_KEYS_DIR": str(tmp_path)})
    assert result.exit_code == 2
    assert "loginetl keys init" in result.output
    assert "Traceback" not in result.output


def test_unreachable_sqs_is_exit_2(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_dead_port()}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    result = runner.invoke(app, ["consume"], env=env)
    assert result.exit_code == 2
    assert "cannot reach the SQS endpoint" in result.output
    assert "Traceback" not in result.output


def test_unreachable_database_is_exit_2_without_password(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "LOGINETL_DATABASE_URL": f"postgresql://app:s3cret@127.0.0.1:{_dead_port()}/x",
    }
    result = runner.invoke(app, ["consume"], env=env)
    assert result.exit_code == 2
    assert "unreachable" in result.output
    assert "s3cret" not in result.output


def test_consume_refuses_a_schema_behind_head(cli_env: dict[str, str], database_url: str) -> None:
    engine = db.make_engine(database_url)
    with engine.begin() as conn:  # as if nobody had migrated it yet
        conn.execute(text("DELETE FROM alembic_version"))
    engine.dispose()
    result = runner.invoke(app, ["consume"], env=cli_env)
    assert result.exit_code == 2
    assert "run: loginetl migrate upgrade" in result.output


def test_migrate_creates_and_reports(empty_database_url: str, tmp_path: Path) -> None:
    env = {"LOGINETL_DATABASE_URL": empty_database_url, "LOGINETL_KEYS_DIR": str(tmp_path)}
    behind = runner.invoke(app, ["migrate", "check"], env=env)
    assert behind.exit_code == 2  # the database does not exist yet
    up = runner.invoke(app, ["migrate", "upgrade"], env=env)
    assert up.exit_code == 0, up.output
    assert "created database" in up.output
    assert "(head)" in up.output
    assert runner.invoke(app, ["migrate", "check"], env=env).exit_code == 0
    down = runner.invoke(app, ["migrate", "downgrade", "base"], env=env)
    assert down.exit_code == 1  # no --yes and no terminal to confirm on
    assert "Downgrade to base?" in down.output
    below = runner.invoke(app, ["migrate", "downgrade", "base", "--yes"], env=env)
    assert below.exit_code == 1
    assert "1.0 is the first revision" in below.output
    assert runner.invoke(app, ["migrate", "check"], env=env).exit_code == 0
    history = runner.invoke(app, ["migrate", "history"], env=env)
    assert "1.0 (head)" in history.output


def test_keys_init_cli(tmp_path: Path) -> None:
    first = runner.invoke(app, ["keys", "init", "--dir", str(tmp_path / "k")])
    assert first.exit_code == 0
    assert "vault-private.pem" in first.output
    again = runner.invoke(app, ["keys", "init", "--dir", str(tmp_path / "k")])
    assert "already present" in again.output


def test_help_shows_an_example_and_no_secret_defaults() -> None:
    result = runner.invoke(
        app, ["consume", "--help"], env={"LOGINETL_DATABASE_URL": "postgresql://a:s3cret@h/d"}
    )
    assert result.exit_code == 0
    assert "loginetl consume --max 1000" in result.output
    assert "s3cret" not in result.output


def test_a_second_migrate_is_one_sentence_and_exit_1(database_url: str, tmp_path: Path) -> None:
    """Another `migrate` holds the database's migrate lock: say so, do not wait or trace."""
    env = {"LOGINETL_DATABASE_URL": database_url, "LOGINETL_KEYS_DIR": str(tmp_path)}
    engine = db.make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as other:  # another migrate, in the middle of its run
            other.execute(text(migrations.MIGRATE_LOCK))
            pid = other.execute(text("SELECT pg_catalog.pg_backend_pid()")).scalar_one()
            login = other.execute(text("SELECT session_user")).scalar_one()
            result = runner.invoke(app, ["migrate", "upgrade"], env=env)
            other.rollback()
    finally:
        engine.dispose()
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    holder = f" (held by {login}, backend pid {pid})"  # nothing the holder sets itself
    assert said == "error: " + migrations.MIGRATE_RUNNING.replace(";", f"{holder};", 1)
