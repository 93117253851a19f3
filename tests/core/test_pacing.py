"""The replay rate limit: ramps up, then holds the configured rate."""

from __future__ import annotations

import pytest

from loginetl.core.pacing import RampedRate


def simulate(limiter: RampedRate, batches: int, size: int) -> float:
    """Send ``batches`` of ``size`` as fast as allowed; return the simulated end time."""
    now = 0.0
    for _ in range(batches):
        now += limiter.wait_before(size, now)
    return now + limiter.wait_before(0, now)  # when the last batch's budget is spent


def test_starts_at_a_tenth_and_reaches_full_rate() -> None:
    limiter = RampedRate(rate=100, ramp_seconds=5)
    assert limiter.wait_before(10, 0.0) == 0.0
    assert limiter.current_rate(0.0) == pytest.approx(10)
    assert limiter.current_rate(5.0) == pytest.approx(100)
    assert limiter.current_rate(50.0) == pytest.approx(100)


def test_long_run_average_approaches_the_rate() -> None:
    limiter = RampedRate(rate=200, ramp_seconds=1)
    end = simulate(limiter, batches=400, size=10)  # 4,000 messages
    assert 4000 / end == pytest.approx(200, rel=0.05)


def test_never_faster_than_the_rate() -> None:
    limiter = RampedRate(rate=50, ramp_seconds=0)
    end = simulate(limiter, batches=100, size=10)
    assert 1000 / end <= 50 * 1.01


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RampedRate(rate=0)
