"""Consoles, logging set-up and small rendering helpers shared by the commands."""

from __future__ import annotations

import json
import logging
import sys
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from typing import Any

from rich.console import Console, RenderableType
from rich.logging import RichHandler
from rich.text import Text

from loginetl.logs import quiet_chatty_libraries

stdout = Console(soft_wrap=True, emoji=False)  # ":abc:" in data must stay text
stderr = Console(stderr=True, soft_wrap=True, emoji=False)


class InertFormatter(logging.Formatter):
    """Text log lines whose message and traceback lines carry no raw control character.

    Log messages quote data (database errors, SQS errors); the rich and the plain text
    handlers would hand ESC or a bidi override straight to the operator's terminal.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return inert_str(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return "\n".join(inert_str(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(inert_str(line) for line in stack_info.split("\n"))


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
        return json.dumps(entry, ensure_ascii=True)  # controls and bidi arrive as \u escapes


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
        handler.setFormatter(InertFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(InertFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("loginetl").setLevel(level)
    logging.getLogger("alembic").setLevel(logging.INFO if verbose or debug else logging.WARNING)
    quiet_chatty_libraries()


# Characters that can move the cursor, talk to the terminal, reorder or hide text:
# C0/C1 controls and DEL (Cc), format characters such as the bidi overrides and
# zero-width joiners (Cf), line/paragraph separators (Zl, Zp), and lone surrogates (Cs),
# which could not even be encoded on the way out.
_HOSTILE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def inert_str(value: object, *, reversible: bool = False) -> str:
    """The text of a value with every control, bidi and format character made visible.

    ESC becomes ``\\x1b``, U+202E ``\\u202e``, a newline ``\\n``: Python's escapes.
    With ``reversible`` a backslash is doubled as well, so the result decodes back to
    exactly the value (``unmask``'s stdout); on screen a literal backslash stays single.
    """
    text = str(value)
    if text.isprintable() and not (reversible and "\\" in text):
        return text  # the common case: no character needs a look-up
    out = []
    for char in text:
        if char == "\\" and reversible:
            out.append("\\\\")
        elif unicodedata.category(char) in _HOSTILE_CATEGORIES:
            out.append(_visible(char))
        else:
            out.append(char)
    return "".join(out)


def inert(value: object, style: str = "") -> Text:
    """A value that came from a message, a DLQ attribute, the database or the vault, as
    rich Text: never read as markup, controls visible (STYLE.md habit 10).

    Every renderer in cli/ passes such values through here; ``str`` cells and f-strings
    handed to ``Console.print`` would be parsed as markup (``[/x]`` raises MarkupError).
    """
    return Text(inert_str(value), style=style)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def show(renderables: Iterable[RenderableType]) -> None:
    """Print what a renderer built, one renderable after another, on stdout."""
    for renderable in renderables:
        stdout.print(renderable)


def print_json(value: Any) -> None:
    """One JSON object on one line of stdout, for scripts."""
    # ensure_ascii: every control, bidi and non-ASCII character leaves as a \u escape.
    text = json.dumps(_plain(value), default=str, sort_keys=True, ensure_ascii=True)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
