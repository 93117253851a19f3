"""The PostgreSQL adapter: engines, database creation, and the one-transaction batch write."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg2
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from loginetl.core.error_classes import ErrorClass, classify_sqlstate
from loginetl.errors import ConfigError, ServiceUnavailable
from loginetl.services import failpoints

if TYPE_CHECKING:  # annotations only: a read-only command need not import the crypto
    from loginetl.core.batch import LoginRow
    from loginetl.core.vault_crypto import SealedVaultEntry

_NO_SUCH_DATABASE = "3D000"
INSUFFICIENT_PRIVILEGE = "42501"


DEFAULT_STATEMENT_TIMEOUT_MS = 60_000


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
) -> Engine:
    """Create an engine that never logs parameters (they may hold user data).

    TCP keepalives (first probe after 30 s idle, then every 10 s, 3 misses) make a
    half-open connection fail within about a minute instead of hanging a worker.
    """
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={
            "connect_timeout": 5,
            "application_name": "loginetl",
            "options": f"-c statement_timeout={statement_timeout_ms:d}",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )


@contextlib.contextmanager
def engine_for(
    database_url: str,
    *,
    pool_size: int = 1,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
) -> Iterator[Engine]:
    """An engine for one command's work, disposed (connections closed) when it is done."""
    engine = make_engine(
        database_url, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms
    )
    try:
        yield engine
    finally:
        engine.dispose()


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 error, raw (the COPY path) or wrapped by SQLAlchemy."""
    original = getattr(error, "orig", None) or error
    code = getattr(original, "pgcode", None)
    return code if isinstance(code, str) else None


def classify(error: BaseException) -> ErrorClass:
    """transient, data or fatal (core.error_classes), for raw and wrapped errors alike."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "transient"
    original = getattr(error, "orig", None) or error
    code = sqlstate(error)
    if code is not None:
        return classify_sqlstate(code)
    if isinstance(original, psycopg2.OperationalError | psycopg2.InterfaceError):
        return "transient"  # no SQLSTATE: the connection broke before the server answered
    if isinstance(error, OperationalError | InterfaceError):
        return "transient"
    return "fatal"


def is_database_error(error: BaseException) -> bool:
    """True if the error came from PostgreSQL or its driver (raw or wrapped)."""
    return isinstance(error, psycopg2.Error | DBAPIError)


def is_transient(error: BaseException) -> bool:
    """True for failures a retry can cure: lost connections, deadlocks, timeouts, shutdowns."""
    return classify(error) == "transient"


def rejection_detail(error: BaseException) -> str:
    """SQLSTATE and constraint name of a data error: never a value from the row."""
    original = getattr(error, "orig", None) or error
    diag = getattr(original, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    detail = f"SQLSTATE {sqlstate(error) or 'unknown'}"
    return f"{detail}, constraint {constraint}" if constraint else detail


def describe(error: BaseException) -> str:
    """A one-line, parameter-free description of a database error."""
    original = getattr(error, "orig", None) or error
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {first_line}" if first_line else type(original).__name__


@contextlib.contextmanager
def translate_errors(engine: Engine, what: str) -> Iterator[None]:
    """Turn connection failures into ServiceUnavailable with the (password-free) URL."""
    try:
        yield
    except OperationalError as error:
        code = getattr(error.orig, "pgcode", None)
        url = engine.url.render_as_string(hide_password=True)
        if code == _NO_SUCH_DATABASE or "does not exist" in str(error.orig):
            raise ServiceUnavailable(
                f"database {engine.url.database!r} does not exist at {url}; "
                "create it with: loginetl migrate upgrade"
            ) from error
        raise ServiceUnavailable(
            f"cannot {what}: PostgreSQL at {url} is unreachable ({describe(error)})"
        ) from error


def ping(engine: Engine) -> None:
    """Check that the database answers, raising ServiceUnavailable if not."""
    with translate_errors(engine, "connect"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def ensure_database(database_url: str) -> bool:
    """Create the database if it is missing and the role may; return True if created."""
    url = make_url(database_url)
    admin = make_engine(
        url.set(database="postgres").render_as_string(hide_password=False), pool_size=1
    ).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with translate_errors(admin, "create the database"), admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).scalar()
            if exists:
                return False
            quoted = admin.dialect.identifier_preparer.quote(url.database or "")
            # template0: template1 may carry another encoding, which CREATE would inherit.
            conn.execute(text(f"CREATE DATABASE {quoted} ENCODING 'UTF8' TEMPLATE template0"))
            return True
    except ProgrammingError as error:
        if getattr(error.orig, "pgcode", None) == INSUFFICIENT_PRIVILEGE:
            raise ConfigError(
                f"database {url.database!r} does not exist and this role may not create it; "
                "ask a DBA to create it, then run loginetl migrate upgrade"
            ) from None
        raise
    finally:
        admin.dispose()


def require_utf8(engine: Engine) -> None:
    """Refuse a database whose encoding cannot hold every valid login (not UTF-8)."""
    with translate_errors(engine, "read the database encoding"), engine.connect() as conn:
        encoding = conn.execute(text("SHOW server_encoding")).scalar_one()
    if encoding != "UTF8":
        raise ConfigError(
            f"database {engine.url.database!r} is encoded {encoding}, not UTF8, so it cannot "
            "store every valid login; recreate it with ENCODING 'UTF8' TEMPLATE template0"
        )


def ensure_partitions(engine: Engine, *, months_ahead: int = 3) -> int:
    """Create monthly partitions of user_logins from this month on; return how many were made.

    Runs the migration's SECURITY DEFINER function, so the writer role may call it.
    """
    with engine.begin() as conn:
        return int(
            conn.execute(
                text("SELECT loginetl_ensure_partitions(current_date, :months)"),
                {"months": months_ahead + 1},
            ).scalar_one()
        )


# The batch write: COPY into two session-local staging tables, then one statement moves
# them into place. COPY is parsed by the server as plain rows, where an INSERT of 1,000
# VALUES tuples costs the client and the server several times more (docs/performance.md).
# The writer may not read tokens back, nor learn which vault tokens already existed
# (loginetl/sql/functions): SECURITY DEFINER functions make the staging tables
# (temporary, ON COMMIT DELETE ROWS; the writer may only insert into them) and append the
# rows, the sealed vault entries (to vault_inbox) and rollup_pending entries, returning
# only how many rows were new. Preparing in every transaction keeps each one
# self-sufficient, so a transaction-pooling proxy in between is fine.
_PREPARE_STAGING = "SELECT public.loginetl_prepare_staging()"
_MOVE_STAGED = "SELECT public.loginetl_move_staged()"
# The vault epoch a batch's token cache was filled at; a move whose epoch a purge has
# since advanced fails with VAULT_EPOCH_STALE and writes nothing.
_SET_EPOCH = "SELECT pg_catalog.set_config('loginetl.vault_epoch', %s, true)"
_EPOCH = "SELECT public.loginetl_vault_epoch()"
VAULT_EPOCH_STALE = "LE001"
# The fold and the settle (SECURITY DEFINER functions the analyst and the maintainer may
# run, never the writer): take up to :limit pending rows (inbox entries), deleting them,
# and add them to the rollups (move them into pii_vault), one session at a time; NULL
# when another session is at it and :wait is false.
_FOLD = "SELECT public.loginetl_fold_rollups(:limit, :wait)"
_SETTLE = "SELECT public.loginetl_settle_vault(:limit, :wait)"
# The backlog and the oldest work's age in seconds on the database's clock (0 when none):
# the fold worker reads it alone, stats inside its one statement.
BACKLOG = (
    "SELECT *, round(greatest(0, coalesce(extract(epoch FROM pg_catalog.clock_timestamp() "
    "- least(pending_since, inbox_since)), 0))::numeric, 3)::float8 AS behind "
    "FROM public.loginetl_backlog()"
)
FOLD_CHUNK = 50_000  # rows per fold transaction: bounds its memory and lock time

# COPY's text format: tab-separated, \N for NULL, backslash escapes for the four
# characters that would end a field or a row early.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value  # the common case; four `in` tests cost a tenth of a translate


def _copy_bytes(value: bytes) -> str:
    return "\\\\x" + value.hex()  # bytea's hex form, its backslash escaped for COPY


def _copy_rows(rows: Sequence[LoginRow]) -> io.StringIO:
    t = _copy_text
    return io.StringIO(
        "".join(
            f"{t(r.idempotency_key)}\t{t(r.user_id)}\t{t(r.device_type)}\t{t(r.masked_ip)}\t"
            f"{t(r.masked_device_id)}\t{t(r.locale)}\t{r.app_version:d}\t"
            f"{t(r.app_version_raw)}\t{r.sent_at.isoformat()}\t{r.create_date.isoformat()}\n"
            for r in rows
        )
    )


def _copy_vault(entries: Sequence[SealedVaultEntry]) -> io.StringIO:
    t, b = _copy_text, _copy_bytes
    return io.StringIO(
        "".join(
            f"{t(e.token)}\t{t(e.pii_field)}\t{t(e.recipient)}\t{b(e.ephemeral_public_key)}\t"
            f"{b(e.nonce)}\t{b(e.ciphertext)}\n"
            for e in entries
        )
    )


def write_batch(
    engine: Engine,
    rows: Sequence[LoginRow],
    vault_entries: Sequence[SealedVaultEntry],
    *,
    vault_epoch: int | None = None,
) -> int:
    """Insert rows and vault entries in one transaction; return how many rows were new.

    New rows are also queued in rollup_pending in the same transaction, for fold_rollups.
    With ``vault_epoch`` (read by vault_epoch() when the caller's token cache was empty),
    the database refuses the batch (SQLSTATE VAULT_EPOCH_STALE, see is_vault_epoch_stale)
    if a purge of vault entries has happened since: some cached token may have lost its.
    """
    if not rows and not vault_entries:
        return 0
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_PREPARE_STAGING)
            cursor.copy_expert(
                "COPY pg_temp.loginetl_staged_vault FROM STDIN", _copy_vault(vault_entries)
            )
            cursor.copy_expert("COPY pg_temp.loginetl_staged_logins FROM STDIN", _copy_rows(rows))
            if vault_epoch is not None:
                cursor.execute(_SET_EPOCH, (str(vault_epoch),))
            cursor.execute(_MOVE_STAGED)
            inserted = cursor.fetchone()[0]  # type: ignore[index]  # count(*): always a row
            failpoints.hit("crash_before_commit")
            failpoints.hit("sleep_before_commit")
            failpoints.hit("hold_before_commit")
        finally:
            cursor.close()
    return int(inserted)


def vault_epoch(engine: Engine) -> int:
    """The vault epoch: advanced by every purge of vault entries (forget, retention)."""
    with engine.connect() as conn:
        return int(conn.execute(text(_EPOCH)).scalar_one())


def is_vault_epoch_stale(error: BaseException) -> bool:
    """True if a batch was refused because a purge happened since its cache was filled."""
    return sqlstate(error) == VAULT_EPOCH_STALE


def _drain(engine: Engine, statement: str, *, wait: bool, limit: int, point: str) -> int | None:
    """Run a fold-like ``statement`` (one chunk a transaction) until a chunk comes back
    short; the rows it took, or None if another session held it."""
    took = 0
    while True:
        with engine.begin() as conn:
            done = conn.execute(text(statement), {"limit": limit, "wait": wait}).scalar()
            failpoints.hit(point, when=bool(done))
        if done is None:
            return None if took == 0 else took
        took += int(done)
        if done < limit:
            return took


def fold_rollups(engine: Engine, *, wait: bool = False, limit: int = FOLD_CHUNK) -> int | None:
    """Fold pending rows into the rollups until none are left; return how many were folded.

    Returns None if another process was folding and ``wait`` is False: it will fold what
    is pending. With ``wait``, waits for it and then folds.
    """
    return _drain(engine, _FOLD, wait=wait, limit=limit, point="crash_in_fold")


def settle_vault(engine: Engine, *, wait: bool = False, limit: int = FOLD_CHUNK) -> int | None:
    """Move the sealed entries loads appended to vault_inbox into pii_vault (the first of a
    token wins), as :func:`fold_rollups` folds; return how many entries it took."""
    return _drain(engine, _SETTLE, wait=wait, limit=limit, point="crash_in_settle")


@dataclass(frozen=True)
class Folded:
    """What one :func:`fold` did: inbox entries settled and pending rows folded (None
    where another session was at it)."""

    settled: int | None
    folded: int | None


def fold(engine: Engine, *, wait: bool = False, limit: int = FOLD_CHUNK) -> Folded:
    """Settle the vault inbox and fold the rollups: everything loads have left to do.

    The two share no table and take separate turns, so they run side by side on two
    connections (the settle on a thread of its own): a drain takes the longer of the
    two, not their sum. An error in either is raised once both have ended.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="loginetl-settle") as pool:
        settling = pool.submit(settle_vault, engine, wait=wait, limit=limit)
        folded = fold_rollups(engine, wait=wait, limit=limit)  # on raising, the with waits
        return Folded(settling.result(), folded)


def fold_once_on(conn: Connection, *, limit: int = FOLD_CHUNK) -> Folded:
    """One chunk of the settle and one of the fold, never waiting for another session
    that is at it, committed on the caller's connection (stats folds before it reads)."""
    settled = conn.execute(text(_SETTLE), {"limit": limit, "wait": False}).scalar()
    folded = conn.execute(text(_FOLD), {"limit": limit, "wait": False}).scalar()
    conn.commit()
    return Folded(settled, folded)


@dataclass(frozen=True)
class Backlog:
    """Loaded work not folded or settled yet, and the oldest of it (None when none)."""

    pending_rows: int
    pending_since: datetime | None
    inbox_entries: int
    inbox_since: datetime | None
    behind_seconds: float  # the oldest's age on the database's clock; 0 when none


def backlog_on(conn: Connection) -> Backlog:
    """:class:`Backlog`, on a connection the caller holds (the analyst's or maintainer's)."""
    r = conn.execute(text(BACKLOG)).one()
    return Backlog(
        int(r.pending_rows),
        r.pending_since,
        int(r.inbox_entries),
        r.inbox_since,
        float(r.behind),
    )
