"""Settings: read once from flags and the environment, validated, then passed down.

Precedence is explicit flag > environment variable > default. Nothing here runs at
import time; the CLI callback calls :meth:`Settings.load` once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from loginetl.core.envelope import ENVELOPE_MODES, EnvelopeMode
from loginetl.core.fifo import is_fifo
from loginetl.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/loginetl"
DEFAULT_QUEUE = "login-queue"
DEFAULT_DLQ = "login-queue-dlq"
DEFAULT_REGION = "us-east-1"
DEFAULT_KEYS_DIR = Path("~/.config/loginetl/keys")
DEFAULT_ENVELOPE: EnvelopeMode = "auto"

# SQS: 1-80 characters, a FIFO queue's name being one that ends in ".fifo".
_QUEUE_NAME = re.compile(r"^(?=.{1,80}$)[A-Za-z0-9_-]+(\.fifo)?$")


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to reach its services and keys."""

    database_url: str
    queue_name: str
    dlq_name: str
    region: str
    endpoint_url: str | None
    keys_dir: Path
    envelope: EnvelopeMode = DEFAULT_ENVELOPE  # SNS/EventBridge unwrapping (core/envelope.py)

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        database_url: str | None = None,
        queue_name: str | None = None,
        dlq_name: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        keys_dir: Path | str | None = None,
        envelope: str | None = None,
    ) -> Settings:
        """Build settings from explicit values, then the environment, then defaults."""
        env = os.environ if environ is None else environ
        settings = cls(
            database_url=_with_driver(
                database_url or env.get("LOGINETL_DATABASE_URL") or DEFAULT_DATABASE_URL
            ),
            queue_name=queue_name or env.get("LOGINETL_QUEUE") or DEFAULT_QUEUE,
            dlq_name=dlq_name or env.get("LOGINETL_DLQ") or DEFAULT_DLQ,
            region=region
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION,
            endpoint_url=endpoint_url or env.get("AWS_ENDPOINT_URL") or None,
            keys_dir=Path(keys_dir or env.get("LOGINETL_KEYS_DIR") or DEFAULT_KEYS_DIR)
            .expanduser()
            .absolute(),
            envelope=(envelope or env.get("LOGINETL_ENVELOPE") or DEFAULT_ENVELOPE),  # type: ignore[arg-type]
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail fast, with a sentence that says how to fix it."""
        url = _parse_url(self.database_url)
        if url is None:
            raise ConfigError(
                "LOGINETL_DATABASE_URL is not a database URL; expected "
                "postgresql+psycopg2://USER[:PASSWORD]@HOST:PORT/DBNAME"
            )
        if url.get_backend_name() != "postgresql":
            raise ConfigError(
                f"LOGINETL_DATABASE_URL must point at PostgreSQL, not {url.get_backend_name()!r}"
            )
        if not url.database:
            raise ConfigError("LOGINETL_DATABASE_URL names no database; add /DBNAME at its end")
        for label, name in (("queue", self.queue_name), ("dead-letter queue", self.dlq_name)):
            if not _QUEUE_NAME.match(name):
                raise ConfigError(
                    f"the {label} name {name!r} is not a valid SQS queue name "
                    "(1-80 letters, digits, '-' or '_', ending in '.fifo' for a FIFO queue)"
                )
        if self.envelope not in ENVELOPE_MODES:
            raise ConfigError(
                f"LOGINETL_ENVELOPE (--envelope) is {self.envelope!r}; "
                f"use one of {', '.join(ENVELOPE_MODES)}"
            )
        if self.queue_name == self.dlq_name:
            raise ConfigError("the queue and the dead-letter queue must be different queues")
        if is_fifo(self.queue_name) != is_fifo(self.dlq_name):
            raise ConfigError(
                "a FIFO queue needs a FIFO dead-letter queue and a standard queue a standard one; "
                "name both *.fifo or neither (LOGINETL_QUEUE, LOGINETL_DLQ)"
            )
        if self.endpoint_url is not None:
            parts = urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    "AWS_ENDPOINT_URL must be an http(s) URL such as http://127.0.0.1:4566"
                )

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password hidden, for messages and logs."""
        return _safe_url(self.database_url)

    def __repr__(self) -> str:
        """Every field, the database URL with its password hidden (str() is the same)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["database_url"] = _safe_url(self.database_url)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _parse_url(database_url: str) -> URL | None:
    """SQLAlchemy's reading of a database URL, or None if it is not one.

    SQLAlchemy is imported here, when settings are built, not with this module: it takes
    about 0.1 s to load, and ``--help`` or ``--version`` need none of it.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database_url)
    except ArgumentError:
        return None


def _safe_url(database_url: str) -> str:
    """The URL with its password hidden, also one passed as ``?password=``."""
    url = _parse_url(database_url)
    if url is None:
        return "<not a database URL>"  # could be anything, a password included
    query = {k: "***" if k.lower() == "password" else v for k, v in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)


def _with_driver(database_url: str) -> str:
    """Pin a bare ``postgresql://`` URL to psycopg2, the driver loginetl ships with.

    SQLAlchemy 2.1 would otherwise pick psycopg 3, which is not installed.
    """
    url = _parse_url(database_url)
    if url is None:
        return database_url  # validate() reports it
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)
