"""The security suite: each attack of docs/security.md, played by real login roles.

Every test logs in as a fresh login role in one of the four group roles (or as the
database owner, where the attacker is the owner) and talks raw SQL, and through the
CLI where loginetl is the path. ``attack(name, verdict)`` wraps one attempt: the line
printed at the end says "refused" or "detected" when the protection held, and "GOT
THROUGH" when the attempt succeeded. ``make security`` runs the suite.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from loginetl.cli import app
from loginetl.core.batch import LoginRow
from loginetl.core.masking import Masker
from loginetl.core.vault_crypto import PlainVaultEntry, SealedVaultEntry, VaultSealer
from loginetl.services import db, keys

REASON = "SEC-1 security suite attack replay"
ADD = "SELECT loginetl_add_aliases(:seq, ARRAY[:t], ARRAY[:a], ARRAY[:f])"
ATTACKS: list[tuple[str, str]] = []
_runner = CliRunner()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ATTACKS:
        return
    terminalreporter.section("security: every attack refused or detected")
    for name, verdict in ATTACKS:
        terminalreporter.write_line(f"{name:<86} {verdict}")
    through = sum(1 for _, verdict in ATTACKS if verdict == "GOT THROUGH")
    terminalreporter.write_line(f"{len(ATTACKS)} attacks, {through} got through")


@contextlib.contextmanager
def attack(name: str, verdict: str = "refused") -> Iterator[None]:
    """One attempt; the block asserts the attack failed. Its line goes in the summary."""
    assert verdict in ("refused", "detected")
    try:
        yield
    except BaseException:
        ATTACKS.append((name, "GOT THROUGH"))
        raise
    ATTACKS.append((name, verdict))


@contextlib.contextmanager
def session(url: str) -> Iterator[Connection]:
    """One raw session as whoever ``url`` logs in as; the caller commits or rolls back."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def sql(url: str, statement: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement in its own committed transaction; return its rows."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(statement), params or {})
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def run(env: dict[str, str], *args: str) -> Result:
    return _runner.invoke(app, list(args), env=env)


def role_of(url: str) -> str:
    return make_url(url).username or ""


@dataclass(frozen=True)
class World:
    """One migrated database holding a few logins, and a login role in each group."""

    owner: str
    writer: str
    analyst: str
    unmasker: str
    rederiver: str
    keys_dir: Path
    values: dict[str, str]  # token -> plaintext (test-side only, never printed)

    def env(self, url: str, **extra: str) -> dict[str, str]:
        return {
            "LOGINETL_DATABASE_URL": url,
            "LOGINETL_KEYS_DIR": str(self.keys_dir),
            "LOGINETL_QUEUE": "security-suite",
            "LOGINETL_DLQ": "security-suite-dlq",
            **extra,
        }

    @property
    def ip_tokens(self) -> list[str]:
        return [t for t, v in self.values.items() if "." in v]


def _masked(
    keys_dir: Path, plain: dict[str, str], tag: str
) -> tuple[list[LoginRow], list[SealedVaultEntry], dict[str, str]]:
    """One login per ip: its rows, sealed vault entries, and the value behind each token."""
    masker = keys.load_masker(keys_dir)
    sealer = VaultSealer(keys.load_public_key(keys_dir))
    rows, entries, values = [], [], {}
    for i, (ip, device) in enumerate(plain.items()):
        canonical = str(ipaddress.ip_address(ip))
        ip_token, device_token = masker.token("ip", canonical), masker.token("device_id", device)
        values[ip_token], values[device_token] = canonical, device
        entries += [
            PlainVaultEntry(ip_token, "ip", canonical),
            PlainVaultEntry(device_token, "device_id", device),
        ]
        rows.append(
            LoginRow(
                f"{tag}-{i}",
                f"user-{tag}-{i}",
                "ios",
                ip_token,
                device_token,
                None,
                1_002_003,
                "1.2.3",
                datetime.now(UTC),
                date.today(),
            )
        )
    return rows, sealer.seal(entries), values


def write_as(url: str, keys_dir: Path, plain: dict[str, str], tag: str) -> dict[str, str]:
    """Load one login per ip through the writer's own path (db.write_batch)."""
    rows, sealed, values = _masked(keys_dir, plain, tag)
    engine = db.make_engine(url)
    try:
        db.write_batch(engine, rows, sealed)
    finally:
        engine.dispose()
    return values


def fold_as_owner_url(url: str) -> None:
    """The fold worker's part (settle the vault inbox, fold the rollups), as the owner."""
    engine = db.make_engine(url, pool_size=1)
    try:
        db.fold(engine, wait=True)
    finally:
        engine.dispose()


def fold_as_owner(world: World) -> None:
    fold_as_owner_url(world.owner)


@pytest.fixture
def world(database_url: str, login_role: Callable[[str], str], keys_dir: Path) -> World:
    writer = login_role("loginetl_writer")
    plain = {f"198.51.100.{i}": f"device-{uuid.uuid4().hex[:8]}" for i in range(1, 5)}
    values = write_as(writer, keys_dir, plain, "w")
    fold_as_owner_url(database_url)  # a deployment's steady state: the fold worker has run
    return World(
        owner=database_url,
        writer=writer,
        analyst=login_role("loginetl_analyst"),
        unmasker=login_role("loginetl_unmasker"),
        rederiver=login_role("loginetl_rederiver"),
        keys_dir=keys_dir,
        values=values,
    )


@pytest.fixture
def rotated(world: World) -> tuple[World, Masker]:
    """k2 deployed: the keys rotated and the writer has written a k2 token since."""
    keys.rotate_keyring(world.keys_dir, keys.HMAC_FILE)
    write_as(world.writer, world.keys_dir, {"192.0.2.7": "device-after-rotation"}, "k2")
    return world, keys.load_masker(world.keys_dir)


def rederive_row(world: World, masker: Masker) -> int:
    """A committed rederive audit row of the world's rederiver, to ``masker``'s key."""
    rows = sql(
        world.rederiver,
        "SELECT audit_seq FROM loginetl_rederive_request(:k, :fp, :r, NULL, NULL)",
        {"k": masker.key_id, "fp": masker.fingerprint, "r": REASON},
    )
    return int(rows[0][0])


@pytest.fixture
def eraser(login_role: Callable[[str], str]) -> str:
    """A login in loginetl_eraser (forget, migration 0012)."""
    return login_role("loginetl_eraser")


@pytest.fixture
def maintainer(login_role: Callable[[str], str]) -> str:
    """A login in loginetl_maintainer (retention, migration 0012)."""
    return login_role("loginetl_maintainer")
