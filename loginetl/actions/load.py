"""Write a prepared batch: one transaction, transient failures retried, data refusals
isolated by bisection.

A batch the database refuses as data (a check or not-null violation, an invalid byte
sequence: core/error_classes.py) is split in halves until the refused rows stand alone;
they come back as rejects (``rejected_by_database``, detail: SQLSTATE and constraint,
never a value) and everything else loads. k bad rows in n cost about k * log2(n) extra
transactions. A refusal is the rows' only when it isolates to a strict subset: when every
row of the batch is refused (a botched constraint or trigger refuses valid traffic), it is
ours, and the load stops (Fatal) with nothing dead-lettered. So does an error that is not
the database's (an unexpected exception in the write path: a bug, not the message).

The vault cache: tokens whose vault entries this process saw committed are not sealed
again. ``forget`` and ``retention apply`` delete vault entries, so a cache is tied to the
vault epoch read when it was empty (migration 0015); the database refuses a batch whose
epoch a purge has advanced since. The batch is then sealed again from its messages (every
value, none cached) and written once more, and the cache starts afresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from loginetl.actions.retry_policy import Fatal, Outage
from loginetl.core.batch import (
    REJECTED_BY_DATABASE,
    InboundMessage,
    LoginRow,
    PreparedBatch,
    RejectedMessage,
)
from loginetl.core.messages import Rejection
from loginetl.core.vault_crypto import SealedVaultEntry
from loginetl.errors import LoginetlError, ServiceUnavailable
from loginetl.services import db, failpoints

log = logging.getLogger("loginetl.consume")

VAULT_CACHE_LIMIT = 20_000  # tokens known committed; bounded so memory stays flat


class _RowsRejected(Exception):
    """The database (or the write path) refused these rows as data: split to find them."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


class _VaultEpochStale(Exception):
    """A purge of vault entries happened since the batch's cache was filled."""


@dataclass(frozen=True, eq=False)
class VaultCache:
    """Tokens whose vault entries were committed after ``epoch`` was read.

    ``epoch`` None: it could not be read; such a cache stays empty and checks nothing.
    Compared by identity: a batch prepared with one cache is remembered only into it.
    """

    tokens: set[str]
    epoch: int | None


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
        self._cache_lock = threading.Lock()
        self._cache: VaultCache | None = None  # None: read the epoch before the next batch

    def cache(self) -> VaultCache:
        """The cache to prepare a batch with; pass it to load() with the batch."""
        with self._cache_lock:
            if self._cache is None:
                try:
                    epoch: int | None = db.vault_epoch(self.engine)
                except Exception as error:
                    if not db.is_database_error(error):
                        raise
                    log.warning("reading the vault epoch failed (%s)", db.describe(error))
                    return VaultCache(set(), None)  # everything sealed, nothing checked
                self._cache = VaultCache(set(), epoch)
            return self._cache

    def load(
        self,
        batch: PreparedBatch,
        *,
        cache: VaultCache | None = None,
        reseal: Callable[[Sequence[InboundMessage]], PreparedBatch] | None = None,
    ) -> Loaded:
        """Write the batch's rows; raise Fatal only for what no retry or split can cure.

        ``cache`` is the one the batch was prepared with (its epoch is checked);
        ``reseal`` prepares messages again with nothing cached, for when it is stale.
        """
        if not batch.rows:
            return Loaded(0, [], [])
        committed: list[int] = []  # rows new in each committed part (bisection)
        try:
            return self._load(batch, cache, committed)
        except _VaultEpochStale:
            with self._cache_lock:
                if self._cache is cache:
                    self._cache = None
            if reseal is None:
                raise Fatal(
                    LoginetlError("a stale vault cache and nothing to reseal with")
                ) from None
        log.info("vault entries were purged since the token cache was filled; sealing again")
        fresh = reseal(batch.loadable)  # the same messages: the same rows, every value sealed
        # Unchecked: every value is staged. Parts committed before the refusal (a bisection
        # half) come back as duplicates; they were new when they committed.
        again = self._load(replace(batch, vault_entries=fresh.vault_entries), None, [])
        return replace(again, inserted=again.inserted + sum(committed))

    def _load(self, batch: PreparedBatch, cache: VaultCache | None, committed: list[int]) -> Loaded:
        vault = {e.token: e for e in batch.vault_entries}
        refused: dict[str, Rejection] = {}
        inserted = self._write_isolating(batch.rows, vault, refused, cache, committed)
        if refused and len(refused) == len(batch.rows):  # not isolated: nothing was accepted
            why = sorted({r.detail for r in refused.values()})
            log.error("the database refused every row of a batch (%s); stopping", why[0])
            raise Fatal(
                LoginetlError(
                    f"the database refused every row of a batch ({'; '.join(why[:3])}), so "
                    "the fault is not the messages': check the table's constraints and "
                    "triggers; the messages were released, nothing was dead-lettered"
                )
            )
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
        cache: VaultCache | None,
        committed: list[int],
    ) -> int:
        """Write rows; when they are refused as data, bisect until the offenders are alone."""
        try:
            inserted = self._write(rows, vault, cache)
            committed.append(inserted)
            return inserted
        except _RowsRejected as rejected:
            if len(rows) == 1:
                refused[rows[0].idempotency_key] = rejected.rejection
                return 0
        middle = len(rows) // 2
        return self._write_isolating(
            rows[:middle], vault, refused, cache, committed
        ) + self._write_isolating(rows[middle:], vault, refused, cache, committed)

    def _write(
        self,
        rows: Sequence[LoginRow],
        vault: dict[str, SealedVaultEntry],
        cache: VaultCache | None,
    ) -> int:
        """One transaction, retried with back-off while transient (the heartbeat hides it)."""
        # Remembered only into a cache whose epoch was read before this write: any purge
        # after that read makes the cache stale, whatever it holds.
        target = cache or self._cache
        entries = [
            vault[token]
            for token in dict.fromkeys(t for r in rows for t in (r.masked_ip, r.masked_device_id))
            if token in vault
        ]
        outage: Outage | None = None
        while True:
            try:
                failpoints.hit("raise_in_write")
                inserted = db.write_batch(
                    self.engine, rows, entries, vault_epoch=cache.epoch if cache else None
                )
            except Exception as error:
                if db.is_vault_epoch_stale(error):
                    raise _VaultEpochStale from None
                if not db.is_database_error(error):  # a bug in the write path: ours
                    raise _unexpected(error) from None
                kind = db.classify(error)
                if kind == "data":
                    raise _RowsRejected(
                        Rejection(REJECTED_BY_DATABASE, db.rejection_detail(error))
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
            self._remember(entries, target)
            return inserted

    def _remember(self, entries: Sequence[SealedVaultEntry], cache: VaultCache | None) -> None:
        with self._cache_lock:
            if cache is None or cache is not self._cache or cache.epoch is None:
                return  # emptied (or replaced) meanwhile: its epoch may postdate this write
            if len(cache.tokens) > VAULT_CACHE_LIMIT:
                cache.tokens.clear()
            cache.tokens.update(e.token for e in entries)


def _unexpected(error: Exception) -> Fatal:
    """An exception in the write that is not the database's: a fault of ours, never a row's."""
    name = type(error).__name__  # its text may quote a value: the type only
    log.error("writing a batch failed unexpectedly (%s); stopping", name)
    return Fatal(
        LoginetlError(
            f"writing a batch failed with an unexpected {name}, a fault of loginetl's, not "
            "the messages'; the messages were released, nothing was dead-lettered"
        )
    )
