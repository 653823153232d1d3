"""Field work: kept per-area figures for county-wide visit lists; inspection due dates in SQL.

* ``visit_list_cache``: per-area figures of the visit lists that a county cannot afford to
  recompute on every call — households never visited at all (``ever``), households due now
  per plan-window end (``due``, keyed by the day), visits and households visited per
  worker in a period (``workers``). Stamped, like ``visit_coverage_cache`` (0018), with the
  area's and the global version of ``visit_area_state``; a stale area is recomputed alone
  (:mod:`geogrid.fieldwork.coverage_cache`). The figures are numbers only (``jsonb``).
* ``geogrid_inspection_due(schedule, basis)``: the next due day of an inspection point, as
  :func:`geogrid.fieldwork.inspections.next_due` computes it (the basis plus 7 days or whole
  months clipped to the month's end, rolled forward to the next working day of the working
  calendar; ``NULL`` when a year on the way is not declared), and a ``BEFORE INSERT OR
  UPDATE`` row trigger that fills ``next_due`` with it — so points loaded by an import are
  due (or overdue) on the map and in the lists at once, not ``unknown`` until the first
  inspections call. A year the calendar lacks leaves the point to
  :func:`~geogrid.fieldwork.inspections.refresh_points` (which names the year).
* ``geogrid_area_visited(area, d0, d1)``: how many households of an area (grid, or village
  without grid) have a visit dated ``d0``–``d1`` — a number only, so it runs with the
  whole store in view (``SECURITY DEFINER``, ``geogrid.scope = '*'`` for the call) and
  serves the public visit-coverage layer (OGC API collection and vector tiles) for
  anonymous readers of a published layer too. The layer's version (``layer_versions``
  row ``visit_coverage``) is raised by statement triggers on ``visits``.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
LISTS = ("ever", "due", "workers")

DUE_FUNCTION = """
CREATE FUNCTION geogrid_inspection_due(schedule text, basis date) RETURNS date
LANGUAGE plpgsql STABLE AS $$
DECLARE
    d date;
    kind text;
BEGIN
    IF basis IS NULL THEN
        RETURN NULL;
    END IF;
    d := CASE schedule
        WHEN 'weekly' THEN basis + 7
        WHEN 'monthly' THEN (basis + interval '1 month')::date
        WHEN 'quarterly' THEN (basis + interval '3 months')::date
        WHEN 'halfyearly' THEN (basis + interval '6 months')::date
        WHEN 'yearly' THEN (basis + interval '12 months')::date
    END;
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    -- roll forward to a working day; a year the calendar does not know stops it
    FOR i IN 0..400 LOOP
        IF NOT EXISTS (SELECT 1 FROM calendar_years y
                       WHERE y.year = extract(year FROM d)::int) THEN
            RETURN NULL;
        END IF;
        SELECT c.kind INTO kind FROM calendar_days c WHERE c.day = d;
        IF kind = 'workday' OR (kind IS NULL AND extract(isodow FROM d) < 6) THEN
            RETURN d;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN NULL;
END $$
"""

DUE_TRIGGER_FUNCTION = """
CREATE FUNCTION geogrid_inspection_point_due() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    basis date := coalesce(NEW.last_inspected, NEW.registered_on);
    due date;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.due_basis IS NOT DISTINCT FROM basis
       AND NEW.due_schedule IS NOT DISTINCT FROM NEW.schedule THEN
        RETURN NEW;  -- computed for these inputs already
    END IF;
    due := geogrid_inspection_due(NEW.schedule, basis);
    IF due IS NULL THEN  -- an undeclared year: refresh_points says which
        NEW.next_due := NULL;
        NEW.due_cal := NULL;
        NEW.due_basis := NULL;
        NEW.due_schedule := NULL;
    ELSE
        NEW.next_due := due;
        NEW.due_problem := NULL;
        NEW.due_cal := (SELECT s.version FROM calendar_settings s WHERE s.id = 1);
        NEW.due_basis := basis;
        NEW.due_schedule := NEW.schedule;
    END IF;
    RETURN NEW;
END $$
"""


AREA_VISITED = """
CREATE FUNCTION geogrid_area_visited(area text, d0 date, d1 date) RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER
SET geogrid.scope = '*' SET search_path = public, pg_temp AS $$
    -- each household's visits looked up by index (a per-row scalar sub-query)
    SELECT count(*)::int FROM households h WHERE h.scope_key = area
       AND (SELECT v.id FROM visits v WHERE v.household_id = h.id
            AND v.visited_on BETWEEN d0 AND d1 LIMIT 1) IS NOT NULL
$$
"""
#: Statement triggers raising the coverage layer's version (0005's functions).
LAYER_TRIGGERS = {
    "insert": "AFTER INSERT ON visits REFERENCING NEW TABLE AS changed_rows",
    "update": "AFTER UPDATE ON visits REFERENCING NEW TABLE AS changed_rows",
    "delete": "AFTER DELETE ON visits REFERENCING OLD TABLE AS changed_rows",
}


def upgrade() -> None:
    op.create_table(
        "visit_list_cache",
        sa.Column("area", sa.Text(), nullable=False),
        sa.Column("list", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False, server_default="",
                  comment="the list's argument: '' (ever), a day (due), a period (workers)"),
        sa.Column("special", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("global_version", sa.BigInteger(), nullable=False),
        sa.Column("figures", JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("area", "list", "key", "special",
                                name=op.f("pk_visit_list_cache")),
        sa.CheckConstraint(f"list IN {LISTS!r}", name=op.f("ck_visit_list_cache_list")),
    )  # fmt: skip
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON visit_list_cache TO {WEB_ROLE}")
    op.execute(DUE_FUNCTION)
    op.execute(DUE_TRIGGER_FUNCTION)
    op.execute(
        "CREATE TRIGGER inspection_points_due BEFORE INSERT OR UPDATE OF schedule, "
        "last_inspected, registered_on ON inspection_points FOR EACH ROW "
        "EXECUTE FUNCTION geogrid_inspection_point_due()"
    )
    op.execute(AREA_VISITED)
    op.execute(f"GRANT EXECUTE ON FUNCTION geogrid_area_visited(text, date, date) TO {WEB_ROLE}")
    op.execute(
        "INSERT INTO layer_versions (layer, version) VALUES ('visit_coverage', 1) "
        "ON CONFLICT (layer) DO NOTHING"
    )
    for event, when in LAYER_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER trg_visits_layer_version_{event} {when} FOR EACH STATEMENT "
            "EXECUTE FUNCTION geogrid_bump_layer_version_if_changed('visit_coverage')"
        )
    # points already loaded (by an import before this revision) get their due day now
    op.execute(
        "UPDATE inspection_points SET registered_on = registered_on "
        "WHERE next_due IS NULL AND due_problem IS NULL"
    )


def downgrade() -> None:
    for event in LAYER_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_visits_layer_version_{event} ON visits")
    op.execute("DELETE FROM layer_versions WHERE layer = 'visit_coverage'")
    op.execute("DROP FUNCTION IF EXISTS geogrid_area_visited(text, date, date)")
    op.execute("DROP TRIGGER IF EXISTS inspection_points_due ON inspection_points")
    op.execute("DROP FUNCTION IF EXISTS geogrid_inspection_point_due()")
    op.execute("DROP FUNCTION IF EXISTS geogrid_inspection_due(text, date)")
    op.drop_table("visit_list_cache")
