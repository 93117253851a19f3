"""``loginetl replay-dlq``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from loginetl.cli.output import inert, print_json, show, stderr
from loginetl.cli.state import EnvelopeOption, settings_with_envelope
from loginetl.core.messages import REASON_CODES
from loginetl.core.pacing import DEFAULT_HOLD_SECONDS

if TYPE_CHECKING:  # the action (boto3, cryptography) is imported when the command runs
    from loginetl.actions.replay import NativeMoveResult, ReplayResult


def render_replay(result: ReplayResult) -> list[RenderableType]:
    """The counts, and with --dry-run the verdicts by original reason (a DLQ attribute)."""
    title = "replay-dlq dry run: nothing was moved" if result.dry_run else "replay-dlq"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("examined", result.examined),
        ("moved to the source queue", result.moved),
        ("skipped (left in the DLQ)", result.skipped),
        ("failed (left in the DLQ)", result.failed),
    ):
        table.add_row(label, f"{value:,}")
    for why, count in result.failed_by_reason.items():
        table.add_row(Text("  failed: ") + inert(why), f"{count:,}")
    if result.unverified:
        table.add_row(
            "loginetl attributes unverified (selected by their raw reason label)",
            f"{result.unverified:,}",
        )
    if result.delete_failures:
        table.add_row(
            "moved but not deleted (copies absorbed on load)", f"{result.delete_failures:,}"
        )
    if not result.dry_run:
        return [table]
    verdicts = Table(title="if replayed now, by original reason", title_justify="left")
    for column in ("original reason", "would load", "would fail again (as)"):
        verdicts.add_column(column)
    for reason, v in result.dry_run_verdicts.items():
        again = Text(", ").join(inert(f"{r} {n}") for r, n in v.would_fail.items()) or Text("-")
        verdicts.add_row(inert(reason), f"{v.would_load:,}", again)
    return [table, verdicts]


def render_native(moved: NativeMoveResult) -> list[RenderableType]:
    """One line: the move task's status, count, and SQS's failure reason if any."""
    line = Text.assemble("message move task ", inert(moved.status), f": {moved.moved:,} moved")
    if moved.failure_reason:
        line.append_text(Text(" (") + inert(moved.failure_reason) + Text(")"))
    return [line]


def replay_command(
    ctx: typer.Context,
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Move at most this many messages.")
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only messages dead-lettered for this reason code."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Re-validate against today's rules and report; move nothing."
        ),
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=0.1, help="Send at most this many msg/s (ramping up over 5 s)."),
    ] = None,
    native: Annotated[
        bool,
        typer.Option("--native", help="Use SQS's StartMessageMoveTask (no filtering, no dry run)."),
    ] = False,
    hold_seconds: Annotated[
        int,
        typer.Option(
            "--hold-seconds",
            min=5,
            max=43200,
            help="Keep what this run skips hidden this long (if the run dies, that long "
            "before a rerun sees it).",
        ),
    ] = DEFAULT_HOLD_SECONDS,
    envelope: EnvelopeOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Move dead-lettered messages back to the source queue (send first, then delete).

    Example: loginetl replay-dlq --reason invalid_app_version --dry-run
    """
    known = (*REASON_CODES, "unknown")
    if reason is not None and reason not in known:
        raise typer.BadParameter(
            f"{reason!r} is not a reason code; one of: {', '.join(known)}", param_hint="--reason"
        )
    if native and (reason or dry_run or max_messages):
        raise typer.BadParameter(
            "--native moves everything: it cannot take --reason, --dry-run or --max",
            param_hint="--native",
        )
    from loginetl.actions.replay import replay_dlq, replay_native

    settings = settings_with_envelope(ctx, envelope)
    if native:
        with stderr.status("StartMessageMoveTask running…") as status:
            moved = replay_native(
                settings,
                rate=int(rate) if rate else None,
                on_progress=lambda done, total: status.update(
                    Text(f"moved {done:,} of ") + inert(total or "?")
                ),
            )
        if json_output:
            print_json(moved)
        else:
            show(render_native(moved))
        if moved.status != "COMPLETED":
            raise typer.Exit(code=1)
        return
    with Progress(
        TextColumn("replay-dlq"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=json_output or not stderr.is_terminal,
    ) as progress:
        task = progress.add_task("replay", total=None)
        result = replay_dlq(
            settings,
            max_messages=max_messages,
            reason=reason,
            dry_run=dry_run,
            rate=rate,
            hold_seconds=hold_seconds,
            on_start=lambda depth: progress.update(
                task, total=min(depth, max_messages or depth) or None
            ),
            on_progress=lambda n: progress.advance(task, n),
        )
    if json_output:
        print_json(result)
    else:
        show(render_replay(result))
    if result.failed:
        raise typer.Exit(code=1)
