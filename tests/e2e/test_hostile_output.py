"""Hostile text in a real database and a real DLQ, printed by the real commands.

A producer controls device_type, locale and device_id (sent as JSON escapes, so ESC
survives SQS), whatever sets a DLQ attribute controls the reason, and an operator's
environment and reason end up in the audit log. Every command must still exit 0 and
show that text escaped, never as markup or as raw control characters.
"""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from collections.abc import Callable

from sqlalchemy import create_engine, text

from loginetl.config import Settings
from loginetl.core.batch import ATTR_REASON
from loginetl.services import keys
from loginetl.services.sqs import OutboundMessage, SqsService
from tests.conftest import LOGINETL
from tests.e2e.conftest import consume_json

# JSON escapes in the body: json.loads turns them into ESC, OSC 8, CSI, bidi overrides.
DEVICE_TYPE = "[/x]\u001b]8;;http://e\u001b\\\u202e"  # 20 characters (limit 32)
LOCALE = "[bold]\u001b[2J\u2066fr"  # 13 characters (limit 32)
DEVICE_ID = "dev\n\tforged\u202e"
APP_VERSION_RAW = "[/x]\u001b[31m\u202e"  # only a row written outside consume can hold it
# SQS refuses ESC in attributes, but takes 8-bit CSI, bidi, newlines and markup.
DLQ_REASON = "[/x][bold]\u009b31m\u202e\n\tforged"
REASON = "INC-4211 [/x] \u001b]8;;http://evil\u001b\\ review\u202e"
OS_USER = "[bold]\u001b[31mroot"


def hostile_chars(output: str) -> list[str]:
    """Raw characters that would act on the terminal (the layout's own newlines aside)."""
    return [
        c for c in output if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
    ]


def loginetl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it, with a wide terminal so nothing wraps."""
    return subprocess.run(
        [LOGINETL, *args],
        env={**os.environ, **env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_command_prints_hostile_data_inert(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    login_role: Callable[[str], str],
) -> None:
    body = {
        "user_id": "[bold]u\u001b[1A",
        "app_version": "1.2.3",
        "device_type": DEVICE_TYPE,
        "ip": "10.9.8.7",
        "locale": LOCALE,
        "device_id": DEVICE_ID,
    }
    assert sqs.send(queues[0], [OutboundMessage(json.dumps(body))]) == []
    assert consume_json(cli_env)["loaded"] == 1
    folded = subprocess.run(  # the fold worker's part
        [LOGINETL, "fold"], env={**os.environ, **cli_env}, capture_output=True, check=False
    )
    assert folded.returncode == 0, folded.stderr
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:  # our own test database: a row an older writer could leave
        conn.execute(text("UPDATE user_logins SET app_version_raw = :v"), {"v": APP_VERSION_RAW})
        # stats reads the breakdown from its rollup: keep it equal to the table
        conn.execute(
            text("UPDATE rollup_breakdown SET value = :v WHERE dimension = 'app_version'"),
            {"v": APP_VERSION_RAW},
        )
    engine.dispose()
    hostile_body = json.dumps({**body, "user_id": "in the dlq"})
    reason = {ATTR_REASON: DLQ_REASON}
    assert sqs.send(queues[1], [OutboundMessage(hostile_body, reason)]) == []

    token = keys.load_masker(settings.keys_dir).token("device_id", DEVICE_ID)
    unmasker = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        unmasker[name] = OS_USER  # getpass.getuser() reads these first
    revealed = loginetl(unmasker, "unmask", token, "--reason", REASON)
    assert revealed.returncode == 0, revealed.stderr
    assert revealed.stdout == "dev\\n\\tforged\\u202e\n"  # one line, escaped, reversible
    as_json = loginetl(unmasker, "unmask", token, "--reason", REASON, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["value"] == DEVICE_ID  # exact for machines

    commands = {
        "stats": (["stats"], ["[/x]\\x1b]8;;http://e\\x1b\\\\u202e", "[bold]\\x1b[2J\\u2066fr"]),
        "stats app_version": (["stats"], ["[/x]\\x1b[31m\\u202e"]),
        "stats dlq reasons": (["stats"], ["[/x][bold]\\x9b31m\\u202e\\n\\tforged 1"]),
        "peek --dlq": (
            ["peek", "--dlq"],
            ["DLQ reason (unverified): [/x][bold]\\x9b31m\\u202e\\n\\tforged"],
        ),
        "peek row": (["peek", "--dlq"], ["device_type [/x]\\x1b]8;;http://e\\x1b\\\\u202e"]),
        "replay-dlq --dry-run": (
            ["replay-dlq", "--dry-run"],
            ["[/x][bold]\\x9b31m\\u202e\\n\\tforged"],
        ),
        "audit list": (
            ["audit", "list"],
            ["INC-4211 [/x] \\x1b]8;;http://evil\\x1b\\ review\\u202e", "[bold]\\x1b[31mroot"],
        ),
    }
    for name, (args, shown) in commands.items():
        result = loginetl(cli_env, *args)
        assert result.returncode == 0, (name, result.stderr)
        output = result.stdout + result.stderr
        assert hostile_chars(output) == [], (name, output)
        for escaped in shown:
            assert escaped in result.stdout, (name, escaped, result.stdout)
    assert sqs.depth(queues[1]).visible == 1  # the dry run and the peeks moved nothing
