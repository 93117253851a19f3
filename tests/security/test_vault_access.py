"""No ciphertext without a committed audit row: raw SQL as each role, and the CLI."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from tests.security.conftest import REASON, World, attack, run, session, sql

REQUEST = "SELECT * FROM loginetl_unmask_request(:t, :r, 'mallory', 'laptop')"
OPEN = "SELECT ciphertext FROM loginetl_vault_open(:seq)"


def audit_outcomes(world: World) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in sql(world.owner, "SELECT token, outcome FROM unmask_audit ORDER BY seq")
    ]


@pytest.mark.parametrize("group", ["unmasker", "analyst", "writer"])
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT ciphertext FROM pii_vault",
        "COPY pii_vault TO STDOUT",
        "COPY (SELECT token, ciphertext FROM pii_vault) TO STDOUT",
        "SELECT token FROM pii_vault WHERE token LIKE 'k1:%'",
    ],
)
def test_no_role_reads_the_vault_directly(world: World, group: str, statement: str) -> None:
    url = getattr(world, group)
    with (
        attack(f"{group}: {statement.split(' TO ')[0][:60]} over raw SQL"),
        session(url) as conn,
    ):
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with pytest.raises(psycopg2.Error) as refused:
            _raw(cursor, statement)
        assert "permission denied" in str(refused.value)


def _raw(cursor: Any, statement: str) -> None:
    """A statement as psql would send it (COPY needs the copy protocol)."""
    if statement.startswith("COPY"):
        cursor.copy_expert(statement, io.StringIO())
    else:
        cursor.execute(statement)


def test_writer_cannot_rewrite_a_vault_entry(world: World) -> None:
    token = world.ip_tokens[0]
    for statement in (
        f"UPDATE pii_vault SET ciphertext = '\\x00' WHERE token = '{token}'",
        f"DELETE FROM pii_vault WHERE token = '{token}'",
    ):
        with (
            attack(f"writer: {statement.split(' ')[0]} a vault entry"),
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            sql(world.writer, statement)


def test_open_needs_a_committed_audit_row_of_ones_own(world: World) -> None:
    token = world.ip_tokens[0]
    # BEGIN; request; open; ROLLBACK: the row is not committed, so nothing comes out;
    # the same inside a savepoint, and under REPEATABLE READ.
    for name, before, after in (
        ("BEGIN; request; fetch; ROLLBACK", "SELECT 1", "SELECT 1"),
        ("request in a SAVEPOINT, fetch, ROLLBACK", "SAVEPOINT s", "RELEASE SAVEPOINT s"),
        (
            "REPEATABLE READ; request; fetch; ROLLBACK",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SELECT 1",
        ),
    ):
        with attack(f"unmasker: {name}"), session(world.unmasker) as conn:
            conn.execute(text(before))
            seq = conn.execute(text(REQUEST), {"t": token, "r": REASON}).one().audit_seq
            conn.execute(text(after))
            with pytest.raises(ProgrammingError, match="not committed"):
                conn.execute(text(OPEN), {"seq": seq})
            conn.rollback()
    assert audit_outcomes(world) == []  # nothing survived, and nothing was handed out
    with session(world.unmasker) as conn:
        seq = conn.execute(text(REQUEST), {"t": token, "r": REASON}).one().audit_seq
        conn.commit()
    with (
        attack("unmasker: fetch with a seq that names no requested row"),
        pytest.raises(ProgrammingError, match="not a recent requested row"),
    ):
        sql(world.unmasker, OPEN, {"seq": seq + 1000})
    # Committed and one's own: now, and only now, the ciphertext comes out.
    assert sql(world.unmasker, OPEN, {"seq": seq})[0][0]
    assert audit_outcomes(world) == [(token, "requested"), (token, "released")]


def test_another_login_cannot_use_my_audit_row(
    world: World, login_role: Callable[[str], str]
) -> None:
    token = world.ip_tokens[1]
    rows = sql(world.unmasker, REQUEST, {"t": token, "r": REASON})
    other = login_role("loginetl_unmasker")
    with (
        attack("second unmasker: fetch with the first one's committed row"),
        pytest.raises(ProgrammingError, match="not a recent requested row of this login"),
    ):
        sql(other, OPEN, {"seq": rows[0][0]})


def test_audit_rows_are_written_only_by_the_functions(world: World) -> None:
    token = world.ip_tokens[0]
    with (
        attack("unmasker: INSERT a row into unmask_audit directly"),
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        sql(
            world.unmasker,
            "INSERT INTO unmask_audit (seq, at, db_role, token, reason, outcome, prev_hash, "
            f"row_hash) VALUES (0, now(), '', '{token}', 'r', 'released', '', '')",
        )
    with (
        attack("unmasker: forge a 'released' or 'requested' row through loginetl_audit_append"),
    ):
        for forged in ("released", "requested"):
            with pytest.raises(DBAPIError, match="not an outcome loginetl reports"):
                sql(
                    world.unmasker,
                    "SELECT * FROM loginetl_audit_append(:t, 'ip', :r, :o, NULL, NULL)",
                    {"t": token, "r": REASON, "o": forged},
                )
    for group in ("analyst", "writer"):
        with attack(f"{group}: call loginetl_unmask_request / loginetl_vault_open"):
            for statement in (REQUEST, OPEN):
                with pytest.raises(ProgrammingError, match="permission denied"):
                    sql(getattr(world, group), statement, {"t": token, "r": REASON, "seq": 1})
    assert audit_outcomes(world) == []


def test_definer_functions_bound_their_arguments(world: World) -> None:
    with (
        attack("unmasker: a 1 MB reason into the audit log"),
        pytest.raises(DBAPIError, match="out of bounds"),
    ):
        sql(world.unmasker, REQUEST, {"t": world.ip_tokens[0], "r": "x" * 1_000_000})
    with attack("writer: loginetl_ensure_partitions for 10,000 months, or year 9999"):
        for statement in (
            "SELECT loginetl_ensure_partitions(current_date, 10000)",
            "SELECT loginetl_ensure_partitions('9999-01-01', 1)",
        ):
            with pytest.raises(DBAPIError, match="must be"):
                sql(world.writer, statement)


def test_cli_unmask_as_analyst_and_writer_is_refused(world: World) -> None:
    token = world.ip_tokens[0]
    for group in ("analyst", "writer"):
        with attack(f"{group}: loginetl unmask through the CLI"):
            result = run(world.env(getattr(world, group)), "unmask", token, "--reason", REASON)
            assert result.exit_code == 3, result.output
            assert result.stdout == ""
            assert world.values[token] not in result.output
