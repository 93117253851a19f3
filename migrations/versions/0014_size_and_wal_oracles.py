"""No WAL position or file size for the writer: the presence oracles 0010 left open.

An attacker review with real login roles found that the writer, which must never learn
whether a token is already in the vault, still could, from two kinds of catalog function
that PUBLIC may execute:

- the WAL position (``pg_current_wal_insert_lsn()`` and its siblings), read before and
  after ``loginetl_move_staged()`` in its own rolled-back transaction: 0 bytes for a
  stored token, ~400 for a new one, exact to the byte;
- a relation's or database's size (``pg_relation_size`` and its siblings), page-granular:
  fill pii_vault's last page with fresh tokens, move the guess plus one more, and see
  whether a page appeared.

With the HMAC key on the consumer host, either one reverses every stored IPv4. As 0010
did for the per-table counters, this revision revokes EXECUTE on these functions (every
overload) from PUBLIC in this database and grants them to pg_monitor and the database
owner. Only a superuser may change pg_catalog functions' privileges: run by anyone else
it changes nothing there and warns with the statement a DBA must run.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

from alembic import op
from sqlalchemy import text

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible, load_revision

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ORACLE_FUNCTIONS = (
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_stat_get_wal",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_tablespace_size",
)
_NAMES = "ARRAY[" + ", ".join(f"'{n}'" for n in ORACLE_FUNCTIONS) + "]::text[]"
_SIGNATURES = (
    "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
    f"WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY ({_NAMES}) "
    "ORDER BY 1"
)

log = logging.getLogger(__name__)


def _revision_0010() -> ModuleType:
    """0010's module: who keeps the functions, and the superuser check, as it decided them."""
    return load_revision(Path(__file__).with_name("0010_rederiver_and_side_channels.py"))


def dba_statement(granted: str) -> str:
    """What a DBA runs (as a superuser, in this database) when the migration could not."""
    return (
        "DO $$ DECLARE f text; BEGIN FOR f IN "
        + _SIGNATURES
        + " LOOP EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f); "
        f"EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {granted}', f); END LOOP; END $$"
    )


def _privileges(previous: ModuleType, *, grant_to_public: bool) -> None:
    granted = previous._granted()
    for (signature,) in op.get_bind().execute(text(_SIGNATURES)):
        function = f"FUNCTION pg_catalog.{signature}"
        if grant_to_public:
            op.execute(f"GRANT EXECUTE ON {function} TO PUBLIC")
            op.execute(f"REVOKE EXECUTE ON {function} FROM {granted}")
        else:
            op.execute(f"REVOKE EXECUTE ON {function} FROM PUBLIC")
            op.execute(f"GRANT EXECUTE ON {function} TO {granted}")


def upgrade() -> None:
    previous = _revision_0010()
    if previous._is_superuser():
        _privileges(previous, grant_to_public=False)
    else:
        message = (
            "migration 0014: not a superuser, so the WAL-position and size functions that "
            "tell the writer whether a token is already in the vault stay executable by "
            f"PUBLIC; a DBA must run, as a superuser in this database: "
            f"{dba_statement(previous._granted())}"
        )
        log.warning(message)
        op.execute(f"DO $warn$ BEGIN RAISE WARNING '%', {previous._quote(message)}; END $warn$")
    declare_compatible("0014", "0009")  # grants only: consumers never call these


def downgrade() -> None:
    op.execute(f"DELETE FROM public.{COMPAT_TABLE} WHERE revision = '0014'")
    previous = _revision_0010()
    if previous._is_superuser():
        _privileges(previous, grant_to_public=True)
