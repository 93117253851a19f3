"""Envelope encryption of PII to a public key, so the consumer can write but not read.

Per batch: one ephemeral X25519 key agreement with the vault's public key, HKDF-SHA-256
into an AES-256-GCM data key, then one AES-GCM seal per value with a random nonce and the
token as associated data (a ciphertext cannot be moved to another token). Only the holder
of the vault's private key can derive the data key again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loginetl.core.masking import PiiField

# cryptography is imported where a key is used, not with this module: the entry records
# below travel through core.batch and services.db, which `seed`, `stats` and `migrate`
# load without ever sealing or opening anything (~25 ms saved each).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

_HKDF_INFO = b"loginetl vault v1"


@dataclass(frozen=True, slots=True)
class PlainVaultEntry:
    """A token with the plaintext it stands for; exists only in memory, between mask and seal."""

    token: str
    pii_field: PiiField
    plaintext: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealedVaultEntry:
    """A vault row: the plaintext is recoverable only with the vault's private key."""

    token: str
    pii_field: PiiField
    recipient: str  # fingerprint of the public key it was sealed to
    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes


def raw_public_bytes(public_key: X25519PublicKey) -> bytes:
    """Return the 32 raw bytes of an X25519 public key."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: X25519PublicKey) -> str:
    """Short stable id of a vault public key, stored with each entry to allow rotation."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]


def _data_key(shared_secret: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO + ephemeral + recipient
    )
    return hkdf.derive(shared_secret)


def _aad(token: str, pii_field: str) -> bytes:
    return token.encode() + b"\x00" + pii_field.encode()


class VaultSealer:
    """Seals plaintext to the vault's public key; holds no secret that can open it."""

    def __init__(self, public_key: X25519PublicKey) -> None:
        self._public_key = public_key
        self._public_raw = raw_public_bytes(public_key)
        self.recipient = fingerprint(public_key)

    def seal(self, entries: Iterable[PlainVaultEntry]) -> list[SealedVaultEntry]:
        """Seal a batch with one key agreement."""
        entries = list(entries)
        if not entries:
            return []
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = raw_public_bytes(ephemeral.public_key())
        aead = AESGCM(
            _data_key(ephemeral.exchange(self._public_key), ephemeral_raw, self._public_raw)
        )
        sealed = []
        nonces = os.urandom(12 * len(entries))  # one getrandom call a batch, not one a value
        for i, entry in enumerate(entries):
            nonce = nonces[12 * i : 12 * i + 12]
            ciphertext = aead.encrypt(
                nonce, entry.plaintext.encode(), _aad(entry.token, entry.pii_field)
            )
            sealed.append(
                SealedVaultEntry(
                    token=entry.token,
                    pii_field=entry.pii_field,
                    recipient=self.recipient,
                    ephemeral_public_key=ephemeral_raw,
                    nonce=nonce,
                    ciphertext=ciphertext,
                )
            )
        return sealed


class VaultOpener:
    """Opens sealed entries; needs the vault's private key."""

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_raw = raw_public_bytes(private_key.public_key())
        self.recipient = fingerprint(private_key.public_key())

    def open(self, entry: SealedVaultEntry) -> str:
        """Return the plaintext; raises cryptography's InvalidTag if it was tampered with."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        ephemeral = bytes(entry.ephemeral_public_key)  # the driver may hand us memoryviews
        peer = X25519PublicKey.from_public_bytes(ephemeral)
        key = _data_key(self._private_key.exchange(peer), ephemeral, self._public_raw)
        plaintext = AESGCM(key).decrypt(
            bytes(entry.nonce), bytes(entry.ciphertext), _aad(entry.token, entry.pii_field)
        )
        return plaintext.decode()
