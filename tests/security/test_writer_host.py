"""What a compromised consumer host holds: only the current HMAC key and the public key,
and no traceback (which may quote data) unless the operator asked for one with --debug."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from loginetl.actions import consume as consume_action
from loginetl.actions.seed import send_bodies
from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.demo import generate_bodies
from loginetl.services import keys
from loginetl.services.sqs import SqsService

EXCESS_WARNING = "holds more than consume needs"


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def secrets_in(directory: Path) -> list[str]:
    """Every HMAC key (base64) and the private key's PEM body lines, to search output for."""
    document = json.loads((directory / keys.HMAC_FILE).read_text())
    pem = (directory / keys.PRIVATE_FILE).read_text().splitlines()
    return [*document["keys"].values(), *(line for line in pem if "-----" not in line)]


def test_export_consumer_writes_only_the_current_key_and_the_public_key(
    keys_dir: Path, tmp_path: Path
) -> None:
    keys.rotate_keyring(keys_dir, keys.HMAC_FILE)  # k1 -> k2: k1 must not travel
    target = tmp_path / "consumer"
    result = run(
        {"LOGINETL_KEYS_DIR": str(keys_dir)}, "keys", "export-consumer", "--to", str(target)
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == sorted(keys.CONSUMER_FILES)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    for path in target.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    exported = json.loads((target / keys.HMAC_FILE).read_text())
    assert exported["current"] == "k2"
    assert set(exported["keys"]) == {"k2"}
    assert keys.load_masker(target) == keys.load_masker(keys_dir)
    assert (target / keys.PUBLIC_FILE).read_bytes() == (keys_dir / keys.PUBLIC_FILE).read_bytes()
    assert keys.excess_for_consumer(target) == ()
    assert not any(secret in result.output for secret in secrets_in(keys_dir))


@pytest.mark.parametrize("already_there", [keys.HMAC_FILE, keys.PRIVATE_FILE])
def test_export_consumer_refuses_to_overwrite(
    keys_dir: Path, tmp_path: Path, already_there: str
) -> None:
    target = tmp_path / "consumer"
    target.mkdir()
    (target / already_there).write_text("keep me")
    result = run(
        {"LOGINETL_KEYS_DIR": str(keys_dir)}, "keys", "export-consumer", "--to", str(target)
    )
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.stderr
    assert [p.name for p in target.iterdir()] == [already_there]
    assert (target / already_there).read_text() == "keep me"


def test_rotate_tells_the_operator_to_re_export(keys_dir: Path) -> None:
    result = run({"LOGINETL_KEYS_DIR": str(keys_dir)}, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert "loginetl keys export-consumer --to DIR" in result.stdout


def test_consume_warns_when_its_keys_dir_holds_more_than_it_needs(
    cli_env: dict[str, str], settings: Settings, queues: tuple[str, str], tmp_path: Path
) -> None:
    keys.rotate_keyring(settings.keys_dir, keys.HMAC_FILE)
    (settings.keys_dir / "some-signing-private.pem").write_text("not for consumers")
    full = run(cli_env, "consume", "--idle-exit", "1", "--json")
    assert full.exit_code == 0, full.output
    assert EXCESS_WARNING in full.stderr
    assert f"the vault private key ({keys.PRIVATE_FILE})" in full.stderr
    assert "1 HMAC key(s) other than the current one" in full.stderr
    # keys init also made the attribute keys (which consume needs) and the audit-signing
    # pair (which it does not): the warning names the latter with the planted file.
    assert "other files (audit-signing-private.pem, audit-signing-public.pem, " in full.stderr
    assert "some-signing-private.pem)" in full.stderr
    assert not any(secret in full.output for secret in secrets_in(settings.keys_dir))

    consumer = tmp_path / "consumer"
    keys.export_consumer_keys(settings.keys_dir, consumer)
    lean = run({**cli_env, "LOGINETL_KEYS_DIR": str(consumer)}, "consume", "--idle-exit", "1")
    assert lean.exit_code == 0, lean.output
    assert EXCESS_WARNING not in lean.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_worker_error_shows_a_traceback_only_with_debug(
    cli_env: dict[str, str],
    queues: tuple[str, str],
    sqs: SqsService,
    monkeypatch: pytest.MonkeyPatch,
    debug: bool,
) -> None:
    """A bug in the worker (simulated: nothing real raises there on demand) whose message
    quotes data: the operator sees its type, the traceback and message only with --debug."""
    canary = "canary-" + base64.b32encode(b"10.9.8.7").decode()

    def broken(self: consume_action.Consumer, messages: object, received_at: float) -> None:
        raise RuntimeError(f"bug while handling {canary}")

    monkeypatch.setattr(consume_action.Consumer, "_handle", broken)
    assert send_bodies(sqs, queues[0], list(generate_bodies(1, seed=3, malformed_share=0))) == (
        1,
        0,
    )
    flags = ["--debug"] if debug else []
    result = run(cli_env, *flags, "consume", "--idle-exit", "1", "--workers", "1")
    assert result.exit_code == 1
    assert "consume worker failed unexpectedly (RuntimeError)" in result.stderr
    assert ("Traceback" in result.stderr) is debug
    assert (canary in result.stderr) is debug
