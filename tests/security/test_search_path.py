"""Definer and trigger functions cannot be steered by the caller's search_path."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from loginetl.core.audit_chain import GENESIS
from tests.security.conftest import REASON, World, attack, role_of, run, session, sql

REQUEST = "SELECT * FROM loginetl_unmask_request(:t, :r, NULL, NULL)"


def test_a_temporary_unmask_audit_does_not_steer_the_chain(world: World) -> None:
    token = world.ip_tokens[0]
    with (
        attack("unmasker: CREATE TEMP TABLE unmask_audit to choose seq and prev_hash"),
        session(world.unmasker) as conn,
    ):
        conn.execute(
            text(
                "CREATE TEMP TABLE unmask_audit (seq bigint, row_hash text, outcome text, "
                "token text, db_role text, at timestamptz)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO unmask_audit VALUES "
                "(999, repeat('f', 64), 'released', :t, current_user, now())"
            ),
            {"t": token},
        )
        row = conn.execute(text(REQUEST), {"t": token, "r": REASON}).one()
        conn.commit()
        # The function wrote to, and chained from, the real table.
        assert row.audit_seq == 1
    chain = sql(world.owner, "SELECT seq, prev_hash FROM public.unmask_audit")
    assert chain == [(1, GENESIS)]
    verified = run(world.env(world.unmasker), "audit", "verify")
    assert verified.exit_code == 0, verified.output


def test_the_temp_table_cannot_feed_vault_open(world: World) -> None:
    token = world.ip_tokens[0]
    with (
        attack("unmasker: a temp unmask_audit row to make loginetl_vault_open release"),
        session(world.unmasker) as conn,
    ):
        conn.execute(text("CREATE TEMP TABLE unmask_audit (LIKE public.unmask_audit)"))
        conn.execute(
            text(
                "INSERT INTO unmask_audit VALUES (7, now() , session_user, NULL, NULL, NULL, "
                ":t, 'ip', 'r', 'requested', '', '')"
            ),
            {"t": token},
        )
        conn.commit()
        with pytest.raises(ProgrammingError, match="not a recent requested row"):
            conn.execute(text("SELECT ciphertext FROM loginetl_vault_open(7)"))


def test_a_look_alike_in_a_writable_public_runs_nothing(world: World) -> None:
    # A fresh schema state where public is writable (PostgreSQL <= 14, or a cluster
    # upgraded to 15): the grant is explicit, in this test's own database.
    writer = world.writer
    with (
        attack("writer: CREATE FUNCTION in public without an explicit grant"),
        pytest.raises(ProgrammingError, match="permission denied for schema public"),
    ):
        sql(writer, "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    role = role_of(writer)
    sql(world.owner, f'GRANT CREATE ON SCHEMA public TO "{role}"')
    try:
        _look_alikes_run_nothing(world)
    finally:  # the login role must own nothing, so that it can be dropped; by itself,
        # since a managed owner (CREATEROLE, not a member of it) may not drop its objects
        sql(writer, f'DROP OWNED BY "{role}"')
        sql(world.owner, f'REVOKE CREATE ON SCHEMA public FROM "{role}"')


def _look_alikes_run_nothing(world: World) -> None:
    writer = world.writer
    for signature, returns in (
        ("date_trunc(text, date)", "timestamptz"),
        ("to_char(date, text)", "text"),
        ("make_interval(months integer)", "interval"),
        ("to_regclass(text)", "regclass"),
    ):
        sql(
            writer,
            f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'hijacked: ran as %', current_user; END $$",
        )
    sql(
        writer,
        "CREATE FUNCTION public.hashtext(text) RETURNS int LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'hijacked: ran as %', current_user; END $$",
    )
    with attack("writer: look-alike public.date_trunc/to_char under loginetl_ensure_partitions"):
        made = sql(writer, "SELECT loginetl_ensure_partitions(current_date + 370, 2)")
        assert made == [(2,)]
    with attack("writer: look-alike public.hashtext under the audit chain trigger"):
        assert sql(world.unmasker, REQUEST, {"t": world.ip_tokens[0], "r": REASON})
    assert "hijacked" not in str(sql(world.owner, "SELECT count(*) FROM unmask_audit"))


def test_every_definer_and_trigger_function_pins_its_search_path(world: World) -> None:
    loose = sql(
        world.owner,
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND (p.prosecdef OR p.prorettype = 'trigger'::regtype) "
        "AND NOT coalesce(p.proconfig && ARRAY['search_path=pg_catalog, pg_temp', "
        "'search_path=\"\"'], false)",
    )
    with attack("any SECURITY DEFINER / trigger function left on the caller's search_path"):
        assert loose == []
    assert sql(world.owner, "SELECT has_schema_privilege('public', 'public', 'CREATE')") == [
        (False,)
    ]
