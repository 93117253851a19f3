"""``loginetl consume``."""

from __future__ import annotations

import functools
import logging
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loginetl.cli.output import inert, print_json, stderr, stdout
from loginetl.cli.state import (
    EnvelopeOption,
    MetricsHostOption,
    MetricsPortOption,
    settings_with_envelope,
)
from loginetl.cli.stopping import stop_on_signals
from loginetl.core import limits
from loginetl.core.messages import MAX_BODY_BYTES

if TYPE_CHECKING:  # the action (boto3, SQLAlchemy, prometheus_client) loads when it runs
    from loginetl.actions.consume import ConsumeSummary

log = logging.getLogger("loginetl.consume")


def progress_line(s: ConsumeSummary) -> Text:
    return Text.assemble(
        ("consuming ", "bold"),
        f"received {s.received:,} · loaded {s.loaded:,} · ",
        (f"dead-lettered {s.dead_lettered:,}", "yellow" if s.dead_lettered else ""),
        f" · duplicates {s.duplicates_skipped:,} · {s.messages_per_second:,.0f} msg/s",
    )


def render_summary(s: ConsumeSummary) -> Table:
    """The end-of-run table; the reason codes were read back from the run's rejections."""
    table = Table(title="consume summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("received", f"{s.received:,}")
    table.add_row("loaded", f"{s.loaded:,}")
    table.add_row("duplicates skipped", f"{s.duplicates_skipped:,}")
    table.add_row("dead-lettered", f"{s.dead_lettered:,}")
    for reason, count in s.dead_lettered_by_reason.items():
        table.add_row(Text("  ") + inert(reason), f"{count:,}")
    if s.released or s.unfinished:
        table.add_row("released (not finished)", f"{s.released + s.unfinished:,}")
    if s.delete_failures:
        table.add_row("delete failures (will be redelivered, skipped)", f"{s.delete_failures:,}")
    if s.transient_errors:
        table.add_row("transient errors retried", f"{s.transient_errors:,}")
    if s.forged_attributes_ignored:
        table.add_row(
            "loginetl attributes ignored (unsigned or forged)", f"{s.forged_attributes_ignored:,}"
        )
    if s.lag_p50_seconds is not None and s.lag_p99_seconds is not None:
        table.add_row(
            "lag, send to commit (p50 / p99)",
            f"{s.lag_p50_seconds:,.1f} s / {s.lag_p99_seconds:,.1f} s",
        )
    table.add_row("elapsed", f"{s.elapsed_seconds:.1f} s")
    table.add_row("throughput", f"{s.messages_per_second:,.0f} msg/s")
    table.add_row("stopped because", inert(s.stopped_because))
    return table


def consume_command(
    ctx: typer.Context,
    max_messages: Annotated[
        int | None,
        typer.Option(
            "--max", min=limits.MAX_MESSAGES.lo, help="Stop after receiving this many messages."
        ),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            "--idle-exit",
            min=limits.IDLE_EXIT_SECONDS.lo,
            help="Exit once no message has arrived for this many seconds (default 5).",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Run as a worker until SIGINT/SIGTERM.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=limits.WORKERS.lo, max=limits.WORKERS.hi, help="Parallel receivers."
        ),
    ] = 4,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=limits.BATCH_MESSAGES.lo,
            max=limits.BATCH_MESSAGES.hi,
            help="Most messages per database transaction; a worker gathers more than one "
            "receive (10) only while the queue has a backlog.",
        ),
    ] = 300,
    wait_seconds: Annotated[
        int,
        typer.Option(
            "--wait-seconds",
            min=limits.WAIT_SECONDS.lo,
            max=limits.WAIT_SECONDS.hi,
            help="SQS long-poll wait per receive.",
        ),
    ] = 2,
    visibility_timeout: Annotated[
        int | None,
        typer.Option(
            "--visibility-timeout",
            min=limits.VISIBILITY_TIMEOUT.lo,
            max=limits.VISIBILITY_TIMEOUT.hi,
            help="Override the queue's visibility timeout.",
        ),
    ] = None,
    retry_seconds: Annotated[
        float,
        typer.Option(
            "--retry-seconds",
            min=limits.RETRY_SECONDS.lo,
            help="Ride out an SQS or database outage this long, then exit with code 2.",
        ),
    ] = 60.0,
    max_body_bytes: Annotated[
        int,
        typer.Option(
            "--max-body-bytes",
            min=limits.MAX_BODY_BYTES.lo,
            max=limits.MAX_BODY_BYTES.hi,
            help="Larger bodies are dead-lettered as too_large (the contract: 256 KiB).",
        ),
    ] = MAX_BODY_BYTES,
    statement_timeout: Annotated[
        float,
        typer.Option(
            "--statement-timeout",
            min=limits.STATEMENT_TIMEOUT_SECONDS.lo,
            help="Seconds one SQL statement may run (or wait for a lock); then it is retried.",
        ),
    ] = 60.0,
    prefetch: Annotated[
        bool,
        typer.Option(
            "--prefetch/--no-prefetch",
            hidden=True,
            help="Receive a worker's next batch while it loads the last (for measurements).",
        ),
    ] = True,
    create_queues: Annotated[
        bool,
        typer.Option(
            "--create-queues",
            help="Create the queue and DLQ (with RedrivePolicy) if missing; an existing "
            "queue's settings are left alone.",
        ),
    ] = False,
    envelope: EnvelopeOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Load login messages from the queue into PostgreSQL, masking ip and device_id.

    Example: loginetl consume --max 1000
    """
    if follow and idle_exit is not None:
        raise typer.BadParameter("--idle-exit does nothing with --follow; drop one of them")
    from loginetl.actions.consume import ConsumeOptions, consume

    options = ConsumeOptions(
        max_messages=max_messages,
        idle_exit_seconds=idle_exit if idle_exit is not None else 5.0,
        follow=follow,
        workers=workers,
        batch_messages=batch_size,
        wait_seconds=wait_seconds,
        visibility_timeout=visibility_timeout,
        retry_seconds=retry_seconds,
        max_body_bytes=max_body_bytes,
        statement_timeout_seconds=statement_timeout,
        prefetch=prefetch,
    )
    stop = threading.Event()
    run = functools.partial(
        consume,
        settings_with_envelope(ctx, envelope),
        options,
        create_queues=create_queues,
        stop=stop,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    # Unfinished messages simply reappear after a forced exit.
    with stop_on_signals(stop, "the batch in hand"):
        if sys.stderr.isatty() and not json_output:
            with Live(
                Text("starting…"), console=stderr, transient=True, refresh_per_second=4
            ) as live:
                summary = run(on_tick=lambda s: live.update(progress_line(s)))
        else:
            summary = run()
    if json_output:
        from loginetl import __version__

        print_json(
            {
                **summary.__dict__,
                "messages_per_second": round(summary.messages_per_second, 1),
                "loginetl_version": __version__,
            }
        )
    else:
        stdout.print(render_summary(summary))
