"""``loginetl peek``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from loginetl.actions.peek import PeekResult, QueueHealth, peek
from loginetl.cli.output import print_json, printable, stdout
from loginetl.cli.state import settings_of
from loginetl.core.versions import decode_app_version


def _age(sent_at: datetime | None) -> str:
    if sent_at is None:
        return "-"
    seconds = int((datetime.now(UTC) - sent_at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_health(health: QueueHealth) -> Table:
    """The queue-health table (shared with replay-dlq's preamble)."""
    table = Table(title="queue health", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed", "maxReceiveCount", "visibility"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, depth in ((health.queue, health.depth), (health.dlq, health.dlq_depth)):
        table.add_row(
            name,
            f"{depth.visible:,}",
            f"{depth.in_flight:,}",
            f"{depth.delayed:,}",
            str(depth.max_receive_count or "-"),
            f"{depth.visibility_timeout}s",
        )
    return table


def _render(result: PeekResult) -> None:
    stdout.print(render_health(result.health))
    stdout.print(
        f"oldest message in this sample: {_age(result.oldest_sent_at)} old "
        "(SQS reports the true oldest only through CloudWatch)"
    )
    table = Table(
        title=f"{len(result.messages)} message(s) from the {result.source}", title_justify="left"
    )
    for column in ("message", "receives", "sent", "verdict", "would load as"):
        table.add_column(column)
    for m in result.messages:
        limit = f"/{m.max_receive_count}" if m.max_receive_count else ""
        verdict = Text(m.verdict, style="green" if m.verdict == "load" else "yellow")
        if m.verdict != "load":
            verdict.append(f"\n{printable(m.detail)}", style="dim")
        if m.dlq_reason:
            verdict.append(f"\nDLQ reason: {printable(m.dlq_reason)}", style="dim")
        if m.row is None:
            row = Text("-")
        else:
            r = m.row
            row = Text(
                f"user_id {printable(r.user_id)}\ndevice_type {printable(r.device_type)}\n"
                f"masked_ip {r.masked_ip[:19]}…\nmasked_device_id {r.masked_device_id[:19]}…\n"
                f"locale {printable(r.locale) if r.locale is not None else 'NULL'}\n"
                f"app_version {r.app_version} ({decode_app_version(r.app_version)})\n"
                f"create_date {r.create_date}"
            )
        table.add_row(
            Text(printable(m.message_id)),
            Text(f"{m.receive_count}{limit}", style="red" if m.at_threshold else ""),
            f"{_age(m.sent_at)} ago",
            verdict,
            row,
        )
    stdout.print(table)


def peek_command(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="Messages to show.")] = 10,
    dlq: Annotated[
        bool, typer.Option("--dlq", help="Peek at the dead-letter queue instead.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Show messages even at the dead-letter threshold."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show queue health and messages as they would be loaded (never plaintext PII).

    Every receive counts toward the queue's maxReceiveCount, so peek releases what it
    saw at once and refuses when its receive brought a message to the threshold.

    Example: loginetl peek --count 5 --dlq
    """
    result = peek(settings_of(ctx), count=count, from_dlq=dlq, force=force)
    if json_output:
        print_json(result)
    else:
        _render(result)
