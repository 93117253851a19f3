"""The object the root callback builds once and every command reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated

import typer

from loginetl.config import Settings


@dataclass(frozen=True)
class State:
    """Global flags, and the settings built from them once, when a command first asks.

    The root callback holds the flags in ``load``; the first :func:`settings_of` runs
    it (``Settings.load``: read, validate, fail fast with a sentence). Every command
    that needs settings asks for them after checking its own flags and before it
    touches a service, a key or a prompt, so an unsafe setting still fails at the start;
    ``loginetl stats --help`` never pays for validating a database URL (SQLAlchemy's
    parser, ~0.1 s to import).
    """

    load: Callable[[], Settings]
    debug: bool
    _built: list[Settings] = field(default_factory=list, repr=False)

    @property
    def settings(self) -> Settings:
        """The settings, built on first use and then reused."""
        if not self._built:
            self._built.append(self.load())
        return self._built[0]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built from the root callback's flags."""
    state = ctx.find_root().obj
    assert isinstance(state, State), "root callback did not run"
    return state.settings


# For the long-running commands (consume, fold --follow).
MetricsPortOption = Annotated[
    int | None,
    typer.Option("--metrics-port", min=0, max=65535, help="Serve /metrics and /healthz here."),
]
MetricsHostOption = Annotated[
    str, typer.Option("--metrics-host", help="Address for --metrics-port (0.0.0.0 in a pod).")
]
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
