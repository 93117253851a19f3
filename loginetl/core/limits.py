"""The bounds of consume's options, written once: the CLI's flags (Typer's min and max)
and ConsumeOptions (for a caller from Python, the Lambda's settings) both read them."""

from __future__ import annotations

from dataclasses import dataclass

SQS_BATCH = 10  # SQS's most messages a receive, send, delete or visibility batch


@dataclass(frozen=True)
class Bound:
    """Inclusive bounds; None is open on that side."""

    lo: int | float | None
    hi: int | float | None = None

    def check(self, name: str, value: float | None, why: str = "") -> None:
        """Raise ValueError naming ``name`` when ``value`` is outside (None passes)."""
        if value is None:
            return
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            if self.hi is None:
                said = f"at least {self.lo}"
            elif self.lo is None:
                said = f"at most {self.hi}"
            else:
                said = f"between {self.lo} and {self.hi}"
            raise ValueError(f"{name} must be {said}{f' ({why})' if why else ''}")


MAX_MESSAGES = Bound(1)
IDLE_EXIT_SECONDS = Bound(0.1)
WORKERS = Bound(1, 64)
BATCH_MESSAGES = Bound(SQS_BATCH, 1000)
WAIT_SECONDS = Bound(0, 20)  # SQS's long-poll limit
VISIBILITY_TIMEOUT = Bound(1, 43200)  # SQS's: 12 hours
RETRY_SECONDS = Bound(0)
MAX_BODY_BYTES = Bound(1024, 1024 * 1024)  # SQS's limit: 1 MiB
BATCH_BYTES = Bound(1024 * 1024)  # one body of SQS's maximum
STATEMENT_TIMEOUT_SECONDS = Bound(0.1)
