"""A replay's pacing: a send-rate limit that ramps up, so a replay does not hit a recovering
system at full rate, and how long it keeps what it skips hidden."""

from __future__ import annotations

from dataclasses import dataclass, field

# What a replay run skips stays hidden this long, so the run sees each message once
# (replay-dlq --hold-seconds; here, not in actions/replay, so --help need not import boto3).
DEFAULT_HOLD_SECONDS = 120


@dataclass
class RampedRate:
    """Allow up to ``rate`` messages/s, ramping linearly from a tenth of it over ``ramp_seconds``.

    Pure: the caller passes the clock reading and sleeps for what :meth:`wait_before` returns.
    """

    rate: float
    ramp_seconds: float = 5.0
    _start: float | None = field(default=None, init=False)
    _allowed_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")

    def current_rate(self, now: float) -> float:
        """The rate in force at ``now``."""
        if self.ramp_seconds <= 0:
            return self.rate
        elapsed = 0.0 if self._start is None else now - self._start
        progress = min(1.0, max(0.0, elapsed / self.ramp_seconds))
        return self.rate * (0.1 + 0.9 * progress)

    def wait_before(self, count: int, now: float) -> float:
        """Seconds to wait before sending ``count`` messages; books them."""
        if self._start is None:
            self._start = now
            self._allowed_at = now
        start_at = max(now, self._allowed_at)
        self._allowed_at = start_at + count / self.current_rate(start_at)
        return start_at - now
