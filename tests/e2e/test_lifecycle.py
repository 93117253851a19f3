"""forget and retention apply, end to end: real roles, real consume, real SQS."""

from __future__ import annotations

import ipaddress
import json
import signal
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from typer.testing import CliRunner, Result

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import PlainVaultEntry, SealedVaultEntry, VaultSealer
from loginetl.services import db, keys
from tests.conftest import consume_process, finish
from tests.e2e.conftest import count_rows, wait_for
from tests.rollups import rollups_exact

runner = CliRunner()
Publish = Callable[[list[str]], None]
REASON = "DSR-118 erasure request from the user"
ERASED = "erase-me-424cdd21"
KEPT = "keeps-everything-1"


def run(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


def body(user: str, ip: str, device: str) -> str:
    return json.dumps(
        {
            "user_id": user,
            "app_version": "2.3.4",
            "device_type": "android",
            "ip": ip,
            "locale": "en-GB",
            "device_id": device,
        }
    )


def owner_rows(url: str, statement: str, **params: object) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(statement), params)]
    finally:
        engine.dispose()


def exact_after_fold(url: str) -> bool:
    engine = db.make_engine(url)
    try:
        db.fold_rollups(engine, wait=True)
        with engine.connect() as conn:
            return rollups_exact(conn)
    finally:
        engine.dispose()


def unreferenced_vault_entries(url: str) -> int:
    return int(
        owner_rows(
            url,
            "SELECT count(*) FROM pii_vault v WHERE NOT EXISTS (SELECT 1 FROM user_logins l "
            "WHERE l.masked_ip = v.token OR l.masked_device_id = v.token)",
        )[0][0]
    )


def test_forget_erases_a_user_keeps_shared_values_and_says_what_it_cannot_reach(
    cli_env: dict[str, str],
    settings: Settings,
    queues: tuple[str, str],
    publish: Publish,
    login_role: Callable[[str], str],
) -> None:
    plain = {  # value -> shared with the kept user?
        "203.0.113.1": False,
        "203.0.113.2": True,
        "device-erased-1": False,
        "device-erased-2": False,
        "device-shared": True,
    }
    publish(
        [
            body(ERASED, "203.0.113.1", "device-erased-1"),
            body(ERASED, "203.0.113.2", "device-shared"),
            body(ERASED, "203.0.113.1", "device-erased-2"),
            body(KEPT, "203.0.113.2", "device-shared"),
            body(KEPT, "198.51.100.9", "device-kept"),
            # Dead-lettered (invalid ip), and carries the user id: counted, never printed.
            body(ERASED, "203.0.113.999", "device-erased-3"),
        ]
    )
    writer = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_writer")}
    assert run(writer, "consume", "--idle-exit", "1", "--json").exit_code == 0
    masker = keys.load_masker(settings.keys_dir)
    token = {
        v: masker.token("ip", str(ipaddress.ip_address(v)))
        if v[0].isdigit()
        else masker.token("device_id", v)
        for v in plain
    }
    eraser = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_eraser")}
    url = settings.database_url

    dry = run(eraser, "forget", "--user-id", ERASED, "--reason", REASON, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    preview = json.loads(dry.stdout)["preview"]
    assert preview == {
        "logins": 3,
        "ip_tokens": 2,
        "ip_shared": 1,
        "device_tokens": 3,
        "device_shared": 1,
    }
    assert count_rows(url, f"user_id = '{ERASED}'") == 3  # a dry run changes nothing

    done = run(eraser, "forget", "--user-id", ERASED, "--reason", REASON)
    assert done.exit_code == 0, done.output
    assert "removed 3 logins; ip tokens: 1 purged, 1 kept (shared with other users)" in done.stdout
    assert "device tokens: 2 purged, 1 kept (shared)" in done.stdout
    assert "DLQ: 1 of 1 sampled messages" in done.stdout
    assert "backups" in done.stdout
    for value in plain:
        assert value not in done.output

    assert count_rows(url, f"user_id = '{ERASED}'") == 0
    assert count_rows(url, f"user_id = '{KEPT}'") == 2
    in_vault = {
        str(t)
        for (t,) in owner_rows(
            url, "SELECT token FROM pii_vault WHERE token = ANY(:t)", t=list(token.values())
        )
    }
    assert in_vault == {token[v] for v, shared in plain.items() if shared}
    assert exact_after_fold(url)
    assert unreferenced_vault_entries(url) == 0

    # Unmask: the erased tokens say so (audited), the shared ones still reveal.
    unmasker = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    gone = run(unmasker, "unmask", token["203.0.113.1"], "--reason", "INC-77 check the erasure")
    assert gone.exit_code == 4, gone.output
    assert "erased" in gone.output
    kept = run(unmasker, "unmask", token["203.0.113.2"], "--reason", "INC-77 check the erasure")
    assert kept.exit_code == 0, kept.output
    assert kept.stdout.strip() == "203.0.113.2"
    audit = owner_rows(url, "SELECT token, outcome FROM unmask_audit ORDER BY seq")
    assert (token["203.0.113.1"], "erased") in audit
    outcomes = [o for _, o in audit]
    assert outcomes[:2] == ["forget_requested", "forgotten"]
    assert all(ERASED not in str(t) for t, _ in audit)
    verified = run(unmasker, "audit", "verify")
    assert verified.exit_code == 0, verified.output

    again = run(eraser, "forget", "--user-id", ERASED, "--reason", REASON, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["forgotten"]["logins"] == 0  # idempotent
    assert run(unmasker, "audit", "verify").exit_code == 0


def _month(first_of_this_month: date, back: int) -> date:
    index = first_of_this_month.year * 12 + first_of_this_month.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def _old_rows(
    keys_dir: Path, months: list[date], per_month: int
) -> tuple[list[LoginRow], list[SealedVaultEntry]]:
    masker = keys.load_masker(keys_dir)
    sealer = VaultSealer(keys.load_public_key(keys_dir))
    rows: list[LoginRow] = []
    plain: list[PlainVaultEntry] = []
    for m in months:
        for i in range(per_month):
            ip = f"192.0.2.{i % 9 + 1}"  # 192.0.2.1 is shared with the current month
            device = f"old-device-{m:%Y%m}-{i % 4}"
            ti, td = masker.token("ip", ip), masker.token("device_id", device)
            plain += [PlainVaultEntry(ti, "ip", ip), PlainVaultEntry(td, "device_id", device)]
            rows.append(
                LoginRow(
                    f"old-{m:%Y%m}-{i}",
                    f"old-user-{i % 7}",
                    "ios",
                    ti,
                    td,
                    None,
                    1_000_000,
                    "1.0.0",
                    datetime(m.year, m.month, 3, tzinfo=UTC),
                    m.replace(day=1 + i % 27),
                )
            )
    entries = list({e.token: e for e in plain}.values())
    return rows, sealer.seal(entries)


def test_retention_drops_exactly_the_old_months_while_consume_follows(
    cli_env: dict[str, str],
    settings: Settings,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
    login_role: Callable[[str], str],
) -> None:
    url = settings.database_url
    this_month = datetime.now(UTC).date().replace(day=1)
    old = [_month(this_month, back) for back in (3, 2, 1)]
    writer_url = login_role("loginetl_writer")
    engine = db.make_engine(writer_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT loginetl_ensure_partitions(:m, 3)"), {"m": old[0]})
        rows, sealed = _old_rows(settings.keys_dir, old, 40)
        db.write_batch(engine, rows, sealed)
    finally:
        engine.dispose()
    names = [f"user_logins_{m:%Y_%m}" for m in old]

    writer = {**cli_env, "LOGINETL_DATABASE_URL": writer_url}
    follow = consume_process(writer, "--follow", "--workers", "2")
    try:
        bodies = valid_bodies(600, 7)
        bodies.append(body("current-user", "192.0.2.1", "current-device"))
        publish(bodies[:300])
        maintainer = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_maintainer")}
        dry = run(maintainer, "retention", "apply", "--keep", "2mo", "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        planned = {p["partition"]: p["logins"] for p in json.loads(dry.stdout)["plan"]}
        assert planned == {names[0]: 40, names[1]: 40, "user_logins_default": 0}
        publish(bodies[300:])
        applied = run(maintainer, "retention", "apply", "--keep", "2mo", "--json")
        assert applied.exit_code == 0, applied.output
        result = json.loads(applied.stdout)
        removed = {r["partition"]: r["logins"] for r in result["removed"]}
        assert removed == {names[0]: 40, names[1]: 40, "user_logins_default": 0}
        wait_for(
            lambda: count_rows(url, "create_date >= date_trunc('month', now())") == 601,
            timeout=120,
            what="consume --follow to load every message",
        )
    finally:
        follow.send_signal(signal.SIGTERM)
        code, summary, err = finish(follow)
    assert code == 0, err
    assert summary["loaded"] == 601  # nothing lost or blocked beyond a retry

    present = owner_rows(
        url,
        "SELECT to_regclass(:a), to_regclass(:b), to_regclass(:c)",
        a=names[0],
        b=names[1],
        c=names[2],
    )[0]
    assert present[:2] == (None, None)
    assert present[2] is not None
    assert count_rows(url, f"create_date < '{old[2]}'") == 0
    assert count_rows(url, f"create_date >= '{old[2]}' AND create_date < '{this_month}'") == 40
    assert count_rows(url) == 641
    assert exact_after_fold(url)
    assert unreferenced_vault_entries(url) == 0
    months: dict[date, int] = dict(owner_rows(url, "SELECT month, logins FROM rollup_months"))
    assert min(months) == old[2]
    assert sum(months.values()) == 641
    stats = run(cli_env, "stats", "--json", "--no-queues")
    assert stats.exit_code == 0, stats.output
    assert old[2].isoformat() in stats.stdout
    audit = [o for (o,) in owner_rows(url, "SELECT outcome FROM unmask_audit ORDER BY seq")]
    assert audit[:3] == ["retention_requested", "retention_dropped", "retention_dropped"]
    assert "retention_purged" in audit
    unmasker = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    assert run(unmasker, "audit", "verify").exit_code == 0


def test_lifecycle_commands_refuse_other_roles_bad_windows_and_a_missing_signing_key(
    cli_env: dict[str, str],
    settings: Settings,
    login_role: Callable[[str], str],
    tmp_path: Path,
) -> None:
    url = settings.database_url
    analyst = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_analyst")}
    refused = run(analyst, "forget", "--user-id", "u1", "--reason", REASON, "--no-queues")
    assert refused.exit_code == 3, refused.output
    assert "loginetl_eraser" in refused.output
    writer = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_writer")}
    refused = run(writer, "retention", "apply", "--keep", "13mo")
    assert refused.exit_code == 3, refused.output
    assert "loginetl_maintainer" in refused.output
    maintainer = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_maintainer")}
    for keep in ("0mo", "13", "-1mo"):
        bad = run(maintainer, "retention", "apply", "--keep", keep, "--dry-run")
        assert bad.exit_code == 2, (keep, bad.output)
    weak = run(maintainer, "retention", "apply", "--keep", "13mo", "--reason", "policy")
    assert weak.exit_code == 2, weak.output
    # Without the audit-signing key nothing is written: no audit row, no erasure.
    unsigned = tmp_path / "no-signing-key"
    unsigned.mkdir()
    for name in (keys.HMAC_FILE, keys.PUBLIC_FILE, keys.PRIVATE_FILE):
        (unsigned / name).write_bytes((settings.keys_dir / name).read_bytes())
    eraser = {
        **cli_env,
        "LOGINETL_DATABASE_URL": login_role("loginetl_eraser"),
        "LOGINETL_KEYS_DIR": str(unsigned),
    }
    missing = run(eraser, "forget", "--user-id", "u1", "--reason", REASON, "--no-queues")
    assert missing.exit_code == 2, missing.output
    assert owner_rows(url, "SELECT count(*) FROM unmask_audit")[0][0] == 0


def test_forget_keeps_the_vault_entry_of_a_row_written_around_the_rollups(
    settings: Settings, login_role: Callable[[str], str]
) -> None:
    """The purge asks user_logins, not the rollups: a row a restore or a backfill wrote
    straight into the table (no rollup delta) keeps its token's vault entry."""
    masker = keys.load_masker(settings.keys_dir)
    sealer = VaultSealer(keys.load_public_key(settings.keys_dir))
    ip, erased_device = masker.token("ip", "192.0.2.50"), masker.token("device_id", "dev-gone")
    now = datetime.now(UTC)
    writer = db.make_engine(login_role("loginetl_writer"), pool_size=1)
    try:
        row = LoginRow(
            "k-erased", ERASED, "ios", ip, erased_device, None, 1, "0.0.1", now, now.date()
        )
        entries = [
            PlainVaultEntry(ip, "ip", "192.0.2.50"),
            PlainVaultEntry(erased_device, "device_id", "dev-gone"),
        ]
        db.write_batch(writer, [row], sealer.seal(entries))
    finally:
        writer.dispose()
    url = settings.database_url
    folder = db.make_engine(url, pool_size=1)
    try:
        db.fold(folder, wait=True)  # the fold worker's part
    finally:
        folder.dispose()
    owner = create_engine(url)
    try:
        with owner.begin() as conn:  # the same ip, for another user, around the write path
            conn.execute(
                text(
                    "INSERT INTO user_logins (idempotency_key, user_id, device_type, masked_ip, "
                    "masked_device_id, app_version, app_version_raw, sent_at, create_date) "
                    "VALUES ('k-restored', 'restored-user', 'ios', :ip, 'k1:restored', 1, "
                    "'0.0.1', now(), current_date)"
                ),
                {"ip": ip},
            )
    finally:
        owner.dispose()
    eraser = create_engine(login_role("loginetl_eraser"))
    try:
        with eraser.begin() as conn:
            seq = conn.execute(
                text("SELECT audit_seq FROM loginetl_forget_request(:u, :r, NULL, NULL)"),
                {"u": ERASED, "r": REASON},
            ).scalar_one()
        with eraser.begin() as conn:
            done = conn.execute(
                text("SELECT * FROM loginetl_forget(:s, :u)"), {"s": seq, "u": ERASED}
            ).one()
    finally:
        eraser.dispose()
    assert (done.logins, done.ip_purged, done.ip_kept) == (1, 0, 1)
    assert (done.device_purged, done.device_kept) == (1, 0)
    in_vault = {t for (t,) in owner_rows(url, "SELECT token FROM pii_vault")}
    assert in_vault == {ip}
