"""The object the root callback builds once and every command reads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

import typer

from loginetl.config import Settings


@dataclass(frozen=True)
class State:
    """Settings plus global flags."""

    settings: Settings
    debug: bool


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built by the root callback."""
    state = ctx.find_root().obj
    assert isinstance(state, State), "root callback did not run"
    return state.settings


EnvelopeOption = Annotated[
    str | None,
    typer.Option(
        "--envelope",
        help="auto, none, sns or eventbridge: unwrap SNS notifications / EventBridge events "
        "before validation (env LOGINETL_ENVELOPE, default auto).",
        show_default=False,
    ),
]


def settings_with_envelope(ctx: typer.Context, envelope: str | None) -> Settings:
    """The root settings, with a command's --envelope (validated) if given."""
    settings = settings_of(ctx)
    if envelope is None:
        return settings
    updated = replace(settings, envelope=envelope)  # type: ignore[arg-type]
    updated.validate()
    return updated
