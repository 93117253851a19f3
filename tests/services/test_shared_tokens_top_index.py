"""Migration 0016: token_stats_top_idx holds only shared tokens, built and dropped online,
and `stats` lists the same top shared tokens through it as a recount of the table does.

The plan of the stats statement (it reads the index, in order) is checked by
tests/services/test_stats_cost.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from loginetl.actions.stats import _TABLE_STATS
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


def _top_shared_ips(engine: Engine, *, through_index: bool) -> list[tuple[str, int, int]]:
    """stats' top shared ips, read through the top index or (the same statement) without."""
    scans = ("seqscan",) if through_index else ("indexscan", "indexonlyscan", "bitmapscan")
    with engine.connect() as conn:
        for scan in scans:  # an empty-ish table would otherwise plan as it likes
            conn.execute(text(f"SET enable_{scan} = off"))
        stats = conn.execute(text(_TABLE_STATS), {"top": TOP, "since": timedelta(hours=24)}).one()
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
    ((name, valid, definition),) = _top_indexes(engine)
    assert (name, valid) == ("token_stats_top_idx", True)
    assert definition.endswith(" WHERE (users > 1)")
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
    ((name, valid, definition),) = _top_indexes(engine)  # the leftover is gone
    assert (name, valid) == ("token_stats_top_idx", True)
    assert definition.endswith(" WHERE (users > 1)")
    assert _at_revision(engine) == ("0016", {"0015", "0016"})
    assert _top_shared_ips(engine, through_index=True) == expected
