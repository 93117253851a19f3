"""Hostile bodies end to end: each lands in exactly one place and none crashes the consumer."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.batch import ATTR_REASON
from loginetl.services.sqs import SqsService
from tests.e2e.conftest import drain

runner = CliRunner()
GOOD = {
    "user_id": "u",
    "app_version": "1.2.3",
    "device_type": "ios",
    "ip": "10.1.2.3",
    "locale": "FR",
    "device_id": "111-22-3333",
}


def variant(tag: str, **fields: object) -> str:
    return json.dumps({**GOOD, "user_id": f"hostile-{tag}", **fields})


def corpus() -> dict[str, tuple[str, str | None]]:
    """name -> (body, expected reason; None means it must load)."""
    cases: dict[str, tuple[str, str | None]] = {
        "nul in a field": (variant("nul", device_id="a\u0000b"), "invalid_text"),
        "lone surrogate": (variant("sur", user_id="\ud800"), "invalid_text"),
        "bom then json": ("\ufeff" + variant("bom"), None),
        "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "invalid_json"),
        "huge integer": ('{"user_id": ' + "9" * 5000 + "}", "invalid_json"),
        "huge float": (variant("float", app_version=1e308), "wrong_type"),
        "infinity literal": ('{"user_id": Infinity}', "wrong_type"),
        "duplicate keys": ('{"user_id": "a", "user_id": "b", "ip": "1.2.3.4"}', "duplicate_key"),
        "sql in user_id": (variant("sql'); DROP TABLE user_logins; --"), None),
        "sql in ip": (variant("sqlip", ip="1.2.3.4'; DROP TABLE pii_vault; --"), "invalid_ip"),
        "terminal escapes": (variant("esc", device_type="\u001b[2J\u001b]0;x\u0007"), None),
        "near the size limit": (variant("big", locale="x" * 200_000), "too_long"),
        "whitespace body": ("   \n ", "invalid_json"),
        "json null": ("null", "not_an_object"),
    }
    for field in ("user_id", "app_version", "device_type", "ip", "locale", "device_id"):
        for kind, value in (("number", 7), ("bool", True), ("list", ["x"]), ("object", {"a": 1})):
            cases[f"{field} as {kind}"] = (
                variant(f"{field}-{kind}", **{field: value}),
                "wrong_type",
            )
    return cases


def test_each_hostile_body_lands_in_exactly_one_place(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    valid_bodies: Callable[..., list[str]],
) -> None:
    cases = corpus()
    ids = {
        name: sqs.client.send_message(QueueUrl=queues[0], MessageBody=body)["MessageId"]
        for name, (body, _) in cases.items()
    }
    result = runner.invoke(app, ["consume", "--json", "--idle-exit", "1"], env=cli_env)
    assert result.exit_code == 0, result.output
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        loaded = set(conn.execute(text("SELECT idempotency_key FROM user_logins")).scalars())
        tables = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
    engine.dispose()
    dead = {m.idempotency_key: m.attributes[ATTR_REASON] for m in drain(sqs, queues[1])}
    assert {"user_logins", "pii_vault"} <= tables
    for name, (_, reason) in cases.items():
        where = ("table" if ids[name] in loaded else "") + ("dlq" if ids[name] in dead else "")
        assert where == ("table" if reason is None else "dlq"), name
        if reason is not None:
            assert dead[ids[name]] == reason, name
    depth = sqs.depth(queues[0])
    assert (depth.visible, depth.in_flight) == (0, 0)
