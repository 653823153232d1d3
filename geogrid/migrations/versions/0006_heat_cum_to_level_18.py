"""Heat pyramid: running totals down to level 18 (tiles z13–z14), daily rows only at the base.

Revision 0004 kept daily rows at levels 17–20. On 1,000,000 cases each of those levels held
about as many rows as there are cases (a ~140 m bin seldom sees two cases of a category on
a day), so a z13 tile over a busy town summed ~25,000 rows and missed its 30 ms budget.
``tiles.heat`` now keeps levels 4–18 as running totals in ``heat_cum`` and only the base
level 20 in ``heat_daily`` (z15 sums the base rows of its four z16 tiles).

The pyramid is derived data: the upgrade drops it and marks every (day, category) of
``cases`` dirty, so the next heat request (or ``tiles.heat.refresh_heat``) rebuilds it in the
new layout. The downgrade does the same for revision 0004's layout.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEAT_TIMEZONE = "Asia/Shanghai"


def _rebuild_later() -> None:
    op.execute("TRUNCATE heat_daily, heat_cum, heat_dirty")
    op.execute(
        f"""
        INSERT INTO heat_dirty (day, category)
        SELECT DISTINCT (reported_at AT TIME ZONE '{HEAT_TIMEZONE}')::date, category FROM cases
        """
    )


def upgrade() -> None:
    _rebuild_later()


def downgrade() -> None:
    _rebuild_later()
