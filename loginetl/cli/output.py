"""Consoles, logging set-up and small rendering helpers shared by the commands."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, is_dataclass
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

stdout = Console(soft_wrap=True, emoji=False)  # ":abc:" in data must stay text
stderr = Console(stderr=True, soft_wrap=True, emoji=False)

# Libraries whose debug output contains request bodies, i.e. plaintext PII: never below WARNING.
_CHATTY = ("botocore", "boto3", "urllib3", "s3transfer", "sqlalchemy.engine")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


JsonFormatter.converter = time.gmtime

LOG_FORMATS = ("auto", "text", "json")


def setup_logging(*, verbose: int, debug: bool, log_format: str = "auto") -> None:
    """Log to stderr; our own loggers follow -v/--debug, chatty libraries stay quiet.

    ``auto`` is rich text on a terminal and plain text otherwise; ``json`` is one object
    per line.
    """
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif log_format == "auto" and sys.stderr.isatty():
        handler = RichHandler(console=stderr, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("loginetl").setLevel(level)
    logging.getLogger("alembic").setLevel(logging.INFO if verbose or debug else logging.WARNING)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]}


def printable(value: object) -> str:
    """Escape control characters, so data can never drive the operator's terminal."""
    return str(value).translate(_CONTROL)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """One JSON object on one line of stdout, for scripts."""
    sys.stdout.write(json.dumps(_plain(value), default=str, sort_keys=True) + "\n")
    sys.stdout.flush()
