"""Top shared tokens by one index scan: token joins the ordering index of token_stats.

`stats` lists the tokens shared by the most users: ``WHERE pii_field = f AND users > 1
ORDER BY users DESC, logins DESC, token LIMIT n``. 0002's token_stats_shared_idx
(pii_field, users DESC, logins DESC) gives the order without the token, so PostgreSQL
read and sorted every row tied with the n-th on (users, logins): measured on a year of
synthetic data (bench/stats_scale.py), 100,001 rows and 220 ms at 1M logins for the top
100 devices, growing with the table. With the token in the index the query is an
index-only scan of n entries (0.09 ms there). The new index replaces the old one, whose
every use it serves.

The build locks token_stats against writes (the fold waits; loads do not) for about a
second per million tokens here.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from loginetl.services.migrations import COMPAT_TABLE, declare_compatible

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX token_stats_top_idx ON public.token_stats "
        "(pii_field, users DESC, logins DESC, token)"
    )
    op.execute("DROP INDEX public.token_stats_shared_idx")
    declare_compatible("0013", "0009")  # an index: every consumer from 0009 on runs as before


def downgrade() -> None:
    op.execute(
        "CREATE INDEX token_stats_shared_idx ON public.token_stats "
        "(pii_field, users DESC, logins DESC)"
    )
    op.execute("DROP INDEX public.token_stats_top_idx")
    op.execute(f"DELETE FROM public.{COMPAT_TABLE} WHERE revision = '0013'")
