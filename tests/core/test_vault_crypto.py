"""Envelope encryption: the consumer seals, only the private key opens."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from loginetl.core.vault_crypto import PlainVaultEntry, VaultOpener, VaultSealer


def test_round_trip_with_one_key_agreement_per_batch() -> None:
    private = X25519PrivateKey.generate()
    sealed = VaultSealer(private.public_key()).seal(
        [PlainVaultEntry("k1:aa", "ip", "10.1.2.3"), PlainVaultEntry("k1:bb", "device_id", "d-1")]
    )
    assert len({s.ephemeral_public_key for s in sealed}) == 1
    assert len({s.nonce for s in sealed}) == 2
    assert {len(s.nonce) for s in sealed} == {12}  # AES-GCM's 96-bit nonce, sliced per value
    opener = VaultOpener(private)
    assert [opener.open(s) for s in sealed] == ["10.1.2.3", "d-1"]
    assert all(b"10.1.2.3" not in s.ciphertext for s in sealed)


def test_another_private_key_cannot_open() -> None:
    sealed = VaultSealer(X25519PrivateKey.generate().public_key()).seal(
        [PlainVaultEntry("k1:aa", "ip", "10.1.2.3")]
    )
    with pytest.raises(InvalidTag):
        VaultOpener(X25519PrivateKey.generate()).open(sealed[0])


def test_ciphertext_moved_to_another_token_does_not_open() -> None:
    private = X25519PrivateKey.generate()
    sealed = VaultSealer(private.public_key()).seal([PlainVaultEntry("k1:aa", "ip", "10.1.2.3")])
    moved = dataclasses.replace(sealed[0], token="k1:bb")
    with pytest.raises(InvalidTag):
        VaultOpener(private).open(moved)


def test_empty_batch_seals_nothing() -> None:
    assert VaultSealer(X25519PrivateKey.generate().public_key()).seal([]) == []
