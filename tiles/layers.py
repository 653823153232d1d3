"""The public tile layers: one commented, parameterised ``ST_AsMVT`` query per layer.

Every query follows the same pattern:

* ``bounds`` computes the tile envelope twice: ``tile`` in EPSG:3857 for ``ST_AsMVTGeom``,
  and ``area`` (with a 64/4096 margin) transformed to the table's SRID 4326, so the filter
  ``geom && bounds.area`` uses the GiST index on the stored geometry. SRIDs are integers
  (FIELD-NOTES: a text SRID is ~1,000× slower).
* Identifiers (tables, columns, layer names) are constants written here, never taken from
  a request; every request value (``z``, ``x``, ``y``, plan id, dates, categories) is bound.
* Polygons are simplified per zoom *topologically*: ``ST_SnapToGrid`` on one grid (half a
  tile pixel, in degrees) applied identically to every polygon, then ``ST_AsMVTGeom``
  quantises to the 4096 tile grid. Both steps map each vertex on its own, so a border
  vertex shared by two grids lands on the same point in both and shared borders stay
  shared (no slivers, no gaps) — what ``ST_CoverageSimplify`` (PostGIS 3.4) would give.
* No ``LIMIT``: nothing is ever cut silently. Cases are aggregated below street zoom
  (counts per heat bin, from the pre-computed pyramid) instead of being truncated.
* Personal columns (``households.head_name``, ``phone``, ``register_no``, addresses) are
  never selected: households reach tiles only as counts per group or village polygon.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiles import heat
from tiles.params import TIMEZONE, TZ, TileParams

EXTENT = 4096
BUFFER = 64
#: The tile margin of the index filter, as a fraction of the tile (BUFFER / EXTENT).
MARGIN = BUFFER / EXTENT
MAX_ZOOM = 22
#: From this zoom on, the cases layer sends one point per case (unless the tile is dense).
CASE_POINTS_MINZOOM = 15
#: A street-zoom tile with more cases than this sends counts per bin instead of points:
#: never a silent cap (TiPg truncates at 10,000), never a multi-megabyte tile.
CASE_POINTS_MAX = 2000
#: The finest zoom the heat pyramid has bins for (bins of level z + 4 ≤ 20).
CASE_BINS_MAXZOOM = 16

#: The tile envelope, in 3857 for ST_AsMVTGeom and in 4326 (the tables' SRID) for the index.
BOUNDS = """
    bounds AS (
        SELECT ST_TileEnvelope(:z, :x, :y) AS tile,
               ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326) AS area
    )"""

#: A stored polygon, snapped to the zoom's common grid, as tile coordinates.
POLY = "ST_AsMVTGeom(ST_Transform(ST_SnapToGrid({g}, :snap), 3857), b.tile, 4096, 64, true)"
#: A stored point as tile coordinates.
POINT = "ST_AsMVTGeom(ST_Transform({g}, 3857), b.tile, 4096, 64, true)"


def snap_degrees(z: int) -> float:
    """Half a tile pixel (of 4096) at zoom ``z``, in degrees: the common snapping grid.

    >>> round(snap_degrees(10) * 111_320, 2)  # metres at the equator
    4.78
    """
    return 360.0 / (2**z * EXTENT * 2)


# --------------------------------------------------------------------------- queries

TOWNS = f"""
-- towns: township boundaries with their official code and name
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'towns', 4096, 'geom') FROM (
    SELECT a.code, a.name, {POLY.format(g="a.geom")} AS geom
    FROM admin_areas a, bounds b
    WHERE a.level = 'town' AND a.geom && b.area
) t WHERE t.geom IS NOT NULL
"""

VILLAGES = f"""
-- villages: village (村/社区) boundaries with code, name and town code
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'villages', 4096, 'geom') FROM (
    SELECT a.code, a.name, a.parent_code AS town_code, {POLY.format(g="a.geom")} AS geom
    FROM admin_areas a, bounds b
    WHERE a.level = 'village' AND a.geom && b.area
) t WHERE t.geom IS NOT NULL
"""

GROUPS = f"""
-- groups: villager-group (村民小组) territories; groups without a polygon are not drawn
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'groups', 4096, 'geom') FROM (
    SELECT g.id, g.village_code, g.group_no, g.name, {POLY.format(g="g.geom")} AS geom
    FROM villager_groups g, bounds b
    WHERE g.geom && b.area
) t WHERE t.geom IS NOT NULL
"""

_GRIDS = f"""
-- grids: basic (level-3) grids of {{which}}, with public counts
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'grids', 4096, 'geom', 'id') FROM (
    SELECT g.id, g.code, g.name, g.village_code, g.households, g.population, g.plan_id,
           {POLY.format(g="g.geom")} AS geom
    FROM grids g, bounds b
    WHERE g.level = 3 AND g.geom && b.area AND {{plan_filter}}
) t WHERE t.geom IS NOT NULL
"""
GRIDS_ACTIVE = _GRIDS.format(
    which="every active plan",
    plan_filter="g.plan_id IN (SELECT p.id FROM plans p WHERE p.status = 'active')",
)
GRIDS_OF_PLAN = _GRIDS.format(
    which="plan :plan_id (any status)", plan_filter="g.plan_id = :plan_id"
)

HOUSEHOLDS = f"""
-- households: counts only, per villager-group territory, plus one per village for the
-- households whose group has no polygon; no point, name, phone or register number is read
WITH {BOUNDS},
units AS (
    SELECT 'group' AS unit, g.village_code, g.group_no, g.name, g.geom,
           c.households, c.population
    FROM villager_groups g
    CROSS JOIN bounds b
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS households, coalesce(sum(h.members), 0)::int AS population
        FROM households h WHERE h.group_id = g.id
    ) c
    WHERE g.geom && b.area
    UNION ALL
    SELECT 'village', v.code, NULL, v.name, v.geom, c.households, c.population
    FROM admin_areas v
    CROSS JOIN bounds b
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS households, coalesce(sum(h.members), 0)::int AS population
        FROM households h LEFT JOIN villager_groups g ON g.id = h.group_id
        WHERE h.village_code = v.code AND g.geom IS NULL
    ) c
    WHERE v.level = 'village' AND v.geom && b.area AND c.households > 0
)
SELECT ST_AsMVT(t, 'households', 4096, 'geom') FROM (
    SELECT u.unit, u.village_code, u.group_no, u.name, u.households, u.population,
           {POLY.format(g="u.geom")} AS geom
    FROM units u, bounds b
) t WHERE t.geom IS NOT NULL
"""

#: cases in the time window and, for a scoped user, inside the scope (a code prefix; the
#: scope is part of the tile's cache key)
_CASE_FILTER = (
    "c.reported_at >= :t0 AND c.reported_at < :t1 AND "
    "(:scope = '' OR coalesce(c.grid_code, c.village_code) LIKE :scope || '%')"
)
_CATEGORY = {False: "", True: "AND c.category = ANY(:categories)"}
#: Statuses whose step deadline runs (geogrid.cases.machine.TIMED_STATUSES).
_TIMED = (
    "c.status IN ('reported', 'accepted', 'verified', 'registered', 'dispatched', "
    "'in_progress', 'handled', 'checked', 'evaluated')"
)
#: A case is overdue when its step deadline passed (at the filter's time bucket).
_OVERDUE = f"coalesce({_TIMED} AND c.due_at < :overdue_at, false)"


def _states_sql(params: TileParams) -> tuple[str, dict[str, Any]]:
    """SQL (``AND …``) and values of the status and overdue filters."""
    f = params.states
    sql = ""
    values: dict[str, Any] = {"overdue_at": f.at(dt.datetime.now(dt.UTC))}
    if f.statuses is not None:
        sql += " AND c.status = ANY(:statuses)"
        values["statuses"] = list(f.statuses)
    if f.overdue is not None:
        sql += f" AND {'' if f.overdue else 'NOT '}{_OVERDUE}"
    return sql, values


#: The workflow fields of a case point (no personal data): overdue at the request's time.
_CASE_STATE_FIELDS = (
    f"{_OVERDUE} AS overdue, "
    "c.priority, c.current_grid_code, "
    f"to_char(c.due_at AT TIME ZONE '{TIMEZONE}', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+08:00\"') AS due_at"
)

_CASE_POINTS = f"""
-- cases at street zoom: one point per case with its public fields (window, categories bound)
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'cases', 4096, 'geom') FROM (
    SELECT c.case_no, c.category, c.status, {_CASE_STATE_FIELDS},
           to_char(c.reported_at AT TIME ZONE '{TIMEZONE}',
                   'YYYY-MM-DD"T"HH24:MI:SS"+08:00"') AS reported_at,
           c.village_code, c.grid_code, c.description,
           {POINT.format(g="c.geom")} AS geom
    FROM cases c, bounds b
    WHERE c.geom && b.area AND {_CASE_FILTER} {{category}} {{states}}
) t WHERE t.geom IS NOT NULL
"""

_CASE_ADAPTIVE = f"""
-- cases at street zoom (z15–z16): one point per case with its public fields, unless the
-- tile holds more than :cap cases; then the count per heat bin, as below street zoom
WITH {BOUNDS},
{{bins}},
dense AS (
    SELECT count(*) > :cap AS yes FROM (
        SELECT 1 FROM cases c, bounds b
        WHERE c.geom && b.area AND {_CASE_FILTER} {{category}} {{states}} LIMIT :cap + 1
    ) s
)
SELECT ST_AsMVT(t, 'cases', 4096, 'geom') FROM (
    SELECT NULL::bigint AS count, c.case_no, c.category, c.status, {_CASE_STATE_FIELDS},
           to_char(c.reported_at AT TIME ZONE '{TIMEZONE}',
                   'YYYY-MM-DD"T"HH24:MI:SS"+08:00"') AS reported_at,
           c.village_code, c.grid_code, c.description,
           {POINT.format(g="c.geom")} AS geom
    FROM cases c, bounds b, dense
    WHERE NOT dense.yes AND c.geom && b.area AND {_CASE_FILTER} {{category}} {{states}}
    UNION ALL
    SELECT bins.n, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           ST_AsMVTGeom(ST_Centroid(ST_TileEnvelope(:level, bins.bin_x, bins.bin_y)),
                        b.tile, 4096, 0, false)
    FROM bins, bounds b, dense WHERE dense.yes AND bins.n > 0
) t WHERE t.geom IS NOT NULL
"""

_CASE_CLUSTERS = f"""
-- cases below street zoom: the count of cases per heat bin (1/16 of the tile side), drawn
-- at the bin's centre; counts come from the pre-computed pyramid (see tiles.heat)
WITH {BOUNDS},
{{bins}}
SELECT ST_AsMVT(t, 'cases', 4096, 'geom') FROM (
    SELECT bins.n AS count,
           ST_AsMVTGeom(ST_Centroid(ST_TileEnvelope(:level, bins.bin_x, bins.bin_y)),
                        b.tile, 4096, 0, false) AS geom
    FROM bins, bounds b WHERE bins.n > 0
) t WHERE t.geom IS NOT NULL
"""

_HEAT = f"""
-- heat: pre-aggregated bins (16 × 16 per tile) as squares with their case count
WITH {BOUNDS},
{{bins}}
SELECT ST_AsMVT(t, 'heat', 4096, 'geom') FROM (
    SELECT bins.n,
           ST_AsMVTGeom(ST_TileEnvelope(:level, bins.bin_x, bins.bin_y),
                        b.tile, 4096, 0, false) AS geom
    FROM bins, bounds b WHERE bins.n > 0
) t WHERE t.geom IS NOT NULL
"""

KEY_UNITS = f"""
-- key_units: key units (重点单位) with type and risk level; the street address is left out
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'key_units', 4096, 'geom') FROM (
    SELECT k.unit_no, k.name, k.unit_type, k.risk_level, k.village_code, k.grid_code,
           {POINT.format(g="k.geom")} AS geom,
           -- filings past their due date on :today (the managers are never in a layer)
           (SELECT count(*) FROM key_unit_dues d
            WHERE d.unit_id = k.id AND d.due_date < :today)::int AS overdue_filings
    FROM key_units k, bounds b
    WHERE k.geom && b.area
) t WHERE t.geom IS NOT NULL
"""

INSPECTION_POINTS = f"""
-- inspection_points: fire inspection points with schedule and last inspection date
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'inspection_points', 4096, 'geom') FROM (
    SELECT p.point_no, p.name, p.schedule, to_char(p.last_inspected, 'YYYY-MM-DD')
           AS last_inspected, p.village_code, p.grid_code, {POINT.format(g="p.geom")} AS geom,
           to_char(p.next_due, 'YYYY-MM-DD') AS next_due,
           -- due state on :today (geogrid.fieldwork.inspections: due = within 7 days)
           CASE WHEN p.next_due IS NULL THEN 'unknown' WHEN p.next_due < :today THEN 'overdue'
                WHEN p.next_due <= :today + 7 THEN 'due' ELSE 'ok' END AS due_state
    FROM inspection_points p, bounds b
    WHERE p.geom && b.area
) t WHERE t.geom IS NOT NULL
"""

VISIT_COVERAGE = f"""
-- visit_coverage: per basic grid of the active plans, this quarter's household visit
-- coverage (geogrid.fieldwork.coverage; numbers only: 0025's counting function)
WITH {BOUNDS}
SELECT ST_AsMVT(t, 'visit_coverage', 4096, 'geom') FROM (
    SELECT g.code, g.name, g.village_code, c.households, c.visited,
           c.households - c.visited AS never_visited,
           round(c.visited::numeric / nullif(c.households, 0), 4)::float8 AS coverage,
           {POLY.format(g="g.geom")} AS geom
    FROM grids g, bounds b, LATERAL (
        SELECT (SELECT count(*) FROM households h WHERE h.scope_key = g.code)::int AS households,
               geogrid_area_visited(g.code, date_trunc('quarter', CAST(:today AS date))::date,
                                    :today) AS visited
    ) c
    WHERE g.level = 3 AND g.geom && b.area
      AND g.plan_id IN (SELECT p.id FROM plans p WHERE p.status = 'active')
) t WHERE t.geom IS NOT NULL
"""


# --------------------------------------------------------------------------- registry

Query = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Layer:
    """A public tile layer.

    Attributes
    ----------
    name
        Layer id (URL segment and MVT layer name).
    description
        One line for TileJSON.
    versions
        ``layer_versions`` rows whose change changes this layer's tiles (ETag, cache).
    fields
        Property name → TileJSON type (``String``/``Number``).
    build
        ``(z, params) -> (sql, extra bound values)``.
    uses
        Which query parameters change the content (``plan``, ``window``).
    """

    name: str
    description: str
    versions: tuple[str, ...]
    fields: Mapping[str, str]
    build: Callable[[int, TileParams], Query]
    minzoom: int = 0
    maxzoom: int = MAX_ZOOM
    uses: frozenset[str] = field(default_factory=frozenset)
    needs_heat: Callable[[int], bool] = lambda z: False

    def cache_params(self, params: TileParams) -> str:
        """The part of ``params`` that changes this layer's content, as text."""
        parts = []
        if "plan" in self.uses:
            parts.append(f"plan={params.plan or '*'}")
        if "window" in self.uses:
            parts.append(params.window.key())
        if "scope" in self.uses and params.scope:
            parts.append(f"scope={params.scope}")
        if "states" in self.uses:
            now = dt.datetime.now(dt.UTC)
            if params.states.active:
                parts.append(params.states.key(now))
            if self.name == "cases":  # points say whether they are overdue at that time
                parts.append(f"at={params.states.at(now).isoformat()}")
        if "day" in self.uses:  # due states change at local midnight
            parts.append(f"day={local_day()}")
        return ";".join(parts)


def local_day() -> dt.date:
    """Today in the tiles' time zone (the day due states are judged on)."""
    return dt.datetime.now(TZ).date()


def _dated(sql: str) -> Callable[[int, TileParams], Query]:
    def build(z: int, params: TileParams) -> Query:
        return sql, {"today": local_day()}

    return build


def _static(sql: str) -> Callable[[int, TileParams], Query]:
    def build(z: int, params: TileParams) -> Query:
        return sql, {}

    return build


def _grids(z: int, params: TileParams) -> Query:
    if params.plan is not None:
        return GRIDS_OF_PLAN, {"plan_id": params.plan}
    return GRIDS_ACTIVE, {}


def _window_values(params: TileParams) -> dict[str, Any]:
    w = params.window
    values: dict[str, Any] = {"t0": w.t0, "t1": w.t1, "scope": params.scope}
    if w.categories is not None:
        values["categories"] = list(w.categories)
    return values


def case_filter(params: TileParams) -> tuple[str, dict[str, Any]]:
    """The SQL condition on ``cases c`` of ``params`` (window, categories, scope, status,
    overdue) and its bound values: one definition for tiles, heat GeoJSON and statistics.

    >>> from tiles.params import CaseStates
    >>> sql, values = case_filter(TileParams(states=CaseStates.parse("closed", None)))
    >>> "c.status = ANY(:statuses)" in sql, values["statuses"]
    (True, ['closed'])
    """
    states, state_values = _states_sql(params)
    category = _CATEGORY[params.window.categories is not None]
    return f"{_CASE_FILTER} {category} {states}", {**_window_values(params), **state_values}


def _bins(z: int, params: TileParams) -> tuple[str, dict[str, Any]]:
    """The tile's bins: from the pyramid, or counted live under a status/overdue filter."""
    if not params.states.active:
        return heat.bins_sql(z, params.window, tile_params=True)
    where, where_values = case_filter(params)
    bins, values = heat.live_bins_sql(z, where)
    return bins, {**values, **where_values}


def _cases(z: int, params: TileParams) -> Query:
    has_cats = params.window.categories is not None
    states, state_values = _states_sql(params)
    if z > CASE_BINS_MAXZOOM:  # a tile of at most ~600 m: points
        sql = _CASE_POINTS.format(category=_CATEGORY[has_cats], states=states)
        return sql, {**_window_values(params), **state_values}
    bins, values = _bins(z, params)
    if z >= CASE_POINTS_MINZOOM:
        sql = _CASE_ADAPTIVE.format(bins=bins, category=_CATEGORY[has_cats], states=states)
        return sql, {**values, **_window_values(params), **state_values, "cap": CASE_POINTS_MAX}
    return _CASE_CLUSTERS.format(bins=bins), values


def _heat(z: int, params: TileParams) -> Query:
    bins, values = _bins(z, params)
    return _HEAT.format(bins=bins), values


_S, _N, _B = "String", "Number", "Boolean"

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer("towns", "Township boundaries", ("towns",), {"code": _S, "name": _S},
              _static(TOWNS)),
        Layer("villages", "Village boundaries", ("villages",),
              {"code": _S, "name": _S, "town_code": _S}, _static(VILLAGES)),
        Layer("groups", "Villager-group territories", ("groups",),
              {"id": _N, "village_code": _S, "group_no": _N, "name": _S}, _static(GROUPS)),
        Layer("grids", "Basic grids of the active plan (?plan=ID for another plan)",
              ("grids",),
              {"code": _S, "name": _S, "village_code": _S, "households": _N,
               "population": _N, "plan_id": _N},
              _grids, uses=frozenset({"plan"})),
        Layer("households", "Household counts per villager group (or village)",
              ("households", "groups", "villages"),
              {"unit": _S, "village_code": _S, "group_no": _N, "name": _S,
               "households": _N, "population": _N},
              _static(HOUSEHOLDS)),
        Layer("cases",
              f"Cases: counts per bin below z{CASE_POINTS_MINZOOM}, points from "
              f"z{CASE_POINTS_MINZOOM} (counts again where a tile has more than "
              f"{CASE_POINTS_MAX}) (?from=&to=&category=&status=&overdue=)",
              ("cases", "heat"),
              {"count": _N, "case_no": _S, "category": _S, "status": _S, "overdue": _B,
               "priority": _N, "current_grid_code": _S, "due_at": _S, "reported_at": _S,
               "village_code": _S, "grid_code": _S, "description": _S},
              _cases, uses=frozenset({"window", "scope", "states"}),
              needs_heat=lambda z: z <= CASE_BINS_MAXZOOM),
        Layer("key_units", "Key units (重点单位)", ("key_units",),
              {"unit_no": _S, "name": _S, "unit_type": _S, "risk_level": _N,
               "village_code": _S, "grid_code": _S, "overdue_filings": _N},
              _dated(KEY_UNITS), uses=frozenset({"day"})),
        Layer("inspection_points", "Fire inspection points (due_state: overdue, due, ok, "
              "unknown)", ("inspection_points",),
              {"point_no": _S, "name": _S, "schedule": _S, "last_inspected": _S,
               "village_code": _S, "grid_code": _S, "next_due": _S, "due_state": _S},
              _dated(INSPECTION_POINTS), uses=frozenset({"day"})),
        Layer("visit_coverage", "Visit coverage per grid this quarter (numbers only)",
              ("visit_coverage", "households", "grids"),
              {"code": _S, "name": _S, "village_code": _S, "households": _N, "visited": _N,
               "never_visited": _N, "coverage": _N},
              _dated(VISIT_COVERAGE), uses=frozenset({"day"})),
        Layer("heat", "Case heat map: counts per bin (?from=&to=&category=&status=&overdue=)",
              ("heat", "cases"),
              {"n": _N}, _heat, maxzoom=heat.MAX_ZOOM, uses=frozenset({"window", "states"}),
              needs_heat=lambda z: True),
    )
}  # fmt: skip


def tile_query(layer: Layer, z: int, x: int, y: int, params: TileParams) -> Query:
    """The SQL and all bound values for one tile of ``layer``.

    >>> sql, values = tile_query(LAYERS["towns"], 3, 6, 3, TileParams())
    >>> "ST_AsMVT" in sql and values["z"] == 3
    True
    """
    sql, extra = layer.build(z, params)
    values: dict[str, Any] = {
        "z": z, "x": x, "y": y, "margin": MARGIN, "snap": snap_degrees(z), **extra,
    }  # fmt: skip
    return sql, values


def valid_tile(z: int, x: int, y: int) -> bool:
    """Whether ``z/x/y`` names a tile of the XYZ scheme (``0 ≤ z ≤ 22``).

    >>> valid_tile(1, 1, 1), valid_tile(1, 2, 0), valid_tile(23, 0, 0)
    (True, False, False)
    """
    return 0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a WGS84 point at zoom ``z`` (clamped to the valid range).

    >>> lonlat_to_tile(114.3, 30.4, 10)
    (837, 421)
    """
    n = 2**z
    lat = max(min(lat, 85.0511), -85.0511)
    x = int((lon + 180.0) / 360.0 * n)
    r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)
