"""bench/run.py files each run under bench/results/ by its UTC date; --quick runs apart."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def write_results():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return run.write_results


def test_a_run_is_filed_under_its_utc_date(tmp_path: Path, write_results) -> None:  # type: ignore[no-untyped-def]
    late_evening_west = datetime(2026, 12, 7, 20, 30, tzinfo=timezone(timedelta(hours=-5)))
    out = write_results({"quick": False, "cpus": 2}, tmp_path / "results", late_evening_west)
    assert out == tmp_path / "results" / "2026-12-08.json"
    assert json.loads(out.read_text()) == {"date": "2026-12-08", "quick": False, "cpus": 2}


def test_a_quick_run_never_overwrites_the_days_figures(tmp_path: Path, write_results) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    full = write_results({"quick": False}, tmp_path, now)
    quick = write_results({"quick": True}, tmp_path, now)
    assert (full.name, quick.name) == ("2026-12-07.json", "2026-12-07-quick.json")
    assert json.loads(full.read_text())["quick"] is False
