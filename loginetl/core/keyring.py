"""A keyring: secret keys by id, one of them current.

Two key files hold one each: ``hmac-keys.json`` (ids k1, k2, ...; the current key masks,
every key names its own tokens) and ``attribute-keys.json`` (ids a1, a2, ...; the current
key signs loginetl's message attributes, any key verifies them). Rotating adds a key and
makes it current; no key is ever removed, so what an older key made stays meaningful.

Pure: services/keys.py reads and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Keyring:
    """Keys by id: make with ``current``, recognise with any."""

    current: str
    keys: Mapping[str, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError("the current key id is not among the keys")

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]
