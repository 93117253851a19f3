"""The demo generator is deterministic, mostly valid, and produces shared values."""

from __future__ import annotations

import json
from collections import Counter

from loginetl.core.demo import generate_bodies
from loginetl.core.messages import LoginEvent, parse_login


def test_same_seed_same_messages() -> None:
    assert list(generate_bodies(50, seed=3)) == list(generate_bodies(50, seed=3))
    assert list(generate_bodies(50, seed=3)) != list(generate_bodies(50, seed=4))


def test_malformed_share_and_shared_values() -> None:
    outcomes = [parse_login(b) for b in generate_bodies(5000, seed=1, malformed_share=0.02)]
    events = [o for o in outcomes if isinstance(o, LoginEvent)]
    malformed = len(outcomes) - len(events)
    assert 50 <= malformed <= 150
    users_per_ip: dict[str, set[str]] = {}
    for event in events:
        users_per_ip.setdefault(event.ip, set()).add(event.user_id)
    assert max(len(users) for users in users_per_ip.values()) > 1
    assert Counter(e.user_id for e in events).most_common(1)[0][1] > 1


def test_zero_malformed_share_is_all_valid() -> None:
    assert all(
        isinstance(parse_login(b), LoginEvent)
        for b in generate_bodies(500, seed=2, malformed_share=0)
    )


def test_bodies_are_json_objects_like_the_sample() -> None:
    document = json.loads(next(generate_bodies(1, seed=5, malformed_share=0)))
    assert set(document) == {"user_id", "app_version", "device_type", "ip", "locale", "device_id"}
