"""The lifecycle fault scenario: forget and retention apply killed with -9 mid-way, then rerun.

Each is killed inside a transaction that already removed rows (before its COMMIT):
afterwards the rows, the vault and the rollups must agree, and a rerun must finish the
job with nothing left half done.
"""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import create_engine, text

from loginetl.config import Settings
from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import PlainVaultEntry, VaultSealer
from loginetl.services import db, keys
from loginetl.services.sqs import SqsService
from tests.faults.conftest import (
    LOGINETL,
    account,
    consume_process,
    env_for,
    fault_bodies,
    finish,
)
from tests.faults.test_faults import publish
from tests.rollups import rollups_exact

pytestmark = pytest.mark.slow
ERASED = "lifecycle-erase-me"
REASON = "DSR-9 erasure request, fault scenario"


def _month(back: int) -> date:
    today = datetime.now(UTC).date()
    index = today.year * 12 + today.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def _write(url: str, settings: Settings) -> None:
    """Old months (2 and 3 back) and the erased user, sharing values with loaded users."""
    masker = keys.load_masker(settings.keys_dir)
    sealer = VaultSealer(keys.load_public_key(settings.keys_dir))
    rows, plain = [], []

    def add(key: str, user: str, ip: str, device: str, day: date) -> None:
        ti, td = masker.token("ip", ip), masker.token("device_id", device)
        plain.extend([PlainVaultEntry(ti, "ip", ip), PlainVaultEntry(td, "device_id", device)])
        sent = datetime(day.year, day.month, day.day, tzinfo=UTC)
        rows.append(LoginRow(key, user, "ios", ti, td, None, 1_000_000, "1.0.0", sent, day))

    for back in (3, 2):
        for i in range(60):
            day = _month(back).replace(day=1 + i % 27)
            add(f"old-{back}-{i}", f"old-{i % 6}", f"10.9.0.{i % 5 + 1}", f"old-d-{back}-{i}", day)
    today = datetime.now(UTC).date()
    for i in range(5):  # 10.9.0.1 and d-0 are shared with the loaded user of message 0
        add(f"erase-{i}", ERASED, f"172.16.0.{i % 3 + 1}" if i else "10.9.0.1", f"e-{i}", today)
    add("erase-shared", ERASED, "172.16.0.9", "d-0", today)
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT loginetl_ensure_partitions(:m, 2)"), {"m": _month(3)})
        db.write_batch(engine, rows, sealer.seal(list({e.token: e for e in plain}.values())))
    finally:
        engine.dispose()


def _state(url: str) -> dict[str, object]:
    """Fold, then read what must agree: rows, vault, rollups, purge queue."""
    engine = db.make_engine(url)
    try:
        db.fold_rollups(engine, wait=True)
        with engine.connect() as conn:
            one = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM user_logins WHERE user_id = :u), "
                    "(SELECT count(*) FROM user_logins WHERE create_date < :kept), "
                    "(SELECT count(*) FROM pii_vault v WHERE NOT EXISTS (SELECT 1 FROM "
                    "user_logins l WHERE l.masked_ip = v.token OR l.masked_device_id = v.token)), "
                    "(SELECT count(*) FROM vault_purge_candidates), "
                    "(SELECT count(*) FROM pii_vault)"
                ),
                {"u": ERASED, "kept": _month(1)},
            ).one()
            return {
                "erased_user_rows": one[0],
                "old_rows": one[1],
                "unreferenced_vault": one[2],
                "purge_queue": one[3],
                "vault": one[4],
                "rollups_exact": rollups_exact(conn),
            }
    finally:
        engine.dispose()


def _cli(settings: Settings, *args: str, failpoint: str | None = None) -> int:
    extra = {"LOGINETL_FAILPOINT": failpoint} if failpoint else {}
    done = subprocess.run(
        [LOGINETL, *args],
        env={**os.environ, **env_for(settings, **extra)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return done.returncode


def _verify(settings: Settings) -> int:
    return _cli(settings, "audit", "verify")


def test_kill_9_inside_forget_and_retention_then_rerun(
    settings: Settings, sqs: SqsService, fault_queues: tuple[str, str]
) -> None:
    url = settings.database_url
    bodies, users = fault_bodies("lifecycle", 300)
    publish(sqs, fault_queues[0], bodies)
    code, _, err = finish(consume_process(env_for(settings), "--idle-exit", "4"))
    assert code == 0, err
    _write(url, settings)
    start = _state(url)
    assert (start["erased_user_rows"], start["old_rows"]) == (6, 120)

    forget = ("forget", "--user-id", ERASED, "--reason", REASON, "--no-queues")
    assert _cli(settings, *forget, failpoint="crash_in_forget:1") == -signal.SIGKILL
    killed = _state(url)  # nothing of the erasure happened
    assert killed == {**start, "rollups_exact": True}, killed
    assert _cli(settings, *forget) == 0
    forgotten = _state(url)
    assert forgotten["erased_user_rows"] == 0
    assert forgotten["unreferenced_vault"] == 0
    assert forgotten["purge_queue"] == 0
    assert forgotten["rollups_exact"]
    assert _verify(settings) == 0

    retention = ("retention", "apply", "--keep", "2mo", "--reason", "retention policy: 2 months")
    # Killed inside the second partition's transaction: the first is gone, whole.
    assert _cli(settings, *retention, failpoint="crash_in_retention:2") == -signal.SIGKILL
    half = _state(url)
    assert half["old_rows"] == 60
    assert half["rollups_exact"]
    assert _verify(settings) == 0
    assert _cli(settings, *retention) == 0
    done = _state(url)
    assert done["old_rows"] == 0
    assert done["unreferenced_vault"] == 0
    assert done["purge_queue"] == 0
    assert done["rollups_exact"]
    assert _verify(settings) == 0
    engine = create_engine(url)
    with engine.connect() as conn:
        outcomes = conn.execute(text("SELECT outcome FROM unmask_audit ORDER BY seq")).scalars()
        outcomes_list = list(outcomes)
    engine.dispose()
    # The killed runs left their committed requests and nothing else.
    assert outcomes_list.count("forget_requested") == 2
    assert outcomes_list.count("forgotten") == 1
    assert outcomes_list.count("retention_dropped") == 2
    result = account(
        "lifecycle. kill -9 inside forget and inside retention apply, rerun",
        url,
        sqs,
        fault_queues,
        users,
        5,
    )
    assert result.exact, result
