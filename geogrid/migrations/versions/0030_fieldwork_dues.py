"""Key-unit filing dues kept by the database; residents' satisfaction with a closed case.

* ``geogrid_key_unit_dues()``: a statement trigger after ``INSERT`` on ``key_units`` that
  gives every new unit its recurring dues (``maintenance`` every 6 months,
  ``self_assessment`` every 3) counted from its registration day on the working calendar,
  with 0025's ``geogrid_inspection_due`` (the same months clipped to the month's end and
  rolled forward to a working day that :func:`geogrid.fieldwork.filings.due_date`
  computes). Units loaded by an import (``geogrid import key-units``, the demo) are then
  due or overdue in the lists, the map and the tiles at once, not only after the first
  key-unit call. A year the calendar does not know leaves ``due_date`` empty with no
  calendar version, so :func:`~geogrid.fieldwork.filings.refresh_dues` names the year.
* ``case_feedback``: a resident's (or a follow-up call's) rating of how a case was handled
  — ``satisfied``, ``basic`` or ``unsatisfied`` as the evaluation step rates — one row per
  case and source (``open311``, ``hotline``, ``visit``); a later rating by the same source
  replaces it. The assessment's satisfaction indicator counts these beside the evaluation
  step's ratings. The web role may read, add and replace ratings, never delete them.

Revision ID: 0030
Revises: 0029
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"

DUES_FUNCTION = """
CREATE FUNCTION geogrid_key_unit_dues() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_unit_dues (unit_id, kind, basis, due_date, due_cal)
    SELECT d.unit_id, d.kind, d.basis, d.due,
           CASE WHEN d.due IS NOT NULL
                THEN (SELECT s.version FROM calendar_settings s WHERE s.id = 1) END
    FROM (SELECT n.id AS unit_id, k.kind, n.registered_on AS basis,
                 geogrid_inspection_due(k.schedule, n.registered_on) AS due
          FROM new_units n
          CROSS JOIN (VALUES ('maintenance', 'halfyearly'),
                             ('self_assessment', 'quarterly')) AS k(kind, schedule)) d
    ON CONFLICT (unit_id, kind) DO NOTHING;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(DUES_FUNCTION)
    op.execute(
        "CREATE TRIGGER trg_key_units_dues AFTER INSERT ON key_units "
        "REFERENCING NEW TABLE AS new_units FOR EACH STATEMENT "
        "EXECUTE FUNCTION geogrid_key_unit_dues()"
    )
    op.create_table(
        "case_feedback",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("rating", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_feedback")),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            ondelete="CASCADE",
            name=op.f("fk_case_feedback_case_id_cases"),
        ),
        sa.UniqueConstraint("case_id", "source", name=op.f("uq_case_feedback_case_id")),
        sa.CheckConstraint(
            "source IN ('open311', 'hotline', 'visit')", name=op.f("ck_case_feedback_source")
        ),
        sa.CheckConstraint(
            "rating IN ('satisfied', 'basic', 'unsatisfied')", name=op.f("ck_case_feedback_rating")
        ),
        sa.CheckConstraint("char_length(comment) <= 500", name=op.f("ck_case_feedback_comment")),
    )
    op.create_index("ix_case_feedback_at", "case_feedback", ["at"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON case_feedback TO {WEB_ROLE}")


def downgrade() -> None:
    op.drop_table("case_feedback")
    op.execute("DROP TRIGGER trg_key_units_dues ON key_units")
    op.execute("DROP FUNCTION geogrid_key_unit_dues()")
