"""Villager-group territories that tile their village exactly.

Two entry points:

* :func:`derive_territories` builds group polygons from household points (Voronoi cells
  clipped to the village, dissolved by group, detached fragments handed to the neighbour
  with the longest shared border).
* :func:`repair_territories` checks and repairs planner-supplied group polygons (invalid
  rings, overlaps, slivers, gaps) and derives territory for groups that have households
  but no polygon.

Both work in a local metric CRS and return geometries in the caller's CRS.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.errors
from shapely.geometry.base import BaseGeometry

from geogrid.errors import InvalidInput
from partition._geo import (
    GRID_SIZE,
    as_multipolygon,
    clean,
    cover_union,
    polygon_parts,
    polygonal,
    snap_coverage,
    union,
    utm_crs,
)

__all__ = [
    "GROUP_PIECES_POLICIES",
    "SuppliedGroups",
    "derive_territories",
    "repair_territories",
    "supplied_groups",
]

#: Isolated slivers (touching every territory only at points) smaller than this (m²) are
#: dropped: no territory could include them and stay one piece. The plan validator's area
#: tolerance (>= 1 m²) accepts the resulting pin-holes.
_MAX_DROP = 1.0

#: Distinct groups sharing one location are spread on a circle of this radius (metres).
_JITTER = 0.5

#: A territory's parts joined only through a passage narrower than this (metres) are
#: cut apart at the passage; the smaller parts go to a neighbour (the plan validator
#: refuses grids joined through such slivers).
NECK_WIDTH = 1.0


# --------------------------------------------------------------------------- helpers


def _snap_inside(village: BaseGeometry, xy: np.ndarray) -> np.ndarray:
    """Move points lying outside ``village`` onto its boundary (for Voronoi only)."""
    outside = ~shapely.intersects_xy(village, xy[:, 0], xy[:, 1])  # prepared internally
    if outside.any():
        boundary = village.boundary
        d = shapely.line_locate_point(boundary, shapely.points(xy[outside]))
        snapped = shapely.line_interpolate_point(boundary, d)
        xy = xy.copy()
        xy[outside] = shapely.get_coordinates(snapped)
    return xy


def _site_points(xy: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique Voronoi sites: one per (location, group), distinct groups at one spot jittered.

    Returns the site coordinates and the group code of each site.
    """
    rounded = np.round(xy / GRID_SIZE).astype(np.int64)
    table = np.column_stack([rounded, codes.astype(np.int64)])
    uniq = np.unique(table, axis=0)
    loc, inverse, counts = np.unique(uniq[:, :2], axis=0, return_inverse=True, return_counts=True)
    sites = uniq[:, :2].astype(float) * GRID_SIZE
    shared = counts[inverse] > 1
    if shared.any():
        order = np.zeros(len(uniq), dtype=np.int64)
        seen: dict[int, int] = {}
        for i, li in enumerate(inverse.tolist()):
            if counts[li] > 1:
                order[i] = seen.get(li, 0)
                seen[li] = order[i] + 1
        ang = 2.0 * np.pi * order / counts[inverse]
        sites[shared, 0] += _JITTER * np.cos(ang[shared])
        sites[shared, 1] += _JITTER * np.sin(ang[shared])
    del loc
    return sites, uniq[:, 2]


def _voronoi_cells(village: BaseGeometry, sites: np.ndarray) -> np.ndarray:
    """Voronoi cells of ``sites`` clipped to ``village``, in site order."""
    if len(sites) == 1:
        return np.asarray([village], dtype=object)
    diagram = shapely.voronoi_polygons(shapely.multipoints(sites), extend_to=village, ordered=True)
    cells = np.asarray(shapely.get_parts(diagram), dtype=object)
    if len(cells) != len(sites):  # pragma: no cover - GEOS merged coincident sites
        raise InvalidInput("Voronoi diagram lost sites; household coordinates are degenerate.")
    # clip only the cells that stick out: intersecting a detailed village outline with
    # every cell dominates the cost otherwise
    shapely.prepare(village)
    inside = shapely.contains_properly(village, cells)
    out = cells.copy()
    out[~inside] = shapely.intersection(cells[~inside], village)
    return out


def _merge(a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    """Union of two edge-matched polygons (coverage union, robust fallback)."""
    return cover_union([a, b])


def _absorb(
    territory: dict[int, BaseGeometry], orphans: list[BaseGeometry]
) -> dict[int, BaseGeometry]:
    """Give every orphan piece to the territory sharing its longest border.

    Pieces touching no territory along a line are retried after others are placed and,
    failing that, given to the nearest territory. Deterministic: pieces largest first.
    """
    pending = sorted(
        (p for o in orphans for p in polygon_parts(o)), key=lambda p: (-p.area, p.bounds)
    )
    keys = sorted(territory)
    while pending:
        progress = False
        rest: list[BaseGeometry] = []
        for piece in pending:
            best_key, best_len = None, 0.0
            pb = piece.boundary
            for k in keys:
                t = territory[k]
                if t.is_empty or not t.intersects(piece):
                    continue
                length = shapely.intersection(pb, t.boundary).length
                if length > best_len:
                    best_key, best_len = k, length
            if best_key is None:
                rest.append(piece)
                continue
            territory[best_key] = _merge(territory[best_key], piece)
            progress = True
        pending = rest
        if not progress:
            for piece in pending:
                if piece.area < _MAX_DROP:
                    continue  # sliver touching others only at points: cannot join anyone
                live = [k for k in keys if not territory[k].is_empty]
                if not live:
                    break
                nearest = min(live, key=lambda k: (territory[k].distance(piece), k))
                territory[nearest] = union([territory[nearest], piece])
            break
    return territory


def _defragment(
    territory: dict[int, BaseGeometry], keep: Mapping[int, np.ndarray] | None = None
) -> dict[int, BaseGeometry]:
    """Keep each territory's largest piece; hand detached fragments to neighbours.

    A group in ``keep`` (group → its households' coordinates; policy ``keep``) keeps
    every piece holding one of its households.
    """
    orphans: list[BaseGeometry] = []
    for k in sorted(territory):
        parts = polygon_parts(territory[k])
        if len(parts) > 1:
            xy = (keep or {}).get(k)
            if xy is not None and len(xy):
                lived = [p for p in parts if shapely.intersects_xy(p, xy[:, 0], xy[:, 1]).any()]
                mine = lived or parts[:1]
                territory[k] = mine[0] if len(mine) == 1 else shapely.MultiPolygon(mine)
                orphans.extend(p for p in parts if not any(p is q for q in mine))
                continue
            territory[k] = parts[0]
            orphans.extend(parts[1:])
    if orphans:
        territory = _absorb(territory, orphans)
        # absorbing can only merge along borders, but a nearest-fallback piece may detach
        for k in sorted(territory):
            if k not in (keep or {}) and len(polygon_parts(territory[k])) > 1:
                territory[k] = polygonal(territory[k])
    return territory


def _cut_necks(
    territory: dict[int, BaseGeometry],
    width: float = NECK_WIDTH,
    keep: Collection[int] = (),
) -> list[str]:
    """Cut every territory at passages narrower than ``width`` (in place).

    What the morphological opening (radius ``width / 2``) of a territory drops around its
    main body — other bodies joined only through a narrow neck, and thin fingers such as
    a gap strip running between two other groups — goes to the neighbour sharing the
    longest border with it, when that border is longer than ``width`` and than the
    piece's border with the main body; otherwise it stays. Returns notes.
    """
    notes: list[str] = []
    for k in sorted(territory):
        t = territory[k]
        if t.is_empty:
            continue
        opened = [
            p for p in polygon_parts(shapely.buffer(t, -width / 2, quad_segs=8)) if p.area > 1.0
        ]
        if not opened:
            continue
        # a group kept in pieces keeps every body; only the passages between them go
        bodies = union(opened) if k in keep else opened[0]
        reach = shapely.buffer(bodies, width / 2 + 2 * GRID_SIZE, quad_segs=8)
        core = polygon_parts(shapely.intersection(t, reach, grid_size=GRID_SIZE))
        if not core:
            continue
        main = union(core) if k in keep else core[0]
        rest = polygon_parts(shapely.difference(t, main, grid_size=GRID_SIZE))
        main_near = shapely.buffer(main, 2 * GRID_SIZE, quad_segs=2)
        moved = 0.0
        for piece in rest:
            if piece.area < 1.0 and len(opened) < 2:
                continue  # a buffer's rounding at a corner
            own = shapely.intersection(piece.boundary, main_near).length
            best, best_len = None, 0.0
            for j in sorted(territory):
                if j == k or territory[j].is_empty or not territory[j].intersects(piece):
                    continue
                near = shapely.buffer(territory[j], 2 * GRID_SIZE, quad_segs=2)
                length = shapely.intersection(piece.boundary, near).length
                if length > best_len:
                    best, best_len = j, length
            if best is None or best_len <= max(width, own):
                continue  # mostly bordered by its own group: it stays
            territory[k] = polygonal(shapely.difference(territory[k], piece, grid_size=GRID_SIZE))
            territory[best] = union([territory[best], piece])
            moved += piece.area
        if moved >= 1.0:
            notes.append(
                f"group {k}: {moved:.0f} m² joined to it only through passages narrower "
                f"than {width:g} m given to neighbours"
            )
    return notes


def _snapped(territory: dict[int, BaseGeometry], village: BaseGeometry) -> dict[int, BaseGeometry]:
    """The territories as one snap-rounded, exactly noded coverage (see
    :func:`partition._geo.snap_coverage`): valid, edge-matched, and still valid after
    reprojection to EPSG:4326."""
    keys = sorted(territory)
    if len(keys) < 2:
        return {k: clean(territory[k], GRID_SIZE) for k in keys}
    out = snap_coverage([territory[k] for k in keys], region=village)
    return dict(zip(keys, out, strict=True))


def _finish(
    territory: dict[int, BaseGeometry],
    village: BaseGeometry,
    keep: Mapping[int, np.ndarray] | None = None,
) -> list[str]:
    """Last step of both pipelines (in place): snap-rounded exact coverage, detached
    fragments handed to neighbours, territories cut at sliver passages. Returns notes."""
    notes: list[str] = []
    for _ in range(3):
        territory.update(_snapped(territory, village))
        territory.update(_defragment(territory, keep))
        cut = _cut_necks(territory, keep=keep or {})
        notes.extend(cut)
        if not cut:
            break
    territory.update(_snapped(territory, village))
    return notes


def _fill_gaps(
    village: BaseGeometry, territory: dict[int, BaseGeometry], *, exact: bool = False
) -> None:
    """Give the parts of ``village`` no territory covers to the neighbours (in place).

    ``exact`` territories were cut from one Voronoi coverage: their union is computed as
    a coverage union and the difference without snapping, so no overlap is introduced.
    """
    geoms = list(territory.values())
    gap = None
    if exact:
        try:
            gap = polygonal(shapely.difference(village, cover_union(geoms)))
        except shapely.errors.GEOSException:
            gap = None
    if gap is None:
        covered = union(geoms)
        gap = polygonal(shapely.difference(village, covered, grid_size=GRID_SIZE))
    pieces = [p for p in polygon_parts(gap) if p.area > 1e-4]
    if pieces:
        _absorb(territory, pieces)


def derive_metric(
    village: BaseGeometry, xy: np.ndarray, codes: np.ndarray
) -> dict[int, BaseGeometry]:
    """Derive territories in a metric CRS (private workhorse of :func:`derive_territories`).

    Parameters
    ----------
    village
        Cleaned village (or village part) polygon, metric coordinates.
    xy
        ``(n, 2)`` household coordinates, metric.
    codes
        ``(n,)`` integer group code per household.

    Returns
    -------
    dict
        Group code -> polygon; the polygons tile ``village``.
    """
    groups = np.unique(codes)
    if len(groups) == 0:
        return {}
    if not village.is_valid:
        village = clean(village)
    if len(groups) == 1:
        return {int(groups[0]): village}
    xy = _snap_inside(village, xy)
    sites, site_codes = _site_points(xy, codes)
    cells = _voronoi_cells(village, sites)
    territory: dict[int, BaseGeometry] = {}
    for g in groups.tolist():
        territory[int(g)] = cover_union(list(cells[site_codes == g]))
    territory = _defragment(territory)
    _fill_gaps(village, territory, exact=True)
    _finish(territory, village)
    return territory


def repair_metric(
    village: BaseGeometry,
    supplied: Mapping[int, BaseGeometry],
    xy: np.ndarray,
    codes: np.ndarray,
    keep: Collection[int] = (),
) -> tuple[dict[int, BaseGeometry], list[str]]:
    """Repair supplied group polygons in a metric CRS; derive the missing ones.

    Groups in ``keep`` (policy ``keep`` of :func:`supplied_groups`) keep every piece
    holding one of their households; other groups keep their largest piece.
    Returns the territories (tiling ``village``) and a list of human-readable repairs.
    """
    notes: list[str] = []
    # everything on one precision grid: supplied polygons come from another source (and
    # a reprojection), so exact coordinates would never match the village outline
    village = clean(village, GRID_SIZE)
    territory: dict[int, BaseGeometry] = {}
    taken: list[BaseGeometry] = []
    for g in sorted(supplied):
        geom = supplied[g]
        if geom is None or geom.is_empty:
            continue
        if not geom.is_valid:
            notes.append(f"group {g}: invalid polygon made valid")
        geom = clean(geom, GRID_SIZE)
        geom = polygonal(shapely.intersection(geom, village, grid_size=GRID_SIZE))
        if taken:
            before = geom.area
            geom = polygonal(shapely.difference(geom, union(taken), grid_size=GRID_SIZE))
            if before - geom.area > 1.0:
                notes.append(f"group {g}: {before - geom.area:.0f} m² overlap removed")
        if geom.is_empty:
            notes.append(f"group {g}: polygon lies outside the village, ignored")
            continue
        territory[int(g)] = geom
        taken.append(geom)
    present = set(np.unique(codes).tolist())
    missing = sorted(present - set(territory))
    if missing:
        notes.append(f"groups {missing}: no polygon, territory derived from households")
        free = polygonal(shapely.difference(village, union(taken), grid_size=GRID_SIZE))
        xs = _snap_inside(village, xy)
        sites, site_codes = _site_points(xs, codes)
        cells = _voronoi_cells(village, sites)
        carved: list[BaseGeometry] = []
        for g in missing:
            full = union(list(cells[site_codes == g]))
            mine = polygonal(shapely.intersection(full, free, grid_size=GRID_SIZE))
            if mine.area < 0.05 * full.area:
                mine = full  # households sit inside supplied polygons: carve them out
                notes.append(f"group {g}: territory carved out of neighbouring polygons")
            territory[g] = mine
            carved.append(mine)
        cut = union(carved)
        for g in list(territory):
            if g not in missing:
                territory[g] = polygonal(shapely.difference(territory[g], cut, grid_size=GRID_SIZE))
    if not territory:
        return {}, notes
    covered = union(list(territory.values()))
    gap = village.area - covered.area
    if gap > 1.0:
        notes.append(f"{gap:.0f} m² of gaps given to neighbouring groups")
    try:
        territory, gaps = _noded(village, territory)
    except shapely.errors.GEOSException:  # degenerate linework: keep the overlay result
        gaps = []
    if gaps:  # first close the gaps, so that detached fragments have neighbours
        territory = _absorb(territory, gaps)
    keep_xy = {g: xy[codes == g] for g in keep if g in territory}
    territory = _defragment(territory, keep_xy)
    _fill_gaps(village, territory, exact=True)
    notes.extend(_finish(territory, village, keep_xy))
    return territory, notes


def _noded(
    village: BaseGeometry, territory: dict[int, BaseGeometry]
) -> tuple[dict[int, BaseGeometry], list[BaseGeometry]]:
    """Re-assemble territories from the faces of all boundaries noded together.

    Polygons from separate overlay operations can meet along edges that are not
    vertex-for-vertex identical (or not exactly collinear), so shared borders measure
    as points and gaps cannot be joined. Polygonising the noded boundaries of the
    territories and the village gives faces that match exactly; each face goes to the
    territory holding its interior point (lowest group number on overlap), faces of no
    territory are the gaps to hand out.
    """
    keys = sorted(territory)
    geoms = np.asarray([territory[k] for k in keys], dtype=object)
    lines = shapely.union_all(np.concatenate([shapely.boundary(geoms), [village.boundary]]))
    faces = np.asarray(
        shapely.get_parts(shapely.polygonize(shapely.get_parts(lines))), dtype=object
    )
    if len(faces) == 0:
        return territory, []
    probes = shapely.point_on_surface(faces)
    shapely.prepare(village)
    keep = shapely.contains(village, probes)
    faces, probes = faces[keep], probes[keep]
    owner = np.full(len(faces), -1)
    if len(geoms):
        f_idx, o_idx = shapely.STRtree(geoms).query(probes, predicate="within")
        for f, o in sorted(zip(f_idx.tolist(), o_idx.tolist(), strict=True), reverse=True):
            owner[f] = o
    out: dict[int, BaseGeometry] = {}
    for i, k in enumerate(keys):
        mine = faces[owner == i]
        out[k] = cover_union(list(mine)) if len(mine) else shapely.Polygon()
    return out, list(faces[owner < 0])


# --------------------------------------------------------------------------- public API


def _check_households(households: gpd.GeoDataFrame, group_col: str) -> None:
    if not isinstance(households, gpd.GeoDataFrame):
        raise InvalidInput("households must be a GeoDataFrame of points.")
    if households.crs is None:
        raise InvalidInput("households have no CRS; set it (e.g. EPSG:4326) before partitioning.")
    if group_col not in households.columns:
        raise InvalidInput(f"households lack the column {group_col!r}.")
    if len(households) and not (households.geom_type == "Point").all():
        raise InvalidInput("household geometries must all be Points.")
    if households[group_col].isna().any():
        raise InvalidInput(f"households have empty {group_col!r}; assign every household a group.")


def _to_metric(
    village_geom: BaseGeometry, households: gpd.GeoDataFrame
) -> tuple[BaseGeometry, np.ndarray, object]:
    if village_geom is None or village_geom.is_empty:
        raise InvalidInput("village geometry is empty.")
    src = households.crs
    if src.is_geographic:
        c = gpd.GeoSeries([village_geom], crs=src).to_crs(4326).iloc[0].centroid
        metric = utm_crs(c.x, c.y)
    else:
        metric = src
    village_m = clean(gpd.GeoSeries([village_geom], crs=src).to_crs(metric).iloc[0])
    xy = shapely.get_coordinates(households.geometry.to_crs(metric).values)
    return village_m, xy, metric


def derive_territories(
    village_geom: BaseGeometry,
    households: gpd.GeoDataFrame,
    *,
    group_col: str = "group_no",
) -> gpd.GeoDataFrame:
    """Derive villager-group territories tiling a village from household points.

    Voronoi cells of the households (duplicate points allowed; distinct groups at one
    location are spread by 0.5 m) are clipped to the village, dissolved by group, and
    every detached fragment is handed to the neighbouring group with the longest shared
    border, so each group gets one connected polygon and together they tile the village.

    Parameters
    ----------
    village_geom
        Village (Multi)Polygon in the CRS of ``households``.
    households
        Points with a group column; households outside the village are snapped to its
        boundary for the Voronoi step only.
    group_col
        Name of the integer group column.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``group_col`` and ``geometry`` (MultiPolygon), CRS of ``households``.

    Raises
    ------
    geogrid.errors.InvalidInput
        Missing CRS or column, non-point geometry, empty group values or empty village.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> hh = gpd.GeoDataFrame({"group_no": [1, 1, 2]},
    ...     geometry=shapely.points([(10, 10), (20, 10), (80, 50)]), crs=32650)
    >>> t = derive_territories(shapely.box(0, 0, 100, 100), hh)
    >>> t["group_no"].tolist(), round(float(t.area.sum()))
    ([1, 2], 10000)
    """
    _check_households(households, group_col)
    village_m, xy, metric = _to_metric(village_geom, households)
    codes = households[group_col].to_numpy().astype(np.int64)
    territory = derive_metric(village_m, xy, codes)
    return _frame(territory, group_col, metric, households.crs)


def repair_territories(
    village_geom: BaseGeometry,
    groups: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame,
    *,
    group_col: str = "group_no",
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Check and repair supplied group polygons so that they tile the village.

    Invalid polygons are made valid, everything is clipped to the village, overlaps go to
    the group with the lower number, groups with households but no polygon get territory
    derived from their households, and gaps and detached slivers go to the neighbour with
    the longest shared border.

    Parameters
    ----------
    village_geom
        Village polygon, CRS of ``households``.
    groups
        Group polygons with ``group_col``; reprojected to the households' CRS if needed.
    households
        Household points of the village with ``group_col``.

    Returns
    -------
    (geopandas.GeoDataFrame, list of str)
        The repaired territories and a note per repair made.
    """
    _check_households(households, group_col)
    if groups.crs is None:
        raise InvalidInput("group polygons have no CRS.")
    if group_col not in groups.columns:
        raise InvalidInput(f"group polygons lack the column {group_col!r}.")
    village_m, xy, metric = _to_metric(village_geom, households)
    gm = groups.to_crs(metric)
    supplied: dict[int, BaseGeometry] = {}
    for g, geom in zip(gm[group_col].astype(np.int64), gm.geometry, strict=True):
        supplied[int(g)] = union([supplied[int(g)], geom]) if int(g) in supplied else geom
    codes = households[group_col].to_numpy().astype(np.int64)
    territory, notes = repair_metric(village_m, supplied, xy, codes)
    return _frame(territory, group_col, metric, households.crs), notes


def _frame(
    territory: Mapping[int, BaseGeometry], group_col: str, metric: object, crs: object
) -> gpd.GeoDataFrame:
    keys = sorted(territory)
    geoms = [as_multipolygon(territory[k]) for k in keys]
    frame = gpd.GeoDataFrame({group_col: list(keys)}, geometry=geoms, crs=metric)
    return frame.to_crs(crs)


# --------------------------------------------------------------------------- supplied groups

#: Policies for a supplied group whose polygons hold households in separate pieces (or a
#: group number given several polygons): ``"refuse"`` stops with a clear error naming the
#: village, the group and its pieces; ``"keep"`` keeps the pieces as one unit (its grid is
#: flagged ``multipart_group``). Pieces holding no household are never a reason to refuse:
#: they are attached to the neighbouring group with the longest shared border.
GROUP_PIECES_POLICIES = ("refuse", "keep")

#: Pieces of a supplied group polygon closer than this (metres) are one piece for the
#: pieces policy: the gap between them is a sliver the repair closes.
PIECE_GAP = 20.0


@dataclass
class SuppliedGroups:
    """Supplied group polygons per village after the pieces policy.

    Attributes
    ----------
    polygons
        Village code → group number → (Multi)Polygon, EPSG:4326.
    multipart
        Village code → groups kept as one unit in several pieces (policy ``keep``).
    notes
        Village code → what was found and done.
    """

    polygons: dict[str, dict[int, BaseGeometry]]
    multipart: dict[str, frozenset[int]]
    notes: dict[str, list[str]]


def _close_together(parts: list[BaseGeometry]) -> bool:
    """Whether polygons (EPSG:4326) join into one when gaps below :data:`PIECE_GAP` close."""
    series = gpd.GeoSeries(parts, crs=4326)
    c = union(parts).centroid
    metric = series.to_crs(utm_crs(c.x, c.y))
    closed = union(list(metric.buffer(PIECE_GAP / 2, quad_segs=4)))
    return len(polygon_parts(closed)) == 1


def supplied_groups(
    groups: gpd.GeoDataFrame,
    households: pd.DataFrame,
    *,
    policy: str = "refuse",
) -> SuppliedGroups:
    """Apply the pieces policy to supplied group polygons (EPSG:4326).

    Parameters
    ----------
    groups
        ``village_code, group_no`` and a polygon per row, EPSG:4326.
    households
        ``village_code, group_no`` and ``lon, lat`` (EPSG:4326) of the households.
    policy
        One of :data:`GROUP_PIECES_POLICIES`.

    Raises
    ------
    geogrid.errors.InvalidInput
        Under ``refuse``: a group number with several polygons, or a group whose
        households live in separate pieces of its polygon.
    """
    if policy not in GROUP_PIECES_POLICIES:
        raise InvalidInput(f"group pieces policy must be one of {GROUP_PIECES_POLICIES}.")
    polygons: dict[str, dict[int, BaseGeometry]] = {}
    multipart: dict[str, set[int]] = {}
    notes: dict[str, list[str]] = {}
    rows = groups.reset_index(drop=True)
    rows = rows[rows.geometry.notna() & rows["group_no"].notna()]
    keys = list(
        zip(rows["village_code"].astype(str), rows["group_no"].astype(np.int64), strict=True)
    )
    by_key: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault((key[0], int(key[1])), []).append(i)
    hh = households.dropna(subset=["lon", "lat"])
    hh_by = {
        (str(v), int(float(str(g)))): frame[["lon", "lat"]].to_numpy(dtype=float)
        for (v, g), frame in hh.groupby(["village_code", "group_no"])
    }
    for (code, g), idx in sorted(by_key.items()):
        say = notes.setdefault(code, [])
        geoms = [rows.geometry.iloc[i] for i in idx]
        if len(idx) > 1:
            where = ", ".join(str(i + 1) for i in idx)
            if policy == "refuse":
                raise InvalidInput(
                    f"village {code}: group {g} has {len(idx)} polygons (features {where}); "
                    "fix the group file, or keep them as one unit with the 'keep' policy "
                    "(--group-pieces keep)",
                    detail={"village_code": code, "group_no": g, "features": idx},
                )
            say.append(f"group {g}: {len(idx)} polygons kept as one unit (policy keep)")
        geom = clean(union(geoms))
        parts = polygon_parts(geom)
        xy = hh_by.get((code, g), np.zeros((0, 2)))
        counts = [
            int(shapely.contains_xy(p, xy[:, 0], xy[:, 1]).sum()) if len(xy) else 0 for p in parts
        ]
        lived = [p for p, n in zip(parts, counts, strict=True) if n > 0]
        if len(lived) > 1 and _close_together(lived):
            lived = [union(lived)]  # pieces a sliver apart: one piece, repaired as usual
        if len(parts) > 1 and len(lived) < len(parts):
            say.append(
                f"group {g}: {len(parts) - len(lived)} detached piece(s) without households "
                "attached to the neighbouring groups"
            )
        if len(lived) > 1:
            desc = "; ".join(
                f"{n} households" for n in sorted((n for n in counts if n), reverse=True)
            )
            if policy == "refuse":
                raise InvalidInput(
                    f"village {code}: group {g} lives in {len(lived)} separate pieces ({desc}); "
                    "fix the group polygon, or keep the pieces as one unit with the 'keep' "
                    "policy (--group-pieces keep)",
                    detail={"village_code": code, "group_no": g, "pieces": len(lived)},
                )
            multipart.setdefault(code, set()).add(g)
            say.append(f"group {g}: {len(lived)} separate pieces kept as one unit (policy keep)")
        kept = lived if lived else parts[:1]
        polygons.setdefault(code, {})[g] = kept[0] if len(kept) == 1 else shapely.MultiPolygon(kept)
    return SuppliedGroups(
        polygons,
        {k: frozenset(v) for k, v in multipart.items()},
        {k: v for k, v in notes.items() if v},
    )
