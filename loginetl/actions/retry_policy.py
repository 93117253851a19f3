"""How consume waits out a transient failure: jittered exponential back-off, bounded.

Jitter spreads the retries of many workers (and many pods) that all met the same outage,
so a recovering database or endpoint is not hit by all of them in the same instant.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from loginetl.errors import LoginetlError

BASE_SECONDS = 0.5
CAP_SECONDS = 10.0


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Equal jitter: half of min(cap, base * 2**attempt), plus up to that half again."""
    ceiling = min(CAP_SECONDS, BASE_SECONDS * 2.0 ** min(max(attempt, 0), 10))
    return ceiling / 2 + float((rng or random).uniform(0, ceiling / 2))


class Fatal(Exception):
    """Stop every worker: the wrapped error must reach the operator (e.g. an outage that
    outlasted the retry budget)."""

    def __init__(self, error: LoginetlError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Outage:
    """One run of consecutive failures, for one worker."""

    retry_seconds: float
    follow: bool
    since: float = field(default_factory=time.monotonic)
    attempt: int = 0

    def next_delay(self, error: LoginetlError) -> float:
        """Seconds to wait before the next try; Fatal once past the budget (unless following)."""
        self.attempt += 1
        if not self.follow and time.monotonic() - self.since > self.retry_seconds:
            raise Fatal(error)
        return backoff_seconds(self.attempt)
