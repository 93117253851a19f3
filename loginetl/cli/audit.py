"""``loginetl audit``: read and verify the unmask audit log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from loginetl.cli.output import inert, print_json, show
from loginetl.cli.state import settings_of
from loginetl.core.durations import parse_duration

if TYPE_CHECKING:  # the action (SQLAlchemy, cryptography) is imported by the command that runs
    from loginetl.core.audit_chain import AuditRow, ChainReport

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
    """The verdict of ``audit verify``: every break, then how far the signatures reach.

    A problem's text may quote a stored field, so it goes through ``inert``.
    """
    lines: list[RenderableType] = [
        Text.assemble(f"audit chain BROKEN at row {found.seq}: ", inert(found.problem))
        for found in report.breaks
    ]
    verdict = "intact" if report.intact else f"has {len(report.breaks)} break(s)"
    lines.append(
        inert(
            f"audit chain {verdict}: {report.rows} rows, head {report.head_seq}:{report.head_hash}"
        )
    )
    if not report.signatures_checked:
        lines.append(Text("signatures not checked (--no-signatures)"))
    else:
        unsigned = (
            f"; rows {report.signed_through + 1}-{report.head_seq} are unsigned"
            if report.unsigned_rows
            else ""
        )
        lines.append(
            Text(
                f"{report.signed_heads} signed head(s) hold; signed through row "
                f"{report.signed_through}{unsigned}"
            )
        )
    return lines


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
    from loginetl.actions.audit import list_entries

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
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The audit-signing public key (default: in the keys dir).",
        ),
    ] = None,
    no_signatures: Annotated[
        bool, typer.Option("--no-signatures", help="Check the hash chain alone.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recompute the hash chain and check every signed head; exit 1 and name every break.

    A database owner who rewrites a row and re-hashes every later one is caught by the
    first signed head after the edit. Rows after the last signed head are reported as
    unsigned.

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
    from loginetl.actions.audit import verify_chain

    report = verify_chain(
        settings_of(ctx),
        expect_head=head,
        public_key_path=public_key,
        check_signatures=not no_signatures,
    )
    if json_output:
        print_json(
            {**report.__dict__, "intact": report.intact, "unsigned_rows": report.unsigned_rows}
        )
    else:
        show(render_report(report))
    if not report.intact:
        raise typer.Exit(code=1)
