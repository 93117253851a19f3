"""Every renderer in cli/, driven with hostile text: nothing crashes, nothing reaches the
terminal as markup or as a raw control, bidi or format character.

The renderers are pure functions from the actions' result dataclasses to rich
renderables (or strings), so each is driven here without a database or a queue; the
e2e test in tests/e2e/test_hostile_output.py runs the real commands on hostile data.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType
from rich.logging import RichHandler

from loginetl.actions.consume import ConsumeSummary
from loginetl.actions.peek import PeekedMessage, PeekResult, QueueHealth
from loginetl.actions.rederive import RederiveResult
from loginetl.actions.replay import DryRunVerdicts, NativeMoveResult, ReplayResult
from loginetl.actions.stats import QueueStats, SharedToken, Stats, TableStats
from loginetl.actions.unmask import UnmaskResult
from loginetl.cli import audit, consume, keys, peek, replay, stats, unmask
from loginetl.cli.app import error_line
from loginetl.cli.output import InertFormatter, JsonFormatter, inert, inert_str, print_json
from loginetl.core.audit_chain import AuditRow, ChainBreak, ChainReport
from loginetl.core.batch import LoginRow
from loginetl.services.migrations import SchemaStatus
from loginetl.services.sqs import QueueDepth

# What an attacker would send: markup, CSI, OSC 8 hyperlinks and titles, 8-bit CSI, bidi
# overrides and isolates, zero-width and line separators, newlines, tabs, a lone surrogate
# (json.loads makes one from "\ud800"), emoji codes; mixed with arbitrary NUL-free text.
FRAGMENTS = [
    "[/x]",
    "[bold]",
    "[/]",
    "[link=https://evil.example]click[/link]",
    "\\[escaped]",
    ":smile:",
    "\x1b[2J",
    "\x1b[31m",
    "\x1b]8;;https://evil.example\x1b\\",
    "\x1b]0;pwned\x07",
    "\x9b31m",
    "\x9d8;;x\x9c",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u200e",
    "\u061c",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\ud800",
    "\x7f",
    "\r",
    "\n",
    "\t",
    "\x08",
    " ",
    "\\",
]
text_piece = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(st.characters(exclude_characters="\x00"), max_size=12),
)
hostile_text = st.lists(text_piece, min_size=1, max_size=5).map("".join)

HOSTILE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# Rich's own styling: SGR sequences. Stripped only from the terminal stream; the recorded
# plain text (export_text) has no styling at all, so data cannot hide behind this.
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")


def raw_controls(text: str, allowed: str = "\n") -> list[str]:
    """Characters that would act on a terminal instead of being shown."""
    return [c for c in text if c not in allowed and unicodedata.category(c) in HOSTILE_CATEGORIES]


class Hostile:
    """Draws hostile strings and remembers the ones a renderer must show in full."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.shown: list[str] = []

    def text(self, *, shown: bool = True) -> str:
        """A hostile string; ``shown``: the renderer must print it whole (not cut)."""
        value = self.data.draw(hostile_text)
        if shown:
            self.shown.append(value)
        return value


def render(renderables: Iterable[RenderableType], *, width: int) -> tuple[str, str]:
    """(plain text, terminal stream) of what the renderer built, as the CLI prints it."""
    console = Console(
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        width=width,
        record=True,
        soft_wrap=True,
        emoji=False,
    )
    for renderable in renderables:
        console.print(renderable)
    stream = console.file.getvalue()  # type: ignore[attr-defined]
    return console.export_text(styles=False), stream


def assert_inert(renderables: list[RenderableType], hostile: Hostile) -> None:
    for width in (38, 10_000):  # narrow: wrapping and folding paths; wide: nothing wraps
        plain, stream = render(renderables, width=width)
        assert raw_controls(plain) == [], plain
        assert raw_controls(RICH_SGR.sub("", stream)) == [], stream
        stream.encode("utf-8")  # a lone surrogate would have crashed the real print
    for value in hostile.shown:  # shown literally: not eaten as markup, escaped in place
        assert inert_str(value).strip() in plain, (value, plain)
    hostile.shown = []  # the next renderer is checked for its own values


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
depths = st.builds(
    QueueDepth,
    visible=st.integers(0, 10**6),
    in_flight=st.integers(0, 10**6),
    delayed=st.integers(0, 10**6),
    max_receive_count=st.none() | st.integers(1, 1000),
    visibility_timeout=st.integers(0, 43200),
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@SETTINGS
@given(st.data(), depths, st.booleans())
def test_stats_tables_and_breakdowns(data: st.DataObject, depth: QueueDepth, failed: bool) -> None:
    h = Hostile(data)
    current = h.text()
    table = TableStats(
        rows=10,
        distinct_users=3,
        distinct_masked_ips=2,
        distinct_masked_devices=2,
        vault_entries=None,
        vault_entries_estimate=data.draw(st.none() | st.integers(0, 10**9)),
        rollups_pending=1,
        vault_pending=2,
        behind_seconds=1.5,
        top_shared_ips=[SharedToken(h.text(), 2, 3)],
        top_shared_devices=[SharedToken(h.text(), 2, 3)],
        by_device_type=[(h.text(), 5), (h.text(), 1)],
        by_locale=[(h.text(), 4), (None, 1)],
        by_app_version=[(h.text(), 5)],
        loads_per_hour=[(NOW, 10)],
        oldest_month=NOW.date().replace(day=1),
        rows_per_month=[(NOW.date().replace(day=1), 10)],
    )
    queues = (
        QueueStats(h.text(shown=False), h.text(shown=False), None, None, error=h.text())
        if failed
        else QueueStats(
            h.text(),
            h.text(),
            depth,
            depth,
            dlq_sample_size=3,
            dlq_reasons_sampled={h.text(): 2, h.text(): 1},
            dlq_oldest_first_seen=h.text(),
        )
    )
    schema = SchemaStatus(
        current=(current,), heads=(data.draw(st.sampled_from([current, "0006"])),)
    )
    assert_inert(stats.render_stats(Stats(schema=schema, table=table, queues=queues)), h)


@SETTINGS
@given(st.data(), depths, st.booleans())
def test_peek_health_messages_and_rows(data: st.DataObject, depth: QueueDepth, loads: bool) -> None:
    h = Hostile(data)
    row = LoginRow(
        idempotency_key=h.text(shown=False),
        user_id=h.text(shown=loads),  # the row is shown only when the message would load
        device_type=h.text(shown=loads),
        masked_ip=h.text(shown=False),  # shown cut to 19 characters
        masked_device_id=h.text(shown=False),
        locale=h.text() if loads else None,
        app_version=1_002_003,
        app_version_raw=h.text(shown=False),
        sent_at=NOW,
        create_date=date(2026, 11, 25),
    )
    message = PeekedMessage(
        message_id=h.text(),
        idempotency_key=h.text(shown=False),
        receive_count=2,
        max_receive_count=5,
        sent_at=NOW,
        verdict="load" if loads else h.text(),
        detail="" if loads else h.text(),  # a verdict other than "load" shows its detail
        row=row if loads else None,
        dlq_reason=h.text(),
        dlq_detail=h.text(shown=False),
        first_seen=h.text(shown=False),
        at_threshold=False,
        attributes_verified=loads,
    )
    health = QueueHealth(h.text(), depth, h.text(), depth)
    result = PeekResult(
        health=health,
        source="dlq",
        messages=[message],
        oldest_sent_at=NOW,
        attribute_keys_missing=not loads,
    )
    assert_inert(peek.render_peek(result), h)


@SETTINGS
@given(st.data(), st.booleans())
def test_replay_dry_run_results_and_native_move(data: st.DataObject, dry_run: bool) -> None:
    h = Hostile(data)
    verdicts = {  # shown only by a dry run
        h.text(shown=dry_run): DryRunVerdicts(would_load=1, would_fail={h.text(shown=dry_run): 2})
    }
    result = ReplayResult(
        dry_run=dry_run,
        examined=3,
        moved=0,
        skipped=3,
        failed=0,
        delete_failures=1,
        by_reason={h.text(shown=False): 3},
        dry_run_verdicts=verdicts,
        unverified=1,
        failed_by_reason={h.text(): 1},
    )
    assert_inert(replay.render_replay(result), h)
    native = NativeMoveResult(status=h.text(), moved=2, to_move=None, failure_reason=h.text())
    assert_inert(replay.render_native(native), h)


@SETTINGS
@given(st.data())
def test_audit_list_and_verify(data: st.DataObject) -> None:
    h = Hostile(data)
    row = AuditRow(
        seq=1,
        at=NOW,
        db_role=h.text(),
        os_user=h.text(),
        client_addr=h.text(shown=False),
        client_host=h.text(shown=False),
        token=h.text(shown=False),  # shown cut to 20 characters
        pii_field=h.text(),
        reason=h.text(),
        outcome=h.text(),
        prev_hash="0" * 64,
        row_hash=h.text(shown=False),
    )
    assert_inert(audit.render_entries([row]), h)
    broken = ChainReport(
        2, 2, h.text(shown=False), breaks=(ChainBreak(1, h.text()), ChainBreak(2, h.text()))
    )
    assert_inert(audit.render_report(broken), h)
    assert_inert(audit.render_report(ChainReport(rows=2, head_seq=2, head_hash=h.text())), h)


@SETTINGS
@given(st.data())
def test_consume_summary_rederive_and_error_lines(data: st.DataObject) -> None:
    h = Hostile(data)
    summary = ConsumeSummary(
        received=3,
        loaded=1,
        duplicates_skipped=0,
        dead_lettered=2,
        dead_lettered_by_reason={h.text(): 2},
        released=0,
        unfinished=0,
        delete_failures=0,
        dead_letter_failures=0,
        transient_errors=0,
        ignored_fields=0,
        in_flight=0,
        elapsed_seconds=1.0,
        busy_seconds=1.0,
        stopped_because=h.text(),
    )
    rederived = RederiveResult(
        target_key_id=h.text(), examined=3, aliased=1, undecryptable=1, audit_seq=4, unverified=1
    )
    assert_inert(
        [
            consume.render_summary(summary),
            consume.progress_line(summary),
            *keys.render_rederive(rederived),
            error_line(h.text()),
        ],
        h,
    )


def decode(line: str) -> str:
    """The documented way back from unmask's plain escaping (Python string escapes)."""
    return codecs.decode(line.encode("latin-1", "backslashreplace"), "unicode_escape")


@SETTINGS
@given(st.data())
def test_unmask_stdout_is_one_line_a_value_and_decodes_back(data: st.DataObject) -> None:
    h = Hostile(data)
    value, token = h.text(), h.text()
    result = UnmaskResult(token, "revealed", 7, h.text(), "device_id", value)
    alone = unmask.plain_line(result, with_token=False)
    assert raw_controls(alone, allowed="") == []  # no newline, no tab: one line, one field
    assert decode(alone) == value
    paired = unmask.plain_line(result, with_token=True)
    assert raw_controls(paired, allowed="\t") == []
    escaped_token, escaped_value = paired.split("\t")  # exactly one tab: the separator
    assert (decode(escaped_token), decode(escaped_value)) == (token, value)
    machine = unmask.json_line(result)
    assert machine.isascii()
    assert "\n" not in machine
    assert json.loads(machine)["value"] == value
    h.shown = []  # the failure message cuts the token to 80 characters
    failed = UnmaskResult(token, "unknown_token", 8, h.text())
    assert_inert([unmask.failure_message(failed), unmask.audit_message(failed)], h)


@SETTINGS
@given(st.data())
def test_log_lines_text_rich_and_json(data: st.DataObject) -> None:
    h = Hostile(data)
    message = h.text()
    try:
        raise ValueError(h.text(shown=False))
    except ValueError as error:
        exc_info = (type(error), error, error.__traceback__)
    record = logging.LogRecord(
        "loginetl.consume", logging.WARNING, __file__, 1, "failed (%s)", (message,), exc_info
    )
    text_line = InertFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert raw_controls(text_line) == []
    assert inert_str(message) in text_line
    record.exc_text = None  # formatted afresh by the next formatter
    entry = JsonFormatter().format(record)
    assert entry.isascii()
    assert "\n" not in entry
    assert json.loads(entry)["message"] == f"failed ({message})"
    record.exc_text = None
    console = Console(file=io.StringIO(), force_terminal=True, record=True, width=120)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    handler.setFormatter(InertFormatter("%(message)s"))
    handler.emit(record)
    assert raw_controls(console.export_text(styles=False)) == []
    assert raw_controls(RICH_SGR.sub("", console.file.getvalue())) == []  # type: ignore[attr-defined]


@SETTINGS
@given(st.data())
def test_json_output_is_ascii_and_exact(data: st.DataObject) -> None:
    h = Hostile(data)
    value = {"device_type": h.text(), "rows": [h.text(), None, 3]}
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", out)
        print_json(value)
    line = out.getvalue()
    assert line.isascii()
    assert line.count("\n") == 1
    assert json.loads(line) == value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("[/x]", "[/x]"),
        ("\x1b]8;;https://evil.example\x1b\\link", "\\x1b]8;;https://evil.example\\x1b\\link"),
        ("ab\u202ecd", "ab\\u202ecd"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\ud800", "\\ud800"),
        ("\U000e0001", "\\U000e0001"),
        ("plain ascii, ünïcödé", "plain ascii, ünïcödé"),
    ],
)
def test_inert_examples(value: str, shown: str) -> None:
    assert inert(value).plain == shown
    assert inert(value).spans == []  # no style came from the text


def invoke(args: list[str], patches: dict[str, object]) -> str:
    """The real command, in-process, with its action answering hostile values."""
    from typer.testing import CliRunner

    from loginetl.cli import app

    with pytest.MonkeyPatch.context() as patch:
        for target, replacement in patches.items():
            patch.setattr(target, replacement)
        result = CliRunner().invoke(app, args, env={"COLUMNS": "1000"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_commands_that_print_one_line(data: st.DataObject) -> None:
    """migrate, seed, keys init/rotate print a line each; the error boundary quotes errors."""
    from loginetl.actions.migrate import Upgraded
    from loginetl.actions.seed import SeedResult
    from loginetl.errors import ServiceUnavailable
    from loginetl.services.keys import KeysCreated, Rotated

    h = Hostile(data)
    status = SchemaStatus(current=(h.text(),), heads=(h.text(),))
    queue, created, current, message = h.text(), h.text(), h.text(), h.text()

    def fail(*_args: object, **_kwargs: object) -> object:
        raise ServiceUnavailable(message)

    runs = [
        (["migrate", "current"], {"loginetl.actions.migrate.status": lambda _s: status}),
        (["migrate", "check"], {"loginetl.actions.migrate.status": lambda _s: status}),
        (
            ["migrate", "upgrade"],
            {"loginetl.actions.migrate.upgrade": lambda _s, _r: Upgraded(False, status)},
        ),
        (
            ["migrate", "downgrade", "--yes", "--", "-1"],
            {"loginetl.actions.migrate.downgrade": lambda _s, _r: status},
        ),
        (
            ["seed", "--count", "1"],
            {"loginetl.actions.seed.seed": lambda *_a, **_k: SeedResult(queue, 1, 0)},
        ),
        (
            ["keys", "init", "--dir", "/nonexistent"],
            {"loginetl.services.keys.init_keys": lambda d: KeysCreated(d, (created,), False)},
        ),
        (
            ["keys", "rotate", "--dir", "/nonexistent"],
            {"loginetl.services.keys.rotate_keyring": lambda d, _n: Rotated("k1", current, d)},
        ),
        (["stats"], {"loginetl.actions.stats.stats": fail}),
    ]
    outputs = [invoke(args, patches) for args, patches in runs]
    for output in outputs:
        assert raw_controls(output) == [], output
    everything = "".join(outputs)
    for value in h.shown:
        assert inert_str(value).strip() in everything, (value, everything)
