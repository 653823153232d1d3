"""OGC API indexes: village-filtered case pages.

* ``ix_cases_village_code_reported_at`` on ``cases (village_code, reported_at)``: OGC
  items filtered by village (``village_code = …``, ``village_code IN (…)``, with or
  without a time filter: ``datetime``, ``reported_at > …``, ``T_AFTER``). The page itself
  walks the ``case_no`` index either way; what the index serves is the bounded
  ``numberMatched`` count (at most 10,001 matches, :mod:`geogrid.ogcapi.items`), which
  without it read the table (bench/bench_ogc.py, 600,000 cases: the count for two large
  villages after a date took 147 ms by a sequential scan, 109 ms with an index on
  ``village_code`` alone, which the planner then mostly ignores, and 2.5 ms as an
  index-only scan of this index). Its leading column serves village-only filters too.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_cases_village_code_reported_at"


def upgrade() -> None:
    op.create_index(INDEX, "cases", ["village_code", "reported_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="cases")
