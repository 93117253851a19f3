"""``loginetl fold``: settle the vault inbox and fold the rollups (the fold worker)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from loginetl.cli.output import inert, print_json, stdout
from loginetl.cli.state import MetricsHostOption, MetricsPortOption, settings_of
from loginetl.cli.stopping import stop_on_signals

if TYPE_CHECKING:
    from loginetl.actions.fold import FoldSummary
    from loginetl.services.db import Backlog


def _render(s: FoldSummary) -> Table:
    table = Table(show_header=False)
    table.add_row(
        "rounds", f"{s.rounds:,}" + (f" ({s.failed_rounds:,} failed)" if s.failed_rounds else "")
    )
    table.add_row("vault entries settled", f"{s.settled:,}")
    table.add_row("rows folded into the rollups", f"{s.folded:,}")
    table.add_row(
        "left to fold",
        f"{s.pending_rows:,} rows, {s.vault_pending:,} vault entries, "
        f"oldest {s.behind_seconds:,.1f} s",
    )
    table.add_row("stopped because", inert(s.stopped_because))
    return table


def fold_command(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep folding every --interval until SIGTERM.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.1, max=3600.0, help="Seconds between rounds (--follow)."),
    ] = 1.0,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Settle loaded vault entries and fold loaded rows into the stats rollups.

    consume only appends; this does the rest, as loginetl_maintainer (or the owner),
    never as the writer. Run it once, or as a worker beside the consumers.

    Example: loginetl fold --follow --metrics-port 9101
    """
    from loginetl.actions.fold import fold

    settings = settings_of(ctx)
    stop = threading.Event()
    latest: list[Backlog] = []  # the newest round's backlog only

    def keep(backlog: Backlog) -> None:
        latest[:] = [backlog]

    server = None
    if metrics_port is not None:
        from loginetl.services.metrics import GaugeServer, fold_gauges

        server = GaugeServer(
            host=metrics_host,
            port=metrics_port,
            read=lambda: fold_gauges(latest[0] if latest else None),
        )
        server.start()
    try:
        with stop_on_signals(stop, "the round in hand"):
            summary = fold(settings, follow=follow, interval=interval, stop=stop, on_round=keep)
    finally:
        if server is not None:
            server.stop()
    if json_output:
        print_json(summary.__dict__)
    else:
        stdout.print(_render(summary))
