"""``seed``: publish demo (or file-supplied) login messages to the queue."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loginetl.config import Settings
from loginetl.core.fifo import is_fifo
from loginetl.core.limits import SQS_BATCH
from loginetl.errors import LoginetlError
from loginetl.services.sqs import OutboundMessage, SqsService


@dataclass(frozen=True)
class SeedResult:
    """How many messages reached the queue."""

    queue: str
    sent: int
    failed: int


def bodies_from_file(path: Path) -> list[str]:
    """Read a JSON array; each element becomes one message body, malformed ones included."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoginetlError(f"--from-file: {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise LoginetlError(
            f"--from-file: {path} is not a readable JSON file ({type(error).__name__})"
        ) from None
    if not isinstance(document, list):
        raise LoginetlError(f"--from-file: {path} must hold a JSON array of messages")
    return [json.dumps(item) for item in document]


def _outbound(body: str, fifo: bool) -> OutboundMessage:
    """A demo message; to a FIFO queue in a group per user (hashed), never deduplicated."""
    if not fifo:
        return OutboundMessage(body)
    try:
        user = json.loads(body).get("user_id")
    except (ValueError, AttributeError, RecursionError):
        user = None
    group = hashlib.sha256(str(user).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return OutboundMessage(body, group_id=group, deduplication_id=uuid.uuid4().hex)


def send_bodies(
    sqs: SqsService,
    queue_url: str,
    bodies: Iterable[str],
    *,
    workers: int = 4,
    on_sent: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Send bodies in batches of 10 from several threads; return (sent, failed)."""
    source: Iterator[str] = iter(bodies)
    fifo = is_fifo(queue_url)
    lock = threading.Lock()
    counts = {"sent": 0, "failed": 0}
    errors: list[BaseException] = []

    def next_chunk() -> list[str]:
        with lock:
            return [body for _, body in zip(range(SQS_BATCH), source, strict=False)]

    def work() -> None:
        try:
            while chunk := next_chunk():
                failed = len(sqs.send(queue_url, [_outbound(b, fifo) for b in chunk]))
                with lock:
                    counts["sent"] += len(chunk) - failed
                    counts["failed"] += failed
                if on_sent is not None:
                    on_sent(len(chunk))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return counts["sent"], counts["failed"]


def seed(
    settings: Settings,
    bodies: Iterable[str],
    *,
    create_queues: bool = False,
    on_sent: Callable[[int], None] | None = None,
) -> SeedResult:
    """Publish bodies to the configured queue."""
    sqs = SqsService.for_settings(settings)
    if create_queues:
        queue_url, _ = sqs.create_queues(settings.queue_name, settings.dlq_name)
    else:
        queue_url = sqs.queue_url(settings.queue_name)
    sent, failed = send_bodies(sqs, queue_url, bodies, on_sent=on_sent)
    return SeedResult(queue=settings.queue_name, sent=sent, failed=failed)
