"""The object the root callback builds once and every command reads."""

from __future__ import annotations

from dataclasses import dataclass

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
