"""The PostgreSQL adapter and migrations against real databases."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, text

from loginetl.core.batch import LoginRow
from loginetl.errors import SchemaNotAtHead, ServiceUnavailable
from loginetl.services import db, migrations


def row(key: str) -> LoginRow:
    return LoginRow(
        idempotency_key=key,
        user_id="u",
        device_type="ios",
        masked_ip="k1:" + "a" * 64,
        masked_device_id="k1:" + "b" * 64,
        locale=None,
        app_version=1_002_000,
        app_version_raw="1.2",
        sent_at=datetime(2026, 11, 24, tzinfo=UTC),
        create_date=date(2026, 11, 24),
    )


def test_write_batch_is_idempotent(engine: Engine) -> None:
    assert db.write_batch(engine, [row("a"), row("b")], []) == 2
    assert db.write_batch(engine, [row("b"), row("c")], []) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM user_logins")).scalar_one() == 3


def test_migrations_go_down_and_up(engine: Engine) -> None:
    assert migrations.status(engine).at_head
    assert migrations.downgrade(engine, "base").current == ()
    with pytest.raises(SchemaNotAtHead, match="loginetl migrate upgrade"):
        migrations.require_head(engine)
    assert migrations.upgrade(engine).at_head


def test_ensure_database_creates_it_once(empty_database_url: str) -> None:
    assert db.ensure_database(empty_database_url) is True
    assert db.ensure_database(empty_database_url) is False


def test_missing_database_says_how_to_create_it(empty_database_url: str) -> None:
    engine = db.make_engine(empty_database_url)
    with pytest.raises(ServiceUnavailable, match="loginetl migrate upgrade"):
        db.ping(engine)
    engine.dispose()


def test_unreachable_server_hides_the_password() -> None:
    engine = db.make_engine("postgresql+psycopg2://app:s3cret@127.0.0.1:1/x")
    with pytest.raises(ServiceUnavailable) as caught:
        db.ping(engine)
    assert "s3cret" not in str(caught.value)
    assert "unreachable" in str(caught.value)
    engine.dispose()
