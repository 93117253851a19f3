"""Generate realistic login messages for the demo, the tests and the benchmarks.

Shaped like the public sample of the real queue: uuid user ids, android/ios, dotted
versions of one to three parts, ISO country locales (about 30% null), IPv4 mostly with
some IPv6, ``ddd-dd-dddd`` device ids. Users log in more than once and some devices and
addresses are shared between users, so the duplicate analysis has something to find.
A share of messages is malformed in the ways the real queue is.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

LOCALES = ("US", "RU", "PH", "ID", "CN", "FR", "PT", "BR", "DE", "IN", "NG", "MX", "JP", "PL")


@dataclass(frozen=True)
class _User:
    user_id: str
    device_type: str
    app_version: str
    locale: str | None
    ips: tuple[str, ...]
    device_ids: tuple[str, ...]


def _ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def _ipv6(rng: random.Random) -> str:
    return "2001:db8:" + ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(6))


def _device_id(rng: random.Random) -> str:
    return f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(0, 9999):04d}"


def _version(rng: random.Random) -> str:
    parts = rng.choices((1, 2, 3), weights=(1, 4, 5))[0]
    minor_max = 99 if rng.random() < 0.1 else 9  # the sample has versions like "0.96"
    return ".".join(str(rng.randint(0, (5, minor_max, 9)[i])) for i in range(parts))


def _malformed(rng: random.Random, good: dict[str, object]) -> str:
    kind = rng.randrange(7)
    if kind == 0:
        return json.dumps({"foo": "oops_wrong_msg_type", "bar": str(rng.randint(0, 999))})
    if kind == 1:
        return json.dumps({**good, "ip": None})
    if kind == 2:
        return json.dumps({**good, "ip": "999.1.2.3"})
    if kind == 3:
        return json.dumps({**good, "app_version": "v2-beta"})
    if kind == 4:
        return "login:" + str(good["user_id"])  # not JSON at all
    if kind == 5:
        trimmed = dict(good)
        trimmed.pop("device_id")
        return json.dumps(trimmed)
    return json.dumps([good])


def generate_bodies(
    count: int,
    *,
    seed: int = 0,
    malformed_share: float = 0.01,
    users: int | None = None,
    shared_share: float = 0.05,
) -> Iterator[str]:
    """Yield ``count`` message bodies (JSON text), deterministic for a seed."""
    rng = random.Random(seed)
    population = users if users is not None else max(1, count // 3)
    shared_ips = [_ipv4(rng) for _ in range(max(1, population // 50))]
    shared_devices = [_device_id(rng) for _ in range(max(1, population // 80))]
    pool: list[_User] = []
    for _ in range(population):
        ips = tuple(
            rng.choice(shared_ips)
            if rng.random() < shared_share
            else (_ipv6(rng) if rng.random() < 0.05 else _ipv4(rng))
            for _ in range(rng.randint(1, 3))
        )
        devices = tuple(
            rng.choice(shared_devices) if rng.random() < shared_share else _device_id(rng)
            for _ in range(rng.randint(1, 2))
        )
        pool.append(
            _User(
                user_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                device_type=rng.choice(("android", "ios")),
                app_version=_version(rng),
                locale=None if rng.random() < 0.3 else rng.choice(LOCALES),
                ips=ips,
                device_ids=devices,
            )
        )
    for _ in range(count):
        user = rng.choice(pool)
        good: dict[str, object] = {
            "user_id": user.user_id,
            "app_version": user.app_version,
            "device_type": user.device_type,
            "ip": rng.choice(user.ips),
            "locale": user.locale,
            "device_id": rng.choice(user.device_ids),
        }
        if rng.random() < malformed_share:
            yield _malformed(rng, good)
        else:
            yield json.dumps(good)
