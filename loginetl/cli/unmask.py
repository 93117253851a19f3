"""``loginetl unmask``: plaintext to stdout only; everything else to stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from loginetl.cli.output import inert, inert_str, stderr
from loginetl.cli.state import settings_of
from loginetl.core import unmask_policy as policy
from loginetl.errors import ConfigError

if TYPE_CHECKING:  # the action (SQLAlchemy, cryptography) is imported when the command runs
    from loginetl.actions.unmask import UnmaskResult

_MESSAGES = {
    policy.MALFORMED_TOKEN: "is not a token (expected k<N>:<64 hex>)",
    policy.UNKNOWN_TOKEN: "is not in the vault",
    policy.ERASED: "was erased (forget or retention purged its vault entry): it cannot be "
    "recovered any more",
    policy.UNKNOWN_KEY_ID: "names an HMAC key id that never produced a stored token",
    policy.DECRYPT_FAILED: "would not decrypt with this private key (wrong key, or tampered)",
    policy.REFUSED_TOKEN_MISMATCH: "was refused: the vault's value does not hash to this token "
    "(a planted entry; the refusal was audited)",
    policy.REFUSED_UNVERIFIABLE: "was refused: its HMAC key is not in the key file, so the "
    "value cannot be checked against the token",
}


def _read_tokens(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(f"--from-file: cannot read {path} ({error.strerror})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def plain_line(result: UnmaskResult, *, with_token: bool) -> str:
    """One stdout line: the value, or ``token<TAB>value``, each reversibly escaped.

    A revealed device_id may hold any text: a newline or tab in it would forge a line or
    a column. Backslash, controls, DEL, bidi and format characters are written as
    Python escapes (``\\\\``, ``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``), so a line is
    exactly one value and decodes back to it; a value without them prints unchanged.
    """
    value = inert_str(result.plaintext, reversible=True)
    return f"{inert_str(result.token, reversible=True)}\t{value}" if with_token else value


def json_line(result: UnmaskResult) -> str:
    """One JSON object a token, for machines; the value is exact, JSON-escaped."""
    return json.dumps(
        {
            "token": result.token,
            "outcome": result.outcome,
            "pii_field": result.pii_field,
            "value": result.plaintext,
            "audit_seq": result.audit_seq,
        },
        ensure_ascii=True,
    )


def failure_message(result: UnmaskResult) -> Text:
    """The stderr sentence for a token that was not recovered (the token came from a file)."""
    return Text.assemble(
        inert(result.token[:80]), f": {_MESSAGES.get(result.outcome, result.outcome)}"
    )


def audit_message(last: UnmaskResult) -> Text:
    """Where the run was audited: the head an auditor can pass to ``audit verify``."""
    return inert(f"audited as row {last.audit_seq} (chain head {last.audit_seq}:{last.audit_hash})")


def unmask_command(
    ctx: typer.Context,
    token: Annotated[str | None, typer.Argument(help="A token such as k1:9f2c….")] = None,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why: the case and purpose, e.g. 'INC-4211 fraud investigation'."
        ),
    ] = "",
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="Unmask every token in this file (one a line)."),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max", min=1, max=10_000, help="Refuse more tokens than this.")
    ] = 5,
    private_key: Annotated[
        Path | None,
        typer.Option(
            "--private-key", help="The vault private key (default: in LOGINETL_KEYS_DIR)."
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="One JSON object a token on stdout, for machines."),
    ] = False,
) -> None:
    """Recover the ip or device_id behind a token; audited before it is shown.

    The plaintext goes to stdout only (one value, or "token<TAB>value" lines with
    --from-file; backslash, control and bidi characters written as Python escapes such
    as \\n, \\t, \\x1b, \\\\); --json prints one object a token instead. Messages go
    to stderr. Needs the loginetl_unmasker database role, the vault private key, and a
    reason.

    Example: loginetl unmask k1:9f2c… --reason "INC-4211 fraud investigation"
    """
    if (token is None) == (from_file is None):
        raise typer.BadParameter("give one token, or --from-file, not both", param_hint="TOKEN")
    if not reason:
        raise typer.BadParameter("a reason is required for every unmask", param_hint="--reason")
    tokens = [token] if token is not None else _read_tokens(from_file)  # type: ignore[arg-type]
    from loginetl.actions.unmask import TokenNotRecovered, unmask

    results = unmask(
        settings_of(ctx),
        tokens,
        reason=reason,
        private_key_path=private_key,
        max_tokens=max_tokens if from_file is not None else 1,
    )
    # Every audit row is committed by now; only now does any plaintext leave.
    failed = 0
    for result in results:
        if json_output:
            sys.stdout.write(json_line(result) + "\n")
        elif result.plaintext is not None:
            sys.stdout.write(plain_line(result, with_token=from_file is not None) + "\n")
        if result.plaintext is None:
            failed += 1
            stderr.print(failure_message(result), highlight=False)
    sys.stdout.flush()
    stderr.print(audit_message(results[-1]), highlight=False)
    if failed:
        raise TokenNotRecovered(f"{failed} of {len(results)} token(s) not recovered")
