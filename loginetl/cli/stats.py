"""``loginetl stats``."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from loginetl.cli.output import inert, print_json, show
from loginetl.cli.state import settings_of
from loginetl.core.durations import parse_duration

if TYPE_CHECKING:  # the action (SQLAlchemy, boto3) is imported when the command runs
    from loginetl.actions.stats import QueueStats, SharedToken, Stats, TableStats


def _counts(title: str, rows: list[tuple[str | None, int]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(title.split(" by ")[-1])
    table.add_column("logins", justify="right")
    for key, count in rows:
        table.add_row(Text("(null)", style="dim") if key is None else inert(key), f"{count:,}")
    return table


def _shared(title: str, rows: list[SharedToken]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("token")
    table.add_column("distinct users", justify="right")
    table.add_column("logins", justify="right")
    for row in rows:
        table.add_row(inert(row.token), f"{row.users:,}", f"{row.logins:,}")
    if not rows:
        table.add_row("(none shared by two or more users)", "", "")
    return table


def _vault(t: TableStats) -> str:
    if t.vault_entries is not None:
        return f"{t.vault_entries:,}"
    if t.vault_entries_estimate is not None:
        return f"~{t.vault_entries_estimate:,} (estimate; --count-vault counts)"
    return "no access"


def _overview(result: Stats) -> Table:
    t = result.table
    overview = Table(title="user_logins", show_header=False, title_justify="left")
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("rows", f"{t.rows:,}")
    overview.add_row("distinct users", f"{t.distinct_users:,}")
    overview.add_row("distinct masked IPs", f"{t.distinct_masked_ips:,}")
    overview.add_row("distinct masked devices", f"{t.distinct_masked_devices:,}")
    overview.add_row("vault entries", _vault(t))
    overview.add_row(
        "oldest month held", "none" if t.oldest_month is None else t.oldest_month.strftime("%Y-%m")
    )
    if t.rollups_pending or t.vault_pending:
        overview.add_row(
            "not folded yet",
            f"{t.rollups_pending:,} rows, {t.vault_pending:,} vault entries, oldest "
            f"{t.behind_seconds:,.1f} s (`loginetl fold` folds them in)",
        )
    schema = inert(", ".join(result.schema.current))  # read from alembic_version
    overview.add_row(
        "schema revision",
        schema + " (head)"
        if result.schema.at_head
        else Text.assemble(
            schema,
            "; head is ",
            inert(", ".join(result.schema.heads)),
            ": run loginetl migrate upgrade",
        ),
    )
    return overview


def _queues(q: QueueStats) -> list[RenderableType]:
    if q.error is not None:
        return [Text.assemble(("queues: ", "yellow"), inert(q.error, "yellow"))]
    queues = Table(title="queues", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed"):
        queues.add_column(column, justify="right" if column != "queue" else "left")
    for name, depth in ((q.queue, q.main), (q.dlq, q.dead_letter)):
        if depth is not None:
            queues.add_row(
                inert(name), f"{depth.visible:,}", f"{depth.in_flight:,}", f"{depth.delayed:,}"
            )
    out: list[RenderableType] = [queues]
    if q.dlq_sample_size:
        # The reasons and the first-seen time are DLQ attributes: whatever a sender set.
        line = Text(f"DLQ reasons in a sample of {q.dlq_sample_size:,} of ")
        line.append(f"~{q.dead_letter.visible if q.dead_letter else 0:,}: ")
        for i, (reason, n) in enumerate(sorted(q.dlq_reasons_sampled.items())):
            line.append_text(Text(", " if i else "") + inert(reason) + Text(f" {n:,}"))
        line.append("; oldest first seen ")
        line.append_text(inert(q.dlq_oldest_first_seen or "unknown"))
        out.append(line)
    return out


def render_stats(result: Stats) -> list[RenderableType]:
    """The tables ``stats`` prints; every value read from the database or the DLQ is inert."""
    t = result.table
    out: list[RenderableType] = [
        _overview(result),
        _shared("masked IPs shared by most users", t.top_shared_ips),
        _shared("masked devices shared by most users", t.top_shared_devices),
        _counts("logins by device_type", list(t.by_device_type)),
        _counts("logins by locale", t.by_locale),
        _counts("logins by app_version", list(t.by_app_version)),
    ]
    hourly = Table(title="loads per hour (UTC)", title_justify="left")
    hourly.add_column("hour")
    hourly.add_column("rows loaded", justify="right")
    for hour, count in t.loads_per_hour:
        hourly.add_row(hour.astimezone(UTC).strftime("%Y-%m-%d %H:00"), f"{count:,}")
    if not t.loads_per_hour:
        hourly.add_row("(nothing loaded in this window)", "")
    out.append(hourly)
    if result.queues is not None:
        out += _queues(result.queues)
    return out


def stats_command(
    ctx: typer.Context,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Rows per breakdown.")] = 5,
    since: Annotated[
        str, typer.Option("--since", help="Window for loads per hour, e.g. 6h, 7d.")
    ] = "24h",
    dlq_sample: Annotated[
        int,
        typer.Option("--dlq-sample", min=0, max=10_000, help="DLQ messages sampled for reasons."),
    ] = 100,
    no_queues: Annotated[
        bool, typer.Option("--no-queues", help="Skip the SQS part (database only).")
    ] = False,
    count_vault: Annotated[
        bool,
        typer.Option("--count-vault", help="Count vault entries exactly (scans the vault)."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what has been loaded, the most shared masked IPs/devices, and the queues.

    Example: loginetl stats --top 10
    """
    try:
        window = parse_duration(since)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None
    from loginetl.actions.stats import stats

    result = stats(
        settings_of(ctx),
        top=top,
        since=window,
        include_queues=not no_queues,
        dlq_sample=dlq_sample,
        count_vault=count_vault,
    )
    if json_output:
        from loginetl import __version__

        print_json({**asdict(result), "loginetl_version": __version__})
    else:
        show(render_stats(result))
