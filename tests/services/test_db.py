"""The PostgreSQL adapter and migrations against real databases."""

from __future__ import annotations

from dataclasses import asdict
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


ROLLUP_CHECK = """
SELECT
  (SELECT count(*) FROM (
     SELECT 'ip' f, masked_ip t, count(DISTINCT user_id) u, count(*) n FROM user_logins GROUP BY 2
     UNION ALL
     SELECT 'device_id', masked_device_id, count(DISTINCT user_id), count(*) FROM user_logins GROUP BY 2
     EXCEPT SELECT pii_field, token, users, logins FROM token_stats) missing),
  (SELECT count(*) FROM token_stats) - (SELECT count(DISTINCT masked_ip) + count(DISTINCT masked_device_id) FROM user_logins),
  (SELECT count(*) FROM (SELECT user_id, count(*) FROM user_logins GROUP BY 1
     EXCEPT SELECT user_id, logins FROM user_stats) u),
  (SELECT count(*) FROM user_stats) - (SELECT count(DISTINCT user_id) FROM user_logins)
"""


def shared_row(key: str, user: str, ip: str, device: str) -> LoginRow:
    from dataclasses import replace

    return replace(
        row(key), user_id=user, masked_ip=f"k1:{ip:0>64}", masked_device_id=f"k1:{device:0>64}"
    )


def test_rollups_count_only_new_rows_and_match_the_table(engine: Engine) -> None:
    batches = [
        [
            shared_row("a", "u1", "1", "d1"),
            shared_row("b", "u2", "1", "d1"),
            shared_row("c", "u1", "2", "d2"),
        ],
        [shared_row("b", "u2", "1", "d1"), shared_row("d", "u3", "1", "d3")],  # b is a redelivery
        [shared_row("e", "u1", "1", "d1")],
    ]
    for batch in batches:
        db.write_batch(engine, batch, [])
    with engine.connect() as conn:
        assert conn.execute(text(ROLLUP_CHECK)).one() == (0, 0, 0, 0)
        top = conn.execute(
            text(
                "SELECT users, logins FROM token_stats WHERE pii_field = 'ip' ORDER BY users DESC LIMIT 1"
            )
        ).one()
    assert tuple(top) == (3, 4)  # ip 1: users u1, u2, u3; logins a, b, d, e


def test_upgrade_backfills_rollups_from_existing_rows(engine: Engine) -> None:
    migrations.downgrade(engine, "0001")
    with engine.begin() as conn:
        for key, user, ip in (("a", "u1", "1"), ("b", "u2", "1"), ("c", "u2", "2")):
            values = shared_row(key, user, ip, "d")
            conn.execute(
                text(
                    "INSERT INTO user_logins (idempotency_key, user_id, device_type, masked_ip, "
                    "masked_device_id, locale, app_version, app_version_raw, create_date, sent_at) "
                    "VALUES (:idempotency_key, :user_id, :device_type, :masked_ip, "
                    ":masked_device_id, :locale, :app_version, :app_version_raw, :create_date, :sent_at)"
                ),
                asdict(values),
            )
    migrations.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text(ROLLUP_CHECK)).one() == (0, 0, 0, 0)


def partition_of(engine: Engine, key: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT tableoid::regclass::text FROM user_logins WHERE idempotency_key = :k"),
                {"k": key},
            ).scalar_one()
        )


def test_rows_land_in_monthly_partitions_and_old_months_move_out_of_default(engine: Engine) -> None:
    from dataclasses import replace

    db.ensure_partitions(engine)
    today = datetime.now(UTC)
    recent = replace(row("recent"), sent_at=today, create_date=today.date())
    old = replace(
        row("old"), sent_at=datetime(2020, 1, 15, tzinfo=UTC), create_date=date(2020, 1, 15)
    )
    assert db.write_batch(engine, [recent, old], []) == 2
    assert partition_of(engine, "recent") == f"user_logins_{today:%Y_%m}"
    assert partition_of(engine, "old") == "user_logins_default"
    with engine.begin() as conn:
        made = conn.execute(text("SELECT loginetl_ensure_partitions('2020-01-01', 1)")).scalar_one()
    assert made == 1
    assert partition_of(engine, "old") == "user_logins_2020_01"
    assert db.write_batch(engine, [old, recent], []) == 0  # still one row per message
    with engine.connect() as conn:
        assert conn.execute(text(ROLLUP_CHECK)).one() == (0, 0, 0, 0)


def test_ensure_partitions_is_idempotent(engine: Engine) -> None:
    db.ensure_partitions(engine, months_ahead=3)
    assert db.ensure_partitions(engine, months_ahead=3) == 0
