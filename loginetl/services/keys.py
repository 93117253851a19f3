"""Key files: the HMAC keys (masking) and the vault key pair (sealing and opening PII).

Layout of a keys directory, every file 0600:
  hmac-keys.json      {"current": "k1", "keys": {"k1": "<base64 32 bytes>"}}
  vault-public.pem    X25519 public key: consume seals to it
  vault-private.pem   X25519 private key: only the unmasker's copy has it
  attribute-keys.json {"current": "a1", "keys": {"a1": "<base64 32 bytes>"}}: signs the
                      loginetl-* message attributes (core/attributes.py)

``consume`` needs the first two and the fourth (so does ``replay-dlq``); give the third
only to privacy staff. The attribute keys rotate on their own schedule, apart from the
masking keys, so a DLQ message signed before a masking-key rotation still verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from loginetl.core.attributes import ATTRIBUTE_KEY_ID, AttributeKeys
from loginetl.core.masking import KEY_ID_PATTERN, MIN_KEY_BYTES, Masker
from loginetl.errors import KeyMaterialError

HMAC_FILE = "hmac-keys.json"
PUBLIC_FILE = "vault-public.pem"
PRIVATE_FILE = "vault-private.pem"
ATTRIBUTE_FILE = "attribute-keys.json"


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


def _new_attribute_keys() -> bytes:
    document = {"current": "a1", "keys": {"a1": base64.b64encode(os.urandom(32)).decode()}}
    return json.dumps(document, indent=2).encode()


def init_keys(directory: Path) -> KeysCreated:
    """Create an HMAC key, a vault key pair and an attribute key; idempotent when complete.

    A directory made by an older loginetl (the first three files) gains the attribute key
    file alone; the other files are not touched.
    """
    names = (HMAC_FILE, PUBLIC_FILE, PRIVATE_FILE)
    present = [n for n in names if (directory / n).exists()]
    if len(present) == len(names):
        if (directory / ATTRIBUTE_FILE).exists():
            return KeysCreated(directory, (), already_present=True)
        _write_secret(directory / ATTRIBUTE_FILE, _new_attribute_keys())
        return KeysCreated(directory, (ATTRIBUTE_FILE,), already_present=False)
    if present:
        raise KeyMaterialError(
            f"{directory} holds only some key files ({', '.join(present)}); refusing to "
            "overwrite or mix keys; move them away or choose another --dir"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    hmac_doc = {"current": "k1", "keys": {"k1": base64.b64encode(os.urandom(32)).decode()}}
    private = X25519PrivateKey.generate()
    _write_secret(directory / HMAC_FILE, json.dumps(hmac_doc, indent=2).encode())
    _write_secret(
        directory / PUBLIC_FILE,
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    _write_secret(
        directory / PRIVATE_FILE,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    if not (directory / ATTRIBUTE_FILE).exists():
        _write_secret(directory / ATTRIBUTE_FILE, _new_attribute_keys())
    return KeysCreated(directory, (*names, ATTRIBUTE_FILE), already_present=False)


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


def load_masker(directory: Path) -> Masker:
    """Load the current HMAC key as a Masker."""
    path = directory / HMAC_FILE
    raw = _read_secret(path, "the HMAC key file", _INIT_HINT)
    try:
        document = json.loads(raw)
        key_id = document["current"]
        key = base64.b64decode(document["keys"][key_id], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise KeyMaterialError(f"the HMAC key file at {path} is malformed") from None
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise KeyMaterialError(f"the HMAC key file at {path} names an invalid current key id")
    if len(key) < MIN_KEY_BYTES:
        raise KeyMaterialError(f"the HMAC key {key_id} in {path} is shorter than 32 bytes")
    return Masker(key_id=key_id, key=key)


def load_attribute_keys(directory: Path) -> AttributeKeys:
    """Load every attribute key (verification accepts any; signing uses the current one)."""
    path = directory / ATTRIBUTE_FILE
    raw = _read_secret(
        path,
        "the attribute key file",
        "add it with: loginetl keys init --dir DIR (the other key files are left alone)",
    )
    try:
        document = json.loads(raw)
        current = document["current"]
        loaded = {
            key_id: base64.b64decode(value, validate=True)
            for key_id, value in document["keys"].items()
        }
        if not isinstance(current, str):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise KeyMaterialError(f"the attribute key file at {path} is malformed") from None
    for key_id, key in loaded.items():
        if not ATTRIBUTE_KEY_ID.fullmatch(key_id) or len(key) < MIN_KEY_BYTES:
            raise KeyMaterialError(
                f"the attribute key file at {path} holds an invalid key id or a key shorter "
                "than 32 bytes"
            )
    if current not in loaded:
        raise KeyMaterialError(f"the attribute key file at {path} names a missing current key")
    return AttributeKeys(current=current, keys=loaded)


def rotate_attribute_key(directory: Path) -> Rotated:
    """Add a new attribute key and sign with it; old keys stay, so old DLQ messages verify."""
    previous = load_attribute_keys(directory)  # validates the file and its permissions
    new_id = f"a{max((int(k[1:]) for k in previous.keys), default=0) + 1}"
    _add_current_key(directory / ATTRIBUTE_FILE, new_id)
    return Rotated(previous=previous.current, current=new_id, path=directory / ATTRIBUTE_FILE)


def load_public_key(directory: Path) -> X25519PublicKey:
    """Load the vault's public key (what consume seals to)."""
    path = directory / PUBLIC_FILE
    raw = _read_secret(path, "the vault public key", _INIT_HINT)
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError:
        raise KeyMaterialError(f"the vault public key at {path} is not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise KeyMaterialError(f"the vault public key at {path} is not an X25519 key")
    return key


def load_private_key(path: Path) -> X25519PrivateKey:
    """Load the vault's private key (only privacy staff have it)."""
    raw = _read_secret(
        path, "the vault private key", "only privacy staff hold it; pass its path or keys dir"
    )
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise KeyMaterialError(
            f"the vault private key at {path} is not a PEM private key"
        ) from None
    if not isinstance(key, X25519PrivateKey):
        raise KeyMaterialError(f"the vault private key at {path} is not an X25519 key")
    return key


@dataclass(frozen=True)
class Rotated:
    """The HMAC key ids before and after ``keys rotate``."""

    previous: str
    current: str
    path: Path


def rotate_hmac_key(directory: Path) -> Rotated:
    """Add a new HMAC key and make it current; old keys stay (their tokens stay valid)."""
    path = directory / HMAC_FILE
    masker = load_masker(directory)  # validates the file and its permissions
    document = json.loads(path.read_bytes())
    numbers = [int(k[1:]) for k in document["keys"] if KEY_ID_PATTERN.fullmatch(k)]
    new_id = f"k{max(numbers, default=0) + 1}"
    _add_current_key(path, new_id)
    return Rotated(previous=masker.key_id, current=new_id, path=path)


def _add_current_key(path: Path, new_id: str) -> None:
    """Add a random 32-byte key ``new_id`` to a key file and make it current."""
    document = json.loads(path.read_bytes())
    document["keys"][new_id] = base64.b64encode(os.urandom(32)).decode()
    document["current"] = new_id
    staged = path.with_suffix(".json.new")
    staged.unlink(missing_ok=True)
    _write_secret(staged, json.dumps(document, indent=2).encode())
    os.replace(staged, path)  # atomic: readers see the old file or the new one


def load_maskers(directory: Path) -> dict[str, Masker]:
    """Every HMAC key in the file, by key id (re-deriving tokens needs the new one by name)."""
    load_masker(directory)  # validates the file and its permissions
    document = json.loads((directory / HMAC_FILE).read_bytes())
    return {
        key_id: Masker(key_id, base64.b64decode(value))
        for key_id, value in document["keys"].items()
    }
