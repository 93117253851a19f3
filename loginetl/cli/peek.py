"""``loginetl peek``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from loginetl.cli.output import inert, print_json, show
from loginetl.cli.state import EnvelopeOption, settings_with_envelope
from loginetl.core.versions import decode_app_version

if TYPE_CHECKING:  # the action (boto3, cryptography) is imported when the command runs
    from loginetl.actions.peek import PeekResult, QueueHealth
    from loginetl.core.batch import LoginRow


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
            inert(name),
            f"{depth.visible:,}",
            f"{depth.in_flight:,}",
            f"{depth.delayed:,}",
            str(depth.max_receive_count or "-"),
            f"{depth.visibility_timeout}s",
        )
    return table


def _row(r: LoginRow) -> Text:
    """The masked row, one field a line; each value from the body escaped on its own."""
    return Text("\n").join(
        Text.assemble(label, " ", value)
        for label, value in (
            ("user_id", inert(r.user_id)),
            ("device_type", inert(r.device_type)),
            ("masked_ip", inert(f"{r.masked_ip[:19]}…")),
            ("masked_device_id", inert(f"{r.masked_device_id[:19]}…")),
            ("locale", inert(r.locale) if r.locale is not None else Text("NULL", style="dim")),
            ("app_version", inert(f"{r.app_version} ({decode_app_version(r.app_version)})")),
            ("create_date", inert(r.create_date)),
        )
    )


def render_peek(result: PeekResult) -> list[RenderableType]:
    """Health, the sample's age, and one row a message; message and attribute text inert."""
    table = Table(
        title=f"{len(result.messages)} message(s) from the {result.source}", title_justify="left"
    )
    for column in ("message", "receives", "sent", "verdict", "would load as"):
        table.add_column(column)
    for m in result.messages:
        limit = f"/{m.max_receive_count}" if m.max_receive_count else ""
        verdict = inert(m.verdict, "green" if m.verdict == "load" else "yellow")
        if m.verdict != "load":
            verdict.append_text(Text("\n") + inert(m.detail, "dim"))
        if m.envelope != "none":
            verdict.append_text(Text("\nunwrapped from ", style="dim") + inert(m.envelope, "dim"))
        if m.dlq_reason:
            label = "\nDLQ reason: " if m.attributes_verified else "\nDLQ reason (unverified): "
            verdict.append_text(Text(label, style="dim") + inert(m.dlq_reason, "dim"))
        table.add_row(
            inert(m.message_id),
            Text(f"{m.receive_count}{limit}", style="red" if m.at_threshold else ""),
            f"{_age(m.sent_at)} ago",
            verdict,
            Text("-") if m.row is None else _row(m.row),
        )
    keys_note: list[RenderableType] = []
    if result.attribute_keys_missing:
        keys_note.append(
            Text(
                "no attribute-keys.json in the keys dir: loginetl-* attributes are not verified, "
                "so ids and send times are SQS's own and DLQ reasons are unverified labels",
                style="yellow",
            )
        )
    return [
        render_health(result.health),
        *keys_note,
        Text(
            f"oldest message in this sample: {_age(result.oldest_sent_at)} old "
            "(SQS reports the true oldest only through CloudWatch)"
        ),
        table,
    ]


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
    envelope: EnvelopeOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show queue health and messages as they would be loaded (never plaintext PII).

    Every receive counts toward the queue's maxReceiveCount, so peek releases what it
    saw at once and refuses when its receive brought a message to the threshold.

    Example: loginetl peek --count 5 --dlq
    """
    from loginetl.actions.peek import peek

    result = peek(settings_with_envelope(ctx, envelope), count=count, from_dlq=dlq, force=force)
    if json_output:
        print_json(result)
    else:
        show(render_peek(result))
