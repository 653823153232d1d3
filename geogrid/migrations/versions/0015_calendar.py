"""Working calendar: holidays, make-up working days, office hours.

* ``calendar_years``: the years the calendar knows and their source (``chinesecalendar
  <version>`` when seeded from the package, ``admin`` when declared from the State
  Council's notice). A year not listed is unknown: deadlines reaching it are refused.
* ``calendar_days``: the days that differ from the default week, each in a known year
  (foreign key, cascading): ``holiday`` (named) or ``workday`` (调休, a Saturday or Sunday).
* ``calendar_office_hours`` and the one-row ``calendar_settings`` (time zone, and the
  version that statement triggers bump on every change, so cached calendars reload).

The years the installed ``chinesecalendar`` knows are seeded here (``geogrid calendar
seed`` adds the years of a newer package later).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
TABLES = ("calendar_settings", "calendar_office_hours", "calendar_years", "calendar_days")
VERSIONED = ("calendar_office_hours", "calendar_years", "calendar_days")


def upgrade() -> None:
    op.create_table(
        "calendar_settings",
        sa.Column("id", sa.SmallInteger(), nullable=False, server_default="1"),
        sa.Column("timezone", sa.Text(), nullable=False, server_default="Asia/Shanghai"),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_settings")),
        sa.CheckConstraint("id = 1", name=op.f("ck_calendar_settings_one_row")),
    )
    op.create_table(
        "calendar_office_hours",
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("starts", sa.Time(), nullable=False),
        sa.Column("ends", sa.Time(), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_calendar_office_hours")),
        sa.CheckConstraint("starts < ends", name=op.f("ck_calendar_office_hours_order")),
    )
    op.create_table(
        "calendar_years",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("declared_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_calendar_years")),
        sa.CheckConstraint("year BETWEEN 1990 AND 2200", name=op.f("ck_calendar_years_range")),
    )  # fmt: skip
    op.create_table(
        "calendar_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_calendar_days")),
        sa.ForeignKeyConstraint(["year"], ["calendar_years.year"], ondelete="CASCADE",
                                name=op.f("fk_calendar_days_year_calendar_years")),
        sa.CheckConstraint("year = extract(year FROM day)", name=op.f("ck_calendar_days_year")),
        sa.CheckConstraint("kind IN ('holiday', 'workday')", name=op.f("ck_calendar_days_kind")),
        sa.CheckConstraint("kind = 'workday' OR name IS NOT NULL",
                           name=op.f("ck_calendar_days_holiday_named")),
        sa.CheckConstraint("kind = 'holiday' OR extract(isodow FROM day) IN (6, 7)",
                           name=op.f("ck_calendar_days_workday_weekend")),
    )  # fmt: skip
    # a sequence, not version + 1: a number taken by a rolled-back edit is never reused, so a
    # snapshot cached during that transaction can never pass for a later committed one
    op.execute("CREATE SEQUENCE calendar_version_seq START 2")
    op.execute(
        """
        CREATE FUNCTION calendar_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE calendar_settings SET version = nextval('calendar_version_seq') WHERE id = 1;
            RETURN NULL;
        END $$
        """
    )
    for table in VERSIONED:
        op.execute(
            f"CREATE TRIGGER {table}_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION calendar_bump_version()"
        )
    op.execute("INSERT INTO calendar_settings (id) VALUES (1)")
    op.execute(
        "INSERT INTO calendar_office_hours (position, starts, ends) VALUES "
        "(1, '08:30', '12:00'), (2, '14:00', '17:30')"
    )
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {WEB_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE calendar_version_seq TO {WEB_ROLE}")

    from geogrid.cases.calendar import seed

    seed(op.get_bind())


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    op.execute("DROP FUNCTION IF EXISTS calendar_bump_version()")
    op.execute("DROP SEQUENCE IF EXISTS calendar_version_seq")
