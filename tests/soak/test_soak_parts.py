"""The soak's own parts that need no services: the schedule and the pure invariants."""

from __future__ import annotations

from collections import defaultdict

from tests.soak import invariants as inv
from tests.soak.faults import KINDS, schedule
from tests.soak.producer import Sent
from tests.soak.run import quiet_points


def test_a_seed_replays_its_schedule_and_every_kind_is_drawn() -> None:
    assert schedule(42, 600) == schedule(42, 600)
    assert schedule(42, 600) != schedule(43, 600)
    for seed in (1, 2, 3):
        faults = schedule(seed, 600)
        assert {f.kind for f in faults} == set(KINDS)
        assert all(10 < f.at <= 580 for f in faults)
        assert [f.at for f in faults] == sorted(f.at for f in faults)


def test_quiet_points() -> None:
    assert quiet_points(600) == [150.0, 300.0, 450.0]
    assert quiet_points(120) == [60.0]


def test_plaintext_is_found_whole_never_inside_a_longer_value() -> None:
    pattern = inv.pii_pattern({"10.1.2.3", "123-45-6789", "2001:db8:1:2:3:4:5:6"})
    assert pattern.search('{"ip": "10.1.2.3"}')
    assert pattern.search("device 123-45-6789\n")
    assert pattern.search("x\t2001:db8:1:2:3:4:5:6\t")
    assert not pattern.search("110.1.2.3 10.1.2.34 0123-45-6789 k1:10.1.2.3.4")


def test_rss_growth_beyond_a_fifth_is_a_violation_a_drop_is_not() -> None:
    def samples(first: int, last: int) -> list[tuple[float, str, float, int]]:
        return [(float(t), "c", float(t), first if t < 300 else last) for t in range(0, 600, 5)]

    assert inv.rss_flat(samples(100_000, 119_000), 600)[0] == []
    assert [v.invariant for v in inv.rss_flat(samples(100_000, 121_000), 600)[0]] == ["rss-flat"]
    assert inv.rss_flat(samples(100_000, 50_000), 600)[0] == []
    assert "not measured" in inv.rss_flat([], 120)[1]


def _sent(n: int, kind: str, *keys: str) -> Sent:
    return Sent(n, 0.0, False, kind, "plain", keys, "u")


def test_every_invalid_message_needs_a_dlq_copy_with_a_reason() -> None:
    sent = [
        _sent(0, "malformed", "sns:a", "m-a"),
        _sent(1, "hostile", "m-b"),
        _sent(2, "valid", "m-c"),
    ]
    dead = inv.DeadLetters(reasons=defaultdict(list, {"m-a": ["invalid_json"], "m-b": ["x", "x"]}))
    assert inv.dlq_with_reason(sent, dead) == (
        [],
        {"invalid sent": 2, "in the DLQ": 2, "extra DLQ copies": 1},
    )
    dead.reasons["m-c"].append("invalid_ip")  # a valid message dead-lettered
    del dead.reasons["m-b"]
    dead.reasons["sns:a"].append("")  # a copy with no reason
    found = inv.dlq_with_reason(sent, dead)[0]
    assert [v.what.split(" ", 1)[1] for v in found] == [
        "invalid messages never reached the DLQ",
        "DLQ copies carry no reason",
        "valid messages were dead-lettered",
    ]
