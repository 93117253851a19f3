"""Migration 0011's signed rollups, attacked by each role with raw SQL.

The fold now subtracts rows whose ``sign`` is -1, so whoever can put a -1 row into
rollup_pending (or steer the redefined definer functions) could make tokens, users and
logins vanish from stats, or drive counts negative. The new rollup tables are for the
analyst to read, and nobody else; the fold buckets hours in UTC whatever the caller's
session says.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url

from loginetl.core.batch import LoginRow
from loginetl.services import db
from tests.security.conftest import World, attack, sql

NEW_TABLES = ("rollup_totals", "rollup_breakdown", "rollup_months", "rollup_hourly")


def _connect(url: str) -> psycopg2.extensions.connection:
    parts = make_url(url)
    return psycopg2.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    )


@pytest.fixture
def writer_conn(world: World) -> Iterator[psycopg2.extensions.connection]:
    conn = _connect(world.writer)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _refused(url: str, statement: str) -> None:
    conn = _connect(url)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("table", NEW_TABLES)
@pytest.mark.parametrize("group", ["writer", "unmasker", "rederiver"])
def test_only_the_analyst_reads_the_new_rollups(world: World, group: str, table: str) -> None:
    with attack(f"{group}: SELECT * FROM {table}"):
        _refused(getattr(world, group), f"SELECT * FROM public.{table}")


@pytest.mark.parametrize("table", NEW_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO public.{t} SELECT * FROM public.{t} LIMIT 1",
        "UPDATE public.{t} SET logins = 0",
        "DELETE FROM public.{t}",
        "TRUNCATE public.{t}",
    ],
)
def test_the_analyst_cannot_change_the_new_rollups(
    world: World, table: str, statement: str
) -> None:
    statement = statement.format(t=table)
    if table == "rollup_totals":
        statement = statement.replace("logins", "value")
    with attack(f"analyst: {statement[:60]}"):
        _refused(world.analyst, statement)


@pytest.mark.parametrize("group", ["writer", "analyst", "unmasker", "rederiver"])
def test_no_role_inserts_a_minus_one_row(world: World, group: str) -> None:
    with attack(f"{group}: INSERT INTO rollup_pending ... sign -1 (make the fold subtract)"):
        _refused(
            getattr(world, group),
            "INSERT INTO public.rollup_pending (user_id, masked_ip, masked_device_id, sent_at, "
            "device_type, app_version_raw, create_date, loaded_at, sign) "
            "VALUES ('u', 'k1:x', 'k1:y', now(), 'ios', '1', current_date, now(), -1)",
        )


def test_the_staging_tables_carry_no_sign(
    world: World, writer_conn: psycopg2.extensions.connection
) -> None:
    with writer_conn.cursor() as cur:
        cur.execute("SELECT loginetl_prepare_staging()")
    writer_conn.commit()
    for name, statement in [
        (
            "COPY ... (sign)",
            "COPY pg_temp.loginetl_staged_logins (idempotency_key, sign) FROM STDIN",
        ),
        ("ALTER TABLE ... ADD sign", "ALTER TABLE pg_temp.loginetl_staged_logins ADD sign int"),
    ]:
        with (
            attack(f"writer: {name} into the staging table (a -1 row through the move)"),
            pytest.raises((psycopg2.errors.UndefinedColumn, psycopg2.errors.InsufficientPrivilege)),
            writer_conn.cursor() as cur,
        ):
            cur.execute(statement)
        writer_conn.rollback()


def _row(user: str) -> LoginRow:
    key = f"tz-{uuid.uuid4().hex}"
    return LoginRow(
        key, user, "ios", "k1:" + "a" * 64, "k1:" + "b" * 64, None, 1, "1",
        datetime.now(UTC), date.today(),
    )  # fmt: skip


def test_a_session_time_zone_does_not_move_the_fold_s_hours(
    world: World, writer_conn: psycopg2.extensions.connection
) -> None:
    with writer_conn.cursor() as cur:
        cur.execute("SET TimeZone = 'Pacific/Chatham'")  # +12:45 / +13:45
        cur.execute("SELECT loginetl_prepare_staging()")
        cur.copy_expert(
            "COPY pg_temp.loginetl_staged_logins FROM STDIN", db._copy_rows([_row("tz")])
        )
        cur.execute("SELECT loginetl_move_staged()")
    writer_conn.commit()
    parts = make_url(world.analyst)  # a role that may fold (stats does)
    analyst = psycopg2.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    )
    with attack("analyst: SET TimeZone to a :45 zone before folding (hours off the UTC grid)"):
        try:
            with analyst.cursor() as cur:
                cur.execute("SET TimeZone = 'Pacific/Chatham'")
                cur.execute("SELECT loginetl_fold_rollups(100000, true)")
            analyst.commit()
        finally:
            analyst.close()
        off_grid = sql(
            world.owner,
            "SELECT count(*) FROM public.rollup_hourly "
            "WHERE loaded_hour <> date_trunc('hour', loaded_hour AT TIME ZONE 'UTC') "
            "AT TIME ZONE 'UTC'",
        )
        assert off_grid == [(0,)]


@pytest.mark.parametrize(
    "function", ["loginetl_fold_rollups(integer,boolean)", "loginetl_move_staged()"]
)
def test_the_redefined_functions_pin_search_path_and_the_fold_its_zone(
    world: World, function: str
) -> None:
    config = sql(
        world.owner,
        "SELECT proconfig, prosecdef FROM pg_catalog.pg_proc "
        f"WHERE oid = 'public.{function}'::regprocedure",
    )[0]
    assert config[1] is True
    assert "search_path=pg_catalog, pg_temp" in config[0]
    if function.startswith("loginetl_fold"):
        assert "TimeZone=UTC" in config[0]
    grantees = sql(
        world.owner,
        "SELECT DISTINCT grantee::regrole::text FROM pg_catalog.pg_proc p, "
        "aclexplode(p.proacl) a WHERE p.oid = 'public." + function + "'::regprocedure "
        "AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner ORDER BY 1",
    )
    # Not PUBLIC (grantee 0 shows as "-"); the writer appends and never folds.
    folders = ["loginetl_analyst", "loginetl_maintainer"]
    expected = folders if function.startswith("loginetl_fold") else ["loginetl_writer"]
    assert [g for (g,) in grantees] == expected
