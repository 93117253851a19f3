"""The load stage's ceiling: the same rows stored by COPY alone, measured in the same run.

The load stage (``load_stage`` in bench/run.py) masks and seals every batch, stages it,
moves it through the writer's definer function and folds the rollups beside it. What it
cannot beat on this machine is the database storing the same rows with nothing else:
the same login rows and vault entries, already masked and sealed, COPYed straight into
``user_logins`` and ``pii_vault`` (their keys and indexes, the same seeded 1M-row table)
by as many connections, one transaction per batch of the same size. A plain COPY of the
same rows into tables of the same columns without any index is the raw floor, printed
for information. Both run on a copy of the seeded database, so the stage meets the same
data afterwards.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from loginetl.core.batch import InboundMessage, PreparedBatch, mask_batch, parse_batch
from loginetl.core.vault_crypto import VaultSealer
from loginetl.services import db, keys

# The fields of db._copy_rows / db._copy_vault, in their order (the staging tables').
_LOGIN_COLUMNS = (
    "idempotency_key, user_id, device_type, masked_ip, masked_device_id, locale, "
    "app_version, app_version_raw, sent_at, create_date"
)
_VAULT_COLUMNS = "token, pii_field, recipient, ephemeral_public_key, nonce, ciphertext"


def stage_messages(rows: int) -> list[InboundMessage]:
    """The load stage's input: all-new values, so every row brings two new vault entries."""
    now = datetime.now(UTC)
    return [
        InboundMessage(
            f"m{i}",
            "",
            json.dumps(
                {
                    "user_id": f"user-{i % 50_000}",
                    "app_version": "2.3.0",
                    "device_type": "ios",
                    "ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                    "locale": None,
                    "device_id": f"dev-{i}",
                }
            ),
            now,
        )
        for i in range(rows)
    ]


def _masked(keys_dir: Path, rows: int, batch_size: int) -> list[PreparedBatch]:
    masker = keys.load_masker(keys_dir)
    sealer = VaultSealer(keys.load_public_key(keys_dir))
    messages = stage_messages(rows)
    return [
        mask_batch(parse_batch(messages[s : s + batch_size]), masker=masker, sealer=sealer)
        for s in range(0, rows, batch_size)
    ]


def _copy_all(
    url: str, batches: list[PreparedBatch], logins: str, vault: str, workers: int
) -> float:
    """COPY every batch (vault entries, then rows; a transaction each) on ``workers``
    connections side by side; return the seconds it took."""
    engine = db.make_engine(url, pool_size=workers)
    texts = iter([(db._copy_vault(b.vault_entries), db._copy_rows(b.rows)) for b in batches])
    lock = threading.Lock()

    def copy() -> None:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            while True:
                with lock:
                    batch = next(texts, None)
                if batch is None:
                    return
                cursor.copy_expert(f"COPY {vault} ({_VAULT_COLUMNS}) FROM STDIN", batch[0])
                cursor.copy_expert(f"COPY {logins} ({_LOGIN_COLUMNS}) FROM STDIN", batch[1])
                connection.commit()
        finally:
            connection.close()

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(copy) for _ in range(workers)]:
            done.result()  # a failed COPY fails the stage, never flatters its rate
    elapsed = time.monotonic() - started
    engine.dispose()
    return elapsed


def _counts(engine: Any, logins: str, vault: str) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            int(conn.execute(text(f"SELECT count(*) FROM {logins}")).scalar_one()),
            int(conn.execute(text(f"SELECT count(*) FROM {vault}")).scalar_one()),
        )


def checkpoint(engine: Any) -> None:
    """Start a timed run after a CHECKPOINT, as the other runs it is compared with do
    (each page's first change after one writes a full page image). Needs a superuser or
    pg_checkpoint; without it every run starts without one alike."""
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            conn.commit()
    except DBAPIError as error:
        print(f"no CHECKPOINT before the run ({type(error.orig).__name__})", file=sys.stderr)


def copy_ceiling(
    pg_base: str, seeded: str, keys_dir: Path, rows: int, batch_size: int, workers: int
) -> dict[str, Any]:
    """rows/s of the same rows COPYed into the same tables (``indexed``) and into tables
    of the same columns without indexes (``plain``), on a copy of database ``seeded``."""
    batches = _masked(keys_dir, rows, batch_size)
    copy_name = f"{seeded}_ceiling"
    admin = create_engine(f"{pg_base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{copy_name}" TEMPLATE "{seeded}" STRATEGY FILE_COPY'))
    url = f"{pg_base}/{copy_name}"
    try:
        setup = create_engine(url, isolation_level="AUTOCOMMIT")
        with setup.connect() as conn:
            conn.execute(
                text(
                    "CREATE TABLE plain_logins "
                    "(LIKE public.user_logins INCLUDING DEFAULTS INCLUDING IDENTITY); "
                    "CREATE TABLE plain_vault (LIKE public.pii_vault INCLUDING DEFAULTS)"
                )
            )
        checkpoint(setup)
        plain = _copy_all(url, batches, "plain_logins", "plain_vault", workers)
        assert _counts(setup, "plain_logins", "plain_vault") == (rows, 2 * rows)
        with setup.connect() as conn:
            conn.execute(text("DROP TABLE plain_logins, plain_vault"))
        before = _counts(setup, "public.user_logins", "public.pii_vault")
        checkpoint(setup)  # the stage starts after one too
        indexed = _copy_all(url, batches, "public.user_logins", "public.pii_vault", workers)
        after = _counts(setup, "public.user_logins", "public.pii_vault")
        assert (after[0] - before[0], after[1] - before[1]) == (rows, 2 * rows)
        setup.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)'))
        admin.dispose()
    return {"indexed_rows_s": rows / indexed, "plain_rows_s": rows / plain}


def ceiling_rows(r: dict[str, Any]) -> list[tuple[str, str, str, None]]:
    """The ceiling's lines under the load stage's, for information."""
    ceiling = r["load_ceiling"]
    name = (
        "  its ceiling: the same rows and vault entries COPYed into the same tables, "
        "no masking, function or fold (information)"
    )
    if "unavailable" in ceiling:
        return [(name, f"not measured ({ceiling['unavailable']})", "-", None)]
    indexed, plain = ceiling["indexed_rows_s"], ceiling["plain_rows_s"]
    return [
        (name, f"{indexed:,.0f} rows/s", "-", None),
        (
            "  a plain COPY of the same rows into tables without indexes (information)",
            f"{plain:,.0f} rows/s",
            "-",
            None,
        ),
    ]
