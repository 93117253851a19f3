"""deploy/iam/*.json grant each command every SQS call it makes, and nothing it does not.

The calls are recorded, not listed by hand: botocore's before-parameter-build event on every client
loginetl builds, while the real commands run against LocalStack. A static scan of
services/sqs.py then proves the recording saw every call the code can make.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.services import sqs as sqs_module
from tests.conftest import env_for

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "deploy" / "iam"
ARN = "arn:aws:sqs:eu-west-1:123456789012:{}"  # the policies' placeholders
QUEUE, DLQ = "login-queue", "login-queue-dlq"  # the default names the policies use

# An SQS API operation -> the IAM actions it needs, on (queue role, action). A batch call is
# authorized by its single-message action. StartMessageMoveTask also needs, on the source,
# what SQS does on the caller's behalf, and SendMessage on the destination (AWS's SQS guide).
Call = tuple[str, str]  # (IAM action, queue name)


def _needs(operation: str, params: dict[str, Any]) -> list[Call]:
    name = _queue_of(params)
    single = {
        "DeleteMessageBatch": "DeleteMessage",
        "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
        "SendMessageBatch": "SendMessage",
    }
    if operation == "StartMessageMoveTask":
        source, destination = _name(params["SourceArn"]), _name(params["DestinationArn"])
        on_source = ["StartMessageMoveTask", "ReceiveMessage", "DeleteMessage"]
        return [(f"sqs:{a}", source) for a in [*on_source, "GetQueueAttributes"]] + [
            ("sqs:SendMessage", destination)
        ]
    return [(f"sqs:{single.get(operation, operation)}", name)]


def _name(url_or_arn: str) -> str:
    return re.split(r"[/:]", url_or_arn)[-1]


def _queue_of(params: dict[str, Any]) -> str:
    for key in ("QueueName", "QueueUrl", "SourceArn"):
        if key in params:
            return _name(params[key])
    raise AssertionError(f"no queue in {sorted(params)}")


def _allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"  # no Deny to reason about
        actions = _list(statement["Action"])
        resources = _list(statement["Resource"])
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources
        ):
            return True
    return False


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _grants(policy: dict[str, Any]) -> set[Call]:
    return {
        (action, resource.rsplit(":", 1)[-1])
        for statement in policy["Statement"]
        for action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
    }


def _policy(role: str) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads((POLICIES / f"{role}.json").read_text())
    return policy


class Recorder:
    """Every SQS operation each command makes, with the calls' parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    make_client = sqs_module.make_client

    def recording_client(**kwargs: Any) -> Any:
        client = make_client(**kwargs)
        client.meta.events.register("before-parameter-build.sqs", recorder)
        return client

    monkeypatch.setattr(sqs_module, "make_client", recording_client)
    return recorder


def _static_operations() -> set[str]:
    """Every client method services/sqs.py calls, as SQS operation names."""
    source = (ROOT / "loginetl" / "services" / "sqs.py").read_text()
    methods = set(re.findall(r"self\.client\.(\w+)\(", source))
    client = sqs_module.make_client(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    mapping: dict[str, str] = client.meta.method_to_api_mapping
    return {mapping[m] for m in methods}


def test_each_command_is_granted_every_sqs_call_it_makes_and_no_more(
    settings: Settings, recorder: Recorder, tmp_path: Path
) -> None:
    env = env_for(settings)
    runner = CliRunner()
    names = {settings.queue_name: QUEUE, settings.dlq_name: DLQ}
    # Ten 120 kB messages make a batch over 1 MiB (SQS and LocalStack): send goes one at a time.
    big = tmp_path / "big.json"
    big.write_text(json.dumps([{"user_id": f"u{i}", "pad": "x" * 120_000} for i in range(10)]))
    # (command, roles whose policies the process runs with; a call counts as used by the
    # first role that grants it, so admin.json must add only what consumer.json lacks)
    runs: list[tuple[list[str], tuple[str, ...]]] = [
        (["seed", "--from-file", str(big), "--create-queues"], ("admin",)),
        (["consume", "--create-queues", "--idle-exit", "1"], ("consumer", "admin")),
        (["seed", "--count", "40", "--malformed-share", "0.1"], ("admin",)),
        (["consume", "--idle-exit", "1"], ("consumer",)),
        (["stats"], ("operator",)),
        (["seed", "--count", "10"], ("admin",)),
        (["peek", "--count", "3"], ("operator",)),
        (["peek", "--dlq", "--count", "3"], ("operator",)),
        (["replay-dlq", "--reason", "missing_field", "--max", "2"], ("operator",)),
        (["replay-dlq", "--native"], ("operator",)),
    ]
    used: dict[str, set[Call]] = {}
    seen: set[str] = set()
    missing: list[str] = []

    def run(args: list[str], roles: tuple[str, ...], *, ok: bool = True) -> None:
        result = runner.invoke(app, args, env=env)
        assert (result.exit_code == 0) is ok, (args, result.output)
        for operation, params in recorder.take():
            seen.add(operation)
            for action, queue in _needs(operation, params):
                queue = names[queue]
                allowed = [r for r in roles if _allows(_policy(r), action, ARN.format(queue))]
                if not allowed:
                    missing.append(f"{' '.join(args[:2])}: {action} on {queue} ({operation})")
                for role in allowed[:1]:
                    used.setdefault(role, set()).add((action, queue))

    for args, roles in runs:
        run(args, roles)
    # A batch the database rejects is released (ChangeMessageVisibility to 0) before consume
    # stops: the table is renamed away for one run.
    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE user_logins RENAME TO user_logins_away"))
        run(["consume", "--idle-exit", "1"], ("consumer",), ok=False)
    finally:
        engine.dispose()
    assert missing == [], "calls the policies do not grant"
    assert seen == _static_operations(), "the runs above must make every call sqs.py can make"
    for role in ("admin", "consumer", "operator"):
        unused = _grants(_policy(role)) - used.get(role, set())
        assert unused == set(), f"{role}.json grants what no command of that role uses"


def test_the_static_scan_finds_the_calls() -> None:
    operations = _static_operations()
    assert {"ReceiveMessage", "DeleteMessageBatch", "StartMessageMoveTask"} <= operations
    assert len(operations) == 10  # no SetQueueAttributes: --create-queues never reconfigures
