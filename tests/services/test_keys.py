"""Key files: created 0600, never overwritten, loose permissions refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from loginetl.core.vault_crypto import PlainVaultEntry, VaultOpener, VaultSealer
from loginetl.errors import KeyMaterialError
from loginetl.services import keys


def test_init_creates_private_files_and_a_working_pair(tmp_path: Path) -> None:
    created = keys.init_keys(tmp_path / "k")
    assert set(created.created) == {
        keys.HMAC_FILE,
        keys.PUBLIC_FILE,
        keys.PRIVATE_FILE,
        keys.AUDIT_PRIVATE_FILE,
        keys.AUDIT_PUBLIC_FILE,
        keys.ATTRIBUTE_FILE,
    }
    for name in created.created:
        assert stat.S_IMODE((tmp_path / "k" / name).stat().st_mode) == 0o600
    masker = keys.load_masker(tmp_path / "k")
    assert masker.key_id == "k1"
    sealed = VaultSealer(keys.load_public_key(tmp_path / "k")).seal(
        [PlainVaultEntry("k1:aa", "ip", "10.0.0.1")]
    )
    opener = VaultOpener(keys.load_private_key(tmp_path / "k" / keys.PRIVATE_FILE))
    assert opener.open(sealed[0]) == "10.0.0.1"


def test_init_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    before = (tmp_path / keys.HMAC_FILE).read_bytes()
    assert keys.init_keys(tmp_path).already_present
    assert (tmp_path / keys.HMAC_FILE).read_bytes() == before


@pytest.mark.parametrize(
    "missing", [keys.PRIVATE_FILE, keys.ATTRIBUTE_FILE, keys.AUDIT_PUBLIC_FILE]
)
def test_init_refuses_a_partial_directory(tmp_path: Path, missing: str) -> None:
    keys.init_keys(tmp_path)
    (tmp_path / missing).unlink()
    others = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyMaterialError, match="only some key files"):
        keys.init_keys(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == others


def test_missing_key_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="loginetl keys init"):
        keys.load_masker(tmp_path)


def test_group_readable_secret_is_refused(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    (tmp_path / keys.HMAC_FILE).chmod(0o640)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        keys.load_masker(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"current": "k1", "keys": {}}),
        json.dumps({"current": "k1", "keys": {"k1": "c2hvcnQ="}}),
        json.dumps({"current": "../x", "keys": {"../x": "A" * 44}}),
    ],
)
def test_malformed_hmac_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / keys.HMAC_FILE
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyMaterialError):
        keys.load_masker(tmp_path)
