"""``loginetl seed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loginetl.cli.output import inert, print_json, stdout
from loginetl.cli.state import settings_of
from loginetl.core.demo import generate_bodies


def seed_command(
    ctx: typer.Context,
    count: Annotated[
        int, typer.Option("--count", min=1, max=10_000_000, help="Demo messages to generate.")
    ] = 1000,
    malformed_share: Annotated[
        float,
        typer.Option("--malformed-share", min=0.0, max=1.0, help="Share of malformed messages."),
    ] = 0.01,
    random_seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same messages.")
    ] = 0,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="Send each element of this JSON array instead."),
    ] = None,
    create_queues: Annotated[
        bool, typer.Option("--create-queues", help="Create the queue and DLQ if missing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Publish realistic demo login messages (or a file's) to the queue.

    Example: loginetl seed --count 5000 --create-queues
    """
    from loginetl.actions.seed import bodies_from_file, seed

    bodies = (
        bodies_from_file(from_file)
        if from_file is not None
        else generate_bodies(count, seed=random_seed, malformed_share=malformed_share)
    )
    result = seed(settings_of(ctx), bodies, create_queues=create_queues)
    if json_output:
        print_json(result)
    else:
        stdout.print(
            inert(
                f"sent {result.sent:,} messages to {result.queue}"
                + (f" ({result.failed:,} failed)" if result.failed else "")
            )
        )
    if result.failed:
        raise typer.Exit(code=1)
