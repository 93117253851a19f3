"""The vault epoch: a consumer's token cache cannot outlive a purge of the vault.

A consumer (and a warm Lambda) caches the tokens whose vault entries it has committed,
and stages no vault entry for a cached token. ``forget`` and ``retention apply`` (0012)
delete the vault entries of tokens no row references any more; a consumer that met such
a value again loaded a row whose token had no vault entry (joinable, not recoverable).

- ``vault_epoch`` is a sequence the purge advances (nextval) before it deletes a vault
  entry. Sequences are not transactional: every session sees the new value at once,
  whatever its isolation level or snapshot.
- The purge (``loginetl_purge_candidates``, which forget and retention call) takes the
  advisory lock ``loginetl.vault_epoch`` exclusive before it judges which tokens are
  unreferenced; ``loginetl_move_staged()`` takes it shared before it writes anything. A
  move and a purge never overlap: a move that started first commits first and its rows
  count as references when the purge judges; a move that waited reads the advanced epoch.
  Forget's delete of the user's rows (a scan of the table) does not hold it: loads go on.
- A consumer reads the epoch (``loginetl_vault_epoch()``) when it (re)fills its cache and
  sets ``loginetl.vault_epoch`` (``set_config(..., true)``) in each batch transaction. If a
  purge has happened since, the move raises SQLSTATE LE001 and writes nothing; the
  consumer empties its cache, seals every value of the batch again and retries.
- The writer learns only that some purge happened since it read the epoch, never which
  token: the check does not look at the batch's tokens, and the epoch is one number.

Consumers at 0009 and later run unchanged: a move without the setting is not checked
(it waits behind a purge as before; such a consumer still needs a restart after a purge).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from alembic import op

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible, load_revision

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

WRITER = "loginetl_writer"
STALE = "LE001"  # loginetl.services.db.VAULT_EPOCH_STALE
LOCK = "pg_catalog.hashtext('loginetl.vault_epoch')"
EPOCH_FUNCTION = "public.loginetl_vault_epoch()"


def _revision(file: str) -> ModuleType:
    """An earlier migration's module, for the function definitions redefined here."""
    return load_revision(Path(__file__).with_name(file))


def _patched(definition: str, anchor: str, addition: str, *, before: bool = False) -> str:
    """``definition`` with ``addition`` after (or before) its one ``anchor``."""
    if definition.count(anchor) != 1:
        raise RuntimeError(f"expected one {anchor.strip()!r} in the definition")
    return definition.replace(anchor, addition + anchor if before else anchor + addition)


def _or_replace(definition: str) -> str:
    return definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


_ROLLUPS_LOCK = (
    "    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('loginetl.rollups'));\n"
)
_EXCLUSIVE = (
    f"    -- 0015: no move runs while vault entries go (moves take this lock shared).\n"
    f"    PERFORM pg_catalog.pg_advisory_xact_lock({LOCK});\n"
)
_BUMP = (
    "    -- 0015: a consumer whose cache predates this purge must seal again.\n"
    "    IF false = ANY (v_referenced) THEN\n"
    "        PERFORM pg_catalog.nextval('public.vault_epoch');\n"
    "    END IF;\n"
)
_CHECK = f"""    -- 0015: no purge runs while this move does; a cache older than the last purge
    -- (the epoch the caller read) may lack vault entries that are gone: refuse it.
    PERFORM pg_catalog.pg_advisory_xact_lock_shared({LOCK});
    v_claimed := pg_catalog.current_setting('loginetl.vault_epoch', true);
    IF coalesce(v_claimed, '') <> '' THEN
        IF v_claimed !~ '^[0-9]{{1,18}}$' THEN
            RAISE EXCEPTION 'loginetl.vault_epoch must be a number'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_claimed::bigint <> (SELECT e.last_value FROM public.vault_epoch e) THEN
            RAISE EXCEPTION 'the vault changed since this cache was filled: seal again'
                USING ERRCODE = '{STALE}';
        END IF;
    END IF;
"""


def definitions() -> dict[str, tuple[str, str]]:
    """signature -> (this revision's definition, the one the downgrade restores)."""
    r0011 = _revision("0011_signed_rollups.py")
    r0012 = _revision("0012_privacy_lifecycle.py")
    move = _patched(r0011.MOVE_STAGED, "    inserted integer;\n", "    v_claimed text;\n")
    move = _patched(move, "    WITH vault AS (\n", _CHECK, before=True)
    purge = _patched(r0012.PURGE, _ROLLUPS_LOCK, _EXCLUSIVE)
    purge = _patched(purge, "    RETURN QUERY\n    WITH j AS (\n", _BUMP, before=True)
    return {
        "loginetl_move_staged()": (move, r0011.MOVE_STAGED),
        "loginetl_purge_candidates(integer, bigint)": (_or_replace(purge), r0012.PURGE),
    }


EPOCH = f"""
CREATE FUNCTION {EPOCH_FUNCTION} RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.last_value FROM public.vault_epoch e
$$
"""


def upgrade() -> None:
    op.execute("CREATE SEQUENCE public.vault_epoch AS bigint MINVALUE 1 NO CYCLE")
    op.execute("SELECT pg_catalog.setval('public.vault_epoch', 1, true)")  # last_value moves
    op.execute("REVOKE ALL ON SEQUENCE public.vault_epoch FROM PUBLIC")
    op.execute(
        "COMMENT ON SEQUENCE public.vault_epoch IS "
        "'advanced by every purge of vault entries; consumers refill their token cache'"
    )
    op.execute(EPOCH)
    op.execute(f"REVOKE ALL ON FUNCTION {EPOCH_FUNCTION} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {EPOCH_FUNCTION} TO {WRITER}")
    for definition, _ in definitions().values():
        op.execute(definition)  # CREATE OR REPLACE: owner, grants and signature stay
    # Consumers that do not set loginetl.vault_epoch call the same functions as before.
    declare_compatible("0015", "0009")


def downgrade() -> None:
    op.execute(f"DELETE FROM public.{COMPAT_TABLE} WHERE revision = '0015'")
    for _, previous in definitions().values():
        op.execute(_or_replace(previous))
    op.execute(f"DROP FUNCTION {EPOCH_FUNCTION}")
    op.execute("DROP SEQUENCE public.vault_epoch")
