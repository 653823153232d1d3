"""Households follow the active plan: ``households.grid_code`` is the basic grid of the
town's active plan that holds the household's villager group (or, for a group split
between grids and for households without a group, the grid containing its point).

The code is what scope filters and row-level security match on (see
:mod:`geogrid.access.scope`); it is kept in step in the activation's transaction and after
each register import.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

_ASSIGN = """
WITH active AS (
    SELECT p.id FROM plans p
    WHERE p.status = 'active' AND (CAST(:town AS text) IS NULL OR p.town_code = :town)
),
hh AS (
    SELECT h.id, h.group_id, h.geom, h.grid_code AS old_code FROM households h
    WHERE CAST(:town AS text) IS NULL OR h.village_code IN (
        SELECT code FROM admin_areas WHERE parent_code = :town)
),
placed AS (
    SELECT hh.id, hh.old_code, coalesce(
        (SELECT g.code FROM grid_groups gg JOIN grids g ON g.id = gg.grid_id
         WHERE gg.plan_id IN (SELECT id FROM active) AND gg.group_id = hh.group_id
           AND gg.part IS NULL LIMIT 1),
        (SELECT g.code FROM grids g
         WHERE g.plan_id IN (SELECT id FROM active) AND g.level = 3
           AND hh.geom IS NOT NULL AND g.geom && hh.geom AND ST_Covers(g.geom, hh.geom)
         ORDER BY g.code LIMIT 1)
    ) AS code
    FROM hh
)
UPDATE households h SET grid_code = placed.code, updated_at = now()
FROM placed
WHERE h.id = placed.id AND placed.old_code IS DISTINCT FROM placed.code
"""


def assign_household_grids(conn: Connection, *, town_code: str | None = None) -> int:
    """Set every household's grid code from its town's active plan; returns rows changed.

    Parameters
    ----------
    conn
        A connection in a transaction (the activation's, or an import's).
    town_code
        The 12-digit town code, or ``None`` for every town.
    """
    return int(conn.execute(text(_ASSIGN), {"town": town_code}).rowcount or 0)
