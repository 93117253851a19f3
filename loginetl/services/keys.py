"""Key files: the HMAC keys (masking) and the vault key pair (sealing and opening PII).

Layout of a keys directory, every file 0600:
  hmac-keys.json      {"current": "k1", "keys": {"k1": "<base64 32 bytes>"}}
  vault-public.pem    X25519 public key: consume seals to it
  vault-private.pem   X25519 private key: only the unmasker's copy has it
  audit-signing-private.pem  Ed25519: loginetl signs audit chain heads with it (privacy staff)
  audit-signing-public.pem   Ed25519: ``audit verify`` checks those signatures with it
  attribute-keys.json {"current": "a1", "keys": {"a1": "<base64 32 bytes>"}}: signs the
                      loginetl-* message attributes (core/attributes.py)

``consume`` needs the HMAC file (of its keys only the current one), the vault public key and
the attribute keys (so does ``replay-dlq``); ``export_consumer_keys`` writes that subset.
Older HMAC keys, the vault private key and the audit-signing private key live with privacy
staff (auditors need only the audit-signing public key; the database owner must never hold
the signing key). The attribute keys rotate on their own schedule, apart from the masking
keys, so a DLQ message signed before a masking-key rotation still verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from loginetl.core.attributes import ATTRIBUTE_KEY_ID
from loginetl.core.keyring import Keyring
from loginetl.core.masking import KEY_ID_PATTERN, MIN_KEY_BYTES, Masker
from loginetl.errors import KeyMaterialError

HMAC_FILE = "hmac-keys.json"
PUBLIC_FILE = "vault-public.pem"
PRIVATE_FILE = "vault-private.pem"
AUDIT_PRIVATE_FILE = "audit-signing-private.pem"
AUDIT_PUBLIC_FILE = "audit-signing-public.pem"
ATTRIBUTE_FILE = "attribute-keys.json"
# What a consumer host gets from ``keys export-consumer``: the HMAC file trimmed to its
# current key, then every other file here copied as it is. Only what writing needs.
CONSUMER_FILES: tuple[str, ...] = (HMAC_FILE, PUBLIC_FILE, ATTRIBUTE_FILE)


@dataclass(frozen=True)
class _KeyringKind:
    what: str
    prefix: str  # key ids are the prefix and a number: k1, k2, ... or a1, a2, ...
    ids: re.Pattern[str]


KEYRINGS: dict[str, _KeyringKind] = {
    HMAC_FILE: _KeyringKind("the HMAC key file", "k", KEY_ID_PATTERN),
    ATTRIBUTE_FILE: _KeyringKind("the attribute key file", "a", ATTRIBUTE_KEY_ID),
}


@dataclass(frozen=True)
class KeysCreated:
    """What ``keys init`` wrote, or found already there."""

    directory: Path
    created: tuple[str, ...]
    already_present: bool


def _write_secret(path: Path, data: bytes) -> None:
    # O_EXCL: never overwrite a key, since losing one breaks tokens or the vault for good.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_private(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _new_keyring(prefix: str) -> bytes:
    key_id = f"{prefix}1"
    document = {"current": key_id, "keys": {key_id: base64.b64encode(os.urandom(32)).decode()}}
    return json.dumps(document, indent=2).encode()


def init_keys(directory: Path) -> KeysCreated:
    """Create the HMAC key, vault key pair, attribute key and audit-signing key pair.

    Idempotent when complete; a directory holding only some of them is refused (mixing
    keys from two sets would break tokens or the vault for good).
    """
    names = (*KEYRINGS, PUBLIC_FILE, PRIVATE_FILE, AUDIT_PRIVATE_FILE, AUDIT_PUBLIC_FILE)
    present = [n for n in names if (directory / n).exists()]
    if len(present) == len(names):
        return KeysCreated(directory, (), already_present=True)
    if present:
        raise KeyMaterialError(
            f"{directory} holds only some key files ({', '.join(present)}); refusing to "
            "overwrite or mix keys; move them away or choose another --dir"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, ring in KEYRINGS.items():
        _write_secret(directory / name, _new_keyring(ring.prefix))
    vault, audit = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _write_secret(directory / PUBLIC_FILE, _pem_public(vault.public_key()))
    _write_secret(directory / PRIVATE_FILE, _pem_private(vault))
    _write_secret(directory / AUDIT_PRIVATE_FILE, _pem_private(audit))
    _write_secret(directory / AUDIT_PUBLIC_FILE, _pem_public(audit.public_key()))
    return KeysCreated(directory, names, already_present=False)


def _read_secret(path: Path, what: str, hint: str) -> bytes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyMaterialError(f"{what} not found at {path}; {hint}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyMaterialError(
            f"{what} at {path} is readable by other users; run: chmod 600 {path}"
        )
    try:
        return path.read_bytes()
    except OSError as error:
        raise KeyMaterialError(f"cannot read {what} at {path} ({error.strerror})") from None


_INIT_HINT = "create keys with: loginetl keys init --dir DIR, and set LOGINETL_KEYS_DIR=DIR"


@dataclass(frozen=True)
class Rotated:
    """The HMAC key ids before and after ``keys rotate``."""

    previous: str
    current: str
    path: Path


def load_keyring(directory: Path, name: str) -> Keyring:
    """Load and check a keyring file (``HMAC_FILE`` or ``ATTRIBUTE_FILE``): every key."""
    path, kind = directory / name, KEYRINGS[name]
    raw = _read_secret(path, kind.what, _INIT_HINT)
    try:
        document = json.loads(raw)
        current = document["current"]
        loaded = {
            key_id: base64.b64decode(value, validate=True)
            for key_id, value in document["keys"].items()
        }
        ring = Keyring(current=current, keys=loaded)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise KeyMaterialError(
            f"{kind.what} at {path} is malformed (or names a missing current key)"
        ) from None
    for key_id, key in loaded.items():
        if not isinstance(key_id, str) or not kind.ids.fullmatch(key_id):
            raise KeyMaterialError(f"{kind.what} at {path} holds an invalid key id")
        if len(key) < MIN_KEY_BYTES:
            raise KeyMaterialError(f"the key {key_id} in {path} is shorter than 32 bytes")
    return ring


def rotate_keyring(directory: Path, name: str) -> Rotated:
    """Add a random 32-byte key to a keyring file and make it current; old keys stay."""
    path, prefix = directory / name, KEYRINGS[name].prefix
    previous = load_keyring(directory, name)  # validates the file and its permissions
    new_id = f"{prefix}{max(int(k[1:]) for k in previous.keys) + 1}"
    document = {
        "current": new_id,
        "keys": {
            **{k: base64.b64encode(v).decode() for k, v in previous.keys.items()},
            new_id: base64.b64encode(os.urandom(32)).decode(),
        },
    }
    staged = path.with_suffix(".json.new")
    staged.unlink(missing_ok=True)
    _write_secret(staged, json.dumps(document, indent=2).encode())
    os.replace(staged, path)  # atomic: readers see the old file or the new one
    return Rotated(previous=previous.current, current=new_id, path=path)


def load_masker(directory: Path) -> Masker:
    """The current HMAC key as a Masker (what consume masks with)."""
    ring = load_keyring(directory, HMAC_FILE)
    return Masker(ring.current, ring.current_key)


def load_maskers(directory: Path) -> dict[str, Masker]:
    """Every HMAC key as a Masker, by key id (re-deriving and unmasking need old keys)."""
    return {
        key_id: Masker(key_id, key)
        for key_id, key in load_keyring(directory, HMAC_FILE).keys.items()
    }


def load_public_key(directory: Path) -> X25519PublicKey:
    """Load the vault's public key (what consume seals to)."""
    path, what = directory / PUBLIC_FILE, "the vault public key"
    key = _parse_public(_read_secret(path, what, _INIT_HINT), path, what)
    if not isinstance(key, X25519PublicKey):
        raise _wrong_kind(path, what, "X25519")
    return key


def _parse_public(raw: bytes, path: Path, what: str) -> object:
    try:
        return serialization.load_pem_public_key(raw)
    except ValueError:
        raise KeyMaterialError(f"{what} at {path} is not a PEM public key") from None


def _load_private(path: Path, what: str, hint: str) -> object:
    raw = _read_secret(path, what, hint)
    try:
        return serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"{what} at {path} is not a PEM private key") from None


def _wrong_kind(path: Path, what: str, algorithm: str) -> KeyMaterialError:
    return KeyMaterialError(f"{what} at {path} is not an {algorithm} key")


def load_private_key(path: Path) -> X25519PrivateKey:
    """Load the vault's private key (only privacy staff have it)."""
    what = "the vault private key"
    key = _load_private(path, what, "only privacy staff hold it; pass its path or keys dir")
    if not isinstance(key, X25519PrivateKey):
        raise _wrong_kind(path, what, "X25519")
    return key


def load_audit_signer(directory: Path) -> Ed25519PrivateKey:
    """Load the audit-signing private key (privacy staff; never the database owner)."""
    path, what = directory / AUDIT_PRIVATE_FILE, "the audit-signing private key"
    hint = "add it with: loginetl keys init --dir DIR (other key files are left as they are)"
    key = _load_private(path, what, hint)
    if not isinstance(key, Ed25519PrivateKey):
        raise _wrong_kind(path, what, "Ed25519")
    return key


def load_audit_public_key(path: Path) -> Ed25519PublicKey:
    """Load the audit-signing public key that ``audit verify`` checks heads with."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(
            f"the audit-signing public key was not found at {path}; pass --public-key, "
            "or --no-signatures to check the hash chain alone"
        ) from None
    except OSError as error:
        raise KeyMaterialError(f"cannot read {path} ({error.strerror})") from None
    what = "the audit-signing public key"
    key = _parse_public(raw, path, what)
    if not isinstance(key, Ed25519PublicKey):
        raise _wrong_kind(path, what, "Ed25519")
    return key


@dataclass(frozen=True)
class ConsumerKeysExported:
    """What ``keys export-consumer`` wrote."""

    directory: Path
    files: tuple[str, ...]
    hmac_key_id: str


def export_consumer_keys(source: Path, target: Path) -> ConsumerKeysExported:
    """Write the consumer's key set (CONSUMER_FILES, HMAC trimmed to the current key) to target.

    A consumer host holding older HMAC keys or the private key would widen what a
    compromise of it reveals. Never overwrites: every file is created exclusively, 0600.
    """
    masker = load_masker(source)  # validates the file and its permissions
    contents = {
        HMAC_FILE: json.dumps(
            {
                "current": masker.key_id,
                "keys": {masker.key_id: base64.b64encode(masker.key).decode()},
            },
            indent=2,
        ).encode()
    }
    for name in CONSUMER_FILES:
        if name not in contents:
            contents[name] = _read_secret(source / name, f"the key file {name}", _INIT_HINT)
    present = [
        n
        for n in (*CONSUMER_FILES, PRIVATE_FILE)
        if (target / n).exists() or (target / n).is_symlink()
    ]
    if present:
        raise KeyMaterialError(
            f"{target} already holds {', '.join(present)}; refusing to overwrite; "
            "export to an empty directory"
        )
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in CONSUMER_FILES:
        _write_secret(target / name, contents[name])
    return ConsumerKeysExported(target, CONSUMER_FILES, masker.key_id)


def excess_for_consumer(directory: Path) -> tuple[str, ...]:
    """What in a consumer's keys directory it does not need (file names and counts only).

    Empty for a set written by ``export_consumer_keys``.
    """
    excess: list[str] = []
    if (directory / PRIVATE_FILE).exists():
        excess.append(f"the vault private key ({PRIVATE_FILE})")
    try:
        older = len(load_keyring(directory, HMAC_FILE).keys) - 1
    except KeyMaterialError:
        older = 0  # load_masker reports an unreadable file; this is only a warning
    if older:
        excess.append(f"{older} HMAC key(s) other than the current one")
    others = sorted(
        p.name
        for p in directory.glob("*")
        if p.is_file() and p.name not in (*CONSUMER_FILES, PRIVATE_FILE)
    )
    if others:  # e.g. another signing key: whatever writing does not need
        excess.append(f"other files ({', '.join(others)})")
    return tuple(excess)
