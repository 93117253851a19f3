"""End-to-end lag percentiles for a run's summary, in bounded memory.

A ``--follow`` run may commit millions of messages, so the summary keeps a uniform sample
(reservoir sampling, Vitter's algorithm R) of at most ``capacity`` observations: exact
percentiles while the run is smaller, an unbiased estimate after. The Prometheus histogram
(services/metrics.py) sees every observation. Pure; the caller serializes access.
"""

from __future__ import annotations

import math
import random


class LagSample:
    """Observed lags in seconds; p50/p99 by nearest rank."""

    def __init__(self, capacity: int = 10_000, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.count = 0
        self.max = 0.0
        self._kept: list[float] = []
        self._random = random.Random(seed)

    def add(self, seconds: float) -> None:
        """Record one observation (negative lags, from clock skew, count as 0)."""
        seconds = max(0.0, seconds)
        self.count += 1
        self.max = max(self.max, seconds)
        if len(self._kept) < self.capacity:
            self._kept.append(seconds)
            return
        slot = self._random.randrange(self.count)
        if slot < self.capacity:
            self._kept[slot] = seconds

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0 < q <= 100) of what was kept, or None before any."""
        if not 0 < q <= 100:
            raise ValueError("q must be in (0, 100]")
        if not self._kept:
            return None
        ordered = sorted(self._kept)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
