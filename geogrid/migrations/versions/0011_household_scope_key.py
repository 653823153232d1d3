"""Households get a stored scope key the web role can plan with.

The web server's role may read only some columns of ``households`` (migration 0007), and
PostgreSQL then does not let it use the statistics of the expression index on
``coalesce(grid_code, village_code)`` (0009): it guessed 0.5% of the rows for every scope,
so a town leader's page of household members hash-joined and sorted the whole town (20 ms)
where the owner walked the primary key and stopped after 50 rows (0.3 ms). A stored,
generated column with a plain index has column statistics, which a column grant is enough
to use. The people service and the row-level security policies match on it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"


def _policies(test: str) -> dict[str, str]:
    households = f"SELECT h.id FROM households h WHERE {test}"
    members = (
        "SELECT m.id FROM household_members m JOIN households h ON h.id = m.household_id "
        f"WHERE {test}"
    )
    records = (
        "SELECT s.id FROM special_population s JOIN household_members m ON m.id = s.member_id "
        f"JOIN households h ON h.id = m.household_id WHERE {test}"
    )
    return {
        "household_members": f"household_id IN ({households})",
        "special_population": f"geogrid_special_allowed() AND member_id IN ({members})",
        "special_followups": f"geogrid_special_allowed() AND record_id IN ({records})",
    }


NEW = "h.scope_key LIKE (SELECT geogrid_scope_pattern())"
OLD = "coalesce(h.grid_code, h.village_code) LIKE (SELECT geogrid_scope_pattern())"


def _alter(test: str) -> None:
    for table, expr in _policies(test).items():
        op.execute(f"ALTER POLICY {table}_scope ON {table} USING ({expr}) WITH CHECK ({expr})")


def upgrade() -> None:
    op.execute(
        "ALTER TABLE households ADD COLUMN scope_key text "
        "GENERATED ALWAYS AS (coalesce(grid_code, village_code)) STORED"
    )
    op.execute("DROP INDEX ix_households_scope")
    op.execute("CREATE INDEX ix_households_scope_key ON households (scope_key text_pattern_ops)")
    op.execute(f"GRANT SELECT (scope_key) ON households TO {WEB_ROLE}")
    _alter(NEW)
    op.execute("ANALYZE households")


def downgrade() -> None:
    _alter(OLD)
    op.execute("DROP INDEX ix_households_scope_key")
    op.execute("ALTER TABLE households DROP COLUMN scope_key")
    op.execute(
        "CREATE INDEX ix_households_scope ON households "
        "((coalesce(grid_code, village_code)) text_pattern_ops)"
    )
