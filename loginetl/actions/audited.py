"""Audited transactions: every audit row loginetl writes gets its signed head before COMMIT.

unmask, rederive, forget and retention open their transactions here. Each commits
synchronously (``SET LOCAL`` holds until its COMMIT), so a row is on disk before anything
it covers is shown or reported, and ``audit verify`` finds no unsigned row once signing
began. A transaction the database will not commit is rolled back whole: nothing it would
have revealed, erased or removed happened.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from loginetl.core import audit_chain
from loginetl.errors import LoginetlError, Refused
from loginetl.services import audit, db

_LOCK_NOT_AVAILABLE = "55P03"  # a function's lock_timeout (the audit chain's: 5 s)


class AuditUnavailable(LoginetlError):
    """The audited transaction did not commit, so nothing it covers happened."""

    exit_code = 5


class LockBusy(AuditUnavailable):
    """A lock was not granted within the function's lock_timeout (retry later).

    Its message is the database's sentence, which names the holder where it can (the
    audit log's chain lock does).
    """


def operator_identity() -> tuple[str | None, str | None]:
    """The OS user and host name, recorded in every audit row."""
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return user, socket.gethostname()


@dataclass
class AuditSession:
    """One run's audited transactions, signed with ``signer`` (None: a run that only
    records its own refusal, as unmask does when this host lacks the signing key)."""

    engine: Engine
    signer: Ed25519PrivateKey | None
    operator: audit.Operator

    @classmethod
    def start(cls, engine: Engine, reason: str, signer: Ed25519PrivateKey | None) -> AuditSession:
        return cls(engine, signer, audit.Operator(reason, *operator_identity()))

    @contextlib.contextmanager
    def transaction(self, what: str) -> Iterator[Connection]:
        """One transaction, committed synchronously; what the database refuses becomes
        Refused (exit 3), what it cannot commit AuditUnavailable (exit 5), an unreachable
        database ServiceUnavailable (exit 2)."""
        with db.translate_errors(self.engine, what):
            try:
                with self.engine.begin() as conn:
                    conn.execute(text("SET LOCAL synchronous_commit = on"))
                    yield conn
            except DBAPIError as error:
                code = getattr(error.orig, "pgcode", None)
                if code == db.INSUFFICIENT_PRIVILEGE:
                    raise Refused(f"the database refused: {db.describe(error)}") from None
                if code == _LOCK_NOT_AVAILABLE:
                    raise LockBusy(db.describe(error)) from None
                if isinstance(error, OperationalError) and code is None:
                    raise  # the connection: translate_errors says so
                raise AuditUnavailable(
                    f"cannot {what} ({db.describe(error)}); it was rolled back: "
                    "nothing was revealed or changed"
                ) from None

    def sign(self, conn: Connection, row: audit.Appended | None) -> None:
        """Sign the head ``row`` makes, in the row's own transaction (no extra commit)."""
        if row is not None and self.signer is not None:
            audit.add_signed_head(conn, audit_chain.sign_head(self.signer, row.seq, row.row_hash))
