"""``loginetl migrate``: Alembic's commands over loginetl's settings."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from loginetl.cli.output import inert, stdout
from loginetl.cli.state import settings_of

app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    sql: Annotated[
        bool,
        typer.Option(
            "--sql", help="Print the DDL instead (offline: no database is read or written)."
        ),
    ] = False,
) -> None:
    """Create the database if missing, then migrate it up.

    Example: loginetl migrate upgrade   (or: loginetl migrate upgrade --sql > schema.sql)
    """
    from loginetl.actions import migrate  # Alembic and SQLAlchemy: only when a command runs

    if sql:
        # The DDL is the output: written as it is, not through rich (no wrapping, no markup).
        sys.stdout.write(migrate.upgrade_sql(revision))
        return
    settings = settings_of(ctx)
    result = migrate.upgrade(settings, revision)
    if result.created_database:
        stdout.print(inert(f"created database at {settings.safe_database_url}"))
    status = result.status
    stdout.print(
        inert(
            f"database is at {', '.join(status.current) or 'base'}"
            + (" (head)" if status.at_head else "")
        )
    )


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help='Target revision, e.g. "-1" or "base".')],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: a downgrade can drop tables and their data.")
    ] = False,
) -> None:
    """Migrate the database down (may drop data; asks first).

    Example: loginetl migrate downgrade --yes -- -1  (the -- keeps -1 from reading as an option)
    """
    settings = settings_of(ctx)  # a bad setting fails before the question, not after
    if not yes and not typer.confirm(f"Downgrade to {revision}? This may drop data", default=False):
        raise typer.Exit(code=1)
    from loginetl.actions import migrate

    status = migrate.downgrade(settings, revision)
    stdout.print(inert(f"database is at {', '.join(status.current) or 'base'}"))


@app.command()
def current(ctx: typer.Context) -> None:
    """Show the database's revision.

    Example: loginetl migrate current
    """
    from loginetl.actions import migrate

    status = migrate.status(settings_of(ctx))
    label = ", ".join(status.current) or "base (empty)"
    stdout.print(inert(f"{label}{' (head)' if status.at_head else ''}"))


@app.command()
def history() -> None:
    """List the migrations, newest first.

    Example: loginetl migrate history
    """
    from loginetl.actions import migrate

    table = Table()
    for column in ("revision", "down", "description"):
        table.add_column(column)
    for rev in migrate.history():
        table.add_row(
            inert(rev.revision + (" (head)" if rev.is_head else "")),
            inert(rev.down_revision or "-"),
            inert(rev.description),
        )
    stdout.print(table)


@app.command()
def check(ctx: typer.Context) -> None:
    """Exit 0 if the database is at head, 1 if a migration is pending.

    Example: loginetl migrate check || loginetl migrate upgrade
    """
    from loginetl.actions import migrate

    status = migrate.status(settings_of(ctx))
    if status.at_head:
        stdout.print(inert(f"up to date at {', '.join(status.current)}"))
        return
    stdout.print(
        inert(
            f"pending: database at {', '.join(status.current) or 'base'}, "
            f"head is {', '.join(status.heads)}; run: loginetl migrate upgrade"
        )
    )
    raise typer.Exit(code=1)
