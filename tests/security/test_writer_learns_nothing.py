"""The writer learns nothing it did not send, and erasure reaches the planner's statistics.

The consumer host holds the writer role and the current HMAC key, so it can compute the
token of any value it guesses (every IPv4 is 2^32 HMACs). What must hold is structural:
nothing the writer can execute does different work for a stored and a new value, so no
counter, WAL position, file size, plan or timing can tell them apart, whoever migrated
the database (a superuser or a managed PostgreSQL's owner, which can revoke nothing of
pg_catalog). And no loginetl role can read an erased user id or a purged token from
PostgreSQL's statistics: the columns analysts may read keep none (SET STATISTICS 0).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg2
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from loginetl.core.batch import LoginRow
from loginetl.core.vault_crypto import PlainVaultEntry, VaultSealer
from loginetl.services import db, keys
from tests.security.conftest import REASON, World, attack, sql

# What the writer may execute, and nothing else: each appends, or returns a number that
# does not depend on stored PII-derived content (the partitions' months, the vault epoch).
WRITER_FUNCTIONS = {
    "loginetl_prepare_staging()",
    "loginetl_move_staged()",
    "loginetl_ensure_partitions(date,integer)",
    "loginetl_vault_epoch()",
}
# Everything the writer's own session can read about what its statements did.
COUNTERS = """
SELECT coalesce(json_object_agg(relname, json_build_array(
           n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, seq_scan, idx_scan)), '{}')
FROM pg_stat_xact_all_tables WHERE schemaname = 'public'
"""
SIZES = """
SELECT json_object_agg(c.relname, pg_relation_size(c.oid))
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')
"""


@pytest.fixture
def writer_conn(world: World) -> Iterator[psycopg2.extensions.connection]:
    """A raw psycopg2 session as a real writer login."""
    parts = make_url(world.writer)
    conn = psycopg2.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    )
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _batch(world: World, ip: str) -> tuple[list[LoginRow], list[Any]]:
    """One login with ``ip`` (stored or new), under a fresh message key, and its entries."""
    masker = keys.load_masker(world.keys_dir)
    device = "device-w-probe"
    ip_token, device_token = masker.token("ip", ip), masker.token("device_id", device)
    key = f"probe-{uuid.uuid4().hex}"
    row = LoginRow(
        key, key, "ios", ip_token, device_token, None, 1, "1", datetime.now(UTC), date.today()
    )
    sealed = VaultSealer(keys.load_public_key(world.keys_dir)).seal(
        [PlainVaultEntry(ip_token, "ip", ip), PlainVaultEntry(device_token, "device_id", device)]
    )
    return [row], sealed


def _state(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
    """What the writer's session can read of the database's state: its transaction's
    counters and every relation's size. (The WAL insert position moves by what every
    session writes; its share of this session is EXPLAIN's WAL bytes, compared below.)"""
    cur.execute(f"SELECT ({COUNTERS}), ({SIZES})")
    counters, sizes = cur.fetchone()  # type: ignore[misc]
    return {"counters": counters, "sizes": sizes}


def _moved(before: Any, after: Any) -> Any:
    """``after`` less ``before``, element by element (nested dicts and lists of counts)."""
    if isinstance(after, dict):
        return {k: _moved(before.get(k), v) for k, v in after.items()}
    if isinstance(after, list):
        return [_moved(b, a) for b, a in zip(before or [None] * len(after), after, strict=True)]
    return None if after is None else after - (before or 0)


def _work(
    conn: psycopg2.extensions.connection, world: World, ip: str, vacuum: Callable[[], None]
) -> dict[str, Any]:
    """Every statement the writer may run, for ``ip``, in one transaction rolled back: what
    the plans did (WAL records, buffers touched, rows) and how far everything the session
    can read moved (its counters, the WAL position, the relations' sizes). Each run starts
    from the same pages: the owner vacuums away the previous run's rolled-back tuples."""
    vacuum()
    rows, sealed = _batch(world, ip)
    seen: dict[str, Any] = {}
    with conn.cursor() as cur:
        before = _state(cur)
        for name, statement in (
            ("ensure_partitions", "SELECT loginetl_ensure_partitions(current_date, 3)"),
            ("vault_epoch", "SELECT loginetl_vault_epoch()"),
            ("prepare_staging", "SELECT loginetl_prepare_staging()"),
        ):
            seen[name] = _explained(cur, statement)
        cur.copy_expert("COPY pg_temp.loginetl_staged_vault FROM STDIN", db._copy_vault(sealed))
        cur.copy_expert("COPY pg_temp.loginetl_staged_logins FROM STDIN", db._copy_rows(rows))
        seen["move_staged"] = _explained(cur, "SELECT loginetl_move_staged()")
        seen["moved"] = _moved(before, _state(cur))
    conn.rollback()
    return seen


def _explained(cur: psycopg2.extensions.cursor, statement: str) -> tuple[int, int, int, int, int]:
    """(WAL records, WAL bytes, shared buffers touched, rows, full-page images) of a
    statement, run under EXPLAIN. A full-page image is written for the first change of a
    page after a checkpoint: it says when the last checkpoint was, not what is stored."""
    cur.execute(f"EXPLAIN (ANALYZE, WAL, BUFFERS, FORMAT JSON) {statement}")
    plan = cur.fetchone()[0][0]["Plan"]  # type: ignore[index]
    touched = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    wal = (plan["WAL Records"], plan["WAL Bytes"])
    return (*wal, touched, plan["Actual Rows"], plan["WAL FPI"])


def _clean(seen: dict[str, Any]) -> bool:
    """True when no statement of the run wrote a full-page image (no checkpoint between)."""
    return not any(v[4] for v in seen.values() if isinstance(v, tuple))


def test_the_writer_may_execute_only_what_appends_and_no_table(world: World) -> None:
    functions = sql(
        world.writer,
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace "
        "AND has_function_privilege(p.oid, 'EXECUTE')",
    )
    tables = sql(
        world.writer,
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relname <> 'alembic_version' "
        "AND c.relname <> 'loginetl_schema_compat' AND (has_table_privilege(c.oid, "
        "'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') OR "
        "(c.relkind = 'S' AND has_sequence_privilege(c.oid, 'USAGE, SELECT, UPDATE')))",
    )
    with attack("writer: any function but the four that append or count, any table"):
        assert {f for (f,) in functions} == WRITER_FUNCTIONS
        assert tables == []


def test_every_statement_of_the_writer_works_alike_for_a_stored_and_a_new_value(
    world: World, writer_conn: psycopg2.extensions.connection
) -> None:
    stored = world.values[world.ip_tokens[0]]  # loaded by the world's writer, and folded
    new = str(ipaddress.ip_address("203.0.113.77"))
    with writer_conn.cursor() as cur:  # the session's staging tables, made once
        cur.execute("SELECT loginetl_prepare_staging()")
    writer_conn.commit()
    vacuuming = create_engine(world.owner, isolation_level="AUTOCOMMIT")

    def vacuum() -> None:
        with vacuuming.connect() as conn:
            conn.exec_driver_sql(
                "VACUUM public.vault_inbox, public.rollup_pending, public.user_logins"
            )

    try:
        for ip in (stored, new, stored, new):  # warm every cache both ways first
            _work(writer_conn, world, ip, vacuum)
        pairs = []
        for _ in range(5):  # a checkpoint between two runs spoils a pair: measure again
            pair = (
                _work(writer_conn, world, stored, vacuum),
                _work(writer_conn, world, new, vacuum),
            )
            if _clean(pair[0]) and _clean(pair[1]):
                pairs.append(pair)
            if len(pairs) == 2:
                break
        assert len(pairs) == 2, "no two runs without a checkpoint between them in five tries"
        (first_stored, first_new), (again_stored, again_new) = pairs
    finally:
        vacuuming.dispose()
    assert first_stored == again_stored  # the measure itself is steady...
    with attack("writer: EXPLAIN (ANALYZE, WAL, BUFFERS), counters, sizes: stored or new?"):
        assert first_stored == first_new, json.dumps([first_stored, first_new], indent=1)
        assert again_stored == again_new
    assert first_stored["move_staged"][0] > 0  # ...and it saw the move's work


def test_no_role_reads_an_erased_user_or_a_purged_token_in_the_statistics(
    world: World, eraser: str, maintainer: str
) -> None:
    owner = db.make_engine(world.owner, pool_size=1)
    old_user, old_ip = "old-user-w-1", "192.0.2.200"
    masker = keys.load_masker(world.keys_dir)
    old_token = masker.token("ip", old_ip)
    try:
        with owner.begin() as conn:  # a login of 25 months ago, with its vault entry
            conn.exec_driver_sql(
                "SELECT loginetl_ensure_partitions((date_trunc('month', now()) "
                "- interval '25 months')::date, 1)"
            )
        db.write_batch(owner, *_old_login(world, old_user, old_ip, old_token))
        db.fold(owner, wait=True)
        with owner.connect() as conn:
            conn.exec_driver_sql("ANALYZE")  # database-wide, before the erasure
            conn.commit()
    finally:
        owner.dispose()
    erased_user = "user-w-0"
    erased_tokens = {t for t in world.values if _held_only_by(world, t, erased_user)}
    seq = sql(
        eraser,
        "SELECT audit_seq FROM loginetl_forget_request(:u, :r, NULL, NULL)",
        {"u": erased_user, "r": REASON},
    )[0][0]
    sql(eraser, "SELECT * FROM loginetl_forget(:s, :u)", {"s": seq, "u": erased_user})
    keep = sql(
        maintainer,
        "SELECT audit_seq FROM loginetl_retention_request(24, :r, NULL, NULL)",
        {"r": REASON},
    )[0][0]
    (partition,) = [
        p
        for (p, month) in sql(
            maintainer, "SELECT partition, month FROM loginetl_retention_plan(24)"
        )
        if month is not None
    ]
    sql(
        maintainer,
        "SELECT * FROM loginetl_retention_drop(:s, :p, false)",
        {"s": keep, "p": partition},
    )
    sql(maintainer, "SELECT * FROM loginetl_retention_purge(:s, 1000)", {"s": keep})
    secrets = {erased_user, old_user, old_token, *erased_tokens}
    for role, url in (("analyst", world.analyst), ("writer", world.writer)):
        for view in ("pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"):
            seen = json.dumps(sql(url, f"SELECT * FROM pg_catalog.{view}"), default=str)
            with attack(f"{role}: an erased user id or a purged token in {view}"):
                assert not [s for s in secrets if s in seen]
    assert sql(world.owner, "SELECT count(*) FROM pg_stats WHERE tablename = 'user_logins'")[0][0]


def _held_only_by(world: World, token: str, user: str) -> bool:
    """The world gives each of its users its own ip and device: all of a user's tokens."""
    rows = sql(
        world.owner,
        "SELECT DISTINCT user_id FROM user_logins WHERE masked_ip = :t OR masked_device_id = :t",
        {"t": token},
    )
    return rows == [(user,)]


def _old_login(world: World, user: str, ip: str, token: str) -> tuple[list[LoginRow], list[Any]]:
    masker = keys.load_masker(world.keys_dir)
    device = "old-device-w-1"
    device_token = masker.token("device_id", device)
    back = date.today().year * 12 + date.today().month - 1 - 25  # 25 months ago
    when = datetime(back // 12, back % 12 + 1, 3, tzinfo=UTC)
    row = LoginRow(
        f"old-{uuid.uuid4().hex}", user, "ios", token, device_token, None, 1, "1", when, when.date()
    )
    sealed = VaultSealer(keys.load_public_key(world.keys_dir)).seal(
        [PlainVaultEntry(token, "ip", ip), PlainVaultEntry(device_token, "device_id", device)]
    )
    return [row], sealed
