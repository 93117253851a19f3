from __future__ import annotations

from datetime import timedelta

import pytest

from loginetl.core.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("30s", timedelta(seconds=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "0h", "-1d", "1.5h", "7 days", "1y"])
def test_bad_durations_say_how(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 90m"):
        parse_duration(text)
