"""The vault epoch (migration 0015) tells the writer that some purge happened, never which.

Played as an attacker holding a loginetl_writer login and talking SQL directly.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import psycopg2
import pytest
import sqlalchemy

from tests.security.test_writer_privileges import (
    INSUFFICIENT_PRIVILEGE,
    VAULT_ENTRY,
    connect,
    owner_scalar,
    pgcode_of,
)

STALE = "LE001"
ERASED = "k1:" + "e" * 64
NEVER = "k1:" + "a" * 64


@pytest.fixture
def writer(login_role: Callable[[str], str]) -> str:
    return login_role("loginetl_writer")


def purge_one(database_url: str, token: str) -> None:
    """What forget does to an unreferenced token: its vault entry goes, a tombstone stays."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO pii_vault (token, pii_field, recipient, ephemeral_public_key, "
                f"nonce, ciphertext) VALUES ('{token}', 'ip', 'r', '\\x00', '\\x00', '\\x00')"
            )
            conn.exec_driver_sql(f"INSERT INTO vault_purge_candidates VALUES ('ip', '{token}')")
            purged = conn.exec_driver_sql(
                "SELECT ip_purged FROM loginetl_purge_candidates(10, 0)"
            ).scalar_one()
            assert purged == 1
    finally:
        engine.dispose()


def login(key: str, token: str) -> str:
    return f"{key}\tu-{key}\tios\t{token}\tk1:{'d' * 64}\t\\N\t1\t1\t2026-11-25 10:00:00+00\t2026-11-25\n"


def move(
    conn: psycopg2.extensions.connection, epoch: object, logins: str, vault: str = ""
) -> tuple[str | None, object]:
    """One batch write by hand with loginetl.vault_epoch set: (SQLSTATE or None, answer)."""
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute(
                "SELECT pg_catalog.set_config('loginetl.vault_epoch', %s, true)", (str(epoch),)
            )
            cursor.execute("SELECT public.loginetl_prepare_staging()")
            cursor.copy_expert("COPY pg_temp.loginetl_staged_vault FROM STDIN", io.StringIO(vault))
            cursor.copy_expert(
                "COPY pg_temp.loginetl_staged_logins FROM STDIN", io.StringIO(logins)
            )
            cursor.execute("SELECT public.loginetl_move_staged()")
            answer = cursor.fetchall()
        except psycopg2.Error as error:
            cursor.execute("ROLLBACK")
            return str(error.pgcode), None
        cursor.execute("COMMIT")
        return None, answer


def epoch_of(conn: psycopg2.extensions.connection) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT public.loginetl_vault_epoch()")
        return int(cursor.fetchone()[0])  # type: ignore[index]


def test_the_epoch_says_a_purge_happened_and_nothing_about_which_token(
    writer: str, database_url: str
) -> None:
    conn = connect(writer)
    try:
        before = epoch_of(conn)
        purge_one(database_url, ERASED)
        after = epoch_of(conn)
        assert after > before  # a purge happened: one number moved
        # A batch prepared before the purge is refused whatever it carries.
        stale = [move(conn, before, login(f"s{i}", t)) for i, t in enumerate((ERASED, NEVER))]
        assert stale == [(STALE, None), (STALE, None)]
        # At the current epoch a guessed token with no vault entry loads the same way
        # whether it was erased or never existed: no answer, error or epoch differs.
        fresh = [move(conn, after, login(f"f{i}", t)) for i, t in enumerate((ERASED, NEVER))]
        assert fresh == [(None, [(1,)]), (None, [(1,)])]
        assert epoch_of(conn) == after
        # Garbage is refused as such, before any token is looked at.
        assert move(conn, "1; DROP", login("g", NEVER))[0] == "22023"
    finally:
        conn.close()
    assert (
        owner_scalar(database_url, f"SELECT count(*) FROM pii_vault WHERE token = '{ERASED}'") == 0
    )


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT nextval('public.vault_epoch')",
        "SELECT setval('public.vault_epoch', 1)",
        "SELECT last_value FROM public.vault_epoch",
        "SELECT * FROM public.loginetl_purge_candidates(1, 0)",
    ],
)
def test_the_writer_can_neither_move_nor_read_the_epoch_but_through_its_function(
    writer: str, statement: str
) -> None:
    conn = connect(writer)
    try:
        assert pgcode_of(conn, statement) == INSUFFICIENT_PRIVILEGE
    finally:
        conn.close()


INBOX_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE relation = 'public.vault_inbox'::regclass "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
)


def test_a_move_holds_the_inbox_lock_until_it_commits(writer: str, database_url: str) -> None:
    """The purge locks vault_inbox against it (SHARE ROW EXCLUSIVE): it waits for the move,
    and then sees the move's rows, so it cannot delete a vault entry a committed row uses.
    No other role may lock vault_inbox at all."""
    conn = connect(writer)
    token = "k1:" + "b" * 64
    try:
        with conn.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT public.loginetl_prepare_staging()")
            cursor.copy_expert(
                "COPY pg_temp.loginetl_staged_vault FROM STDIN",
                io.StringIO(VAULT_ENTRY.format(token=token)),
            )
            cursor.copy_expert(
                "COPY pg_temp.loginetl_staged_logins FROM STDIN", io.StringIO(login("h", token))
            )
            cursor.execute("SELECT public.loginetl_move_staged()")
            locks = owner_scalar(database_url, INBOX_LOCKS + "AND mode = 'RowExclusiveLock'")
            assert locks == 1  # held until commit
            cursor.execute("COMMIT")
    finally:
        conn.close()


def test_a_move_that_waited_behind_a_purge_is_refused_when_the_purge_commits(
    writer: str, database_url: str
) -> None:
    """Interleaving: the writer read the epoch, a purge began, the writer's move came.
    The move waits for the purge (the lock), then sees the epoch it advanced: refused."""
    conn = connect(writer)
    epoch = epoch_of(conn)
    purger = sqlalchemy.create_engine(database_url).connect()
    outcome: list[tuple[str | None, object]] = []
    try:
        purging = purger.begin()
        purger.exec_driver_sql(
            "INSERT INTO pii_vault (token, pii_field, recipient, ephemeral_public_key, "
            f"nonce, ciphertext) VALUES ('{ERASED}', 'ip', 'r', '\\x00', '\\x00', '\\x00')"
        )
        purger.exec_driver_sql(f"INSERT INTO vault_purge_candidates VALUES ('ip', '{ERASED}')")
        assert (
            purger.exec_driver_sql(
                "SELECT ip_purged FROM loginetl_purge_candidates(10, 0)"
            ).scalar_one()
            == 1
        )
        # The writer's batch, prepared with ERASED cached (no vault entry staged for it).
        mover = threading.Thread(
            target=lambda: outcome.append(move(conn, epoch, login("w", ERASED)))
        )
        mover.start()
        waiting = INBOX_LOCKS + "AND NOT granted"
        deadline = time.monotonic() + 10
        while owner_scalar(database_url, waiting) == 0:
            assert time.monotonic() < deadline, "the move did not wait for the purge"
            time.sleep(0.05)
        assert not outcome
        purging.commit()
        mover.join(10)
    finally:
        purger.close()
        conn.close()
    assert outcome == [(STALE, None)]
    assert owner_scalar(database_url, "SELECT count(*) FROM user_logins") == 0
