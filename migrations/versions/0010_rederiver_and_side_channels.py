"""Rederive behind its own role; no per-table statistics for the writer.

An attacker review of 0009 with real login roles found:

- The unmasker could call ``loginetl_rederive_request`` and then page through every
  older-key vault ciphertext under that ONE audit row, and could write any alias of the
  audited key for any old token (``loginetl_add_aliases``), so analysts would join two
  different values. Now the three rederive functions belong to a new NOLOGIN group role,
  ``loginetl_rederiver``, granted only to the rotation job; the unmasker keeps unmask.
  The request's refusal no longer names the key the consumers last wrote with.
- The writer could learn whether a token was already in the vault from PostgreSQL's
  statistics (``n_tup_ins`` of pii_vault in ``pg_stat_xact_user_tables`` before and after
  ``loginetl_move_staged()``, or ``n_tup_upd`` of token_stats around the fold). Function
  privileges live in each database's own pg_proc, so this revision revokes EXECUTE on
  the per-table and per-database counter functions from PUBLIC in this database only,
  and grants them to pg_monitor (and to the database owner). Only a superuser may change
  the privileges of pg_catalog functions: run by anyone else, the migration changes
  nothing there and warns with the statement a DBA must run.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

REDERIVER = "loginetl_rederiver"
REDERIVE_FUNCTIONS = (
    "public.loginetl_rederive_request(text, text, text, text, text)",
    "public.loginetl_rederive_page(bigint, text, integer)",
    "public.loginetl_add_aliases(bigint, text[], text[], text[])",
)

# The refusal of 0007 named the deployed key ("the consumers last wrote tokens of k2").
_REQUEST = "public.loginetl_rederive_request(text, text, text, text, text)"
_NAMES_DEPLOYED = (
    "'the consumers last wrote tokens of %, not %: rederive maps to the '\n"
    "                        'deployed key only', coalesce(v_deployed, 'no key'), p_key_id"
)
_NAMES_NONE = "'rederive maps only to the key the consumers write with now, not %', p_key_id"

# pg_catalog functions that expose a table's (or the database's) tuple, scan or block
# counters: each moves by one when a row is (or is not) inserted or updated, so they tell
# whether a token was already present. Names missing on this server version are skipped.
STATS_FUNCTIONS = (
    "pg_stat_get_numscans",
    "pg_stat_get_lastscan",
    "pg_stat_get_tuples_returned",
    "pg_stat_get_tuples_fetched",
    "pg_stat_get_tuples_inserted",
    "pg_stat_get_tuples_updated",
    "pg_stat_get_tuples_deleted",
    "pg_stat_get_tuples_hot_updated",
    "pg_stat_get_tuples_newpage_updated",
    "pg_stat_get_live_tuples",
    "pg_stat_get_dead_tuples",
    "pg_stat_get_mod_since_analyze",
    "pg_stat_get_ins_since_vacuum",
    "pg_stat_get_blocks_fetched",
    "pg_stat_get_blocks_hit",
    "pg_stat_get_xact_numscans",
    "pg_stat_get_xact_tuples_returned",
    "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_inserted",
    "pg_stat_get_xact_tuples_updated",
    "pg_stat_get_xact_tuples_deleted",
    "pg_stat_get_xact_tuples_hot_updated",
    "pg_stat_get_xact_tuples_newpage_updated",
    "pg_stat_get_xact_blocks_fetched",
    "pg_stat_get_xact_blocks_hit",
    "pg_stat_get_db_tuples_returned",
    "pg_stat_get_db_tuples_fetched",
    "pg_stat_get_db_tuples_inserted",
    "pg_stat_get_db_tuples_updated",
    "pg_stat_get_db_tuples_deleted",
    "pg_stat_get_db_blocks_fetched",
    "pg_stat_get_db_blocks_hit",
)
_NAMES = "ARRAY[" + ", ".join(f"'{n}'" for n in STATS_FUNCTIONS) + "]::text[]"
# Every overload of those names in pg_catalog, as regprocedure text.
_STATS_SIGNATURES = (
    "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
    f"WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY ({_NAMES}) "
    "ORDER BY 1"
)


def dba_statement(granted: str) -> str:
    """What a DBA runs (as a superuser, in this database) when the migration could not."""
    return (
        "DO $$ DECLARE f text; BEGIN FOR f IN "
        + _STATS_SIGNATURES
        + " LOOP EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f); "
        f"EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {granted}', f); END LOOP; END $$"
    )


log = logging.getLogger(__name__)


def _one(statement: str) -> object:
    return op.get_bind().execute(text(statement)).scalar_one()


def _is_superuser() -> bool:
    return bool(_one("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"))


def _owner_if_not_superuser() -> str | None:
    """The database owner, quoted, unless a superuser (who needs no grant)."""
    owner = (
        op.get_bind()
        .execute(
            text(
                "SELECT pg_catalog.quote_ident(r.rolname), r.rolsuper FROM pg_catalog.pg_database d "
                "JOIN pg_catalog.pg_roles r ON r.oid = d.datdba WHERE d.datname = current_database()"
            )
        )
        .one()
    )
    return None if owner[1] else str(owner[0])


def _granted() -> str:
    """Who keeps the counters: pg_monitor, and the database owner unless a superuser."""
    owner = _owner_if_not_superuser()
    return "pg_monitor" if owner is None else f"pg_monitor, {owner}"


def _stats_privileges(grant_to_public: bool) -> None:
    granted = _granted()
    signatures = [str(r[0]) for r in op.get_bind().execute(text(_STATS_SIGNATURES))]
    for signature in signatures:
        function = f"FUNCTION pg_catalog.{signature}"
        if grant_to_public:
            op.execute(f"GRANT EXECUTE ON {function} TO PUBLIC")
            op.execute(f"REVOKE EXECUTE ON {function} FROM {granted}")
        else:
            op.execute(f"REVOKE EXECUTE ON {function} FROM PUBLIC")
            op.execute(f"GRANT EXECUTE ON {function} TO {granted}")


def _replace_in_request(old: str, new: str) -> None:
    """Swap one span of the request function's body, in place (its grants stay)."""
    definition = str(_one(f"SELECT pg_catalog.pg_get_functiondef('{_REQUEST}'::regprocedure)"))
    if old not in definition:
        raise RuntimeError(f"{_REQUEST} is not the function this migration expects")
    op.execute(definition.replace(old, new))


def upgrade() -> None:
    # Looked up first, so an owner without CREATEROLE migrates once a DBA made the role.
    op.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles "
        f"WHERE rolname = '{REDERIVER}') THEN CREATE ROLE {REDERIVER} NOLOGIN; END IF; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )
    for function in REDERIVE_FUNCTIONS:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM loginetl_unmasker")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {REDERIVER}")
    # What keys rederive reads besides: the schema's revision, the existing aliases (to
    # refuse a forged one), and the signed heads it appends beside its audit row (whose
    # check trigger reads unmask_audit as the caller).
    op.execute(f"GRANT USAGE ON SCHEMA public TO {REDERIVER}")
    op.execute(f"GRANT SELECT ON public.alembic_version, public.{COMPAT_TABLE} TO {REDERIVER}")
    op.execute(f"GRANT SELECT ON public.token_aliases, public.unmask_audit TO {REDERIVER}")
    op.execute(f"GRANT SELECT, INSERT ON public.audit_heads TO {REDERIVER}")
    _replace_in_request(_NAMES_DEPLOYED, _NAMES_NONE)
    if _is_superuser():
        _stats_privileges(grant_to_public=False)
    else:
        message = (
            "migration 0010: not a superuser, so the statistics functions that tell the "
            "writer whether a token is already in the vault stay executable by PUBLIC; a "
            f"DBA must run, as a superuser in this database: {dba_statement(_granted())}"
        )
        log.warning(message)
        op.execute(f"DO $warn$ BEGIN RAISE WARNING '%', {_quote(message)}; END $warn$")
    # Grants and one message only: a consumer at 0009 runs unchanged on it.
    declare_compatible("0010", "0009")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def downgrade() -> None:
    op.execute(f"DELETE FROM public.{COMPAT_TABLE} WHERE revision = '0010'")
    if _is_superuser():
        _stats_privileges(grant_to_public=True)
    _replace_in_request(_NAMES_NONE, _NAMES_DEPLOYED)
    # The role stays: it is cluster-wide and may serve other databases.
    op.execute(
        f"REVOKE ALL ON public.audit_heads, public.token_aliases, public.unmask_audit "
        f"FROM {REDERIVER}"
    )
    op.execute(f"REVOKE ALL ON public.alembic_version, public.{COMPAT_TABLE} FROM {REDERIVER}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {REDERIVER}")
    for function in REDERIVE_FUNCTIONS:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM {REDERIVER}")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO loginetl_unmasker")
