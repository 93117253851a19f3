"""Failpoints: inert unless armed; several may be armed; a hold waits for its gate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from loginetl.services import failpoints


@pytest.fixture(autouse=True)
def fresh_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_hits", {})


def test_unarmed_points_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGINETL_FAILPOINT", raising=False)
    failpoints.hit("crash_after_commit")  # would kill the test run if it were armed


def test_several_points_can_be_armed_and_only_the_named_one_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGINETL_FAILPOINT", "sleep_before_commit:0.2,crash_after_commit:99")
    started = time.monotonic()
    failpoints.hit("sleep_before_commit")
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    failpoints.hit("sleep_on_first_delivery")  # not armed
    failpoints.hit("crash_after_commit")  # armed for the 99th hit only
    assert time.monotonic() - started < 0.2


def test_a_hold_waits_for_its_gate_from_the_nth_hit_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("LOGINETL_FAILPOINT", "hold_after_receive:2")
    monkeypatch.setenv("LOGINETL_FAILPOINT_GATE", str(gate))
    failpoints.hit("hold_after_receive")  # the first passes
    held = threading.Thread(target=failpoints.hit, args=("hold_after_receive",))
    held.start()
    held.join(timeout=0.5)
    assert held.is_alive()  # the second waits
    gate.touch()
    held.join(timeout=5)
    assert not held.is_alive()
