"""Error classes on real PostgreSQL errors, keepalives, UTF-8, schema compatibility,
queues left as found, and the attribute key file (issue 11)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import Engine, create_engine, event, text
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.errors import ConfigError, SchemaNotAtHead
from loginetl.services import db, keys, migrations
from loginetl.services.sqs import SqsService


def _raw_error(engine: Engine, *statements: str) -> psycopg2.Error:
    """Run statements on a raw DBAPI cursor (as the COPY path does); return what it raised."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement in statements[:-1]:
            cursor.execute(statement)
        with pytest.raises(psycopg2.Error) as caught:
            cursor.execute(statements[-1])
        return caught.value
    finally:
        raw.close()


def test_a_statement_timeout_from_a_raw_cursor_is_transient(engine: Engine) -> None:
    error = _raw_error(engine, "SET statement_timeout = 50", "SELECT pg_sleep(2)")
    assert db.sqlstate(error) == "57014"
    assert db.is_transient(error)


def test_a_lock_timeout_is_transient(engine: Engine, database_url: str) -> None:
    holder = create_engine(database_url)
    with holder.begin() as conn:
        conn.execute(text("LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE"))
        error = _raw_error(engine, "SET lock_timeout = 50", "SELECT count(*) FROM user_logins")
    holder.dispose()
    assert db.sqlstate(error) == "55P03"
    assert db.is_transient(error)


def test_a_check_violation_is_data_and_its_detail_carries_no_value(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v text CHECK (v <> 'secret-value'))"))
    error = _raw_error(engine, "INSERT INTO t VALUES ('secret-value')")
    assert db.classify(error) == "data"
    assert db.rejection_detail(error) == "SQLSTATE 23514, constraint t_v_check"
    invalid = _raw_error(engine, "SELECT convert_from('\\xff'::bytea, 'UTF8')")
    assert db.classify(invalid) == "data"
    assert db.rejection_detail(invalid) == "SQLSTATE 22021"


def test_connections_carry_tcp_keepalives(engine: Engine) -> None:
    with engine.connect() as conn:
        dsn = conn.connection.dbapi_connection.get_dsn_parameters()  # type: ignore[union-attr]
    assert (dsn["keepalives"], dsn["keepalives_idle"], dsn["keepalives_count"]) == ("1", "30", "3")


# -- UTF-8 -----------------------------------------------------------------------------


def test_ensure_database_creates_utf8(empty_database_url: str) -> None:
    # This cluster's template1 is UTF8 already, so the encoding alone cannot tell: the
    # statement must ask for UTF8 from template0, whatever template1 holds elsewhere.
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert db.ensure_database(empty_database_url)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    (create,) = [s for s in statements if s.startswith("CREATE DATABASE")]
    assert create.endswith("ENCODING 'UTF8' TEMPLATE template0")
    engine = db.make_engine(empty_database_url, pool_size=1)
    try:
        db.require_utf8(engine)
    finally:
        engine.dispose()


def test_a_non_utf8_database_is_refused_with_a_sentence(sql_ascii_url: str) -> None:
    engine = db.make_engine(sql_ascii_url, pool_size=1)
    try:
        with pytest.raises(ConfigError, match="encoded SQL_ASCII, not UTF8"):
            db.require_utf8(engine)
    finally:
        engine.dispose()


# -- schema compatibility ----------------------------------------------------------------


def _pretend_future(engine: Engine, revision: str, declared: str | None) -> None:
    """Move the database to a revision this code has never seen, as a newer deploy would."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        if declared is not None:
            conn.execute(
                text(f"INSERT INTO {migrations.COMPAT_TABLE} VALUES (:r, :c)"),
                {"r": revision, "c": declared},
            )


def test_the_baseline_declares_nothing(engine: Engine) -> None:
    """Declarations are for revisions after 1.0 that older consumers may run on."""
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {migrations.COMPAT_TABLE}")).scalar() == 0


def test_a_schema_at_head_is_accepted(engine: Engine) -> None:
    assert migrations.require_compatible(engine).at_head


def test_a_schema_ahead_that_declares_itself_compatible_is_accepted(engine: Engine) -> None:
    _pretend_future(engine, "1.2", declared=migrations.BASELINE)
    assert migrations.require_compatible(engine).current == ("1.2",)


@pytest.mark.parametrize("declared", [None, "1.1"])
def test_a_schema_ahead_that_does_not_declare_compatibility_is_refused(
    engine: Engine, declared: str | None
) -> None:
    _pretend_future(engine, "1.2", declared)
    with pytest.raises(SchemaNotAtHead, match=r"1\.2 does not declare itself compatible"):
        migrations.require_compatible(engine)


def test_every_unknown_revision_must_declare(engine: Engine) -> None:
    _pretend_future(engine, "1.2", declared=migrations.BASELINE)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {migrations.COMPAT_TABLE} VALUES ('1.1', '0.9')"))
    with pytest.raises(SchemaNotAtHead, match=r"1\.1"):
        migrations.require_compatible(engine)


def test_a_pre_release_schema_is_sent_to_migrate_upgrade(engine: Engine) -> None:
    """A 0016 database (declared compatible with 0009 then) is not "ahead": upgrade adopts it."""
    _pretend_future(engine, "0016", declared="0009")
    with pytest.raises(SchemaNotAtHead, match=r"at 0016 .* run: loginetl migrate upgrade"):
        migrations.require_compatible(engine)


# -- queues ------------------------------------------------------------------------------


def test_create_queues_leaves_an_existing_queue_as_its_operator_set_it(sqs: SqsService) -> None:
    name = f"mine-{uuid.uuid4().hex[:8]}"
    url = sqs.client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "99"})[
        "QueueUrl"
    ]
    ensured = sqs.ensure_queues(name, f"{name}-dlq")
    assert ensured.url == url
    assert ensured.created == (f"{name}-dlq",)
    attributes = sqs.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "99"
    assert "RedrivePolicy" not in attributes
    assert len(ensured.differences) == 2
    assert "does not redrive" in ensured.differences[0]
    assert "visibility timeout of 99 s" in ensured.differences[1]
    again = sqs.ensure_queues(name, f"{name}-dlq")
    assert again.created == ()


def test_create_queues_makes_missing_ones_with_the_recommended_settings(
    sqs: SqsService,
) -> None:
    name = f"new-{uuid.uuid4().hex[:8]}"
    ensured = sqs.ensure_queues(name, f"{name}-dlq", max_receive_count=3, visibility_timeout=7)
    assert set(ensured.created) == {name, f"{name}-dlq"}
    assert ensured.differences == ()
    assert sqs.ensure_queues(name, f"{name}-dlq", max_receive_count=3, visibility_timeout=7) == (
        type(ensured)(ensured.url, ensured.dlq_url, (), ())
    )


# -- the attribute key file ---------------------------------------------------------------


def test_attribute_keys_rotate_apart_from_the_masking_keys(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    masking = (tmp_path / keys.HMAC_FILE).read_bytes()
    rotated = keys.rotate_keyring(tmp_path, keys.ATTRIBUTE_FILE)
    assert (rotated.previous, rotated.current) == ("a1", "a2")
    assert set(keys.load_keyring(tmp_path, keys.ATTRIBUTE_FILE).keys) == {"a1", "a2"}
    assert (tmp_path / keys.HMAC_FILE).read_bytes() == masking
    keys.rotate_keyring(tmp_path, keys.HMAC_FILE)
    assert set(keys.load_keyring(tmp_path, keys.ATTRIBUTE_FILE).keys) == {"a1", "a2"}


def test_a_missing_attribute_key_file_says_how_to_add_it(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    (tmp_path / keys.ATTRIBUTE_FILE).unlink()
    with pytest.raises(ConfigError, match="keys init"):
        keys.load_keyring(tmp_path, keys.ATTRIBUTE_FILE)


def test_a_malformed_attribute_key_file_is_refused(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    path = tmp_path / keys.ATTRIBUTE_FILE
    path.write_text(json.dumps({"current": "a1", "keys": {"a1": "c2hvcnQ="}}))
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        keys.load_keyring(tmp_path, keys.ATTRIBUTE_FILE)


def test_keys_rotate_attributes_from_the_command_line(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    result = CliRunner().invoke(app, ["keys", "rotate-attributes", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "signed with a2 (was a1)" in result.output
    assert keys.load_keyring(tmp_path, keys.ATTRIBUTE_FILE).current == "a2"
