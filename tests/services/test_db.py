"""The PostgreSQL adapter and migrations against real databases."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, text

from loginetl.core.batch import LoginRow
from loginetl.errors import SchemaNotAtHead, ServiceUnavailable
from loginetl.services import db, migrations
from tests.rollups import EXACT, ROLLUP_CHECK, pending


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


def test_a_database_without_the_schema_is_refused_until_migrated(
    empty_database_url: str,
) -> None:
    db.ensure_database(empty_database_url)
    engine = db.make_engine(empty_database_url, pool_size=1)
    try:
        with pytest.raises(SchemaNotAtHead, match=r"no schema .* run: loginetl migrate upgrade"):
            migrations.require_head(engine)
        assert migrations.upgrade(engine).at_head
        assert migrations.require_head(engine).current == (migrations.BASELINE,)
    finally:
        engine.dispose()


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
    assert pending(engine) == 5  # a, b, c, d, e: the redelivered b only once
    assert db.fold_rollups(engine) == 5
    assert pending(engine) == 0
    with engine.connect() as conn:
        assert tuple(conn.execute(text(ROLLUP_CHECK)).one()) == EXACT
        top = conn.execute(
            text(
                "SELECT users, logins FROM token_stats WHERE pii_field = 'ip' ORDER BY users DESC LIMIT 1"
            )
        ).one()
    assert tuple(top) == (3, 4)  # ip 1: users u1, u2, u3; logins a, b, d, e


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
    db.fold_rollups(engine)
    with engine.connect() as conn:
        assert tuple(conn.execute(text(ROLLUP_CHECK)).one()) == EXACT


def test_ensure_partitions_is_idempotent(engine: Engine) -> None:
    db.ensure_partitions(engine, months_ahead=3)
    assert db.ensure_partitions(engine, months_ahead=3) == 0


def test_text_with_copy_control_characters_round_trips(engine: Engine) -> None:
    from dataclasses import replace

    awkward = "tab\there\nnew\\line\rcr \\N é 𝄞"
    written = replace(row("a\tkey\\N"), user_id=awkward, device_type="\\", locale="")
    assert db.write_batch(engine, [written, replace(row("b"), locale=None)], []) == 2
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT idempotency_key, user_id, device_type, locale FROM user_logins ORDER BY 1")
        ).all()
    assert [tuple(r) for r in got] == [
        ("a\tkey\\N", awkward, "\\", ""),  # empty stays empty, not NULL
        ("b", "u", "ios", None),
    ]


def test_a_fold_in_chunks_counts_every_row_once(engine: Engine) -> None:
    rows = [shared_row(f"k{i}", f"u{i % 7}", str(i % 5), str(i % 3)) for i in range(40)]
    for start in range(0, 40, 10):
        db.write_batch(engine, rows[start : start + 10], [])
    assert db.fold_rollups(engine, limit=7) == 40
    with engine.connect() as conn:
        assert tuple(conn.execute(text(ROLLUP_CHECK)).one()) == EXACT


def test_concurrent_writers_and_folders_keep_rollups_exact(database_url: str) -> None:
    """Four writers and four folders at once: every row is counted once, none is lost."""
    import threading

    engine = db.make_engine(database_url, pool_size=8)
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for batch in range(15):
                db.write_batch(
                    engine,
                    [
                        shared_row(f"w{worker}-{batch}-{i}", f"u{i % 9}", str(i % 4), str(i % 6))
                        for i in range(20)
                    ],
                    [],
                )
        except BaseException as error:  # surfaced below
            errors.append(error)

    def fold() -> None:
        try:
            while not writers_done.is_set():
                db.fold_rollups(engine, limit=25)
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    folders = [threading.Thread(target=fold) for _ in range(4)]
    for thread in writers + folders:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    for thread in folders:
        thread.join()
    assert errors == []
    db.fold_rollups(engine, wait=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM user_logins")).scalar_one() == 4 * 15 * 20
        assert tuple(conn.execute(text(ROLLUP_CHECK)).one()) == EXACT
    engine.dispose()


def test_a_second_folder_does_not_wait_unless_asked(engine: Engine) -> None:
    db.write_batch(engine, [row("a")], [])
    with engine.begin() as conn:  # another process holding the fold's turn
        conn.execute(text("SELECT 1 FROM loginetl_locks WHERE name = 'fold' FOR UPDATE"))
        assert db.fold_rollups(engine) is None
    assert db.fold_rollups(engine) == 1


def test_the_fold_goes_on_while_the_settle_waits_for_its_turn(engine: Engine) -> None:
    """db.fold runs the settle and the fold side by side: one that waits for its turn
    does not hold the other back, and the call returns once both are done."""
    import threading
    import time

    db.write_batch(engine, [row("a")], [])
    done: list[db.Folded] = []
    with engine.connect() as holder:  # another process holding the settle's turn
        holder.execute(text("SELECT 1 FROM loginetl_locks WHERE name = 'settle' FOR UPDATE"))
        folding = threading.Thread(target=lambda: done.append(db.fold(engine, wait=True)))
        folding.start()
        deadline = time.monotonic() + 30
        while pending(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pending(engine) == 0  # folded while the settle still waits
        assert folding.is_alive()
        holder.rollback()
    folding.join(30)
    assert done == [db.Folded(0, 1)]


RETRACT = """
WITH gone AS (
    DELETE FROM user_logins WHERE idempotency_key = ANY(:keys)
    RETURNING user_id, masked_ip, masked_device_id, sent_at, device_type, locale,
              app_version_raw, create_date, loaded_at
)
INSERT INTO rollup_pending (user_id, masked_ip, masked_device_id, sent_at, device_type,
                            locale, app_version_raw, create_date, loaded_at, sign)
SELECT user_id, masked_ip, masked_device_id, sent_at, device_type, locale, app_version_raw,
       create_date, loaded_at, -1 FROM gone
"""


def test_removed_rows_leave_the_rollups_exact_even_when_folded_before_their_load(
    engine: Engine,
) -> None:
    """What forget and retention rely on: a row removed with a -1 in rollup_pending."""
    db.write_batch(
        engine,
        [
            shared_row("a", "u1", "1", "d1"),
            shared_row("b", "u2", "1", "d1"),
            shared_row("c", "u1", "2", "d2"),
        ],
        [],
    )
    db.fold_rollups(engine)
    db.write_batch(engine, [shared_row("d", "u3", "3", "d3"), shared_row("e", "u1", "1", "d1")], [])
    with engine.begin() as conn:  # d and e are still pending (+1) when they go (-1)
        conn.execute(text(RETRACT), {"keys": ["a", "c", "d"]})
    with engine.begin() as conn:  # fold the -1s first, in a chunk of their own
        minus = conn.execute(text("SELECT count(*) FROM rollup_pending WHERE sign = -1")).scalar()
        assert minus == 3
        conn.execute(text("CREATE TEMP TABLE plus AS SELECT * FROM rollup_pending WHERE sign = 1"))
        conn.execute(text("DELETE FROM rollup_pending WHERE sign = 1"))
        assert conn.execute(text("SELECT loginetl_fold_rollups(100, true)")).scalar() == 3
        conn.execute(text("INSERT INTO rollup_pending SELECT * FROM plus"))
        transient = conn.execute(
            text("SELECT logins FROM token_users WHERE token = :t"), {"t": f"k1:{'3':0>64}"}
        ).scalar()
        assert transient == -1  # d's -1 folded before its +1: below zero, not "present"
        totals = dict(conn.execute(text("SELECT metric, value FROM rollup_totals")).all())
        # folded so far: b only (u1 lost a and c; e is not folded yet); u3 is below zero
        assert totals == {"users": 1, "ip_tokens": 1, "device_tokens": 1}
    db.fold_rollups(engine)
    with engine.connect() as conn:
        assert tuple(conn.execute(text(ROLLUP_CHECK)).one()) == EXACT
        left = conn.execute(text("SELECT count(*) FROM token_users WHERE logins <= 0")).scalar()
        assert left == 0  # pairs back at zero are deleted, not kept as zeros
        assert conn.execute(text("SELECT sum(logins) FROM rollup_months")).scalar() == 2
