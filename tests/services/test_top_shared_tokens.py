"""token_stats_top_idx holds only shared tokens, and `stats` lists the same top shared
tokens through it as a recount of the table does.

The plan of the stats statement (it reads the index, in order) is checked by
tests/services/test_stats_cost.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text

from loginetl.actions.stats import _TABLE_STATS
from loginetl.services import db
from tests.services.test_db import shared_row

INDEX = "token_stats_top_idx"
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
            nodes = {node for node, index in _scans_of(plan[0]["Plan"]) if index == INDEX}
            assert nodes, f"stats does not read {INDEX}: {plan}"
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


def test_stats_lists_the_top_shared_tokens_a_recount_gives(engine: Engine) -> None:
    _fold_shared_and_single_user_tokens(engine)
    expected = _recounted_top_shared_ips(engine)
    assert len(expected) == TOP
    assert _top_shared_ips(engine, through_index=True) == expected
    assert _top_shared_ips(engine, through_index=False) == expected
