"""Heat-map pyramid of cases: daily bins at street zooms, cumulative day arrays above.

Bins are Web-Mercator tiles: a bin of *level* ``s`` is the XYZ tile ``(s, bin_x, bin_y)``,
and a heat tile at zoom ``z`` is drawn from the 16 × 16 bins of level ``z + 4`` it holds
(``tile_x = bin_x >> 4``, ``tile_y = bin_y >> 4``, the key every query uses).

* ``heat_daily`` — cases per (bin, category, local day) at levels 17–20 (tiles z13–z16);
  level 20 is also the base the coarser levels are computed from.
* ``heat_cum`` — levels 4–16 (tiles z0–z12): one row per (bin, category, year) whose
  ``cum`` holds 366 big-endian int4 running totals (``cum[d]`` = cases from 1 January to
  day-of-year ``d``), so any day window costs two array reads per row, whatever its length.
* ``heat_dirty`` — (day, category) pairs whose cases changed since the last refresh,
  marked by statement triggers on ``cases`` (transition tables); ``tiles.heat.refresh_heat``
  recomputes only those days and the bins they touch.

Days are local days in Asia/Shanghai (China has one civil time zone).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEAT_TIMEZONE = "Asia/Shanghai"


def upgrade() -> None:
    op.create_table(
        "heat_daily",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("tile_x", sa.Integer(), nullable=False),
        sa.Column("tile_y", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("bin_x", sa.Integer(), nullable=False),
        sa.Column("bin_y", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("level", "tile_x", "tile_y", "day", "category", "bin_x", "bin_y",
                                name=op.f("pk_heat_daily")),
    )  # fmt: skip
    op.create_index("ix_heat_daily_category_day", "heat_daily", ["category", "day"])
    op.create_table(
        "heat_cum",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("tile_x", sa.Integer(), nullable=False),
        sa.Column("tile_y", sa.Integer(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("bin_x", sa.Integer(), nullable=False),
        sa.Column("bin_y", sa.Integer(), nullable=False),
        sa.Column("cum", sa.LargeBinary(), nullable=False,
                  comment="366 big-endian int4 running totals by day of year"),
        sa.PrimaryKeyConstraint("level", "tile_x", "tile_y", "category", "year", "bin_x",
                                "bin_y", name=op.f("pk_heat_cum")),
    )  # fmt: skip
    op.create_table(
        "heat_dirty",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("day", "category", name=op.f("pk_heat_dirty")),
    )

    # i-th running total (1-based day of year; 0 before 1 January) of a ``cum`` value.
    # Not STRICT, so the planner inlines it: ~10x faster over a tile's 2,000 rows.
    op.execute(
        """
        CREATE FUNCTION geogrid_heat_at(cum bytea, i integer) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT CASE WHEN i < 1 THEN 0 ELSE
                (get_byte(cum, 4 * i - 4) << 24) | (get_byte(cum, 4 * i - 3) << 16)
                | (get_byte(cum, 4 * i - 2) << 8) | get_byte(cum, 4 * i - 1) END
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION geogrid_heat_mark_dirty() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                INSERT INTO heat_dirty (day, category)
                SELECT DISTINCT day, category FROM heat_daily WHERE level = 20
                ON CONFLICT DO NOTHING;
            ELSIF TG_OP = 'INSERT' THEN
                INSERT INTO heat_dirty (day, category)
                SELECT DISTINCT (reported_at AT TIME ZONE '{HEAT_TIMEZONE}')::date, category
                FROM new_rows
                ON CONFLICT DO NOTHING;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO heat_dirty (day, category)
                SELECT DISTINCT (reported_at AT TIME ZONE '{HEAT_TIMEZONE}')::date, category
                FROM old_rows
                ON CONFLICT DO NOTHING;
            ELSE  -- UPDATE: only rows whose place, time or category changed
                INSERT INTO heat_dirty (day, category)
                SELECT DISTINCT (r.reported_at AT TIME ZONE '{HEAT_TIMEZONE}')::date, r.category
                FROM new_rows n JOIN old_rows o USING (id)
                CROSS JOIN LATERAL (VALUES (n.reported_at, n.category),
                                           (o.reported_at, o.category)) r (reported_at, category)
                WHERE (n.category, n.reported_at) IS DISTINCT FROM (o.category, o.reported_at)
                   OR NOT ST_Equals(n.geom, o.geom)
                ON CONFLICT DO NOTHING;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER trg_cases_heat_insert AFTER INSERT ON cases "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION geogrid_heat_mark_dirty()"
    )
    op.execute(
        "CREATE TRIGGER trg_cases_heat_update AFTER UPDATE ON cases "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION geogrid_heat_mark_dirty()"
    )
    op.execute(
        "CREATE TRIGGER trg_cases_heat_delete AFTER DELETE ON cases "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION geogrid_heat_mark_dirty()"
    )
    op.execute(
        "CREATE TRIGGER trg_cases_heat_truncate BEFORE TRUNCATE ON cases "
        "FOR EACH STATEMENT EXECUTE FUNCTION geogrid_heat_mark_dirty()"
    )

    # the heat layer has its own data version (bumped when the pyramid is refreshed)
    op.execute("INSERT INTO layer_versions (layer) VALUES ('heat') ON CONFLICT DO NOTHING")
    for table in ("heat_daily", "heat_cum"):
        op.execute(
            f"CREATE TRIGGER trg_{table}_layer_version AFTER INSERT OR UPDATE OR DELETE "
            f"OR TRUNCATE ON {table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION geogrid_bump_layer_version('heat')"
        )


def downgrade() -> None:
    for name in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS trg_cases_heat_{name} ON cases")
    op.execute("DROP FUNCTION IF EXISTS geogrid_heat_mark_dirty()")
    op.execute("DROP FUNCTION IF EXISTS geogrid_heat_at(bytea, integer)")
    for table in ("heat_dirty", "heat_cum", "heat_daily"):
        op.drop_table(table)
    op.execute("DELETE FROM layer_versions WHERE layer = 'heat'")
