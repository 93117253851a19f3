"""Lag percentiles: exact while small, bounded memory when large."""

from __future__ import annotations

import pytest

from loginetl.core.lag import LagSample


def test_nearest_rank_percentiles_are_exact_below_capacity() -> None:
    sample = LagSample()
    assert sample.percentile(50) is None
    for seconds in range(1, 101):  # 1..100
        sample.add(float(seconds))
    assert (sample.percentile(50), sample.percentile(99), sample.percentile(100)) == (50, 99, 100)
    assert (sample.count, sample.max) == (100, 100)


def test_negative_lag_from_clock_skew_counts_as_zero() -> None:
    sample = LagSample()
    sample.add(-0.3)
    assert sample.percentile(50) == 0.0


def test_memory_stays_bounded_and_the_estimate_stays_close() -> None:
    sample = LagSample(capacity=1000, seed=1)
    for i in range(100_000):
        sample.add(i / 1000)  # uniform 0..100 s
    assert sample.count == 100_000
    assert len(sample._kept) == 1000
    assert sample.percentile(50) == pytest.approx(50, abs=5)
    assert sample.percentile(99) == pytest.approx(99, abs=2)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LagSample(capacity=0)
    with pytest.raises(ValueError, match="q must be"):
        LagSample().percentile(0)
