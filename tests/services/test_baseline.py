"""The 1.0 baseline: one revision that builds the schema from loginetl/sql, offline or on
line, as a superuser or as a managed PostgreSQL's owner; a 0016 database adopted into it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.errors import MigrationRefused, MigrationRunning
from loginetl.services import db, migrations
from tests.conftest import MANAGED_OWNER, create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
SQL = ROOT / "loginetl" / "sql"
FIXTURE_0016 = ROOT / "tests" / "fixtures" / "schema_0016.sql"
runner = CliRunner()


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def schema_of(url: str, *, acl: bool = True) -> str:
    """pg_dump's schema of a database, without comments, blank lines or the monthly
    partitions (they depend on the day the database was made)."""
    options = ["--schema-only", "--no-owner", "-T", "public.user_logins_2*"]
    dumped = subprocess.run(
        ["pg_dump", *options, *([] if acl else ["--no-acl"]), _libpq(url)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(
        line
        for line in dumped.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


# Every privilege granted on the schema's objects but the owner's own: what each role may
# do, whoever owns them.
GRANTS = """
SELECT o.kind, o.name, coalesce(r.rolname, 'PUBLIC'), x.privilege_type
FROM (SELECT 'table' kind, c.oid::regclass::text name, c.relacl acl, c.relowner owner
      FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
      SELECT 'function', p.oid::regprocedure::text, p.proacl, p.proowner FROM pg_proc p
      WHERE p.pronamespace = 'public'::regnamespace
      UNION ALL
      SELECT 'schema', n.nspname, n.nspacl, n.nspowner FROM pg_namespace n
      WHERE n.nspname = 'public') o,
     aclexplode(o.acl) x LEFT JOIN pg_roles r ON r.oid = x.grantee
WHERE x.grantee <> o.owner AND o.name NOT LIKE 'user_logins_2%'
ORDER BY 1, 2, 3, 4
"""


def grants_of(url: str) -> list[tuple[str, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(GRANTS))]
    finally:
        engine.dispose()


def psql(url: str, script: str) -> None:
    subprocess.run(
        ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", _libpq(url)],
        input=script,
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def new_database() -> Iterator[str]:
    """An empty database, made by the superuser; dropped afterwards."""
    url = create_database(f"loginetl_base_{uuid.uuid4().hex[:10]}")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def managed_database() -> Iterator[str]:
    """An empty database owned by a role with LOGIN CREATEDB CREATEROLE and no more, as
    RDS, Aurora and Cloud SQL give; its URL logs in as that owner."""
    url = create_database(f"loginetl_mgd_{uuid.uuid4().hex[:10]}", owner=MANAGED_OWNER)
    try:
        yield url
    finally:
        drop_database(url)


def _upgrade(url: str) -> migrations.SchemaStatus:
    engine = db.make_engine(url, pool_size=1)
    try:
        return migrations.upgrade(engine)
    finally:
        engine.dispose()


def test_a_0016_database_is_adopted_into_the_schema_of_a_fresh_one(
    database_url: str, new_database: str
) -> None:
    psql(new_database, FIXTURE_0016.read_text(encoding="utf-8"))
    assert _upgrade(new_database).current == (migrations.BASELINE,)
    # 0016's superuser revoked pg_catalog's statistics, WAL and size functions from PUBLIC;
    # 1.0 needs no such revocation, and only a superuser could grant them back: they stay.
    catalog = re.compile(r"^(REVOKE|GRANT) .* ON FUNCTION pg_catalog\..*\n?", re.M)
    adopted = schema_of(new_database)
    assert len(catalog.findall(adopted)) > 40
    assert catalog.sub("", adopted) == schema_of(database_url)
    with create_engine(new_database).connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {migrations.COMPAT_TABLE}")).scalar() == 0


def test_an_older_pre_release_database_is_refused_with_what_to_do(new_database: str) -> None:
    psql(new_database, FIXTURE_0016.read_text(encoding="utf-8"))
    psql(new_database, "UPDATE alembic_version SET version_num = '0012';")
    before = schema_of(new_database)
    with pytest.raises(MigrationRefused, match="adopts only from 0016; take it to 0016"):
        _upgrade(new_database)
    assert schema_of(new_database) == before


def test_a_managed_owner_migrates_with_no_superuser_and_no_warning(
    database_url: str, managed_database: str
) -> None:
    engine = db.make_engine(managed_database, pool_size=1)
    notices: list[str] = []
    try:
        with engine.connect() as conn:
            conn.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
            assert not conn.execute(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar()
        assert migrations.upgrade(engine).at_head
    finally:
        engine.dispose()
    assert not [n for n in notices if "WARNING" in n]
    # The same schema and grants: no promise depends on who migrated.
    assert schema_of(managed_database, acl=False) == schema_of(database_url, acl=False)
    managed, superuser = grants_of(managed_database), grants_of(database_url)
    assert managed == superuser
    assert len(managed) > 50


def test_the_offline_ddl_builds_the_same_schema(database_url: str, new_database: str) -> None:
    result = runner.invoke(app, ["migrate", "upgrade", "--sql"])
    assert result.exit_code == 0, result.output
    assert "%%" not in result.output
    assert ";;" not in result.output
    assert "CREATE OR REPLACE FUNCTION public.loginetl_move_staged()" in result.output
    psql(new_database, result.output)
    assert schema_of(new_database) == schema_of(database_url)


def test_the_baseline_cannot_be_downgraded(engine: Engine, database_url: str) -> None:
    for target in ("base", "-1"):
        with pytest.raises(MigrationRefused, match=r"1\.0 is the first revision"):
            migrations.downgrade(engine, target)
    down = runner.invoke(
        app,
        ["migrate", "downgrade", "--yes", "--", "-1"],
        env={"LOGINETL_DATABASE_URL": database_url},
    )
    assert down.exit_code == 1
    assert "1.0 is the first revision" in down.output
    assert "Traceback" not in down.output
    assert migrations.status(engine).at_head


def test_a_second_migrate_fails_fast_and_changes_nothing(new_database: str) -> None:
    engine = db.make_engine(new_database, pool_size=1)
    try:
        with engine.connect() as other:  # another migrate, in the middle of its run
            other.execute(text(migrations._VERSION_TABLE))
            other.commit()
            other.execute(text(migrations.MIGRATE_LOCK))
            started = time.monotonic()
            with pytest.raises(MigrationRunning, match=r"is running .*\(held by .*, backend pid"):
                migrations.upgrade(engine)
            assert time.monotonic() - started < 10
            other.rollback()
            assert migrations.status(engine).current == ()
        assert migrations.upgrade(engine).at_head
        with engine.connect() as conn:  # released, though the pool keeps the connection
            held = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE d.datname = current_database() AND l.pid <> pg_backend_pid() "
                    "AND (l.locktype = 'advisory' OR l.relation = 'alembic_version'::regclass)"
                )
            ).scalar()
        assert held == 0
    finally:
        engine.dispose()


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_migration_imports_another_migration_or_loginetl() -> None:
    for revision in (ROOT / "migrations" / "versions").glob("*.py"):
        assert _imports(revision) <= {"__future__", "alembic", "importlib", "sqlalchemy"}, revision


def test_every_database_function_is_defined_once_in_a_file_named_after_it(
    database_url: str,
) -> None:
    with create_engine(database_url).connect() as conn:
        functions = set(
            conn.execute(
                text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
            ).scalars()
        )
    files = {f.stem for f in (SQL / "functions").glob("*.sql")}
    assert files == functions
    everything = [f.read_text(encoding="utf-8") for f in SQL.rglob("*.sql")]
    for name in functions:
        definition = re.compile(rf"CREATE (OR REPLACE )?FUNCTION public\.{name}\(")
        assert sum(len(definition.findall(t)) for t in everything) == 1, name
