"""The soak's producer: valid, malformed and hostile messages at a steady rate, and its ledger.

Every message sent is written down (the ledger) with the keys loginetl may file it under,
so the invariants are checked against what was sent, never against loginetl's counters.
Valid logins come from a pool of users that ``forget`` may erase; malformed and hostile
ones from a separate pool of "noise" users never erased, so an erased user's DLQ copies
are not a question. Every login is sent now, so every row's ``create_date`` is today and
``retention apply --keep 13mo`` must delete nothing (docs/soak.md).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from loginetl.core.demo import _malformed
from tests.e2e.test_envelopes import eventbridge
from tests.e2e.test_hostile_envelopes import CANARY_DEVICE, CANARY_IP, hostile, sns

GROUPS = 8  # FIFO message groups
VALID_SHARE, MALFORMED_SHARE = 0.86, 0.09  # the rest is hostile
FIFO_SHARE = 0.3


@dataclass(frozen=True)
class Sent:
    """One message as sent: where, what, and every key loginetl may file it under."""

    n: int  # serial, in send order
    at: float  # soak clock, seconds since the start
    fifo: bool
    kind: str  # valid, malformed, hostile
    wrap: str  # plain, sns, eventbridge
    keys: tuple[str, ...]  # the row's idempotency key first (for a valid message)
    user_id: str
    group: str | None = None
    group_seq: int | None = None

    @property
    def valid(self) -> bool:
        return self.kind == "valid"


@dataclass
class _User:
    user_id: str
    ips: tuple[str, ...]
    devices: tuple[str, ...]
    device_type: str
    app_version: str
    locale: str | None


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return "2001:db8:" + ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(6))
    return (
        f"{rng.randint(11, 99)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
    )


def _device(rng: random.Random) -> str:
    return f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(0, 9999):04d}"


def _users(rng: random.Random, prefix: str, count: int) -> list[_User]:
    shared_ips = [_ip(rng) for _ in range(max(1, count // 20))]
    shared_devices = [_device(rng) for _ in range(max(1, count // 30))]
    users = []
    for i in range(count):
        users.append(
            _User(
                user_id=f"{prefix}-{i:04d}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}",
                ips=tuple(
                    rng.choice(shared_ips) if rng.random() < 0.1 else _ip(rng)
                    for _ in range(rng.randint(1, 3))
                ),
                devices=tuple(
                    rng.choice(shared_devices) if rng.random() < 0.1 else _device(rng)
                    for _ in range(rng.randint(1, 2))
                ),
                device_type=rng.choice(("android", "ios")),
                app_version=rng.choice(("1.2.3", "2.0", "0.96", "3", "2.10.1")),
                locale=None if rng.random() < 0.3 else rng.choice(("US", "FR", "BR", "JP")),
            )
        )
    return users


@dataclass
class Ledger:
    """Everything sent, the users retired (no more messages) and erased, under one lock."""

    sent: list[Sent] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    erased: dict[str, float] = field(default_factory=dict)  # user -> soak time of the forget
    pii: set[str] = field(default_factory=set)  # every ip and device_id value ever sent
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Sent]:
        with self.lock:
            return list(self.sent)


class Producer:
    """Sends ``rate`` messages a second to the standard and the FIFO queue until stopped."""

    def __init__(
        self,
        client: Any,
        urls: dict[str, str],
        seed: int,
        rate: float,
        ledger: Ledger,
        clock: Any,
    ) -> None:
        self.client = client
        self.urls = urls  # "std", "fifo"
        self.rng = random.Random(seed * 7919 + 1)
        self.rate = rate
        self.ledger = ledger
        self.clock = clock
        self.users = _users(self.rng, "u", 240)
        self.noise = _users(self.rng, "noise", 40)
        for user in self.users + self.noise:
            ledger.pii.update(user.ips + user.devices)
        ledger.pii.update((CANARY_IP, CANARY_DEVICE))
        self.group_seq = {f"g{i}": 0 for i in range(GROUPS)}
        self.running = threading.Event()  # set: sending; clear: paused (a quiet point)
        self.stopped = threading.Event()
        self.errors = 0
        self.thread = threading.Thread(target=self._loop, name="producer", daemon=True)

    def start(self) -> None:
        self.running.set()
        self.thread.start()

    def pause(self) -> None:
        """Stop sending; returns once no send is under way."""
        self.running.clear()
        with self.ledger.lock:
            pass

    def stop(self) -> None:
        self.stopped.set()
        self.running.set()
        self.thread.join(timeout=30)

    def retire(self, rng: random.Random) -> str:
        """Choose a user (by the schedule's rng) who gets no more messages; return the id."""
        with self.ledger.lock:
            candidates = [u.user_id for u in self.users if u.user_id not in self.ledger.retired]
            user = rng.choice(candidates)
            self.ledger.retired.add(user)
            return user

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stopped.is_set():
            self.running.wait()
            if self.stopped.is_set():
                return
            next_at = max(next_at + interval, time.monotonic() - 1)
            with self.ledger.lock:
                if self.running.is_set():
                    try:
                        self._send_one()
                    except Exception:
                        self.errors += 1
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _good(self, user: _User) -> dict[str, object]:
        return {
            "user_id": user.user_id,
            "app_version": user.app_version,
            "device_type": user.device_type,
            "ip": self.rng.choice(user.ips),
            "locale": user.locale,
            "device_id": self.rng.choice(user.devices),
        }

    def _send_one(self) -> None:
        rng = self.rng
        fifo = rng.random() < FIFO_SHARE
        roll = rng.random()
        if roll < VALID_SHARE:
            kind = "valid"
            user = rng.choice([u for u in self.users if u.user_id not in self.ledger.retired])
            text = json.dumps(self._good(user))
        else:
            user = rng.choice(self.noise)
            good = self._good(user)
            if roll < VALID_SHARE + MALFORMED_SHARE:
                kind, text = "malformed", _malformed(rng, good)
            else:
                kind = "hostile"
                bodies, loadable = hostile(good)  # the loadable ones come first
                text = rng.choice(bodies[loadable:])
        wrap, body, envelope_key = "plain", text, None
        if kind != "hostile":
            wrap = rng.choices(("plain", "sns", "eventbridge"), weights=(2, 1, 1))[0]
            if wrap == "sns":
                message_id = str(uuid.UUID(int=rng.getrandbits(128)))
                body, envelope_key = sns(text, message_id=message_id), f"sns:{message_id}"
            elif wrap == "eventbridge":
                event_id = str(uuid.UUID(int=rng.getrandbits(128)))
                detail = json.loads(text) if text.startswith("{") else text
                body = eventbridge(detail, event_id=event_id)
                envelope_key = f"eventbridge:{event_id}"
        else:
            envelope_key = _hostile_key(body)
        args: dict[str, Any] = {
            "QueueUrl": self.urls["fifo" if fifo else "std"],
            "MessageBody": body,
        }
        group = seq = None
        if fifo:
            group = f"g{rng.randrange(GROUPS)}"
            args["MessageGroupId"] = group
            args["MessageDeduplicationId"] = uuid.UUID(int=rng.getrandbits(128)).hex
            if kind == "valid":
                self.group_seq[group] += 1
                seq = self.group_seq[group]
        message_id = str(self.client.send_message(**args)["MessageId"])
        keys = (envelope_key, message_id) if envelope_key else (message_id,)
        self.ledger.sent.append(
            Sent(
                n=len(self.ledger.sent),
                at=self.clock(),
                fifo=fifo,
                kind=kind,
                wrap=wrap,
                keys=keys,
                user_id=user.user_id,
                group=group,
                group_seq=seq,
            )
        )


def _hostile_key(body: str) -> str | None:
    """The envelope id a hostile body carries, if it has one loginetl might file it under."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict) and isinstance(document.get("MessageId"), str):
        return f"sns:{document['MessageId']}"
    if isinstance(document, dict) and isinstance(document.get("id"), str):
        return f"eventbridge:{document['id']}"
    return None
