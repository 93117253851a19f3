"""The root command: global options, settings built once, and the one error handler."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from loginetl.cli import (
    audit,
    consume,
    fold,
    forget,
    keys,
    migrate,
    peek,
    replay,
    retention,
    seed,
    stats,
    unmask,
)
from loginetl.cli.output import LOG_FORMATS, inert, setup_logging, stderr, stdout
from loginetl.cli.state import State
from loginetl.config import Settings
from loginetl.errors import LoginetlError

log = logging.getLogger("loginetl")


def error_line(message: str) -> Text:
    """``error: <message>`` for stderr, the message inert."""
    return Text.assemble(("error:", "bold red"), " ", inert(message))


class _Group(TyperGroup):
    """Catches LoginetlError in one place: a sentence on stderr and a meaningful exit code."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors click)
        try:
            return super().invoke(ctx)
        except LoginetlError as error:
            if ctx.params.get("debug"):
                raise
            # The sentence may quote data (a queue name, a database error): print it inert.
            stderr.print(error_line(str(error)), highlight=False)
            raise typer.Exit(code=error.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            # The message of an unexpected error may quote data; only its type is shown.
            stderr.print(
                error_line(
                    f"unexpected {type(error).__name__} (a bug in loginetl); "
                    "rerun with --debug for the traceback"
                ),
                highlight=False,
            )
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_Group,
    name="loginetl",
    help="Move login events from SQS into PostgreSQL with the PII pseudonymized.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold plaintext PII
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
)


def _print_version(requested: bool) -> None:
    if requested:
        from loginetl import __version__  # read from the metadata only when asked

        stdout.print(f"loginetl {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL URL (env LOGINETL_DATABASE_URL). Prefer the environment: "
            "a password on a command line is visible to other users.",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", help="Queue name (env LOGINETL_QUEUE, default login-queue)"),
    ] = None,
    dlq: Annotated[
        str | None,
        typer.Option(
            "--dlq", help="Dead-letter queue name (env LOGINETL_DLQ, default login-queue-dlq)"
        ),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option("--endpoint-url", help="SQS endpoint (env AWS_ENDPOINT_URL, default AWS)"),
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="AWS region (env AWS_DEFAULT_REGION)")
    ] = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option(
            "--keys-dir", help="Key directory (env LOGINETL_KEYS_DIR)", show_default=False
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log detail.")
    ] = 0,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (never local variables).")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="auto (rich on a terminal, text otherwise), text, or json (one object per line).",
            envvar="LOGINETL_LOG_FORMAT",
        ),
    ] = "auto",
) -> None:
    """Move login events from SQS into PostgreSQL with the PII pseudonymized.

    Configuration: flags beat environment variables, which beat defaults.
    """
    if log_format not in LOG_FORMATS:
        raise typer.BadParameter(
            f"{log_format!r} is not one of {', '.join(LOG_FORMATS)}", param_hint="--log-format"
        )
    setup_logging(verbose=verbose, debug=debug, log_format=log_format)
    # Built when the command first asks (settings_of), so `loginetl CMD --help` skips it.
    load = functools.partial(
        Settings.load,
        database_url=database_url,
        queue_name=queue,
        dlq_name=dlq,
        endpoint_url=endpoint_url,
        region=region,
        keys_dir=keys_dir,
    )
    ctx.obj = State(load=load, debug=debug)


# `loginetl --help` groups the commands by who runs them; docs/cli.md is generated from the
# same app (make docs), and a test fails when it is stale.
PIPELINE, SCHEMA, PRIVACY, MAINTENANCE = "Pipeline", "Schema", "Privacy staff", "Maintenance"
app.command("consume", rich_help_panel=PIPELINE)(consume.consume_command)
app.command("fold", rich_help_panel=PIPELINE)(fold.fold_command)
app.command("stats", rich_help_panel=PIPELINE)(stats.stats_command)
app.command("peek", rich_help_panel=PIPELINE)(peek.peek_command)
app.command("replay-dlq", rich_help_panel=PIPELINE)(replay.replay_command)
app.command("seed", rich_help_panel=PIPELINE)(seed.seed_command)
app.add_typer(migrate.app, name="migrate", rich_help_panel=SCHEMA)
app.command("unmask", rich_help_panel=PRIVACY)(unmask.unmask_command)
app.command("forget", rich_help_panel=PRIVACY)(forget.forget_command)
app.add_typer(audit.app, name="audit", rich_help_panel=PRIVACY)
app.add_typer(keys.app, name="keys", rich_help_panel=PRIVACY)
app.add_typer(retention.app, name="retention", rich_help_panel=MAINTENANCE)
