"""unmask, database roles and the audit chain, with real PostgreSQL roles."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError
from typer.testing import CliRunner, Result

from loginetl.cli import app
from loginetl.config import Settings
from loginetl.services import db, keys

runner = CliRunner()
Publish = Callable[[list[str]], None]
REASON = "INC-4211 fraud investigation"


def run(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def loaded(
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
    login_role: Callable[[str], str],
) -> list[dict[str, str]]:
    """Messages loaded by consume running as the writer role."""
    docs = [json.loads(b) for b in valid_bodies(6, 31)]
    publish([json.dumps(d) for d in docs])
    writer = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_writer")}
    result = run(writer, "consume", "--idle-exit", "1", "--json")
    assert result.exit_code == 0, result.output
    return docs


def tokens_of(settings: Settings, doc: dict[str, str]) -> tuple[str, str]:
    """The tokens a loaded message must have, checked to be in the table."""
    masker = keys.load_masker(settings.keys_dir)
    ip = masker.token("ip", str(ipaddress.ip_address(doc["ip"])))
    device = masker.token("device_id", doc["device_id"])
    found = sql(
        settings.database_url,
        f"SELECT count(*) FROM user_logins WHERE masked_ip = '{ip}' AND masked_device_id = '{device}'",
    )
    assert found[0][0] >= 1
    return ip, device


def audit_rows(url: str) -> list[tuple[object, ...]]:
    return sql(
        url,
        "SELECT seq, db_role, os_user, token, pii_field, reason, outcome FROM unmask_audit ORDER BY seq",
    )


# -- roles -------------------------------------------------------------------------------


def test_writer_loads_but_cannot_read_the_vault_or_the_audit(
    loaded: list[dict[str, str]], login_role: Callable[[str], str], settings: Settings
) -> None:
    writer = login_role("loginetl_writer")
    distinct = len({d["ip"] for d in loaded}) + len({d["device_id"] for d in loaded})
    folder = db.make_engine(settings.database_url, pool_size=1)
    try:
        db.settle_vault(folder, wait=True)  # the fold worker's part: the writer only appends
    finally:
        folder.dispose()
    assert sql(settings.database_url, "SELECT count(*) FROM pii_vault")[0][0] == distinct
    for statement in (
        "SELECT count(*) FROM pii_vault",
        "SELECT count(*) FROM unmask_audit",
        "INSERT INTO unmask_audit (seq, at, db_role, token, reason, outcome, prev_hash, row_hash) VALUES (0, now(), '', 't', 'r', 'o', '', '')",
    ):
        with pytest.raises(ProgrammingError, match="permission denied"):
            sql(writer, statement)


def test_analyst_reads_masked_data_only_and_cannot_unmask(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
) -> None:
    analyst = login_role("loginetl_analyst")
    assert sql(analyst, "SELECT count(*) FROM user_logins")[0][0] == 6
    with pytest.raises(ProgrammingError, match="permission denied"):
        sql(analyst, "SELECT ciphertext FROM pii_vault")
    ip_token, _ = tokens_of(settings, loaded[0])
    result = run(
        {**cli_env, "LOGINETL_DATABASE_URL": analyst}, "unmask", ip_token, "--reason", REASON
    )
    assert result.exit_code == 3
    assert "may not write the unmask audit log" in result.stderr
    assert result.stdout == ""
    assert audit_rows(settings.database_url) == []
    stats = run({**cli_env, "LOGINETL_DATABASE_URL": analyst}, "stats", "--no-queues", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["table"]["vault_entries"] is None


# -- the round trip ----------------------------------------------------------------------


def test_unmask_round_trip_for_an_ip_and_a_device_id(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
) -> None:
    unmasker = login_role("loginetl_unmasker")
    env = {**cli_env, "LOGINETL_DATABASE_URL": unmasker}
    doc = loaded[2]
    ip_token, device_token = tokens_of(settings, doc)
    for token, expected in (
        (ip_token, str(ipaddress.ip_address(doc["ip"]))),
        (device_token, doc["device_id"]),
    ):
        result = run(env, "unmask", token, "--reason", REASON)
        assert result.exit_code == 0, result.output
        assert result.stdout == expected + "\n"
        assert expected not in result.stderr
    role = unmasker.split("//")[1].split("@")[0]
    rows = audit_rows(settings.database_url)
    # The request (committed and on disk before the database looked at the vault), then
    # the database's own "released" row and loginetl's "revealed" row, committed together
    # before it printed the value.
    assert [(r[1], r[3], r[4], r[5], r[6]) for r in rows] == [
        (role, ip_token, None, REASON, "requested"),
        (role, ip_token, "ip", REASON, "released"),
        (role, ip_token, "ip", REASON, "revealed"),
        (role, device_token, None, REASON, "requested"),
        (role, device_token, "device_id", REASON, "released"),
        (role, device_token, "device_id", REASON, "revealed"),
    ]
    assert all(r[2] for r in rows)  # the OS user is recorded
    verify = run(env, "audit", "verify")
    assert verify.exit_code == 0
    assert "intact: 6 rows" in verify.stdout
    assert "signed through row 6" in verify.stdout


def test_bulk_unmask_needs_max_raised_and_audits_each_token(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    env = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    tokens = [tokens_of(settings, d)[0] for d in loaded[:3]]
    listing = tmp_path / "tokens.txt"
    listing.write_text("# case INC-4211\n" + "\n".join(tokens) + "\n")
    refused = run(env, "unmask", "--from-file", str(listing), "--max", "2", "--reason", REASON)
    assert refused.exit_code == 2
    assert "raise --max" in refused.stderr
    assert audit_rows(settings.database_url) == []
    result = run(env, "unmask", "--from-file", str(listing), "--max", "3", "--reason", REASON)
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [t for t, _ in lines] == tokens
    assert [v for _, v in lines] == [str(ipaddress.ip_address(d["ip"])) for d in loaded[:3]]
    assert [r[6] for r in audit_rows(settings.database_url)] == [
        "requested",
        "released",
        "revealed",
    ] * 3


# -- refusals ----------------------------------------------------------------------------


def test_each_refusal_has_its_own_message_and_exit_code(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    env = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    ip_token, _ = tokens_of(settings, loaded[0])
    cases = [
        (["unmask", ip_token, "--reason", "test"], 2, "at least 12 characters"),
        (["unmask", ip_token], 2, "a reason is required"),
        (["unmask", "k1:nothex", "--reason", REASON], 4, "is not a token"),
        (["unmask", "k1:" + "0" * 64, "--reason", REASON], 4, "is not in the vault"),
        (["unmask", "k7:" + "0" * 64, "--reason", REASON], 4, "never produced a stored token"),
    ]
    for args, code, message in cases:
        result = run(env, *args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr
        assert result.stdout == ""
    no_key = run(
        {**env, "LOGINETL_KEYS_DIR": str(tmp_path)}, "unmask", ip_token, "--reason", REASON
    )
    assert no_key.exit_code == 2
    assert "vault private key not found" in no_key.stderr
    outcomes = [r[6] for r in audit_rows(settings.database_url)]
    assert outcomes == [
        *("requested", "malformed_token"),
        *("requested", "unknown_token"),
        *("requested", "unknown_key_id"),
        "refused_no_private_key",
    ]


def test_a_consumer_key_set_cannot_decrypt(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    stranger = tmp_path / "other"
    keys.init_keys(stranger)
    env = {
        **cli_env,
        "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker"),
        "LOGINETL_KEYS_DIR": str(stranger),
    }
    ip_token, _ = tokens_of(settings, loaded[0])
    result = run(env, "unmask", ip_token, "--reason", REASON)
    assert result.exit_code == 4
    assert "would not decrypt" in result.stderr
    assert [r[6] for r in audit_rows(settings.database_url)] == [
        "requested",
        "released",
        "decrypt_failed",
    ]


def test_without_the_hmac_key_file_nothing_is_revealed(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    # The value cannot be checked against its token, so a planted one would get through:
    # fail closed, as for a token whose key id is not in the file.
    no_hmac = tmp_path / "no-hmac"
    shutil.copytree(settings.keys_dir, no_hmac)
    (no_hmac / keys.HMAC_FILE).unlink()
    env = {
        **cli_env,
        "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker"),
        "LOGINETL_KEYS_DIR": str(no_hmac),
    }
    ip_token, _ = tokens_of(settings, loaded[0])
    result = run(env, "unmask", ip_token, "--reason", REASON)
    assert result.exit_code == 4, result.output
    assert result.stdout == ""
    assert loaded[0]["ip"] not in result.output
    outcomes = [r[6] for r in audit_rows(settings.database_url)]
    assert outcomes == ["requested", "released", "refused_unverifiable"]


# -- audit before reveal -----------------------------------------------------------------


def test_no_plaintext_when_the_audit_write_fails(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
) -> None:
    env = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    ip_token, _ = tokens_of(settings, loaded[0])
    # The grant is there, but the write itself fails.
    sql(
        settings.database_url,
        "ALTER TABLE unmask_audit ADD CONSTRAINT audit_down CHECK (outcome <> 'revealed') NOT VALID",
    )
    result = run(env, "unmask", ip_token, "--reason", REASON)
    assert result.exit_code == 5
    assert "nothing was revealed" in result.stderr
    assert result.stdout == ""
    assert loaded[0]["ip"] not in result.output
    # And with the grant revoked, the command refuses before it looks.
    sql(settings.database_url, "ALTER TABLE unmask_audit DROP CONSTRAINT audit_down")
    append = "FUNCTION loginetl_audit_append(text, text, text, text, text, text)"
    sql(settings.database_url, f"REVOKE EXECUTE ON {append} FROM loginetl_unmasker")
    revoked = run(env, "unmask", ip_token, "--reason", REASON)
    assert revoked.exit_code == 3
    assert revoked.stdout == ""
    # Only the first attempt's request: the database's "released" row went with loginetl's
    # failed one (one transaction), and nothing was shown.
    assert [r[6] for r in audit_rows(settings.database_url)] == ["requested"]


# -- tamper evidence ---------------------------------------------------------------------


@pytest.fixture
def chain(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
) -> dict[str, str]:
    env = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    for doc in loaded[:4]:
        assert run(env, "unmask", tokens_of(settings, doc)[0], "--reason", REASON).exit_code == 0
    return env


def test_the_audit_log_refuses_changes_even_from_the_owner(
    chain: dict[str, str], settings: Settings
) -> None:
    for statement in (
        "UPDATE unmask_audit SET reason = 'nothing to see'",
        "DELETE FROM unmask_audit",
        "TRUNCATE unmask_audit",
    ):
        with pytest.raises(ProgrammingError, match="append-only"):
            sql(settings.database_url, statement)


def test_verify_names_an_edited_row(chain: dict[str, str], settings: Settings) -> None:
    sql(settings.database_url, "ALTER TABLE unmask_audit DISABLE TRIGGER unmask_audit_no_change")
    sql(
        settings.database_url,
        "UPDATE unmask_audit SET reason = 'routine check, nothing' WHERE seq = 2",
    )
    result = run(chain, "audit", "verify")
    assert result.exit_code == 1
    assert "BROKEN at row 2" in result.stdout
    assert "edited" in result.stdout


def test_verify_names_a_deleted_row_and_a_removed_tail(
    chain: dict[str, str], settings: Settings
) -> None:
    head = run(chain, "audit", "verify", "--json")
    recorded = json.loads(head.stdout)
    sql(settings.database_url, "ALTER TABLE unmask_audit DISABLE TRIGGER unmask_audit_no_change")
    sql(settings.database_url, "DELETE FROM unmask_audit WHERE seq = 3")
    result = run(chain, "audit", "verify")
    assert result.exit_code == 1
    assert "BROKEN at row 4: row 3 is missing" in result.stdout
    sql(
        settings.database_url, "DELETE FROM unmask_audit WHERE seq >= 3"
    )  # now a clean, shorter chain, but the heads signed for rows 3 to 12 name rows gone
    assert run(chain, "audit", "verify", "--no-signatures").exit_code == 0
    signed = run(chain, "audit", "verify")
    assert signed.exit_code == 1
    assert "BROKEN at row 3: a signed head names it, but it is gone" in signed.stdout
    # The owner can drop the signatures too: only a head recorded elsewhere sees that.
    sql(settings.database_url, "ALTER TABLE audit_heads DISABLE TRIGGER audit_heads_no_change")
    sql(settings.database_url, "DELETE FROM audit_heads WHERE seq >= 3")
    assert run(chain, "audit", "verify").exit_code == 0
    anchored = run(
        chain, "audit", "verify", "--expect-head", f"{recorded['head_seq']}:{recorded['head_hash']}"
    )
    assert anchored.exit_code == 1
    assert "ends at row 2, but row 12 was recorded" in anchored.stdout


def test_audit_list_shows_who_when_and_why(chain: dict[str, str]) -> None:
    result = run(chain, "audit", "list", "--since", "1h", "--json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)["entries"]
    assert [e["seq"] for e in entries] == list(range(1, 13))
    assert {e["reason"] for e in entries} == {REASON}
    assert all(e["db_role"].endswith("_unmasker") for e in entries)


# -- key rotation ------------------------------------------------------------------------


def test_rotation_new_tokens_use_the_new_key_and_old_ones_still_unmask(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    old_token, _ = tokens_of(settings, loaded[0])
    rotated = run(cli_env, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert "k2" in rotated.stdout
    new_doc = json.loads(valid_bodies(1, 99)[0])
    publish([json.dumps(new_doc)])
    assert run(cli_env, "consume", "--idle-exit", "1").exit_code == 0
    new_token, _ = tokens_of(settings, new_doc)
    assert old_token.startswith("k1:")
    assert new_token.startswith("k2:")
    env = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    for token, doc in ((old_token, loaded[0]), (new_token, new_doc)):
        result = run(env, "unmask", token, "--reason", REASON)
        assert result.stdout.strip() == str(ipaddress.ip_address(doc["ip"]))


def test_rederive_lets_analysts_join_across_a_rotation(
    loaded: list[dict[str, str]],
    login_role: Callable[[str], str],
    cli_env: dict[str, str],
    settings: Settings,
    publish: Publish,
) -> None:
    old_ip_token, _ = tokens_of(settings, loaded[0])
    assert run(cli_env, "keys", "rotate").exit_code == 0
    again = {**loaded[0], "user_id": "after-rotation"}  # the same ip and device, later
    publish([json.dumps(again)])
    assert run(cli_env, "consume", "--idle-exit", "1").exit_code == 0
    new_ip_token, _ = tokens_of(settings, again)
    assert old_ip_token != new_ip_token
    analyst = login_role("loginetl_analyst")
    refused = run(
        {**cli_env, "LOGINETL_DATABASE_URL": analyst}, "keys", "rederive", "--reason", REASON
    )
    assert refused.exit_code == 3
    unmasker = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    assert run(unmasker, "keys", "rederive", "--reason", REASON).exit_code == 3
    env = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_rederiver")}
    result = run(env, "keys", "rederive", "--reason", "CHG-88 rotation to k2 for joins")
    assert result.exit_code == 0, result.output
    assert "alias to k2" in result.stdout
    joined = sql(
        analyst,
        "SELECT DISTINCT coalesce(a.alias, l.masked_ip) FROM user_logins l "
        f"LEFT JOIN token_aliases a ON a.token = l.masked_ip WHERE l.masked_ip IN ('{old_ip_token}', '{new_ip_token}')",
    )
    assert joined == [(new_ip_token,)]
    rederived = audit_rows(settings.database_url)[-1]
    fingerprint = keys.load_masker(settings.keys_dir).fingerprint
    assert rederived[3:] == (
        f"rederive->k2:{fingerprint}",
        None,
        "CHG-88 rotation to k2 for joins",
        "rederive",
    )
    assert loaded[0]["ip"] not in result.output
