"""What forget and retention share: the signer and audited transactions.

Every audit row they write carries its signed head in the row's own transaction (as
unmask's do), so ``audit verify`` finds no unsigned rows after signing began.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from loginetl.actions.unmask import operator_identity
from loginetl.core import audit_chain
from loginetl.errors import Refused, ServiceUnavailable
from loginetl.services import audit, db, keys

_LOCK_NOT_AVAILABLE = "55P03"
_NOT_YET_DURABLE = "55000"  # loginetl_await_durable


class LockBusy(ServiceUnavailable):
    """A lock was not granted within the function's lock_timeout (retry later).

    Its message is the database's sentence, which names the holder where it can (the
    audit log's chain lock does), so an uncaught one is shown as it is (exit 2).
    """


@dataclass
class SignedAudit:
    """Opens transactions whose audit rows get their signed heads before COMMIT."""

    engine: Engine
    signer: Ed25519PrivateKey
    operator: audit.Operator

    @classmethod
    def for_run(cls, engine: Engine, keys_dir: Path, reason: str) -> SignedAudit:
        operator = audit.Operator(reason, *operator_identity())
        return cls(engine, keys.load_audit_signer(keys_dir), operator)

    def sign(self, conn: Connection, row: audit.Appended | None) -> None:
        if row is not None:
            audit.add_signed_head(conn, audit_chain.sign_head(self.signer, row.seq, row.row_hash))

    @contextlib.contextmanager
    def transaction(self, what: str) -> Iterator[Connection]:
        """One transaction, committed synchronously (its audit row on disk before anything
        is reported); a refusal by the database becomes Refused (exit 3)."""
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
                if code == _NOT_YET_DURABLE:  # the request row is not on disk in time
                    raise ServiceUnavailable(db.describe(error)) from None
                raise
