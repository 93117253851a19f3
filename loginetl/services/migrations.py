"""Alembic's command API behind plain functions, one per ``loginetl migrate`` verb."""

from __future__ import annotations

import ast
import functools
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from loginetl.errors import MigrationRefused, MigrationRunning, SchemaNotAtHead
from loginetl.services.db import translate_errors

if TYPE_CHECKING:  # Alembic is imported by the verbs that run it, not by every status read
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic's package:path form: the environment is found through the import system, so it is
# the same from a checkout, an editable install, a wheel or an sdist (pyproject.toml maps the
# top-level migrations/ directory into the package loginetl._migrations).
SCRIPT_LOCATION = "loginetl._migrations:."
MIGRATIONS_PACKAGE = "loginetl._migrations"
COMPAT_TABLE = "loginetl_schema_compat"
BASELINE = "1.0"
# Before 1.0 the schema was built by sixteen revisions, 0001-0016, never released. A
# database at the last of them is adopted: `migrate upgrade` adds the two tables and the
# changes 1.0 made to its tables, runs the functions, triggers and grants, stamps 1.0.
PRE_RELEASE = re.compile(r"00(0[1-9]|1[0-6])")
PRE_RELEASE_LAST = "0016"
ADOPT_0016 = (
    "tables/vault_inbox.sql",
    "tables/locks.sql",
    "adopt_0016.sql",
    "functions/",
    "triggers.sql",
    "grants.sql",
)
_LOCK_NOT_AVAILABLE = "55P03"
# One `migrate upgrade`/`downgrade` at a time per database: SHARE UPDATE EXCLUSIVE on
# alembic_version, which no loginetl role may take (they may only read it, so LOCK it in
# ACCESS SHARE at most) and which neither their reads nor Alembic's own UPDATE of the
# version row conflict with. Never an advisory lock: any role could take that and hold it.
MIGRATE_LOCK = "LOCK TABLE public.alembic_version IN SHARE UPDATE EXCLUSIVE MODE"
# Alembic's own DDL for its table, made first so the lock has something to lock on a new
# database (Alembic then finds it there); the same text as `migrate upgrade --sql` prints.
_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS public.alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)
MIGRATE_RUNNING = (
    "another `loginetl migrate` is running against this database; "
    "wait for it to finish, then run this again"
)
# Who holds it: only the owner can, so another migrate (pg_locks is readable by all).
_MIGRATE_LOCK_HOLDER = """
SELECT pg_catalog.format('%s, backend pid %s', s.usename, l.pid)
  FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity s ON s.pid = l.pid
 WHERE l.relation = 'public.alembic_version'::regclass AND l.granted
   AND l.mode = 'ShareUpdateExclusiveLock' AND l.pid <> pg_catalog.pg_backend_pid()
 LIMIT 1
"""
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database's schema stands against this code's migrations."""

    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return set(self.current) == set(self.heads)


@dataclass(frozen=True)
class Revision:
    """One migration, for ``migrate history``."""

    revision: str
    down_revision: str | None
    description: str
    is_head: bool


def _config(output: io.StringIO | None = None) -> Config:
    from alembic.config import Config

    config = Config(output_buffer=output)
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def alembic_config(database_url: str) -> Config:
    """An Alembic Config pointing at our migrations, with the URL passed in memory."""
    config = _config()
    config.attributes["database_url"] = database_url
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


@functools.cache
def heads() -> tuple[str, ...]:
    """This code's head revisions, read from the revision files' two assignments.

    What Alembic's ScriptDirectory answers (a test holds them equal), without importing
    Alembic and executing every migration module: ~0.3 s of a `stats` run otherwise.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (resources.files(MIGRATIONS_PACKAGE) / "versions").iterdir():
        if not script.name.endswith(".py"):
            continue
        found = dict(_ASSIGNMENT.findall(script.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        revisions.add(ast.literal_eval(found["revision"]))
        down = ast.literal_eval(found.get("down_revision", "None"))
        parents.update([down] if isinstance(down, str) else down or ())
    return tuple(sorted(revisions - parents))


@contextmanager
def _migrate_lock(connection: Connection) -> Iterator[None]:
    """Hold the migrate lock for the whole run, on a session of its own, or fail fast.

    Two runs at once could interleave one migration's steps: a second 0016 took the first's
    build, still INVALID, for a failed leftover and dropped it. The lock is a table lock,
    so it lives in a transaction: a second session keeps one open for the run, and so it
    survives the per-migration commits of ``connection``. Waits at most 2 s (autovacuum,
    which also takes this mode, gives way within deadlock_timeout).
    """
    holder = connection.engine.connect()
    try:
        try:
            holder.execute(text(_VERSION_TABLE))
            holder.commit()
        except ProgrammingError:  # the other run made it at the same moment
            holder.rollback()
        holder.execute(text("SET LOCAL lock_timeout = '2s'"))
        try:
            holder.execute(text(MIGRATE_LOCK))
        except DBAPIError as error:
            if getattr(error.orig, "pgcode", None) != _LOCK_NOT_AVAILABLE:
                raise
            holder.rollback()
            who = holder.execute(text(_MIGRATE_LOCK_HOLDER)).scalar()
            holder.rollback()
            held = f" (held by {who})" if who is not None else ""
            raise MigrationRunning(MIGRATE_RUNNING.replace(";", f"{held};", 1)) from None
        yield
    finally:
        try:
            holder.rollback()
        finally:
            holder.close()


def _run(engine: Engine, step: Callable[[Config], None]) -> SchemaStatus:
    """Run one Alembic command on a connection of its own, each migration in a transaction
    of its own (env.py), under the migrate lock; return where the schema then stands.

    Each migration commits with its version row, so a failure keeps the ones before it;
    a migration that must run outside a transaction (CREATE INDEX CONCURRENTLY, 0016)
    can use Alembic's autocommit_block, which an enclosing transaction would refuse.
    One run at a time per database (:func:`_migrate_lock`); another fails fast.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with (
        translate_errors(engine, "migrate"),
        engine.connect() as connection,
        _migrate_lock(connection),
    ):
        config.attributes["connection"] = connection
        _adopt_pre_release(connection)
        step(config)
        connection.commit()  # whatever Alembic read outside a migration's transaction
    return status(engine)


def upgrade(engine: Engine, revision: str = "head") -> SchemaStatus:
    """Apply migrations up to ``revision`` (see :func:`_run`)."""
    from alembic import command

    return _run(engine, lambda config: command.upgrade(config, revision))


def upgrade_sql(revision: str = "head") -> str:
    """The DDL of every migration up to ``revision``, as a DBA would run it; no database."""
    from alembic import command

    output = io.StringIO()
    command.upgrade(_config(output), revision, sql=True)
    return output.getvalue()


def downgrade(engine: Engine, revision: str) -> SchemaStatus:
    """Revert migrations down to ``revision`` (e.g. "-1"; see :func:`_run`), never below 1.0."""
    from alembic import command

    if _below_baseline(status(engine).current, revision):
        raise MigrationRefused(
            f"{BASELINE} is the first revision: there is nothing below it to go back to; "
            "to start over, drop the database"
        )
    return _run(engine, lambda config: command.downgrade(config, revision))


def _below_baseline(current: tuple[str, ...], revision: str) -> bool:
    """Whether downgrading from ``current`` to ``revision`` would undo the baseline."""
    if revision == "base":
        return True
    steps = re.fullmatch(r"-(\d+)", revision)
    if steps is None or len(current) != 1:
        return False
    scripts = _scripts()
    at: str | None = current[0]
    for _ in range(int(steps.group(1))):
        script = scripts.get_revision(at) if at is not None else None
        if script is None:
            return at is None
        at = script.down_revision if isinstance(script.down_revision, str) else None
    return at is None


def sql_files(*entries: str) -> list[str]:
    """The text of loginetl/sql files in order; a trailing "/" is every .sql of a folder."""
    root = resources.files("loginetl") / "sql"
    texts = []
    for entry in entries:
        folder = root / entry
        files = (
            sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
            if entry.endswith("/")
            else [folder]
        )
        texts += [f.read_text(encoding="utf-8") for f in files]
    return texts


def _adopt_pre_release(connection: Connection) -> None:
    """Take a database at 0016 to 1.0 (ADOPT_0016); refuse older ones.

    One transaction: the tables, functions, triggers and grants of 1.0, the compatibility
    declarations of the pre-release revisions gone, the version stamped.
    """
    current = status_on(connection).current
    connection.commit()
    old = [r for r in current if PRE_RELEASE.fullmatch(r)]
    if not old:
        return
    if current != (PRE_RELEASE_LAST,):
        raise MigrationRefused(
            f"the database is at pre-release revision {', '.join(old)}, which loginetl 1.0 "
            f"adopts only from {PRE_RELEASE_LAST}; take it to {PRE_RELEASE_LAST} with the "
            "loginetl that made it (or drop and recreate it), then run this again"
        )
    for sql in sql_files(*ADOPT_0016):
        connection.execute(text(sql))
    connection.execute(text(f"DELETE FROM public.{COMPAT_TABLE}"))
    connection.execute(
        text("UPDATE public.alembic_version SET version_num = :baseline"), {"baseline": BASELINE}
    )
    connection.commit()


def status(engine: Engine) -> SchemaStatus:
    """Read the database's revision and this code's heads."""
    with translate_errors(engine, "read the schema revision"), engine.connect() as connection:
        return status_on(connection)


def status_on(connection: Connection) -> SchemaStatus:
    """:func:`status` on a connection the caller holds (two small reads, no Alembic)."""
    current: tuple[str, ...] = ()
    if connection.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar():
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        current = tuple(str(r) for r in rows.scalars())
    return SchemaStatus(current=current, heads=heads())


def history() -> list[Revision]:
    """Every migration, newest first."""
    scripts = _scripts()
    heads = set(scripts.get_heads())
    return [
        Revision(
            revision=s.revision,
            down_revision=s.down_revision if isinstance(s.down_revision, str) else None,
            description=s.doc or "",
            is_head=s.revision in heads,
        )
        for s in scripts.walk_revisions()
    ]


def require_head(engine: Engine) -> SchemaStatus:
    """Refuse to work on a schema this code was not written for."""
    current = status(engine)
    if not current.at_head:
        have = ", ".join(current.current) or "no schema"
        raise SchemaNotAtHead(
            f"the database is at {have} but loginetl expects {', '.join(current.heads)}; "
            "run: loginetl migrate upgrade"
        )
    return current


def _declarations(engine: Engine) -> dict[str, str]:
    try:
        with translate_errors(engine, "read schema compatibility"), engine.connect() as conn:
            rows = conn.execute(text(f"SELECT revision, compatible_with FROM {COMPAT_TABLE}"))
            return {str(r): str(c) for r, c in rows}
    except ProgrammingError:
        return {}  # no such table: nothing declared


def require_compatible(engine: Engine) -> SchemaStatus:
    """Refuse a schema this code cannot run on; accept one ahead that declares it may.

    The rule: a consumer runs on its head, or on a schema ahead of its head when every
    revision it does not know declares itself compatible with a revision it does know.
    """
    current = status(engine)
    if current.at_head:
        return current
    if any(PRE_RELEASE.fullmatch(r) for r in current.current):
        return require_head(engine)  # pre-release: migrate upgrade adopts it
    scripts = _scripts()
    known = {s.revision for s in scripts.walk_revisions()}
    unknown = [r for r in current.current if r not in known]
    if not current.current or not unknown:
        return require_head(engine)  # behind (or no schema): migrate upgrade first
    declared = _declarations(engine)
    newer = [r for r in declared if r not in known]
    refusing = sorted(
        {r for r in unknown if r not in declared} | {r for r in newer if declared[r] not in known}
    )
    if refusing:
        raise SchemaNotAtHead(
            f"the database is at {', '.join(current.current)}, ahead of this loginetl "
            f"({', '.join(current.heads)}), and revision {', '.join(refusing)} does not declare "
            "itself compatible with it; deploy the newer loginetl"
        )
    return current
