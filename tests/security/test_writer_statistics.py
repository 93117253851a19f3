"""The writer cannot tell from PostgreSQL's statistics whether a token is already stored.

``loginetl_move_staged()`` inserts a vault entry only when its token is new, and the fold
updates a token_stats row only when the token was seen before; the per-table counters
(``n_tup_ins``, ``n_tup_upd``, ...) of the writer's own transaction would show which.
With the HMAC key on the consumer host, that is a presence oracle for any guessed ip.
Migration 0010 revokes those counter functions from PUBLIC in this database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import PlainVaultEntry, SealedVaultEntry, VaultSealer
from loginetl.services import db, keys
from tests.conftest import OWNER_KIND
from tests.security.conftest import World, attack, sql

# Closed by revoking pg_catalog functions (catalog_privileges.sql), which only a superuser
# may do: on a database a managed PostgreSQL's owner migrated, these attacks get through
# until the writer's statements stop depending on what is stored (issue #24).
pytestmark = pytest.mark.xfail(
    OWNER_KIND == "managed",
    reason="pg_catalog privileges need a superuser; the structural fix is issue #24",
    strict=True,
)

XACT_COUNTER = (
    "SELECT {column} FROM pg_stat_xact_user_tables WHERE relid = 'public.{table}'::regclass"
)


@pytest.fixture
def writer_cursor(world: World) -> Iterator[psycopg2.extensions.cursor]:
    """A raw psycopg2 session as a real writer login, in one transaction rolled back after."""
    parts = make_url(world.writer)
    conn = psycopg2.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    )
    try:
        with conn.cursor() as cursor:
            yield cursor
        conn.rollback()
    finally:
        conn.close()


def _counter(cursor: psycopg2.extensions.cursor, column: str, table: str) -> int:
    cursor.execute(XACT_COUNTER.format(column=column, table=table))
    return int(cursor.fetchone()[0])  # type: ignore[index]


def _login(masked_ip: str) -> LoginRow:
    key = f"probe-{uuid.uuid4().hex}"
    return LoginRow(
        key, key, "ios", masked_ip, "k1:" + "0" * 64, None, 1, "1", datetime.now(UTC), date.today()
    )


def vault_probe(cur: psycopg2.extensions.cursor, entry: list[SealedVaultEntry]) -> bool:
    """The attack: True when the guessed token was already in the vault (b = a)."""
    cur.execute("SELECT loginetl_prepare_staging()")
    before = _counter(cur, "n_tup_ins", "pii_vault")
    cur.copy_expert("COPY pg_temp.loginetl_staged_vault FROM STDIN", db._copy_vault(entry))
    cur.execute("SELECT loginetl_move_staged()")
    return _counter(cur, "n_tup_ins", "pii_vault") == before


def fold_probe(cur: psycopg2.extensions.cursor, guess: str) -> bool:
    """The attack: True when the fold updated (not inserted) the guessed token's stats row."""
    cur.execute("SELECT loginetl_prepare_staging()")
    cur.execute("SELECT loginetl_fold_rollups(100000, true)")  # others' pending rows first
    before = _counter(cur, "n_tup_upd", "token_stats")
    cur.copy_expert(
        "COPY pg_temp.loginetl_staged_logins FROM STDIN", db._copy_rows([_login(guess)])
    )
    cur.execute("SELECT loginetl_move_staged()")
    cur.execute("SELECT loginetl_fold_rollups(100000, true)")
    return _counter(cur, "n_tup_upd", "token_stats") > before


def test_vault_insert_counter_is_refused(
    world: World, writer_cursor: psycopg2.extensions.cursor
) -> None:
    guess = world.ip_tokens[0]  # the attacker's guess: the token of an ip it wants to test
    entry = VaultSealer(keys.load_public_key(world.keys_dir)).seal(
        [PlainVaultEntry(guess, "ip", world.values[guess])]
    )
    with (
        attack("writer: n_tup_ins of pii_vault around loginetl_move_staged (is a token stored?)"),
        pytest.raises(psycopg2.errors.InsufficientPrivilege, match="pg_stat_get_"),
    ):
        vault_probe(writer_cursor, entry)


def test_fold_update_counter_is_refused(
    world: World, writer_cursor: psycopg2.extensions.cursor
) -> None:
    with (
        attack("writer: n_tup_upd of token_stats around loginetl_fold_rollups (seen before?)"),
        pytest.raises(psycopg2.errors.InsufficientPrivilege, match="pg_stat_get_"),
    ):
        fold_probe(writer_cursor, world.ip_tokens[1])


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT n_tup_ins, n_live_tup FROM pg_stat_user_tables",
        "SELECT heap_blks_hit FROM pg_statio_user_tables",
        "SELECT idx_scan FROM pg_stat_user_indexes",
        "SELECT tup_inserted FROM pg_stat_database",
        "SELECT pg_stat_get_xact_tuples_inserted('public.pii_vault'::regclass)",
    ],
)
def test_every_counter_view_is_refused_to_the_writer(world: World, statement: str) -> None:
    with (
        attack(f"writer: {statement[:70]}"),
        pytest.raises(ProgrammingError, match="permission denied for function pg_stat_get_"),
    ):
        sql(world.writer, statement)
    assert sql(world.owner, statement) is not None  # pg_monitor and superusers still read them
