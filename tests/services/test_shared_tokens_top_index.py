"""Migration 0016: token_stats_top_idx holds only shared tokens, built and dropped online,
and `stats` lists the same top shared tokens through it as a recount of the table does.

The plan of the stats statement (it reads the index, in order) is checked by
tests/services/test_stats_cost.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from loginetl.actions.stats import _TABLE_STATS
from loginetl.errors import MigrationRunning
from loginetl.services import db, migrations
from tests.services.test_db import shared_row

R0016 = migrations.load_revision(
    Path(__file__).resolve().parents[2] / "migrations/versions/0016_shared_tokens_top_index.py"
)
TOP = 3  # fewer than the shared tokens below: LIMIT and the tie order both matter

# A recount from user_logins, ordered as stats orders: the answer stats must give.
RECOUNT = """
SELECT masked_ip, count(DISTINCT user_id), count(*) FROM user_logins
GROUP BY masked_ip HAVING count(DISTINCT user_id) > 1
ORDER BY count(DISTINCT user_id) DESC, count(*) DESC, masked_ip LIMIT :top
"""


PARTIAL = " WHERE (users > 1)"
FULL = "(pii_field, users DESC, logins DESC, token)"


def _top_indexes(engine: Engine) -> list[tuple[str, bool, str]]:
    """(name, valid, definition) of every index on token_stats but its key and 0012's."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid) "
                "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = 'public.token_stats'::regclass "
                "AND c.relname NOT IN ('token_stats_pkey', 'token_stats_zero_idx') ORDER BY 1"
            )
        ).all()
    return [(str(name), bool(valid), str(definition)) for name, valid, definition in rows]


def _assert_the_only_top_index_ends(engine: Engine, ending: str) -> None:
    """One top index, valid, named token_stats_top_idx, its definition ending so."""
    ((name, valid, definition),) = _top_indexes(engine)
    assert (name, valid) == ("token_stats_top_idx", True)
    assert definition.endswith(ending)


def _at_revision(engine: Engine) -> tuple[str, set[str]]:
    """The alembic version and the revisions that declared compatibility from 0015 on."""
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        declared = conn.execute(
            text(f"SELECT revision FROM {migrations.COMPAT_TABLE} WHERE revision >= '0015'")
        ).scalars()
        return str(version), set(declared)


def _fold_shared_and_single_user_tokens(engine: Engine) -> None:
    """Ips shared by 4, 3, 2 and 2 users (a tie on users, broken by logins), and lone ones."""
    rows = [
        *(shared_row(f"a{u}", f"u{u}", "1", f"d{u}") for u in range(4)),
        *(shared_row(f"b{u}", f"u{u}", "2", "d9") for u in range(3)),
        *(shared_row(f"c{u}", f"u{u}", "3", "d9") for u in range(2)),
        shared_row("c9", "u0", "3", "d9"),  # ip 3: 2 users, 3 logins: before ip 4
        *(shared_row(f"e{u}", f"u{u}", "4", "d8") for u in range(2)),
        *(shared_row(f"s{u}", f"s{u}", f"5{u}", f"d5{u}") for u in range(20)),  # one user each
    ]
    db.write_batch(engine, rows, [])
    db.fold_rollups(engine)


def _scans_of(plan: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """(node type, index name) of every node of an EXPLAIN (FORMAT JSON) plan."""
    yield str(plan["Node Type"]), plan.get("Index Name")
    for child in plan.get("Plans", ()):
        yield from _scans_of(child)


def _top_shared_ips(engine: Engine, *, through_index: bool) -> list[tuple[str, int, int]]:
    """stats' top shared ips, read through the top index or (the same statement) without.

    Through the index, the plan must show it: with a missing or unusable top index the
    planner would pick another path (seq scans off still allow one) and the test pass.
    """
    scans = ("seqscan",) if through_index else ("indexscan", "indexonlyscan", "bitmapscan")
    params = {"top": TOP, "since": timedelta(hours=24)}
    with engine.connect() as conn:
        for scan in scans:  # an empty-ish table would otherwise plan as it likes
            conn.execute(text(f"SET enable_{scan} = off"))
        if through_index:
            (plan,) = conn.execute(text(f"EXPLAIN (FORMAT JSON) {_TABLE_STATS}"), params).one()
            nodes = {node for node, index in _scans_of(plan[0]["Plan"]) if index == R0016.INDEX}
            assert nodes, f"stats does not read {R0016.INDEX}: {plan}"
            assert nodes <= {"Index Scan", "Index Only Scan"}, nodes
        stats = conn.execute(text(_TABLE_STATS), params).one()
        conn.rollback()  # the SETs go with it
    return [(token, users, logins) for token, users, logins in stats.shared_ips]


def _recounted_top_shared_ips(engine: Engine) -> list[tuple[str, int, int]]:
    with engine.connect() as conn:
        return [(t, u, n) for t, u, n in conn.execute(text(RECOUNT), {"top": TOP})]


def test_the_top_index_is_partial_and_valid_at_head(engine: Engine) -> None:
    assert _top_indexes(engine) == [
        (
            "token_stats_top_idx",
            True,
            "CREATE INDEX token_stats_top_idx ON public.token_stats USING btree "
            "(pii_field, users DESC, logins DESC, token) WHERE (users > 1)",
        )
    ]
    assert _at_revision(engine) == ("0016", {"0015", "0016"})


def test_stats_lists_the_top_shared_tokens_a_recount_gives(engine: Engine) -> None:
    _fold_shared_and_single_user_tokens(engine)
    expected = _recounted_top_shared_ips(engine)
    assert len(expected) == TOP
    assert _top_shared_ips(engine, through_index=True) == expected
    assert _top_shared_ips(engine, through_index=False) == expected


def test_downgrade_restores_the_full_index_and_upgrade_makes_it_partial_again(
    engine: Engine,
) -> None:
    _fold_shared_and_single_user_tokens(engine)
    expected = _recounted_top_shared_ips(engine)

    migrations.downgrade(engine, "-1")
    assert _top_indexes(engine) == [
        (
            "token_stats_top_idx",
            True,
            "CREATE INDEX token_stats_top_idx ON public.token_stats USING btree "
            "(pii_field, users DESC, logins DESC, token)",
        )
    ]
    assert _at_revision(engine) == ("0015", {"0015"})
    assert _top_shared_ips(engine, through_index=True) == expected

    migrations.upgrade(engine)
    _assert_the_only_top_index_ends(engine, PARTIAL)
    assert _at_revision(engine) == ("0016", {"0015", "0016"})
    assert _top_shared_ips(engine, through_index=True) == expected


def _leave_a_failed_concurrent_build(engine: Engine) -> None:
    """What a CREATE INDEX CONCURRENTLY that failed leaves: an INVALID index of its name."""
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn, pytest.raises(Exception, match="could not create unique"):
        conn.execute(  # token_stats holds several ip tokens: the unique build fails
            text(
                f"CREATE UNIQUE INDEX CONCURRENTLY {R0016.UPGRADE_BUILD} ON token_stats (pii_field)"
            )
        )


def _stop_before_the_rename(engine: Engine) -> None:
    """An upgrade that built the new index and dropped the old, then stopped."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE INDEX {R0016.UPGRADE_BUILD} ON token_stats "
                f"{R0016.COLUMNS} {R0016.SHARED_ONLY}"
            )
        )
        conn.execute(text("DROP INDEX token_stats_top_idx"))


@pytest.mark.parametrize("interrupted", [_leave_a_failed_concurrent_build, _stop_before_the_rename])
def test_an_upgrade_rerun_after_an_interrupted_one_converges(
    engine: Engine, interrupted: Callable[[Engine], None]
) -> None:
    _fold_shared_and_single_user_tokens(engine)
    expected = _recounted_top_shared_ips(engine)
    migrations.downgrade(engine, "0015")
    interrupted(engine)
    assert R0016.UPGRADE_BUILD in {name for name, _, _ in _top_indexes(engine)}

    migrations.upgrade(engine)
    _assert_the_only_top_index_ends(engine, PARTIAL)  # the leftover is gone
    assert _at_revision(engine) == ("0016", {"0015", "0016"})
    assert _top_shared_ips(engine, through_index=True) == expected


def _create_index(engine: Engine, name: str, predicate: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"CREATE INDEX {name} ON token_stats {R0016.COLUMNS} {predicate}"))


@pytest.mark.parametrize(
    ("target", "leftover", "leftover_predicate", "definition_ends"),
    [  # a valid leftover of this direction's name but the other predicate: replaced
        ("head", R0016.UPGRADE_BUILD, "", PARTIAL),
        ("0015", R0016.DOWNGRADE_BUILD, R0016.SHARED_ONLY, FULL),
        # a leftover of the other direction's name: dropped
        ("head", R0016.DOWNGRADE_BUILD, "", PARTIAL),
        ("0015", R0016.UPGRADE_BUILD, R0016.SHARED_ONLY, FULL),
    ],
    ids=["upgrade-own-unpartial", "downgrade-own-partial", "upgrade-other", "downgrade-other"],
)
def test_a_rerun_replaces_a_valid_leftover_of_another_definition(
    engine: Engine, target: str, leftover: str, leftover_predicate: str, definition_ends: str
) -> None:
    _fold_shared_and_single_user_tokens(engine)
    expected = _recounted_top_shared_ips(engine)
    if target == "head":
        migrations.downgrade(engine, "0015")
    _create_index(engine, leftover, leftover_predicate)

    if target == "head":
        migrations.upgrade(engine)
    else:
        migrations.downgrade(engine, target)
    _assert_the_only_top_index_ends(engine, definition_ends)  # the leftover is gone
    assert _at_revision(engine)[0] == ("0016" if target == "head" else "0015")
    assert _top_shared_ips(engine, through_index=True) == expected


def _advisory_locks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
                    "AND database = (SELECT oid FROM pg_catalog.pg_database "
                    "WHERE datname = pg_catalog.current_database())"
                )
            ).scalar_one()
        )


def test_a_second_migrate_fails_fast_and_changes_nothing(engine: Engine) -> None:
    """Two runs at once could commit 0016 without its index: the second one must stop."""
    migrations.downgrade(engine, "0015")
    assert _advisory_locks(engine) == 0  # released, though the pool keeps the connection
    before = _top_indexes(engine)
    with engine.connect() as other:
        other.execute(text(f"SELECT pg_catalog.pg_advisory_lock({migrations.MIGRATE_LOCK})"))
        other.commit()
        with pytest.raises(MigrationRunning, match="another `loginetl migrate` is running"):
            migrations.upgrade(engine)
        with pytest.raises(MigrationRunning):
            migrations.downgrade(engine, "0014")
        assert _at_revision(engine) == ("0015", {"0015"})
        assert _top_indexes(engine) == before
        other.execute(text(f"SELECT pg_catalog.pg_advisory_unlock({migrations.MIGRATE_LOCK})"))
        other.commit()

    migrations.upgrade(engine)
    assert _at_revision(engine) == ("0016", {"0015", "0016"})
    assert _advisory_locks(engine) == 0


def test_a_failure_mid_upgrade_keeps_the_revisions_before_it(engine: Engine) -> None:
    """Each migration commits on its own: 0016 failing leaves 0015 applied and declared."""
    migrations.downgrade(engine, "0014")
    with engine.begin() as conn:  # not an index: 0016's first DROP INDEX of it fails
        conn.execute(text(f"CREATE TABLE {R0016.DOWNGRADE_BUILD} (id int)"))
    with pytest.raises(ProgrammingError, match="is not an index"):
        migrations.upgrade(engine)
    assert _at_revision(engine) == ("0015", {"0015"})
    assert _advisory_locks(engine) == 0

    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {R0016.DOWNGRADE_BUILD}"))
    migrations.upgrade(engine)
    assert _at_revision(engine) == ("0016", {"0015", "0016"})
