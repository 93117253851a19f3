"""Upgrading a database that already holds data and audit rows keeps the chain valid."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from loginetl.services import db, migrations
from tests.conftest import _admin_engine, _base_url, _drop
from tests.security.conftest import REASON, World, run, sql, write_as_0006


@pytest.fixture
def at_0006(template_database: str) -> Iterator[str]:
    """A database of our own, migrated to 0006 only (the template is at head)."""
    name = f"loginetl_up_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{_base_url()}/{name}"
    engine = db.make_engine(url, pool_size=1)
    try:
        migrations.upgrade(engine, "0006")
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        _drop(admin, name)
        admin.dispose()


def test_upgrade_from_0006_keeps_audit_verify_passing(
    at_0006: str, login_role: Callable[[str], str], keys_dir: Path
) -> None:
    def login_in(group: str) -> str:  # a login role of the group, into this database
        database = make_url(at_0006).database
        return make_url(login_role(group)).set(database=database).render_as_string(False)

    writer = login_in("loginetl_writer")
    values = write_as_0006(writer, keys_dir, {"198.51.100.9": "device-old"}, "old")
    token = next(t for t, v in values.items() if "." in v)
    # Audit rows written the 0006 way: a plain INSERT, chained by the 0003 trigger.
    for outcome in ("revealed", "unknown_token", "revealed"):
        sql(
            at_0006,
            "INSERT INTO unmask_audit (seq, at, db_role, token, reason, outcome, prev_hash, "
            "row_hash) VALUES (0, now(), '', :t, :r, :o, '', '')",
            {"t": token, "r": REASON, "o": outcome},
        )
    hashes = sql(at_0006, "SELECT seq, row_hash FROM unmask_audit ORDER BY seq")
    # As on PostgreSQL 14 and older, or a cluster upgraded from one: public is writable.
    sql(at_0006, "GRANT CREATE ON SCHEMA public TO PUBLIC")
    owner_env = World(at_0006, writer, "", "", "", keys_dir, values).env(at_0006)
    before = run(owner_env, "audit", "verify", "--no-signatures")
    assert before.exit_code == 0, before.output
    assert "intact: 3 rows" in before.stdout

    upgraded = run(owner_env, "migrate", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    after = run(owner_env, "audit", "verify")
    assert after.exit_code == 0, after.output
    assert "intact: 3 rows" in after.stdout
    assert "rows 1-3 are unsigned" in after.stdout  # nothing signed them before 0007
    assert sql(at_0006, "SELECT seq, row_hash FROM unmask_audit ORDER BY seq") == hashes
    public_create = "SELECT has_schema_privilege('public', 'public', 'CREATE')"
    assert sql(at_0006, public_create) == [(False,)]

    unmasker = login_in("loginetl_unmasker")
    env = {**owner_env, "LOGINETL_DATABASE_URL": unmasker}
    revealed = run(env, "unmask", token, "--reason", REASON)
    assert revealed.exit_code == 0, revealed.output
    assert revealed.stdout == values[token] + "\n"
    signed = run(env, "audit", "verify")
    assert signed.exit_code == 0, signed.output
    assert "intact: 5 rows" in signed.stdout
    assert "signed through row 5" in signed.stdout
