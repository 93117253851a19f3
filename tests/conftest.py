"""Shared fixtures: a real LocalStack SQS endpoint and real PostgreSQL databases.

Each test gets its own database (cloned from a migrated template) and its own queues,
and both are removed afterwards. Nothing here touches a database it did not create.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from loginetl.config import Settings
from loginetl.services import db, keys, migrations
from loginetl.services.sqs import SqsService, make_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import localstack as localstack_tool  # noqa: E402

# The take-home's public sample (100 messages, one malformed), kept in the project so the
# test that loads it runs on any clone, not only where ../shared happens to exist.
PUBLIC_SAMPLE = ROOT / "tests" / "fixtures" / "fetch_sample_messages.json"


# -- SQS ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A LocalStack of our own on a free port (or LOGINETL_TEST_SQS_ENDPOINT if set)."""
    external = os.environ.get("LOGINETL_TEST_SQS_ENDPOINT")
    if external:
        yield external
        return
    port = localstack_tool.free_port()
    pid = localstack_tool.start(port, tmp_path_factory.mktemp("localstack"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        localstack_tool.stop_pid(pid)


@pytest.fixture(scope="session")
def sqs(sqs_endpoint: str) -> SqsService:
    return SqsService(make_client(region="us-east-1", endpoint_url=sqs_endpoint))


# -- PostgreSQL --------------------------------------------------------------------------


def _base_url() -> str:
    return os.environ.get("LOGINETL_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")


# Who owns and migrates the test databases: "superuser" (the base URL's role), or "managed",
# a role with LOGIN CREATEDB CREATEROLE and no more, as a managed PostgreSQL's owner is.
# `make security` runs the attacks against both.
OWNER_KIND = os.environ.get("LOGINETL_TEST_OWNER", "superuser")
MANAGED_OWNER = "loginetl_test_managed_owner"
if OWNER_KIND not in ("superuser", "managed"):
    raise SystemExit(f"LOGINETL_TEST_OWNER must be superuser or managed, not {OWNER_KIND!r}")


def admin_engine() -> Engine:
    return create_engine(f"{_base_url()}/postgres", isolation_level="AUTOCOMMIT")


def _ensure_managed_owner(admin: Engine) -> None:
    with admin.connect() as conn:
        if not conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": MANAGED_OWNER}
        ).scalar():
            conn.execute(text(f"CREATE ROLE {MANAGED_OWNER} LOGIN CREATEDB CREATEROLE NOSUPERUSER"))


def create_database(name: str, *, owner: str | None = None, template: str | None = None) -> str:
    """Create a database (as the superuser); return a URL that logs in as its owner."""
    admin = admin_engine()
    try:
        clauses = ""
        if owner is not None:
            if owner == MANAGED_OWNER:
                _ensure_managed_owner(admin)
            clauses += f' OWNER "{owner}"'
        if template is not None:
            clauses += f' TEMPLATE "{template}"'
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clauses}'))
    finally:
        admin.dispose()
    url = make_url(f"{_base_url()}/{name}")
    if owner is not None:
        url = url.set(username=owner)
    return url.render_as_string(hide_password=False)


def as_superuser(url: str) -> str:
    """The same database, logged in as the test cluster's superuser (test housekeeping)."""
    superuser = make_url(_base_url()).username
    return make_url(url).set(username=superuser).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    admin = admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _test_owner() -> str | None:
    return MANAGED_OWNER if OWNER_KIND == "managed" else None


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A migrated database that per-test databases are cloned from."""
    url = create_database(f"loginetl_tmpl_{uuid.uuid4().hex[:10]}", owner=_test_owner())
    engine = db.make_engine(url, pool_size=1)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    try:
        yield make_url(url).database or ""
    finally:
        drop_database(url)


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    """A fresh, migrated database owned by this test alone; the URL logs in as its owner."""
    url = create_database(
        f"loginetl_test_{uuid.uuid4().hex[:10]}", owner=_test_owner(), template=template_database
    )
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A name for a database that does not exist yet; dropped afterwards if created."""
    url = f"{_base_url()}/loginetl_new_{uuid.uuid4().hex[:10]}"
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url, pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


# -- keys, settings, queues --------------------------------------------------------------


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    keys.init_keys(directory)
    return directory


@pytest.fixture
def settings(database_url: str, sqs_endpoint: str, keys_dir: Path) -> Settings:
    suffix = uuid.uuid4().hex[:12]
    return Settings.load(
        environ={},
        database_url=database_url,
        queue_name=f"login-{suffix}",
        dlq_name=f"login-{suffix}-dlq",
        endpoint_url=sqs_endpoint,
        keys_dir=keys_dir,
    )


@pytest.fixture
def queues(settings: Settings, sqs: SqsService) -> tuple[str, str]:
    """The test's queue and DLQ, created with a RedrivePolicy (maxReceiveCount 5)."""
    return sqs.create_queues(settings.queue_name, settings.dlq_name)


def env_for(settings: Settings, **overrides: str) -> dict[str, str]:
    """Environment that points loginetl at these settings' database, queues and keys."""
    return {
        "LOGINETL_DATABASE_URL": settings.database_url,
        "LOGINETL_QUEUE": settings.queue_name,
        "LOGINETL_DLQ": settings.dlq_name,
        "AWS_ENDPOINT_URL": settings.endpoint_url or "",
        "AWS_DEFAULT_REGION": settings.region,
        "LOGINETL_KEYS_DIR": str(settings.keys_dir),
        **overrides,
    }


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return env_for(settings)


LOGINETL = str(Path(sys.executable).parent / "loginetl")


def consume_process(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``loginetl consume --json`` as a real child process."""
    return subprocess.Popen(
        [LOGINETL, "consume", "--json", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    """Wait for a consume child; return its exit code, JSON summary and stderr."""
    out, err = process.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    return process.returncode, (json.loads(lines[-1]) if lines else {}), err


def database_name(url: str) -> str:
    return make_url(url).database or ""


@pytest.fixture
def login_role(database_url: str) -> Iterator[Callable[[str], str]]:
    """Make login roles in a loginetl group role; return a database URL that logs in as one."""
    made: list[str] = []
    admin = admin_engine()

    def make(group: str) -> str:
        name = f"t_{uuid.uuid4().hex[:10]}_{group.removeprefix('loginetl_')}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{name}" LOGIN IN ROLE {group}'))
        made.append(name)
        return make_url(database_url).set(username=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"
                    ),
                    {"n": name},
                )
                conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def sql_ascii_url() -> Iterator[str]:
    """A database encoded SQL_ASCII (which consume must refuse); dropped afterwards."""
    name = f"loginetl_ascii_{uuid.uuid4().hex[:10]}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.execute(
            text(
                f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            )
        )
    try:
        yield f"{_base_url()}/{name}"
    finally:
        admin.dispose()
        drop_database(f"{_base_url()}/{name}")
