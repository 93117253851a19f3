"""``loginetl retention apply``: enforce the retention window (owner or loginetl_maintainer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from loginetl.cli.output import inert, print_json, stdout
from loginetl.cli.state import settings_of

if TYPE_CHECKING:
    from loginetl.actions.retention import RetentionResult

app = typer.Typer(help="Retention by policy: drop or detach months older than the window.")


def render(result: RetentionResult) -> list[Table | Text]:
    """The plan (or what was removed), then the vault purge, counts only."""
    out: list[Table | Text] = []
    verb = "would remove" if result.dry_run else "removed"
    table = Table(title=f"keep {result.keep_months} months: from {result.first_kept} on")
    for column in ("partition", "month", f"logins {verb}"):
        table.add_column(column)
    if result.dry_run:
        for old in result.plan:
            table.add_row(inert(old.partition), inert(old.month or "older rows"), inert(old.logins))
    else:
        for removed in result.removed:
            table.add_row(inert(removed.partition), "", inert(removed.logins))
    out.append(table)
    if not result.dry_run:
        p = result.purge
        action = (
            "detached (kept as plain tables: user ids in clear, tokens; forget cannot reach them)"
            if result.detach
            else "dropped"
        )
        out.append(
            Text.assemble(
                "partitions ", action, "; audited after request row ", inert(result.request_seq)
            )
        )
        out.append(
            Text.assemble(
                "vault: ip tokens ",
                inert(p.ip_purged),
                " purged, ",
                inert(p.ip_kept),
                " kept (still referenced); device tokens ",
                inert(p.device_purged),
                " purged, ",
                inert(p.device_kept),
                " kept; aliases deleted ",
                inert(p.aliases_deleted),
            )
        )
        waits = [r for r in result.removed if r.attempts > 1]
        for r in waits:
            out.append(
                Text.assemble(inert(r.partition), ": lock granted on attempt ", inert(r.attempts))
            )
    return out


@app.command("apply")
def apply_command(
    ctx: typer.Context,
    keep: Annotated[str, typer.Option("--keep", help="Window, e.g. 13mo (current month + 12).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in the audit log), e.g. the policy.")
    ] = "retention policy: login data kept for the configured window",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Detach the partitions instead of dropping them.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Drop monthly partitions older than the window; keep the rollups and vault exact.

    Example: loginetl retention apply --keep 13mo --dry-run
    """
    from loginetl.actions.retention import apply

    result = apply(settings_of(ctx), keep=keep, reason=reason, dry_run=dry_run, detach=detach)
    if json_output:
        print_json(result)
        return
    for item in render(result):
        stdout.print(item, highlight=False)
