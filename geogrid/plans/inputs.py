"""Load a town's partition inputs from the database."""

from __future__ import annotations

import logging
from typing import Any

import geopandas as gpd
from sqlalchemy import Connection, text

from geogrid.errors import (
    InvalidInput,
    NotFound,
)
from geogrid.plans.common import _frame

log = logging.getLogger(__name__)


def _town(conn: Connection, town_code: str) -> tuple[str, Any]:
    row = conn.execute(
        text(
            "SELECT name, ST_AsBinary(geom) FROM admin_areas WHERE code = :code AND level = 'town'"
        ),
        {"code": town_code},
    ).first()
    if row is None:
        raise NotFound(
            f"town {town_code} does not exist; import its boundary first "
            "(geogrid import boundaries ... --level town).",
            detail={"town_code": town_code},
        )
    return str(row[0]), row[1]


def load_inputs(
    conn: Connection, town_code: str
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame, dict[str, Any]]:
    """Read a town's households, villages and supplied group polygons for the partitioner.

    Parameters
    ----------
    conn
        An open connection.
    town_code
        12-digit code of the town.

    Returns
    -------
    households : GeoDataFrame
        ``register_no, village_code, group_no, population`` (= members) and a Point per
        household, EPSG:4326. Failed geocodes are placed by the policy in the module
        docstring; households without a group are left out.
    villages : GeoDataFrame
        ``code, name`` and polygon of every village of the town.
    groups : GeoDataFrame
        ``village_code, group_no`` and polygon of every group whose territory was supplied.
    inputs : dict
        What was loaded: ``households``, ``placed_failed_geocodes``, ``without_group`` and
        ``without_group_register_nos`` (register numbers, by village).

    Raises
    ------
    NotFound
        The town does not exist.
    InvalidInput
        The town has no villages, or a village has no boundary.
    """
    _town(conn, town_code)
    vrows = conn.execute(
        text(
            "SELECT code, name, ST_AsBinary(geom) AS wkb FROM admin_areas "
            "WHERE level = 'village' AND parent_code = :town ORDER BY code"
        ),
        {"town": town_code},
    ).all()
    if not vrows:
        raise InvalidInput(
            f"town {town_code} has no villages; import the village boundaries first.",
            detail={"town_code": town_code},
        )
    missing = [r[0] for r in vrows if r[2] is None]
    if missing:
        raise InvalidInput(
            f"villages without a boundary in town {town_code}: {', '.join(missing[:10])}; "
            "import their polygons first.",
            detail={"village_codes": missing},
        )
    villages = _frame(vrows, ["code", "name", "wkb"])

    # One query: every grouped household of the town, failed geocodes placed at a
    # stand-in point (see the module docstring for the order of preference).
    hrows = conn.execute(
        text(
            """
            WITH v AS (
                SELECT code, geom FROM admin_areas
                WHERE level = 'village' AND parent_code = :town
            ),
            anchor AS (  -- per group: the member household nearest the members' centroid
                SELECT h.group_id,
                       ST_ClosestPoint(ST_Collect(h.geom), ST_Centroid(ST_Collect(h.geom))) AS pt
                FROM households h JOIN v ON v.code = h.village_code
                WHERE h.geom IS NOT NULL AND h.group_id IS NOT NULL
                GROUP BY h.group_id
            )
            SELECT h.register_no, h.village_code, g.group_no, h.members AS population,
                   (h.geom IS NULL) AS placed,
                   ST_AsBinary(COALESCE(
                       h.geom,
                       CASE WHEN g.territory_source = 'supplied'
                            THEN ST_PointOnSurface(g.geom) END,
                       a.pt,
                       ST_PointOnSurface(g.geom),
                       ST_PointOnSurface(v.geom)
                   )) AS wkb
            FROM households h
            JOIN v ON v.code = h.village_code
            JOIN villager_groups g ON g.id = h.group_id
            LEFT JOIN anchor a ON a.group_id = h.group_id
            ORDER BY h.village_code, h.register_no
            """
        ),
        {"town": town_code},
    ).all()
    households = _frame(
        hrows,
        ["register_no", "village_code", "group_no", "population", "placed", "wkb"],
    )
    placed = int(households["placed"].sum()) if len(households) else 0
    households = households.drop(columns="placed")
    ungrouped = conn.execute(
        text(
            "SELECT h.village_code, h.register_no FROM households h "
            "JOIN admin_areas v ON v.code = h.village_code "
            "WHERE v.level = 'village' AND v.parent_code = :town AND h.group_id IS NULL "
            "ORDER BY 1, 2"
        ),
        {"town": town_code},
    ).all()
    if ungrouped:
        log.warning(
            "town %s: %d households have no villager group and are left out of the partition",
            town_code,
            len(ungrouped),
        )
    grows = conn.execute(
        text(
            "SELECT g.village_code, g.group_no, ST_AsBinary(g.geom) AS wkb "
            "FROM villager_groups g JOIN admin_areas v ON v.code = g.village_code "
            "WHERE v.level = 'village' AND v.parent_code = :town "
            "AND g.territory_source = 'supplied' AND g.geom IS NOT NULL "
            "ORDER BY 1, 2"
        ),
        {"town": town_code},
    ).all()
    groups = _frame(grows, ["village_code", "group_no", "wkb"])
    inputs = {
        "households": len(households),
        "placed_failed_geocodes": placed,
        "without_group": len(ungrouped),
        "without_group_register_nos": [[str(v), str(r)] for v, r in ungrouped],
        "supplied_group_polygons": len(groups),
        "failed_geocode_policy": (
            "kept in their group, placed at a point on the supplied group polygon, else "
            "the member household nearest the group centroid, else a point on the derived "
            "group polygon, else a point on the village"
        ),
    }
    return households, villages, groups, inputs
