"""``loginetl keys``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType

from loginetl.cli.output import inert, show, stdout
from loginetl.cli.state import settings_of

if TYPE_CHECKING:  # services.keys and the action (cryptography, SQLAlchemy) load on use
    from loginetl.actions.rederive import RederiveResult

app = typer.Typer(help="Masking and vault keys.", no_args_is_help=True)


@app.command()
def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to create the keys (default: LOGINETL_KEYS_DIR)."),
    ] = None,
) -> None:
    """Create the HMAC key, vault key pair, attribute key and audit-signing key pair.

    Files 0600; never overwrites: a complete directory is left as it is, a partial one
    is refused.

    Example: loginetl keys init --dir /etc/loginetl/keys
    """
    target = (directory or settings_of(ctx).keys_dir).expanduser().absolute()
    from loginetl.services import keys

    result = keys.init_keys(target)
    if result.already_present:
        stdout.print(inert(f"keys already present in {target}; nothing changed"))
        return
    stdout.print(inert(f"created {', '.join(result.created)} in {target}"))
    stdout.print(
        f"consume needs {keys.HMAC_FILE}, {keys.PUBLIC_FILE} and {keys.ATTRIBUTE_FILE} "
        "(loginetl keys export-consumer --to DIR writes just those); move "
        f"{keys.PRIVATE_FILE} and {keys.AUDIT_PRIVATE_FILE} to the privacy team's machine and "
        "keep them off consumer and database hosts"
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

    Then re-export the consumers' key set and restart them, so they mask with the new key.

    Example: loginetl keys rotate
    """
    target = (directory or settings_of(ctx).keys_dir).expanduser().absolute()
    from loginetl.services import keys

    result = keys.rotate_keyring(target, keys.HMAC_FILE)
    stdout.print(
        inert(
            f"new tokens now use {result.current} (was {result.previous}); old tokens still "
            "unmask. Re-export the consumers' keys (loginetl keys export-consumer --to DIR), "
            "replace theirs with it, and restart consume."
        )
    )


@app.command("export-consumer")
def export_consumer(
    ctx: typer.Context,
    to: Annotated[
        Path, typer.Option("--to", help="An empty directory for the consumer's key set.")
    ],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="The full keys directory (default: LOGINETL_KEYS_DIR)."),
    ] = None,
) -> None:
    """Write only what consume needs: the current HMAC key and the vault public key.

    Files 0600; never overwrites. Older HMAC keys and the private key stay with privacy
    staff. Run it again after keys rotate.

    Example: loginetl keys export-consumer --to ./consumer-keys
    """
    source = (directory or settings_of(ctx).keys_dir).expanduser().absolute()
    from loginetl.services import keys

    result = keys.export_consumer_keys(source, to.expanduser().absolute())
    stdout.print(
        inert(
            f"wrote {', '.join(result.files)} to {result.directory} (HMAC key "
            f"{result.hmac_key_id} only); give consumer hosts this directory, not {source}"
        )
    )


@app.command("rotate-attributes")
def rotate_attributes(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="The keys directory (default: LOGINETL_KEYS_DIR)."),
    ] = None,
) -> None:
    """Sign loginetl's message attributes with a new key id; old ids still verify.

    Apart from the masking keys: keep old ids while the DLQ may hold messages signed with
    them. Copy the file to every consumer and replay-dlq host, then restart consumers.

    Example: loginetl keys rotate-attributes
    """
    target = (directory or settings_of(ctx).keys_dir).expanduser().absolute()
    from loginetl.services import keys

    result = keys.rotate_keyring(target, keys.ATTRIBUTE_FILE)
    stdout.print(
        inert(
            f"message attributes are now signed with {result.current} (was {result.previous}); "
            "messages signed before still verify. Restart consume so it picks up the new key."
        )
    )


@app.command()
def rederive(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", help="Why (audited), e.g. a change ticket.")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Target key id: only the current key is accepted."),
    ] = None,
    private_key: Annotated[
        Path | None,
        typer.Option("--private-key", help="The vault private key (default: in the keys dir)."),
    ] = None,
) -> None:
    """Map old-key tokens to the new key's in token_aliases, for joins across a rotation.

    Privacy staff only, as a login in loginetl_rederiver: it decrypts the vault (in
    memory; nothing is printed) and is audited as one operation before it starts. An
    existing alias that contradicts its value is left alone and reported (exit 3).

    Example: loginetl keys rederive --reason "CHG-88 rotation to k2"
    """
    from loginetl.actions.rederive import rederive as rederive_action

    result = rederive_action(
        settings_of(ctx), reason=reason, to_key_id=to, private_key_path=private_key
    )
    show(render_rederive(result))


def render_rederive(result: RederiveResult) -> list[RenderableType]:
    """One line of counts; the key id was read from the keys file."""
    return [
        inert(
            f"{result.aliased:,} of {result.examined:,} older tokens now alias to "
            f"{result.target_key_id} (audit row {result.audit_seq})"
            + (
                f"; {result.undecryptable:,} would not decrypt with this key"
                if result.undecryptable
                else ""
            )
            + (
                f"; {result.unverified:,} did not hash back to their token and got no alias"
                if result.unverified
                else ""
            )
        )
    ]
