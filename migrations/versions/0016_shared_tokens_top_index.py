"""The top-shared-tokens index holds only shared tokens: token_stats_top_idx gets WHERE users > 1.

`stats` reads token_stats_top_idx (0013) only for tokens shared by several users
(``WHERE pii_field = f AND users > 1 ORDER BY users DESC, logins DESC, token``), yet the
fold (0011) puts every new ip and device token into it: two random b-tree inserts per
all-new login, keyed by a random token, for entries nothing reads through it. The partial
index serves the same query and holds only shared tokens: most ips and devices have one
user. Measured on a token_stats of 2M synthetic tokens, 5% of them shared: the full index
245 MB (more than the default shared_buffers, 128 MB), the partial one 12 MB; this upgrade
took 1.9 s there, the downgrade (which builds the full index again) 7.7 s.

Online: both indexes are built and dropped CONCURRENTLY, outside a transaction (Alembic's
autocommit_block; the runner gives each migration its own transaction), so neither the
fold nor the loads wait for the build. It takes SHARE UPDATE EXCLUSIVE on token_stats,
which blocks other schema changes, VACUUM, ANALYZE and autovacuum of it for the build's
length; and the build waits for every transaction in the database whose snapshot is older
than it to end, whatever it touches: a consumer's batch, and also an analyst's session left
idle in a transaction. The new index is built under a temporary name, the old one dropped,
the new one renamed to token_stats_top_idx (the name the stats-cost test and the docs use)
in the migration's transaction, which commits the rename with the version row.

A rerun after a failure converges. Before building, each direction drops the other
direction's temporary index, and its own unless that is valid and has this direction's
predicate (a build that failed leaves an INVALID one); a valid one is kept and renamed.
The rename has no IF EXISTS: a build that is missing must fail the migration, not commit
it without a top index. `migrate` runs one at a time per database (an advisory lock in
loginetl.services.migrations), so a second run cannot take a build in progress for a
leftover.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

INDEX = "token_stats_top_idx"
COLUMNS = "(pii_field, users DESC, logins DESC, token)"
SHARED_ONLY = "WHERE users > 1"
# Where each direction builds its index before the rename (a leftover names its direction).
UPGRADE_BUILD = "token_stats_top_shared_new_idx"
DOWNGRADE_BUILD = "token_stats_top_all_new_idx"


def _replace_top_index(build_name: str, other_build_name: str, predicate: str) -> None:
    """Build the top index anew under ``build_name``, drop the old one, rename the new.

    ``predicate`` is this direction's WHERE clause, or "" for none.
    """
    wanted = predicate.removeprefix("WHERE ").strip()
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        # The other direction's leftover (a run that failed the other way) is never used.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS public.{other_build_name}")
        leftover_is_ours = bind.execute(
            text(
                "SELECT i.indisvalid AND pg_catalog.pg_get_expr(i.indpred, i.indrelid) "
                "IS NOT DISTINCT FROM CAST(:predicate AS text) FROM pg_catalog.pg_index i "
                "WHERE i.indexrelid = pg_catalog.to_regclass(:name)"
            ),
            {"name": f"public.{build_name}", "predicate": f"({wanted})" if wanted else None},
        ).scalar()
        if leftover_is_ours is False:  # INVALID (a failed build) or another predicate
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS public.{build_name}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {build_name} ON public.token_stats "
            f"{COLUMNS} {predicate}".rstrip()
        )
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS public.{INDEX}")
    # No IF EXISTS: without the build this must fail, not commit the revision index-less.
    op.execute(f"ALTER INDEX public.{build_name} RENAME TO {INDEX}")


def upgrade() -> None:
    _replace_top_index(UPGRADE_BUILD, DOWNGRADE_BUILD, SHARED_ONLY)
    declare_compatible("0016", "0009")  # an index: every consumer from 0009 on runs as before


def downgrade() -> None:
    _replace_top_index(DOWNGRADE_BUILD, UPGRADE_BUILD, "")  # 0013's index: every token
    op.execute(f"DELETE FROM public.{COMPAT_TABLE} WHERE revision = '0016'")
