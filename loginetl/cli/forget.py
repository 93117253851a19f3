"""``loginetl forget``: erase one user on request (privacy staff, loginetl_eraser)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from loginetl.cli.output import inert, print_json, stdout
from loginetl.cli.state import settings_of

if TYPE_CHECKING:
    from loginetl.actions.forget import ForgetResult


def render(result: ForgetResult) -> list[Text]:
    """Counts only: never a token, never a value, the user id only as the operator gave it."""
    lines: list[Text] = []
    if result.preview is not None:
        p = result.preview
        lines.append(
            Text.assemble(
                "dry run: would remove ",
                inert(f"{p.logins:,}"),
                " logins; ip tokens: ",
                inert(f"{p.ip_tokens - p.ip_shared}"),
                " would be purged, ",
                inert(f"{p.ip_shared}"),
                " kept (shared with other users); device tokens: ",
                inert(f"{p.device_tokens - p.device_shared}"),
                " would be purged, ",
                inert(f"{p.device_shared}"),
                " kept (shared)",
            )
        )
    if result.forgotten is not None:
        f, g = result.forgotten, result.forgotten.purge
        lines.append(
            Text.assemble(
                "removed ",
                inert(f"{f.logins:,}"),
                " logins; ip tokens: ",
                inert(f"{g.ip_purged}"),
                " purged, ",
                inert(f"{g.ip_kept}"),
                " kept (shared with other users); device tokens: ",
                inert(f"{g.device_purged}"),
                " purged, ",
                inert(f"{g.device_kept}"),
                " kept (shared); vault entries deleted: ",
                inert(f"{g.vault_deleted}"),
                ", aliases: ",
                inert(f"{g.aliases_deleted}"),
            )
        )
        lines.append(
            Text.assemble(
                "audited: request row ",
                inert(result.request_seq),
                ", result row ",
                inert(f.audit.seq),
                " (the user appears there only as a keyed hash)",
            )
        )
    if result.dlq is not None:
        d = result.dlq
        lines.append(
            Text.assemble(
                "DLQ: ",
                inert(d.matching),
                " of ",
                inert(d.sampled),
                " sampled messages (depth ",
                inert(d.depth),
                ") carry this user id; not printed, not deleted",
            )
        )
    elif result.dlq_error is not None:
        lines.append(Text.assemble("DLQ not scanned: ", inert(result.dlq_error)))
    lines.append(Text("forget cannot reach:"))
    lines += [Text.assemble("  - ", inert(item)) for item in result.unreachable]
    return lines


def forget_command(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Option("--user-id", help="The user to erase.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in the audit log), e.g. a ticket.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; change nothing.")
    ] = False,
    dlq_sample: Annotated[
        int, typer.Option("--dlq-sample", min=0, max=10000, help="DLQ messages to look at.")
    ] = 1000,
    no_queues: Annotated[bool, typer.Option("--no-queues", help="Do not scan the DLQ.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Erase a user: rows, rollup counts, and vault entries no other row references.

    Example: loginetl forget --user-id 424cdd21-... --reason "DSR-118 erasure request"
    """
    from loginetl.actions.forget import forget

    result = forget(
        settings_of(ctx),
        user_id=user_id,
        reason=reason,
        dry_run=dry_run,
        dlq_sample=dlq_sample,
        scan_queues=not no_queues and dlq_sample > 0,
    )
    if json_output:
        print_json(result)
        return
    for line in render(result):
        stdout.print(line, highlight=False)
