"""The canary: distinctive PII through the whole pipeline, then search everything produced.

Only unmask's stdout may contain a canary value. The DLQ *body* is the original message
and holds whatever the app sent; the attributes loginetl adds must not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.batch import ATTR_REASON
from loginetl.services import keys
from loginetl.services.sqs import OutboundMessage, SqsService

runner = CliRunner()
CANARY_IPS = ("203.0.113.77", "2001:db8:dead:beef::77")
CANARY_DEVICE = "CANARY-DEVICE-7f3a9"
CANARIES = (*CANARY_IPS, "2001:DB8:DEAD:BEEF:0:0:0:77", CANARY_DEVICE)


def body(ip: str, **extra: object) -> str:
    return json.dumps(
        {
            "user_id": "canary-user",
            "app_version": "3.1.4",
            "device_type": "ios",
            "ip": ip,
            "locale": "NL",
            "device_id": CANARY_DEVICE,
            **extra,
        }
    )


def test_no_canary_escapes_anywhere_but_unmask_stdout(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    login_role: Callable[[str], str],
    tmp_path: Path,
) -> None:
    outputs: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, list(args), env=env or cli_env)
        outputs.append(result.output)
        if result.exception is not None:  # --debug lets the traceback through
            outputs.append("".join(traceback.format_exception(result.exception)))
        return result

    bodies = [
        body(CANARY_IPS[0]),
        body("2001:DB8:DEAD:BEEF:0:0:0:77"),
        body(CANARY_IPS[0], app_version="not-a-version"),  # dead-lettered, canary in body
        body("999.0.113.77"),
    ]
    sqs.send(queues[0], [OutboundMessage(b) for b in bodies])
    run("peek", "--count", "10")
    run("--debug", "-v", "--log-format", "json", "consume", "--idle-exit", "1")
    run("peek", "--dlq", "--count", "10")
    run("peek", "--dlq", "--json")
    run("stats", "--top", "50")
    run("stats", "--json")
    run("replay-dlq", "--dry-run")
    run("-v", "replay-dlq")
    run("-v", "consume", "--idle-exit", "1")
    # Failures with tracebacks: a dead database under --debug.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    run(
        "--debug",
        "-v",
        "consume",
        env={**cli_env, "LOGINETL_DATABASE_URL": f"postgresql://x:pw@127.0.0.1:{dead_port}/d"},
    )
    run("--debug", "consume", env={**cli_env, "LOGINETL_KEYS_DIR": str(tmp_path)})

    attributes = []
    while batch := sqs.receive(queues[1], wait_seconds=1):
        attributes += [json.dumps(m.attributes) for m in batch]
        sqs.delete(queues[1], batch)
    assert any(ATTR_REASON in a for a in attributes)  # the DLQ path really ran

    url = make_url(settings.database_url)
    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            url.host or "",
            "-p",
            str(url.port),
            "-U",
            url.username or "",
            url.database or "",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    haystack = "\n".join([*outputs, dump, *attributes])
    assert [c for c in CANARIES if c.lower() in haystack.lower()] == []

    # The one place a canary may appear: unmask's stdout, and not its stderr.
    token = keys.load_masker(settings.keys_dir).token("ip", CANARY_IPS[0])
    unmasker = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    revealed = runner.invoke(
        app, ["unmask", token, "--reason", "INC-7 canary leak test"], env=unmasker
    )
    assert revealed.exit_code == 0, revealed.output
    assert revealed.stdout.strip() == CANARY_IPS[0]
    assert CANARY_IPS[0] not in revealed.stderr


def test_secrets_stay_out_of_help_errors_and_command_lines(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    secret = json.loads((tmp_path / keys.HMAC_FILE).read_text())["keys"]["k1"]
    private = (tmp_path / keys.PRIVATE_FILE).read_text()
    env = {
        "LOGINETL_DATABASE_URL": "postgresql://app:hunter2-secret@127.0.0.1:1/x",
        "LOGINETL_KEYS_DIR": str(tmp_path),
    }
    produced = []
    for args in (
        ["--help"],
        ["consume", "--help"],
        ["unmask", "--help"],
        ["keys", "init", "--help"],
        ["keys", "init", "--dir", str(tmp_path)],
        ["stats"],
        ["--debug", "stats"],
        ["migrate", "current"],
    ):
        result = runner.invoke(app, args, env=env)
        produced.append(result.output + repr(result.exception))
    text = "\n".join(produced)
    assert "hunter2-secret" not in text
    assert secret not in text
    assert private.splitlines()[1] not in text


def test_the_lambda_at_debug_logs_no_canary(
    settings: Settings, sqs: SqsService, queues: tuple[str, str]
) -> None:
    """The handler under Lambda's runtime at log level DEBUG (root logger at DEBUG, as
    AWS_LAMBDA_LOG_LEVEL=DEBUG sets it), a canary loaded and one dead-lettered."""
    from tests.conftest import env_for
    from tests.e2e.test_lambda import Mapping

    sqs.send(
        queues[0],
        [
            OutboundMessage(body(CANARY_IPS[1])),
            OutboundMessage(body(CANARY_IPS[0], app_version="x")),
        ],
    )
    records = Mapping(sqs, queues[0]).poll()
    assert len(records) == 2
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, logging, sys\n"
            "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
            "logging.getLogger('probe').debug('at debug')\n"
            "from loginetl.lambda_handler import handler\n"
            "print(json.dumps(handler(json.load(sys.stdin))))\n",
        ],
        input=json.dumps({"Records": records}),
        env={**os.environ, **env_for(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"batchItemFailures": []}
    assert "DEBUG:probe:at debug" in child.stderr  # it really ran at DEBUG
    dead = sqs.receive(queues[1], wait_seconds=2)
    assert [m.attributes.get(ATTR_REASON) for m in dead] == ["invalid_app_version"]
    haystack = child.stdout + child.stderr
    assert [c for c in CANARIES if c.lower() in haystack.lower()] == []
