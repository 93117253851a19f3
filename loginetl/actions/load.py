"""Write a prepared batch: one transaction, transient failures retried, data refusals
isolated by bisection.

A batch the database refuses as data (a check or not-null violation, an invalid byte
sequence: core/error_classes.py) is split in halves until the refused rows stand alone;
they come back as rejects (``rejected_by_database``, detail: SQLSTATE and constraint,
never a value) and everything else loads. k bad rows in n cost about k * log2(n) extra
transactions. An error that is not the database's (a bug tripped by one row) is isolated
the same way and rejected ``preparation_failed``, so it cannot loop on innocent messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from loginetl.actions.retry_policy import Fatal, Outage
from loginetl.core.batch import (
    PREPARATION_FAILED,
    REJECTED_BY_DATABASE,
    InboundMessage,
    LoginRow,
    PreparedBatch,
    RejectedMessage,
)
from loginetl.core.messages import Rejection
from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.errors import LoginetlError, ServiceUnavailable
from loginetl.services import db

log = logging.getLogger("loginetl.consume")

VAULT_CACHE_LIMIT = 20_000  # tokens known committed; bounded so memory stays flat


class _RowsRejected(Exception):
    """The database (or the write path) refused these rows as data: split to find them."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


@dataclass(frozen=True)
class Loaded:
    """What a batch's write came to."""

    inserted: int  # new rows (the rest of ``messages`` were already loaded)
    messages: list[InboundMessage]  # committed: safe to delete
    refused: list[RejectedMessage]  # refused as data: to dead-letter


class Loader:
    """Writes batches for every worker of one Consumer."""

    def __init__(
        self,
        engine: Engine,
        *,
        stop: threading.Event,
        new_outage: Callable[[], Outage],
        wait_out: Callable[[Outage, LoginetlError], None],
    ) -> None:
        self.engine = engine
        self.stop = stop
        self.new_outage = new_outage
        self.wait_out = wait_out
        self.vault_cache: set[str] = set()  # tokens whose vault entry is committed

    def load(self, batch: PreparedBatch) -> Loaded:
        """Write the batch's rows; raise Fatal only for what no retry or split can cure."""
        if not batch.rows:
            return Loaded(0, [], [])
        vault = {e.token: e for e in batch.vault_entries}
        refused: dict[str, Rejection] = {}
        inserted = self._write_isolating(batch.rows, vault, refused)
        return Loaded(
            inserted,
            [m for m in batch.loadable if m.idempotency_key not in refused],
            [
                RejectedMessage(m, refused[m.idempotency_key])
                for m in batch.loadable
                if m.idempotency_key in refused
            ],
        )

    def _write_isolating(
        self,
        rows: Sequence[LoginRow],
        vault: dict[str, SealedVaultEntry],
        refused: dict[str, Rejection],
    ) -> int:
        """Write rows; when they are refused as data, bisect until the offenders are alone."""
        try:
            return self._write(rows, vault)
        except _RowsRejected as rejected:
            if len(rows) == 1:
                refused[rows[0].idempotency_key] = rejected.rejection
                return 0
        middle = len(rows) // 2
        return self._write_isolating(rows[:middle], vault, refused) + self._write_isolating(
            rows[middle:], vault, refused
        )

    def _write(self, rows: Sequence[LoginRow], vault: dict[str, SealedVaultEntry]) -> int:
        """One transaction, retried with back-off while transient (the heartbeat hides it)."""
        entries = [
            vault[token]
            for token in dict.fromkeys(t for r in rows for t in (r.masked_ip, r.masked_device_id))
            if token in vault
        ]
        outage: Outage | None = None
        while True:
            try:
                inserted = db.write_batch(self.engine, rows, entries)
            except Exception as error:
                kind = db.classify(error) if db.is_database_error(error) else "row"
                if kind == "data":
                    raise _RowsRejected(
                        Rejection(REJECTED_BY_DATABASE, db.rejection_detail(error))
                    ) from None
                if kind == "row":  # not the database: maybe one row trips a bug; isolate it
                    log.warning("writing a batch failed (%s); isolating", type(error).__name__)
                    raise _RowsRejected(
                        Rejection(PREPARATION_FAILED, type(error).__name__)
                    ) from None
                if kind == "fatal":
                    log.error("database refused a batch (%s); stopping", db.describe(error))
                    raise Fatal(
                        LoginetlError(
                            f"the database refused a batch ({db.describe(error)}); "
                            "the messages were released, nothing was deleted"
                        )
                    ) from None
                wrapped = ServiceUnavailable(f"database write failed ({db.describe(error)})")
                if self.stop.is_set():
                    raise Fatal(wrapped) from None
                outage = outage or self.new_outage()
                self.wait_out(outage, wrapped)
                continue
            self._remember(entries)
            return inserted

    def _remember(self, entries: Sequence[SealedVaultEntry]) -> None:
        if len(self.vault_cache) > VAULT_CACHE_LIMIT:
            self.vault_cache.clear()
        self.vault_cache.update(e.token for e in entries)
