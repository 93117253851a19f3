"""``loginetl keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loginetl.cli.output import stdout
from loginetl.cli.state import settings_of
from loginetl.services import keys

app = typer.Typer(help="Masking and vault keys.", no_args_is_help=True)


@app.command()
def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to create the keys (default: LOGINETL_KEYS_DIR)."),
    ] = None,
) -> None:
    """Create the HMAC key and the vault key pair (files 0600); never overwrites.

    Example: loginetl keys init --dir /etc/loginetl/keys
    """
    target = (directory or settings_of(ctx).keys_dir).expanduser().absolute()
    result = keys.init_keys(target)
    if result.already_present:
        stdout.print(f"keys already present in {target}; nothing changed")
        return
    stdout.print(f"created {', '.join(result.created)} in {target}")
    stdout.print(
        f"consume needs {keys.HMAC_FILE} and {keys.PUBLIC_FILE}; move {keys.PRIVATE_FILE} "
        "to the privacy team's machine and keep it off consumer hosts"
    )


@app.command()
def rotate(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="The keys directory (default: LOGINETL_KEYS_DIR)."),
    ] = None,
) -> None:
    """Start a new HMAC key id for new tokens; old tokens keep working.

    Restart consumers afterwards so they mask with the new key.

    Example: loginetl keys rotate
    """
    target = (directory or settings_of(ctx).keys_dir).expanduser().absolute()
    result = keys.rotate_hmac_key(target)
    stdout.print(
        f"new tokens now use {result.current} (was {result.previous}); old tokens still unmask. "
        "Restart consume so it picks up the new key."
    )
