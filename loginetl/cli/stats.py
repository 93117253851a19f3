"""``loginetl stats``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from loginetl.actions.stats import SharedToken, Stats, stats
from loginetl.cli.output import print_json, stdout
from loginetl.cli.state import settings_of


def _counts(title: str, rows: list[tuple[str | None, int]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(title.split(" by ")[-1])
    table.add_column("logins", justify="right")
    for key, count in rows:
        table.add_row("(null)" if key is None else key, f"{count:,}")
    return table


def _shared(title: str, rows: list[SharedToken]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("token")
    table.add_column("distinct users", justify="right")
    table.add_column("logins", justify="right")
    for row in rows:
        table.add_row(row.token, f"{row.users:,}", f"{row.logins:,}")
    if not rows:
        table.add_row("(none shared by two or more users)", "", "")
    return table


def _render(result: Stats) -> None:
    t = result.table
    overview = Table(title="user_logins", show_header=False, title_justify="left")
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("rows", f"{t.rows:,}")
    overview.add_row("distinct users", f"{t.distinct_users:,}")
    overview.add_row("distinct masked IPs", f"{t.distinct_masked_ips:,}")
    overview.add_row("distinct masked devices", f"{t.distinct_masked_devices:,}")
    overview.add_row(
        "vault entries", "no access" if t.vault_entries is None else f"{t.vault_entries:,}"
    )
    overview.add_row("schema revision", ", ".join(result.schema.current) + " (head)")
    stdout.print(overview)
    stdout.print(_shared("masked IPs shared by most users", t.top_shared_ips))
    stdout.print(_shared("masked devices shared by most users", t.top_shared_devices))
    stdout.print(_counts("logins by device_type", list(t.by_device_type)))
    stdout.print(_counts("logins by locale", t.by_locale))
    stdout.print(_counts("logins by app_version", list(t.by_app_version)))
    q = result.queues
    if q is None:
        return
    if q.error is not None:
        stdout.print(f"[yellow]queues: {q.error}[/]")
        return
    queues = Table(title="queues", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed"):
        queues.add_column(column, justify="right" if column != "queue" else "left")
    for name, depth in ((q.queue, q.main), (q.dlq, q.dead_letter)):
        if depth is not None:
            queues.add_row(name, f"{depth.visible:,}", f"{depth.in_flight:,}", f"{depth.delayed:,}")
    stdout.print(queues)


def stats_command(
    ctx: typer.Context,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Rows per breakdown.")] = 5,
    no_queues: Annotated[
        bool, typer.Option("--no-queues", help="Skip the SQS part (database only).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what has been loaded, the most shared masked IPs/devices, and the queues.

    Example: loginetl stats --top 10
    """
    result = stats(settings_of(ctx), top=top, include_queues=not no_queues)
    if json_output:
        print_json(result)
    else:
        _render(result)
