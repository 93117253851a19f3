"""The promise table and the breakages stay in step with the code, in seconds.

`make breakages` takes minutes; these catch a bad merge first: a line a breakage edits
that moved, a proof that was renamed, a promise with neither a breakage nor a reason,
a docs/promises.md that no longer says what tests/faults/promises.py does.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.breakages import (
    BREAKAGES,
    UNCOVERED,
    Breakage,
    failure_text,
    judge,
)
from tests.faults.promises import PROMISES, SECTIONS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from promise_table import table  # noqa: E402


def test_docs_promises_is_generated_from_the_registry() -> None:
    checked_in = (ROOT / "docs" / "promises.md").read_text(encoding="utf-8")
    assert checked_in == table(), "docs/promises.md is stale: run make docs"


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.name)
def test_each_breakage_edits_a_line_that_is_there_once(breakage: Breakage) -> None:
    source = (ROOT / breakage.path).read_text(encoding="utf-8")
    assert source.count(breakage.old) == 1, f"{breakage.name}: the line to break moved"
    assert breakage.new != breakage.old
    assert breakage.expect.strip()
    assert breakage.change.strip()


def test_breakage_names_and_mutations_are_distinct() -> None:
    names = Counter(b.name for b in BREAKAGES)
    mutations = Counter((b.path, b.old, b.new) for b in BREAKAGES)
    assert [n for n, k in names.items() if k > 1] == []
    assert [m[:1] for m, k in mutations.items() if k > 1] == []


def _defined(node: str) -> bool:
    """Whether a node id's file exists and, if it names one, defines its test function."""
    path, _, test = node.partition("::")
    if not (ROOT / path).is_file():
        return False
    if not test:
        return True
    function = test.partition("[")[0]
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function
        for n in ast.walk(tree)
    )


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.name)
def test_each_breakage_runs_one_test_that_exists(breakage: Breakage) -> None:
    assert "::" in breakage.test, "one test node, never a whole file"
    assert _defined(breakage.test), breakage.test


def test_every_proof_exists() -> None:
    missing = [node for p in PROMISES for node in p.proofs if not _defined(node)]
    assert missing == []


def test_every_promise_has_a_breakage_or_says_why_not() -> None:
    neither_or_both = [p.text for p in PROMISES if bool(p.breakages) == bool(p.uncovered)]
    assert neither_or_both == []
    assert len(UNCOVERED) == sum(1 for p in PROMISES if p.uncovered)
    assert {p.section for p in PROMISES} <= set(SECTIONS)


def test_every_breakage_stands_for_one_promise_and_runs_one_of_its_proofs() -> None:
    named = Counter(n for p in PROMISES for n in p.breakages)
    assert set(named) == {b.name for b in BREAKAGES}
    assert [n for n, k in named.items() if k > 1] == []
    owner = {n: p for p in PROMISES for n in p.breakages}
    outside = [b.name for b in BREAKAGES if b.test not in owner[b.name].proofs]
    assert outside == []


# -- the runner's verdict ------------------------------------------------------------------

FAILED = """\
    def test_x():
>       assert summary["loaded"] == 39
E       assert 30 == 39
FAILED tests/e2e/test_rollout.py::test_x - assert 30 == 39
1 failed in 2.00s"""
BREAKAGE = BREAKAGES[0]


def test_only_the_named_failure_counts() -> None:
    named = Breakage(**{**BREAKAGE.__dict__, "expect": 'summary["loaded"] == 39'})
    other = Breakage(**{**BREAKAGE.__dict__, "expect": "DID NOT RAISE"})
    assert judge(named, 1, FAILED, control=False) == ("fails as expected", True)
    assert judge(other, 1, FAILED, control=False) == ("FAILED FOR ANOTHER REASON", False)
    assert failure_text(FAILED).splitlines() == [
        '>       assert summary["loaded"] == 39',
        "E       assert 30 == 39",
    ]


def test_an_error_in_set_up_or_a_pass_is_no_proof() -> None:
    named = Breakage(**{**BREAKAGE.__dict__, "expect": "assert"})
    errored = "E   fixture 'x' not found\n1 failed, 1 error in 1.00s"
    assert judge(named, 1, errored, control=False) == ("FAILED FOR ANOTHER REASON", False)
    assert judge(named, 0, "1 passed in 1.00s", control=False) == ("DID NOT FAIL", False)
    assert judge(named, 5, "no tests ran in 0.01s", control=False)[1] is False
    assert judge(named, 0, "1 passed in 1.00s", control=True) == ("control passes", True)
    assert judge(named, 1, FAILED, control=True) == ("CONTROL FAILED", False)
