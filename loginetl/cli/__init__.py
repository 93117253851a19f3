"""The command line: the only layer that parses flags, prints, or exits."""

from __future__ import annotations

from loginetl.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
