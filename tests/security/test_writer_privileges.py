"""The writer role inserts but cannot read tokens back (migration 0008).

Played as an attacker who holds a real login role in loginetl_writer (a compromised
consumer host) and talks SQL directly, not through loginetl.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.batch import InboundMessage, prepare_batch
from loginetl.core.vault_crypto import VaultSealer
from loginetl.services import db, keys
from tests.conftest import PUBLIC_SAMPLE
from tests.e2e.conftest import consume_json, count_rows
from tests.rollups import rollups_exact

INSUFFICIENT_PRIVILEGE = "42501"
INVALID_PARAMETER_VALUE = "22023"


def connect(url: str) -> psycopg2.extensions.connection:
    """A raw DBAPI connection, as an attacker's psql would have."""
    parts = make_url(url)
    conn = psycopg2.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    )
    conn.autocommit = True
    return conn


def pgcode_of(conn: psycopg2.extensions.connection, statement: str) -> str | None:
    """Run a statement; return the SQLSTATE it failed with, or None if it succeeded."""
    with conn.cursor() as cursor:
        try:
            if statement.startswith("COPY"):
                cursor.copy_expert(statement, io.StringIO())
            else:
                cursor.execute(statement)
        except psycopg2.Error as error:
            return str(error.pgcode)
    return None


def owner_scalar(database_url: str, statement: str) -> object:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(statement)).scalar_one()
    finally:
        engine.dispose()


def messages(count: int, *, first: int = 0) -> list[InboundMessage]:
    now = datetime.now(UTC)
    return [
        InboundMessage(
            f"m{i}",
            "",
            json.dumps(
                {
                    "user_id": f"user-{i % 3}",
                    "app_version": "2.3.0",
                    "device_type": "ios",
                    "ip": f"10.0.0.{i % 5}",
                    "locale": None,
                    "device_id": f"dev-{i % 4}",
                }
            ),
            now,
        )
        for i in range(first, first + count)
    ]


def write_as(url: str, settings: Settings, batch: list[InboundMessage]) -> int:
    """The batch write consume does, through an engine logged in as ``url``'s role."""
    prepared = prepare_batch(
        batch,
        masker=keys.load_masker(settings.keys_dir),
        sealer=VaultSealer(keys.load_public_key(settings.keys_dir)),
    )
    engine = db.make_engine(url, pool_size=1)
    try:
        return db.write_batch(engine, prepared.rows, prepared.vault_entries)
    finally:
        engine.dispose()


@pytest.fixture
def writer(login_role: Callable[[str], str]) -> str:
    return login_role("loginetl_writer")


@pytest.fixture
def loaded_by_writer(writer: str, settings: Settings, database_url: str) -> str:
    """Ten rows written as the writer, analyzed (so pg_stats holds token values)."""
    assert write_as(writer, settings, messages(10)) == 10
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return writer


# Each reads tokens back (or would let the writer skew the rollups) and must be refused.
TOKEN_READS = [
    "SELECT masked_ip FROM user_logins",
    "SELECT masked_device_id FROM user_logins",
    "SELECT * FROM user_logins",
    "SELECT masked_ip FROM user_logins_default",
    "SELECT token FROM token_users",
    "SELECT token FROM token_stats",
    "SELECT user_id FROM user_stats",
    "SELECT masked_ip FROM rollup_pending",
    "SELECT token FROM pii_vault",
    "SELECT token FROM vault_inbox",
    "SELECT * FROM loginetl_backlog()",
    pytest.param("SELECT public.loginetl_fold_rollups(1000, true)", id="fold (reads tokens)"),
    pytest.param("SELECT public.loginetl_settle_vault(1000, true)", id="settle (reads the vault)"),
    "COPY user_logins TO STDOUT",
    "COPY (SELECT masked_ip, masked_device_id FROM user_logins) TO STDOUT",
    pytest.param(
        "INSERT INTO user_logins (idempotency_key, user_id, device_type, masked_ip, "
        "masked_device_id, app_version, app_version_raw, sent_at, create_date) "
        "VALUES ('x', 'u', 'ios', 'k1:x', 'k1:y', 1, '1', now(), current_date) "
        "RETURNING masked_ip",
        id="INSERT ... RETURNING masked_ip",
    ),
    pytest.param(
        "INSERT INTO pii_vault (token, pii_field, recipient, ephemeral_public_key, nonce, "
        "ciphertext) VALUES ('k1:x', 'ip', 'r', '', '', '') ON CONFLICT DO NOTHING",
        id="INSERT INTO pii_vault (a token-seen oracle)",
    ),
    "DELETE FROM rollup_pending",
    "UPDATE token_stats SET users = 0",
    pytest.param("SELECT public.loginetl_move_staged()", id="move without prepared staging tables"),
]


@pytest.mark.parametrize("statement", TOKEN_READS)
def test_writer_cannot_read_tokens_back(loaded_by_writer: str, statement: str) -> None:
    conn = connect(loaded_by_writer)
    try:
        assert pgcode_of(conn, statement) == INSUFFICIENT_PRIVILEGE
    finally:
        conn.close()


def test_writer_sees_no_token_values_in_the_planner_statistics(
    loaded_by_writer: str, database_url: str
) -> None:
    statistics = (
        "SELECT count(*) FROM pg_stats WHERE tablename LIKE 'user_logins%' "
        "AND attname IN ('masked_ip', 'masked_device_id')"
    )
    assert owner_scalar(database_url, statistics) != 0  # the owner's view has them
    conn = connect(loaded_by_writer)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statistics)
            assert cursor.fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("max_rows", ["2147483647", "100001", "0", "-1", "NULL"])
@pytest.mark.parametrize("function", ["loginetl_fold_rollups", "loginetl_settle_vault"])
def test_fold_and_settle_refuse_unbounded_arguments(
    loaded_by_writer: str, maintainer: str, database_url: str, max_rows: str, function: str
) -> None:
    conn = connect(maintainer)  # the fold worker's role; the writer may not call them at all
    try:
        code = pgcode_of(conn, f"SELECT public.{function}({max_rows}, true)")
    finally:
        conn.close()
    assert code == INVALID_PARAMETER_VALUE
    assert owner_scalar(database_url, "SELECT count(*) FROM rollup_pending") == 10


VAULT_ENTRY = "{token}\tip\tr\t\\\\x00\t\\\\x00\t\\\\x00\n"


def stage_and_move(cursor: psycopg2.extensions.cursor, vault: str = "", logins: str = "") -> object:
    """The batch write's three steps, by hand: prepare, COPY, move; return move's answer."""
    cursor.execute("BEGIN")
    cursor.execute("SELECT public.loginetl_prepare_staging()")
    cursor.copy_expert("COPY pg_temp.loginetl_staged_vault FROM STDIN", io.StringIO(vault))
    cursor.copy_expert("COPY pg_temp.loginetl_staged_logins FROM STDIN", io.StringIO(logins))
    cursor.execute("SELECT public.loginetl_move_staged()")
    answer = cursor.fetchall()
    cursor.execute("COMMIT")
    return answer


def fold_as_owner(database_url: str) -> None:
    """The fold worker's part (settle and fold), which the writer may not do."""
    engine = db.make_engine(database_url, pool_size=1)
    try:
        db.fold(engine, wait=True)
    finally:
        engine.dispose()


def test_the_write_path_does_not_tell_the_writer_whether_a_token_was_seen(
    loaded_by_writer: str, database_url: str
) -> None:
    fold_as_owner(database_url)
    seen = str(owner_scalar(database_url, "SELECT min(token) FROM pii_vault"))
    entry = f"SELECT ciphertext FROM pii_vault WHERE token = '{seen}'"
    before = owner_scalar(database_url, entry)
    conn = connect(loaded_by_writer)
    try:
        with conn.cursor() as cursor:
            answers = [
                (stage_and_move(cursor, VAULT_ENTRY.format(token=token)), cursor.statusmessage)
                for token in (seen, "k1:" + "f" * 64)
            ]
    finally:
        conn.close()
    assert answers[0] == answers[1] == ([(0,)], "COMMIT")  # no new rows, either way
    fold_as_owner(database_url)
    assert owner_scalar(database_url, entry) == before  # the first writer's entry stands


LOOK_ALIKES = {
    "a view": "CREATE TEMP VIEW loginetl_staged_logins AS SELECT 'planted'::text AS "
    "idempotency_key, 'planted'::varchar AS user_id, 'ios'::varchar AS device_type, "
    "'k1:p'::varchar AS masked_ip, 'k1:q'::varchar AS masked_device_id, NULL::varchar AS "
    "locale, 1 AS app_version, '1'::varchar AS app_version_raw, now() AS sent_at, "
    "current_date AS create_date",
    "a table of its own": "CREATE TEMP TABLE loginetl_staged_logins (idempotency_key text, "
    "user_id varchar(128), device_type varchar(32), masked_ip varchar(80), masked_device_id "
    "varchar(80), locale varchar(32), app_version integer, app_version_raw varchar(16), "
    "sent_at timestamptz, create_date date); INSERT INTO loginetl_staged_logins VALUES "
    "('planted', 'planted', 'ios', 'k1:p', 'k1:q', NULL, 1, '1', now(), current_date)",
}


@pytest.mark.parametrize("look_alike", list(LOOK_ALIKES), ids=list(LOOK_ALIKES))
def test_move_refuses_staging_tables_the_caller_made(
    writer: str, database_url: str, look_alike: str
) -> None:
    """The writer makes the staging table itself, before loginetl's: the definer function
    must not read it (a view could call the caller's code with the owner's rights)."""
    conn = connect(writer)
    try:
        with conn.cursor() as cursor:
            cursor.execute(LOOK_ALIKES[look_alike])
            cursor.execute("SELECT public.loginetl_prepare_staging()")
            code = pgcode_of(conn, "SELECT public.loginetl_move_staged()")
    finally:
        conn.close()
    assert code == INSUFFICIENT_PRIVILEGE
    assert owner_scalar(database_url, "SELECT count(*) FROM user_logins") == 0


SHADOWS = ("user_logins", "rollup_pending", "token_users", "token_stats", "vault_inbox")


def _plant(cursor: psycopg2.extensions.cursor) -> None:
    """Temp tables named like the real ones, first on the search path, with planted rows."""
    for table in SHADOWS:
        cursor.execute(
            f"CREATE TEMP TABLE {table} (user_id text, masked_ip text, "
            "masked_device_id text, sent_at timestamptz)"
        )
    cursor.execute("INSERT INTO pg_temp.rollup_pending VALUES ('planted', 'k1:p', 'k1:q', now())")
    cursor.execute("SET search_path = pg_temp, public")


def test_shadowing_objects_and_search_path_steer_neither_function(
    writer: str, maintainer: str, database_url: str
) -> None:
    """Look-alikes planted by the writer (before its move) and by the fold worker's role
    (before its fold): the move and the fold use only the real tables."""
    conn = connect(writer)
    try:
        with conn.cursor() as cursor:
            _plant(cursor)
            login = "real\tu\tios\tk1:a\tk1:b\t\\N\t1\t1\t2026-11-25T00:00:00+00:00\t2026-11-25\n"
            moved = stage_and_move(cursor, logins=login)
            cursor.execute("SELECT count(*) FROM pg_temp.user_logins")
            temp_logins = cursor.fetchone()
    finally:
        conn.close()
    real_pending = owner_scalar(database_url, "SELECT count(*) FROM rollup_pending")
    conn = connect(maintainer)
    try:
        with conn.cursor() as cursor:
            _plant(cursor)
            cursor.execute("SELECT public.loginetl_fold_rollups(100000, true)")
            folded = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM pg_temp.rollup_pending")
            planted_left = cursor.fetchone()
    finally:
        conn.close()
    assert moved == [(1,)]
    assert real_pending == 1
    assert folded == (1,)
    assert planted_left == (1,)  # the fold never touched the caller's look-alike
    assert temp_logins == (0,)  # nor did the move write to one
    planted = "SELECT count(*) FROM token_users WHERE user_id = 'planted'"
    assert owner_scalar(database_url, planted) == 0
    engine = create_engine(database_url)
    with engine.connect() as owner:
        assert rollups_exact(owner)
    engine.dispose()


def test_writer_batch_write_queues_only_new_rows(
    writer: str, maintainer: str, settings: Settings, database_url: str
) -> None:
    assert write_as(writer, settings, messages(6)) == 6
    assert write_as(writer, settings, messages(6, first=3)) == 3  # m3..m5 redelivered
    assert owner_scalar(database_url, "SELECT count(*) FROM rollup_pending") == 9
    engine = db.make_engine(maintainer, pool_size=1)  # the fold worker's role
    try:
        assert db.fold_rollups(engine, limit=4) == 9  # three chunks, through the function
    finally:
        engine.dispose()
    owner = create_engine(database_url)
    with owner.connect() as conn:
        assert rollups_exact(conn)
    owner.dispose()


def test_consume_as_the_writer_loads_the_public_sample_exactly(
    cli_env: dict[str, str],
    settings: Settings,
    queues: tuple[str, str],
    writer: str,
) -> None:
    seeded = CliRunner().invoke(
        app, ["seed", "--from-file", str(PUBLIC_SAMPLE), "--json"], env=cli_env
    )
    assert seeded.exit_code == 0, seeded.output
    summary = consume_json({**cli_env, "LOGINETL_DATABASE_URL": writer})
    assert (summary["received"], summary["loaded"], summary["dead_lettered"]) == (100, 99, 1)
    assert count_rows(settings.database_url) == 99
    fold_as_owner(settings.database_url)  # the fold worker's part
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        assert rollups_exact(conn)
    engine.dispose()


def test_stats_as_the_writer_is_refused_with_the_role_to_use(
    loaded_by_writer: str, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "LOGINETL_DATABASE_URL": loaded_by_writer}
    result = CliRunner().invoke(app, ["stats", "--no-queues", "--json"], env=env)
    assert result.exit_code == 3
    assert "loginetl_analyst" in result.stderr
    assert result.stdout == ""
