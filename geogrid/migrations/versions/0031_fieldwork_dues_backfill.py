"""Key units registered before 0030 get their recurring dues once, here, not on every read.

0030's statement trigger gives every new or imported unit its ``maintenance`` and
``self_assessment`` dues; units that were in the table before it had theirs inserted by
:func:`geogrid.fieldwork.filings.refresh_dues` on every key-unit list call (a write on the
read path). :data:`BACKFILL` inserts the missing dues in one statement, the way the trigger
does: the due day from 0025's ``geogrid_inspection_due`` (the same SQL function the trigger
calls), the calendar's version when the day is known, none when the count reaches a year
the calendar does not know (``refresh_dues`` then names the year). The basis is the unit's
registration day, or its last filing of that kind when it has one (a pre-0030 unit never
listed may have been filed on by SQL). Existing dues are never touched.

Revision ID: 0031
Revises: 0030
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Every unit's missing recurring dues, as 0030's trigger would have made them.
BACKFILL = """
INSERT INTO key_unit_dues (unit_id, kind, basis, due_date, due_cal)
SELECT m.unit_id, m.kind, m.basis, m.due,
       CASE WHEN m.due IS NOT NULL
            THEN (SELECT s.version FROM calendar_settings s WHERE s.id = 1) END
FROM (SELECT b.unit_id, b.kind, b.basis, geogrid_inspection_due(b.schedule, b.basis) AS due
      FROM (SELECT u.id AS unit_id, k.kind, k.schedule,
                   coalesce(f.last_filed, u.registered_on) AS basis
            FROM key_units u
            CROSS JOIN (VALUES ('maintenance', 'halfyearly'),
                               ('self_assessment', 'quarterly')) AS k(kind, schedule)
            LEFT JOIN (SELECT unit_id, kind, max(event_date) AS last_filed
                       FROM key_unit_filings GROUP BY unit_id, kind) f
                   ON f.unit_id = u.id AND f.kind = k.kind
            WHERE NOT EXISTS (SELECT 1 FROM key_unit_dues d
                              WHERE d.unit_id = u.id AND d.kind = k.kind)) b) m
ON CONFLICT (unit_id, kind) DO NOTHING
"""


def upgrade() -> None:
    op.execute(BACKFILL)


def downgrade() -> None:
    # Nothing to undo: the rows are the dues 0030's trigger and the key-unit service would
    # have made; before this revision refresh_dues inserted the same rows on the next read.
    pass
