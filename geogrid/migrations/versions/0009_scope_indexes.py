"""Scope indexes: the code prefix every scoped read filters on, indexed and with statistics.

Scoped reads (a user's town, village or grid) filter on
``coalesce(grid_code, village_code) LIKE prefix || '%'`` (cases in OGC items and tiles;
households, and through them people). Without an index on that expression PostgreSQL has
no statistics for it and guesses 0.5% of the rows: for a town leader (every row matches)
it then sorted the whole table for an OGC page instead of walking the ``case_no`` index
(2–5x slower than the same page unscoped). An expression index gives ANALYZE the
expression's statistics (right estimates for any scope) and serves narrow scopes (a
village, a grid) by a range scan; ``text_pattern_ops`` makes ``LIKE 'prefix%'`` indexable
whatever the database collation. (A whole-town count still tests the prefix on every row:
the index cannot make that cheaper than the unscoped count.)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("cases", "households")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"CREATE INDEX ix_{table}_scope ON {table} "
            "((coalesce(grid_code, village_code)) text_pattern_ops)"
        )
        op.execute(f"ANALYZE {table}")  # the expression's statistics, now


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX ix_{table}_scope")
