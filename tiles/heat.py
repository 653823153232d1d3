"""Case heat maps: a pre-computed multi-resolution pyramid, refreshed incrementally.

Design
------
A *bin* of level ``s`` is the Web-Mercator XYZ tile ``(s, bin_x, bin_y)``. A heat tile at
zoom ``z`` shows the 16 × 16 bins of level ``z + 4`` inside it (16 screen pixels each on a
256-pixel tile), so bins nest exactly: a bin's parent is ``(bin_x >> 1, bin_y >> 1)``, a
tile's bins are those with ``bin_x >> 4 = x`` and ``bin_y >> 4 = y`` (stored as
``tile_x``/``tile_y``: the leading key of every index).

Two storage bands keep every tile query bounded by the *number of bins in the tile*
(at most 256 × categories × years rows at z0–z14), never by the number of cases:

* z0–z14 (levels 4–18): ``heat_cum``, one row per (bin, category, year) holding 366
  running day totals; a window ``[from, to]`` is ``cum[to] - cum[from - 1]``, two array
  reads per row however long the window (SQL ``geogrid_heat_at``).
* z15–z16 (levels 19–20): ``heat_daily``, one row per (level-20 bin, category, local day)
  with a count — the *base* every coarser level is computed from. At ~35 m a base bin
  seldom holds two cases of one category on one day, so a daily level would be as large
  as the cases table: a z15 tile sums the base rows of its four z16 tiles instead (a
  street tile holds a few thousand cases at most, and no level is stored twice).
* Deeper zooms have no heat bins: the cases layer sends the points themselves there.

Running totals stop at level 18 because below it they stop paying: level 18 has ~132,000
(bin, category, year) rows for 1,000,000 cases (1.5 kB each), level 19 would have ~300,000.

Refresh
-------
Statement triggers on ``cases`` (transition tables, migration 0004) record each changed
(local day, category) in ``heat_dirty``. :func:`refresh_heat` takes those pairs, recounts
just those days at the base level from ``cases`` (index on ``(category, reported_at)``),
and adds each base bin's change (new count minus old) to the running totals of the bins
holding it at every level (numpy: ``bincount`` then ``cumsum`` of the changes, written back
with one binary ``COPY`` per category and year): a one-case change rewrites ~15 rows in
~0.1 s on a 1,000,000-case pyramid. Nothing else is rewritten. A full rebuild computes the
running totals from the whole base the same way (~10 s for 1,000,000 cases). The
tile service calls it before serving heat when ``heat_dirty`` is not empty (a one-row
poll), under a transaction advisory lock so that one process refreshes at a time; scripts
may call it after a bulk load (``full=True`` rebuilds everything).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput
from tiles.params import TIMEZONE, Window

log = logging.getLogger(__name__)

#: Bins per tile side = 2**BIN_SHIFT.
BIN_SHIFT = 4
#: Level of the base counts (bins of z16 tiles, ~30–40 m).
BASE_LEVEL = 20
#: Levels summed from the base's daily rows; coarser ones come from heat_cum.
DAILY_LEVELS = (19, 20)
#: Levels kept as running totals (tiles z0–z14).
CUM_LEVELS = tuple(range(BIN_SHIFT, DAILY_LEVELS[0]))
#: Highest heat tile zoom (bins of level 20, ~35 m).
MAX_ZOOM = 16
DAYS = 366
#: Half the Web-Mercator world width in metres.
HALF = 20037508.342789244
#: pg_advisory_xact_lock key of the refresher ("heat" in ASCII).
LOCK_KEY = 0x68656174

_DAY_START = f"(d.day::timestamp AT TIME ZONE '{TIMEZONE}')"
_DAY_END = f"((d.day + 1)::timestamp AT TIME ZONE '{TIMEZONE}')"
#: Cases of the dirty days (index on category, reported_at) or, for a rebuild, all cases.
_CASES_OF_DAYS = f"""heat_refresh_days d
            JOIN cases c ON c.category = d.category
                        AND c.reported_at >= {_DAY_START} AND c.reported_at < {_DAY_END}"""
_CASES_ALL = f"""cases c
            CROSS JOIN LATERAL (SELECT (c.reported_at AT TIME ZONE '{TIMEZONE}')::date AS day) d"""


def level_of(z: int) -> int:
    """Bin level of a heat tile at zoom ``z``.

    >>> level_of(10)
    14
    """
    return z + BIN_SHIFT


# --------------------------------------------------------------------------- queries


def bins_sql(z: int, window: Window, *, tile_params: bool) -> tuple[str, dict[str, Any]]:
    """A ``bins (bin_x, bin_y, n)`` CTE for zoom ``z`` summed over ``window``.

    Parameters
    ----------
    z
        Tile zoom; the bins are of level ``z + 4``.
    window
        Days and categories to count.
    tile_params
        True: one tile, bound as ``:x``/``:y`` (the tile queries). False: bin ranges
        ``:bx0..:bx1``, ``:by0..:by1`` (the GeoJSON API).

    Returns
    -------
    The CTE text (no leading ``WITH``) and its bound values besides ``x``/``y``/ranges.
    """
    level = level_of(z)
    cats = window.categories is not None
    values: dict[str, Any] = {"level": level}
    if cats:
        values["categories"] = list(window.categories or ())
    cat = "AND h.category = ANY(:categories)" if cats else ""
    if level in CUM_LEVELS:
        if tile_params:
            tiles = "h.tile_x = :x AND h.tile_y = :y"
        else:
            tiles = (
                f"h.tile_x BETWEEN (:bx0 >> {BIN_SHIFT}) AND (:bx1 >> {BIN_SHIFT}) "
                f"AND h.tile_y BETWEEN (:by0 >> {BIN_SHIFT}) AND (:by1 >> {BIN_SHIFT}) "
                "AND h.bin_x BETWEEN :bx0 AND :bx1 AND h.bin_y BETWEEN :by0 AND :by1"
            )
        values.update(
            y0=window.start.year, y1=window.end.year,
            d0=window.start.timetuple().tm_yday, d1=window.end.timetuple().tm_yday,
        )  # fmt: skip
        return (
            f"""
    -- running totals: cases to the window's end minus cases before its start, per year
    bins AS (
        SELECT h.bin_x, h.bin_y,
               sum(geogrid_heat_at(h.cum, CASE WHEN h.year < :y1 THEN 366 ELSE :d1 END)
                   - geogrid_heat_at(h.cum, CASE WHEN h.year > :y0 THEN 0 ELSE :d0 - 1 END)
               )::int AS n
        FROM heat_cum h
        WHERE h.level = :level AND {tiles} AND h.year BETWEEN :y0 AND :y1 {cat}
        GROUP BY h.bin_x, h.bin_y
    )""",
            values,
        )
    if level in DAILY_LEVELS:
        # base rows (level 20) of the tile's base tiles, regrouped into this level's bins
        shift = BASE_LEVEL - level
        values.update(d_start=window.start, d_end=window.end, base=BASE_LEVEL)
        if tile_params:
            tiles = (
                f"h.tile_x IN ({_children('x', shift)}) AND h.tile_y IN ({_children('y', shift)})"
            )
        else:
            first = "(CAST(:b{v}0 AS int) << {s})"
            last = "(((CAST(:b{v}1 AS int) + 1) << {s}) - 1)"
            tiles = " AND ".join(
                f"h.tile_{{v}} BETWEEN ({first} >> {BIN_SHIFT}) AND ({last} >> {BIN_SHIFT}) "
                f"AND h.bin_{{v}} BETWEEN {first} AND {last}".format(v=v, s=shift)
                for v in ("x", "y")
            )
        return (
            f"""
    -- daily counts of the window's days, from the base level
    bins AS (
        SELECT h.bin_x >> {shift} AS bin_x, h.bin_y >> {shift} AS bin_y, sum(h.n)::int AS n
        FROM heat_daily h
        WHERE h.level = :base AND {tiles} AND h.day BETWEEN :d_start AND :d_end {cat}
        GROUP BY 1, 2
    )""",
            values,
        )
    raise ValueError(f"no heat bins at zoom {z} (0–{MAX_ZOOM})")


def live_bins_sql(
    z: int, case_filter: str, *, tile_params: bool = True
) -> tuple[str, dict[str, Any]]:
    """A ``bins (bin_x, bin_y, n)`` CTE counted from the cases themselves.

    For filters the pyramid does not keep (workflow status, overdue): ``case_filter`` is an
    SQL condition on ``cases c``. With ``tile_params`` the bins of one tile (``:x``/``:y``;
    the ``bounds`` CTE of :mod:`tiles.layers` must precede), else the bin ranges
    ``:bx0..:bx1``, ``:by0..:by1`` of the GeoJSON API: the same bins the pyramid answers
    with, so a filtered and an unfiltered answer cover the same ground. Open cases are few,
    so counting them live stays cheap; a filter matching most of a large store costs what
    on-the-fly aggregation costs (FIELD-NOTES). The pyramid itself is never touched.
    """
    level = level_of(z)
    size = 2 * HALF / 2**level
    if tile_params:
        area = "bounds b"
        where = f"c.geom && b.area AND k.bin_x >> {BIN_SHIFT} = :x AND k.bin_y >> {BIN_SHIFT} = :y"
    else:
        # the bins' Web-Mercator rectangle in the table's SRID (index-friendly), then the
        # exact bin ranges
        area = f"""(SELECT ST_Transform(ST_MakeEnvelope(
                    CAST(:bx0 AS float8) * {size!r} - {HALF},
                    {HALF} - (CAST(:by1 AS float8) + 1) * {size!r},
                    (CAST(:bx1 AS float8) + 1) * {size!r} - {HALF},
                    {HALF} - CAST(:by0 AS float8) * {size!r}, 3857), 4326) AS area) b"""
        where = (
            "c.geom && b.area AND k.bin_x BETWEEN :bx0 AND :bx1 AND k.bin_y BETWEEN :by0 AND :by1"
        )
    return (
        f"""
    -- live counts: the cases matching the filter, binned as the pyramid bins them
    bins AS (
        SELECT k.bin_x, k.bin_y, count(*)::int AS n
        FROM cases c, {area}, LATERAL (SELECT ST_Transform(c.geom, 3857) AS m) p,
             LATERAL (SELECT floor((ST_X(p.m) + {HALF}) / {size!r})::int AS bin_x,
                             floor(({HALF} - ST_Y(p.m)) / {size!r})::int AS bin_y) k
        WHERE {where}  -- the tile's (or the bbox's) bins
          AND {case_filter}
        GROUP BY 1, 2
    )""",
        {"level": level},
    )


def _children(param: str, shift: int) -> str:
    """SQL list of the base tiles along one axis under tile ``:param`` (``shift`` levels up).

    (psycopg binds a small Python int as ``int2``, which a shift would overflow: cast.)

    >>> _children("x", 1)
    '(CAST(:x AS int) << 1), (CAST(:x AS int) << 1) + 1'
    """
    if not shift:
        return f":{param}"
    first = f"(CAST(:{param} AS int) << {shift})"
    return ", ".join(first + (f" + {i}" if i else "") for i in range(1 << shift))


def _mercator(lon: float, lat: float) -> tuple[float, float]:
    lat = max(min(lat, 85.05112878), -85.05112878)
    x = lon * HALF / 180.0
    y = math.log(math.tan((90.0 + lat) * math.pi / 360.0)) * HALF / math.pi
    return x, y


def bin_range(bbox: tuple[float, float, float, float], level: int) -> tuple[int, int, int, int]:
    """Bins of ``level`` covering a WGS84 ``bbox`` (min lon, min lat, max lon, max lat).

    >>> bin_range((0.0, -1.0, 1.0, 0.0), 8)
    (128, 128, 128, 128)
    """
    n = 2**level
    size = 2 * HALF / n
    x0, y0 = _mercator(bbox[0], bbox[1])
    x1, y1 = _mercator(bbox[2], bbox[3])

    def clamp(v: float) -> int:
        return min(max(math.floor(v), 0), n - 1)

    return (
        clamp((x0 + HALF) / size),
        clamp((x1 + HALF) / size - 1e-9),
        clamp((HALF - y1) / size),
        clamp((HALF - y0) / size - 1e-9),
    )


#: Bins a GeoJSON answer may hold (64 tiles' worth).
MAX_GEOJSON_BINS = 64 * 256


#: An SQL condition on ``cases c`` and its bound values (see :func:`tiles.layers.case_filter`).
CaseFilter = tuple[str, dict[str, Any]]


def heat_geojson(
    conn: Connection,
    *,
    bbox: tuple[float, float, float, float],
    z: int,
    window: Window,
    case_filter: CaseFilter | None = None,
) -> str:
    """Heat bins of zoom ``z`` inside ``bbox`` as a GeoJSON FeatureCollection (text).

    Each feature is a bin square (WGS84) with ``n`` (cases in the window) and its
    ``level``/``bin_x``/``bin_y``; empty bins are left out. Counts come from the pyramid,
    or, with ``case_filter`` (status, overdue: what the pyramid does not keep), from the
    matching cases counted live into the same bins (``window`` is then part of the filter).

    Raises
    ------
    geogrid.errors.InvalidInput
        Bad bbox or zoom, or a bbox holding more than ``MAX_GEOJSON_BINS`` bins at ``z``.
    """
    lon0, lat0, lon1, lat1 = bbox
    if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
        raise InvalidInput("bbox must be min_lon,min_lat,max_lon,max_lat in WGS84")
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidInput(f"z must be between 0 and {MAX_ZOOM}", detail={"z": z})
    level = level_of(z)
    bx0, bx1, by0, by1 = bin_range(bbox, level)
    count = (bx1 - bx0 + 1) * (by1 - by0 + 1)
    if count > MAX_GEOJSON_BINS:
        raise InvalidInput(
            f"the bbox holds {count} bins at z={z}; at most {MAX_GEOJSON_BINS}: "
            "use a smaller bbox or a lower z",
            detail={"bins": count},
        )
    if case_filter is None:
        bins, values = bins_sql(z, window, tile_params=False)
    else:
        bins, values = live_bins_sql(z, case_filter[0], tile_params=False)
        values.update(case_filter[1])
    values.update(bx0=bx0, bx1=bx1, by0=by0, by1=by1)
    sql = f"""
    -- heat bins of a bbox as GeoJSON
    WITH {bins}
    SELECT json_build_object(
        'type', 'FeatureCollection',
        'features', coalesce(json_agg(json_build_object(
            'type', 'Feature',
            'geometry', ST_AsGeoJSON(
                ST_Transform(ST_TileEnvelope(:level, bins.bin_x, bins.bin_y), 4326), 6)::json,
            'properties', json_build_object(
                'n', bins.n, 'level', :level, 'bin_x', bins.bin_x, 'bin_y', bins.bin_y)
        ) ORDER BY bins.bin_y, bins.bin_x), '[]'::json)
    )::text
    FROM bins WHERE bins.n > 0
    """
    return str(conn.execute(text(sql), values).scalar_one())


def category_totals(
    conn: Connection, window: Window, case_filter: CaseFilter | None = None
) -> dict[str, int]:
    """Cases per category in ``window`` (from the coarsest pyramid level: 2 reads a row),
    or, with ``case_filter``, the matching cases counted live."""
    if case_filter is not None:
        rows = conn.execute(
            text(f"""
            -- per-category totals of the cases matching a status/overdue filter
            SELECT c.category, count(*)::int FROM cases c WHERE {case_filter[0]}
            GROUP BY c.category ORDER BY c.category
            """),
            case_filter[1],
        ).all()
        return {str(c): int(n) for c, n in rows if n}
    bins, values = bins_sql(0, window, tile_params=False)
    cat = "AND h.category = ANY(:categories)" if window.categories is not None else ""
    sql = f"""
    -- per-category totals from level-4 running totals (whole world in 256 bins)
    SELECT h.category,
           sum(geogrid_heat_at(h.cum, CASE WHEN h.year < :y1 THEN 366 ELSE :d1 END)
               - geogrid_heat_at(h.cum, CASE WHEN h.year > :y0 THEN 0 ELSE :d0 - 1 END))::int
    FROM heat_cum h
    WHERE h.level = :level AND h.year BETWEEN :y0 AND :y1 {cat}
    GROUP BY h.category ORDER BY h.category
    """
    del bins
    rows = conn.execute(text(sql), values).all()
    return {str(c): int(n) for c, n in rows if n}


def cases_by_grid(
    conn: Connection,
    window: Window,
    *,
    plan: int | None = None,
    geometry: bool = True,
    case_filter: CaseFilter | None = None,
) -> str:
    """Level-3 grids of the active plans (or of ``plan``) with their case counts.

    Returns a GeoJSON FeatureCollection (text); each feature has ``code``, ``name``,
    ``village_code``, ``households`` and ``cases`` (cases inside the grid in ``window``).
    With ``geometry=False`` every geometry is ``null``: a page that already drew the grids
    fetches ~5 % of the bytes when only the window changes (2,000 grids: 0.3 MB, not 5 MB).

    Active plans are counted from ``cases.grid_code``: every case carries the code of the
    active grid holding it, set on import and again on activation
    (:func:`geogrid.overlays.assign_grids`), so a county-wide year is one pass over the
    window's cases (~0.1 s for 1,000,000), not a point-in-polygon test per case (~3 s).
    A draft (``plan``) has no codes on the cases: it is counted point in polygon.
    ``case_filter`` (status, overdue; it includes ``window``) narrows the cases counted.
    """
    cat = "AND c.category = ANY(:categories)" if window.categories is not None else ""
    where = f"c.reported_at >= :t0 AND c.reported_at < :t1 {cat}"
    if case_filter is not None:
        where = case_filter[0]
    feature = f"""json_build_object(
            'type', 'Feature',
            'id', g.code,
            'geometry', {"ST_AsGeoJSON(g.geom, 6)::json" if geometry else "NULL::json"},
            'properties', json_build_object(
                'code', g.code, 'name', g.name, 'village_code', g.village_code,
                'plan_id', g.plan_id, 'households', g.households,
                'cases', coalesce(k.n, 0))
        ) ORDER BY g.code"""
    if plan is None:
        sql = f"""
    -- case counts per basic grid of the active plans, from the grid code every case carries
    WITH counted AS (
        SELECT c.grid_code, count(*)::int AS n FROM cases c
        WHERE c.grid_code IS NOT NULL AND {where}
        GROUP BY c.grid_code
    )
    SELECT json_build_object(
        'type', 'FeatureCollection',
        'features', coalesce(json_agg({feature}), '[]'::json)
    )::text
    FROM grids g
    LEFT JOIN counted k ON k.grid_code = g.code
    WHERE g.level = 3 AND g.plan_id IN (SELECT p.id FROM plans p WHERE p.status = 'active')
    """
    else:
        sql = f"""
    -- case counts per basic grid of one plan: point in polygon through the GiST index
    SELECT json_build_object(
        'type', 'FeatureCollection',
        'features', coalesce(json_agg({feature}), '[]'::json)
    )::text
    FROM grids g
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS n FROM cases c
        WHERE c.geom && g.geom AND ST_Intersects(g.geom, c.geom) AND {where}
    ) k
    WHERE g.level = 3 AND g.plan_id = :plan_id
    """
    values: dict[str, Any] = {"t0": window.t0, "t1": window.t1, "plan_id": plan}
    if window.categories is not None:
        values["categories"] = list(window.categories)
    if case_filter is not None:
        values.update(case_filter[1])
    return str(conn.execute(text(sql), values).scalar_one())


# --------------------------------------------------------------------------- refresh


@dataclass
class HeatRefresh:
    """What :func:`refresh_heat` did."""

    days: int = 0
    """(day, category) pairs recounted."""
    base_rows: int = 0
    """Base bins touched (0 on a full rebuild)."""
    cum_rows: int = 0
    """Running-total rows written (all levels)."""


def dirty(conn: Connection) -> bool:
    """Whether cases changed since the last refresh (one index probe)."""
    return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM heat_dirty)")).scalar_one())


def refresh_heat(conn: Connection, *, full: bool = False) -> HeatRefresh:
    """Bring the heat pyramid up to date with ``cases``, in the caller's transaction.

    Parameters
    ----------
    conn
        A connection inside a transaction (commit it to publish the new pyramid and bump
        the ``heat`` layer version).
    full
        Rebuild from scratch (after a bulk load; also repairs a pyramid edited by hand).

    Returns
    -------
    HeatRefresh
        Counts of what was recomputed; all zero when nothing was dirty.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    if full:
        conn.execute(text("TRUNCATE heat_daily, heat_cum, heat_dirty"))
        conn.execute(
            text(f"""
            INSERT INTO heat_dirty (day, category)
            SELECT DISTINCT (reported_at AT TIME ZONE '{TIMEZONE}')::date, category FROM cases
            """)
        )
    conn.execute(
        text("""
        CREATE TEMP TABLE IF NOT EXISTS heat_refresh_days (day date, category text)
            ON COMMIT DROP;
        CREATE TEMP TABLE IF NOT EXISTS heat_refresh_delta
            (bin_x int, bin_y int, category text, day date, dn int) ON COMMIT DROP;
        TRUNCATE heat_refresh_days, heat_refresh_delta;
        """)
    )
    days = conn.execute(
        text("""
        WITH d AS (DELETE FROM heat_dirty RETURNING day, category)
        INSERT INTO heat_refresh_days SELECT day, category FROM d
        """)
    ).rowcount
    if not days:
        return HeatRefresh()
    conn.execute(text("ANALYZE heat_refresh_days"))
    # the days' span as values: heat_daily is partitioned by month, and only bounds known
    # when the statement is planned prune the months a join alone would scan
    first, last = conn.execute(text("SELECT min(day), max(day) FROM heat_refresh_days")).one()
    # the base counts these days had: minus them in the running totals' deltas
    conn.execute(
        text("""
        WITH gone AS (
            DELETE FROM heat_daily h USING heat_refresh_days d
            WHERE h.category = d.category AND h.day = d.day
              AND h.day BETWEEN :first AND :last
            RETURNING h.bin_x, h.bin_y, h.category, h.day, h.n
        )
        INSERT INTO heat_refresh_delta SELECT bin_x, bin_y, category, day, -n FROM gone
        """),
        {"first": first, "last": last},
    )
    # recount the days at the base level, straight from cases (index on category, time)
    base = conn.execute(
        text(f"""
        WITH counted AS (
            SELECT floor((ST_X(p.m) + :half) / :size)::int AS bin_x,
                   floor((:half - ST_Y(p.m)) / :size)::int AS bin_y,
                   c.category, d.day, count(*)::int AS n
            FROM {_CASES_ALL if full else _CASES_OF_DAYS}
            CROSS JOIN LATERAL (SELECT ST_Transform(c.geom, 3857) AS m) p
            GROUP BY 1, 2, 3, 4
        ),
        added AS (
            INSERT INTO heat_daily (level, tile_x, tile_y, day, category, bin_x, bin_y, n)
            SELECT :base, bin_x >> {BIN_SHIFT}, bin_y >> {BIN_SHIFT}, day, category,
                   bin_x, bin_y, n
            FROM counted
            RETURNING bin_x, bin_y, category, day, n
        )
        INSERT INTO heat_refresh_delta SELECT bin_x, bin_y, category, day, n FROM added
        WHERE NOT :full
        """),
        {"half": HALF, "size": 2 * HALF / 2**BASE_LEVEL, "full": full, "base": BASE_LEVEL},
    ).rowcount
    cum_rows = _rebuild_cum(conn) if full else _apply_deltas(conn)
    if full:
        conn.execute(text("ANALYZE heat_daily; ANALYZE heat_cum"))
    log.info("heat refresh: %d day-categories, %d base rows, %d cum rows", days, base, cum_rows)
    return HeatRefresh(days=days, base_rows=base, cum_rows=cum_rows)


def _key(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return (bx.astype(np.int64) << 32) | by.astype(np.int64)


def _base_rows(raw: Any, cat: str, year: int) -> np.ndarray:
    """``(bin_x, bin_y, day of year - 1, n)`` of every base row of a category and year."""
    jan1 = dt.date(year, 1, 1)
    with raw.cursor() as cur:  # plain tuples: numpy probing Row objects costs ~15 µs a row
        cur.execute(
            """
            SELECT bin_x, bin_y, day - %(jan1)s::date AS doy0, n FROM heat_daily
            WHERE level = %(base)s AND category = %(cat)s AND day BETWEEN %(jan1)s AND %(dec31)s
            """,
            {"cat": cat, "jan1": jan1, "dec31": dt.date(year, 12, 31), "base": BASE_LEVEL},
        )
        return np.array(cur.fetchall(), dtype=np.int64).reshape(-1, 4)


def _running_totals(rows: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins (keys, see :func:`_key`) ``shift`` levels above the base and their 366 running
    day totals, from ``(bin_x, bin_y, doy0, n)`` rows of one category and year."""
    keys = _key(rows[:, 0] >> shift, rows[:, 1] >> shift)
    uniq, inv = np.unique(keys, return_inverse=True)
    daily = np.bincount(inv * DAYS + rows[:, 2], weights=rows[:, 3], minlength=len(uniq) * DAYS)
    return uniq, np.cumsum(daily.reshape(len(uniq), DAYS), axis=1).astype(np.int64)


def _totals_of(rows: np.ndarray, shift: int, keys: np.ndarray) -> np.ndarray:
    """Running totals of the bins ``keys`` (zeros for a bin with no row)."""
    out = np.zeros((len(keys), DAYS), dtype=np.int64)
    if not len(rows):
        return out
    uniq, cum = _running_totals(rows, shift)
    at = np.clip(np.searchsorted(uniq, keys), 0, len(uniq) - 1)
    found = uniq[at] == keys
    out[found] = cum[at[found]]
    return out


def _copy_cum(raw: Any, blocks: list[bytes]) -> None:
    if not blocks:
        return
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY heat_cum (level, tile_x, tile_y, category, year, bin_x, bin_y, cum) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(_COPY_SIGNATURE)
        for block in blocks:
            copy.write(block)
        copy.write(_COPY_TRAILER)


def _rebuild_cum(conn: Connection) -> int:
    """Running totals of every bin, category and year, from the base (a full rebuild)."""
    groups = conn.execute(
        text("SELECT DISTINCT category, extract(year FROM day)::int FROM heat_daily")
    ).all()
    raw = conn.connection.driver_connection
    written = 0
    for cat, year in sorted((str(c), int(y)) for c, y in groups):
        base = _base_rows(raw, cat, year)
        blocks = []
        for level in CUM_LEVELS:
            uniq, cum = _running_totals(base, BASE_LEVEL - level)
            blocks.append(_cum_copy_rows(level, uniq, cum, cat, year))
            written += len(uniq)
        _copy_cum(raw, blocks)
    return written


def _apply_deltas(conn: Connection) -> int:
    """Add the refreshed days' count changes to the running totals they affect.

    A change of ``dn`` cases on day ``d`` adds ``dn`` to ``cum[d:]`` of the bin holding it
    at every level: the work is bounded by the bins touched, not by the cases of the
    category and year (a one-case change: ~2,400 rows, not ~125,000 base rows). Bins left
    with no case that year lose their row.
    """
    rows = conn.execute(
        text("""
        SELECT category, extract(year FROM day)::int AS year, bin_x, bin_y,
               extract(doy FROM day)::int - 1 AS doy0, sum(dn)::int AS dn
        FROM heat_refresh_delta GROUP BY 1, 2, 3, 4, 5 HAVING sum(dn) <> 0
        """)
    ).all()
    by_group: dict[tuple[str, int], list[tuple[int, int, int, int]]] = {}
    for cat, year, bx, by, doy0, dn in rows:
        by_group.setdefault((str(cat), int(year)), []).append((bx, by, doy0, dn))
    raw = conn.connection.driver_connection
    written = 0
    for (cat, year), group in sorted(by_group.items()):
        delta = np.array(group, dtype=np.int64).reshape(-1, 4)
        levels, keys, deltas = [], [], []
        for level in CUM_LEVELS:
            uniq, dcum = _running_totals(delta, BASE_LEVEL - level)
            levels.append(np.full(len(uniq), level))
            keys.append(uniq)
            deltas.append(dcum)
        lv, key, dcum = np.concatenate(levels), np.concatenate(keys), np.concatenate(deltas)
        # the rows these bins have now, removed (they come back below with the change)
        gone = conn.execute(
            text(f"""
            DELETE FROM heat_cum h
            USING unnest(CAST(:lv AS int[]), CAST(:bx AS int[]), CAST(:by AS int[]))
                  AS u (lv, bx, by)
            WHERE h.level = u.lv AND h.tile_x = u.bx >> {BIN_SHIFT}
              AND h.tile_y = u.by >> {BIN_SHIFT} AND h.category = :cat
              AND h.year = :year AND h.bin_x = u.bx AND h.bin_y = u.by
            RETURNING h.level, h.bin_x, h.bin_y, h.cum
            """),
            {"lv": lv.tolist(), "bx": (key >> 32).tolist(),
             "by": (key & 0xFFFFFFFF).tolist(), "cat": cat, "year": year},
        ).all()  # fmt: skip
        row_of = {(int(level), int(k)): i for i, (level, k) in enumerate(zip(lv, key, strict=True))}
        for level, bx, by, cum in gone:
            dcum[row_of[(int(level), (int(bx) << 32) | int(by))]] += np.frombuffer(cum, ">i4")
        if (dcum < 0).any():  # the pyramid was edited by hand: recount these bins
            log.warning("heat: running totals of %s %d were inconsistent; recounted", cat, year)
            base = _base_rows(raw, cat, year)
            for level in CUM_LEVELS:
                at = lv == level
                dcum[at] = _totals_of(base, BASE_LEVEL - level, key[at])
        keep = dcum[:, -1] > 0  # a year's total of 0: the bin has no case that year
        blocks = [
            _cum_copy_rows(level, key[keep & (lv == level)], dcum[keep & (lv == level)], cat,
                           year)
            for level in CUM_LEVELS if (keep & (lv == level)).any()
        ]  # fmt: skip
        _copy_cum(raw, blocks)
        written += int(keep.sum())
    return written


#: PostgreSQL's binary COPY header (signature, flags, header extension length) and trailer.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"


def _cum_row_dtype(category: str) -> np.dtype[np.void]:
    """One ``heat_cum`` row in binary COPY layout: a field count, then (length, value) pairs.

    Every field but the category has a fixed width, and one block holds one category, so
    a block's rows are a packed numpy record array, written without a Python loop.
    """
    size = len(category.encode())
    return np.dtype(
        [("fields", ">i2"),
         ("level_len", ">i4"), ("level", ">i2"),
         ("tile_x_len", ">i4"), ("tile_x", ">i4"),
         ("tile_y_len", ">i4"), ("tile_y", ">i4"),
         ("category_len", ">i4"), ("category", f"S{size}"),
         ("year_len", ">i4"), ("year", ">i2"),
         ("bin_x_len", ">i4"), ("bin_x", ">i4"),
         ("bin_y_len", ">i4"), ("bin_y", ">i4"),
         ("cum_len", ">i4"), ("cum", ">i4", (DAYS,))]
    )  # fmt: skip


def _cum_copy_rows(level: int, keys: np.ndarray, cum: np.ndarray, cat: str, year: int) -> bytes:
    """Binary COPY rows of ``heat_cum`` for the bins ``keys`` (see :func:`_key`)."""
    rows = np.zeros(len(keys), dtype=_cum_row_dtype(cat))
    bx, by = keys >> 32, keys & 0xFFFFFFFF
    rows["fields"] = 8
    for name, width, value in (
        ("level", 2, level), ("tile_x", 4, bx >> BIN_SHIFT), ("tile_y", 4, by >> BIN_SHIFT),
        ("year", 2, year), ("bin_x", 4, bx), ("bin_y", 4, by),
    ):  # fmt: skip
        rows[f"{name}_len"] = width
        rows[name] = value
    rows["category_len"] = len(cat.encode())
    rows["category"] = cat.encode()
    rows["cum_len"] = 4 * DAYS
    rows["cum"] = cum
    return rows.tobytes()
