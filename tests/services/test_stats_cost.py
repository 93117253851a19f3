"""What `stats` costs: its statement reads only rollups in index order, and its imports
are only what it uses (no Alembic, no crypto, no boto3 unless the queues are asked for)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text

from loginetl.actions.stats import _TABLE_STATS

ROLLUPS = {
    "rollup_totals",
    "rollup_months",
    "rollup_pending",
    "token_stats",
    "rollup_breakdown",
    "rollup_hourly",
    "pg_class",
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


def test_the_stats_statement_reads_rollups_only_and_top_tokens_in_index_order(
    engine: Engine,
) -> None:
    """Size-independent by plan: no user_logins or vault scan, no sort of token_stats.

    Seq scans are disabled so an empty test table plans as a large one would; the top
    shared tokens must come off token_stats_top_idx (0013) already in order: before it,
    an Incremental Sort read every row tied with the n-th.
    """
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        explained = conn.execute(
            text("EXPLAIN (FORMAT JSON) " + _TABLE_STATS),
            {"top": 5, "since": timedelta(hours=24)},
        ).scalar_one()
    plan = (explained if isinstance(explained, list) else json.loads(explained))[0]["Plan"]
    nodes = _nodes(plan)
    read = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    assert "token_stats" in read  # the walk found the scans
    assert read <= ROLLUPS, read - ROLLUPS
    for node in nodes:
        if node["Node Type"] in ("Sort", "Incremental Sort"):
            below = {n.get("Relation Name") for n in _nodes(node)}
            assert "token_stats" not in below, node
    top = [n for n in nodes if n.get("Relation Name") == "token_stats"]
    assert {n.get("Index Name") for n in top} == {"token_stats_top_idx"}


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_stats_action_and_the_schema_status_import_no_alembic_boto3_or_crypto() -> None:
    loaded = _imported_after(
        "import loginetl.actions.stats, loginetl.services.migrations as m; m.heads()"
    )
    assert "loginetl.actions.stats" in loaded  # the probe ran
    assert "alembic" not in loaded  # ~0.3 s: ScriptDirectory executes every migration
    assert "boto3" not in loaded  # only queue_stats needs it
    assert "botocore" not in loaded
    assert "cryptography" not in loaded  # nothing stats reads is sealed or masked
