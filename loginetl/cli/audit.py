"""``loginetl audit``: read and verify the unmask audit log."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from loginetl.actions.audit import list_entries, verify_chain
from loginetl.cli.output import inert, print_json, show
from loginetl.cli.state import settings_of
from loginetl.core.audit_chain import AuditRow, ChainReport
from loginetl.core.durations import parse_duration

app = typer.Typer(help="The unmask audit log.", no_args_is_help=True)


def render_entries(entries: list[AuditRow]) -> list[RenderableType]:
    """The audit table; every field read from the database (reason, users, hosts) is inert."""
    table = Table(title=f"unmask audit ({len(entries)} rows)", title_justify="left")
    for column in (
        "seq",
        "at (UTC)",
        "role",
        "os user",
        "from",
        "token",
        "field",
        "outcome",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.seq),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            inert(e.db_role),
            inert(e.os_user or "-"),
            inert(f"{e.client_host or '-'} ({e.client_addr or '-'})"),
            inert(e.token[:20] + ("…" if len(e.token) > 20 else "")),
            inert(e.pii_field or "-"),
            inert(e.outcome, "green" if e.outcome == "revealed" else "yellow"),
            inert(e.reason),
        )
    return [table]


def render_report(report: ChainReport) -> list[RenderableType]:
    """The verdict of ``audit verify``; the problem text may quote a stored field."""
    if report.intact:
        return [
            inert(
                f"audit chain intact: {report.rows} rows, head {report.head_seq}:{report.head_hash}"
            )
        ]
    return [
        Text.assemble(
            f"audit chain BROKEN at row {report.broken_at}: ",
            inert(report.problem),
            f" (rows 1-{report.head_seq} verified)",
        )
    ]


@app.command("list")
def list_command(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="Only this recent, e.g. 7d.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show who unmasked what, when and why.

    Example: loginetl audit list --since 7d
    """
    try:
        window = parse_duration(since) if since else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None
    entries = list_entries(settings_of(ctx), since=window)
    if json_output:
        print_json({"entries": entries})
        return
    show(render_entries(entries))


_HEAD = re.compile(r"([0-9]+):([0-9a-f]{64})")


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="SEQ:HASH recorded earlier (unmask prints it); catches removed tail rows.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recompute the hash chain; exit 1 and name the first broken row if it was tampered with.

    Example: loginetl audit verify
    """
    head = None
    if expect_head is not None:
        match = _HEAD.fullmatch(expect_head.strip())
        if not match:
            raise typer.BadParameter(
                "expected SEQ:HASH, e.g. 17:9f2c…(64 hex)", param_hint="--expect-head"
            )
        head = (int(match.group(1)), match.group(2))
    report = verify_chain(settings_of(ctx), expect_head=head)
    if json_output:
        print_json({**report.__dict__, "intact": report.intact})
    else:
        show(render_report(report))
    if not report.intact:
        raise typer.Exit(code=1)
