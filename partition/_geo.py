"""Private geometry helpers: metric CRS choice, parts, shared borders, precision."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
import shapely.errors
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

#: Coordinates of derived geometry are snapped to this grid (metres) so that shared
#: vertices of neighbouring territories are bit-identical.
GRID_SIZE = 0.01

#: Two territories are neighbours only if they share a border longer than this (metres).
MIN_SHARED_BORDER = 1.0


def utm_crs(lon: float, lat: float) -> CRS:
    """Return the WGS84 / UTM zone CRS containing ``(lon, lat)``.

    Parameters
    ----------
    lon, lat
        Geographic coordinates in degrees.

    Examples
    --------
    >>> utm_crs(113.3, 23.1).to_epsg()
    32649
    """
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def polygon_parts(geom: BaseGeometry | None) -> list[shapely.Polygon]:
    """Polygon parts of a (Multi)Polygon or GeometryCollection, largest first."""
    if geom is None or geom.is_empty:
        return []
    out: list[shapely.Polygon] = []
    for g in shapely.get_parts(geom):
        if isinstance(g, shapely.Polygon):
            if g.area > 0:
                out.append(g)
        elif isinstance(g, shapely.MultiPolygon | shapely.GeometryCollection):
            out.extend(polygon_parts(g))
    return sorted(out, key=lambda p: (-p.area, p.bounds))


def polygonal(geom: BaseGeometry | None) -> BaseGeometry:
    """Keep only the polygonal part of ``geom`` (drops lines and points from overlays)."""
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    if isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        return geom
    parts = polygon_parts(geom)
    if not parts:
        return shapely.Polygon()
    return shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]


def as_multipolygon(geom: BaseGeometry) -> shapely.MultiPolygon:
    """Wrap a polygonal geometry as a MultiPolygon (empty in, empty out)."""
    geom = polygonal(geom)
    if isinstance(geom, shapely.MultiPolygon):
        return geom
    if geom.is_empty:
        return shapely.MultiPolygon()
    return shapely.MultiPolygon([geom])


def clean(geom: BaseGeometry, grid_size: float | None = None) -> BaseGeometry:
    """Make valid, keep the polygonal part and optionally snap to a precision grid."""
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    geom = polygonal(geom)
    if geom.is_empty or grid_size is None:
        return geom
    return polygonal(shapely.set_precision(geom, grid_size))


def cover_union(geoms: Sequence[BaseGeometry]) -> BaseGeometry:
    """Union of edge-matched polygons: fast coverage union, robust union as fallback."""
    arr = np.asarray([g for g in geoms if g is not None and not g.is_empty], dtype=object)
    if len(arr) == 0:
        return shapely.Polygon()
    if len(arr) == 1:
        return polygonal(arr[0])
    try:
        merged = polygonal(shapely.coverage_union_all(arr))
    except shapely.errors.GEOSException:
        return union(list(arr))
    if abs(merged.area - float(shapely.area(arr).sum())) > 1e-6 * max(1.0, merged.area):
        return union(list(arr))
    return merged


def union(geoms: Sequence[BaseGeometry], grid_size: float = GRID_SIZE) -> BaseGeometry:
    """Robust union of polygons: exact first, then on a precision grid.

    Geometries that went through a round trip of reprojections can carry near-coincident
    edges that GEOS overlay refuses ("non-noded intersection"); snapping to the grid (in
    the units of the CRS; metres here) first resolves them.
    """
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return shapely.Polygon()
    if len(geoms) == 1:
        return polygonal(geoms[0])
    arr = np.asarray(geoms, dtype=object)
    try:
        return polygonal(shapely.union_all(arr))
    except shapely.errors.GEOSException:
        pass
    try:
        return polygonal(shapely.union_all(arr, grid_size=grid_size))
    except shapely.errors.GEOSException:
        snapped = shapely.make_valid(shapely.set_precision(arr, grid_size))
        return polygonal(shapely.union_all(snapped, grid_size=grid_size))


def shared_lengths(geoms: Sequence[BaseGeometry]) -> dict[tuple[int, int], float]:
    """Length of the common border of every pair of touching polygons.

    Returns a mapping ``(i, j) -> metres`` with ``i < j``; pairs meeting only at points
    get length 0 and are kept out.
    """
    arr = np.asarray(list(geoms), dtype=object)
    out: dict[tuple[int, int], float] = {}
    if len(arr) < 2:
        return out
    tree = shapely.STRtree(arr)
    left, right = tree.query(arr, predicate="intersects")
    mask = left < right
    left, right = left[mask], right[mask]
    if len(left) == 0:
        return out
    bounds = shapely.boundary(arr)
    inter = shapely.intersection(bounds[left], bounds[right], grid_size=GRID_SIZE)
    lengths = shapely.length(inter)
    for i, j, length in zip(left.tolist(), right.tolist(), lengths.tolist(), strict=True):
        if length > 0:
            out[(i, j)] = float(length)
    return out


def polsby_popper(geom: BaseGeometry) -> float:
    """Polsby–Popper compactness 4πA/P² of a metric polygon (1 for a disc).

    Examples
    --------
    >>> round(polsby_popper(shapely.box(0, 0, 1, 1)), 4)
    0.7854
    """
    if geom is None or geom.is_empty or geom.length == 0:
        return 0.0
    return float(4.0 * math.pi * geom.area / geom.length**2)


def renode(geoms: Sequence[BaseGeometry], tolerance: float = 1e-6) -> list[BaseGeometry]:
    """Insert every neighbour's vertices lying on a polygon's edges into that polygon.

    Polygons built by different overlay operations can tile an area exactly and still
    have unmatched vertices along shared edges; snapping each to its neighbours'
    vertices makes the set a valid shapely coverage (edges match vertex for vertex).
    """
    arr = np.asarray(list(geoms), dtype=object)
    if len(arr) < 2:
        return list(arr)
    tree = shapely.STRtree(arr)
    out = []
    for i, g in enumerate(arr):
        near = [j for j in tree.query(g, predicate="intersects").tolist() if j != i]
        if not near or g.is_empty:
            out.append(g)
            continue
        ref = shapely.multipoints(shapely.get_coordinates(arr[near]))
        out.append(polygonal(shapely.snap(g, ref, tolerance)))
    return out


def rebuild_coverage(geoms: Sequence[BaseGeometry]) -> list[BaseGeometry]:
    """Rebuild nearly-tiling polygons as an exactly noded coverage.

    All boundaries are noded together and polygonised into faces; every face goes to
    the polygon holding its interior point (the lowest index where two overlap), and
    each polygon is re-assembled from its faces with a coverage union. Faces of no
    polygon (pin-hole gaps) are left out. Used when snapping cannot edge-match
    territories produced by different overlay operations.
    """
    arr = np.asarray(list(geoms), dtype=object)
    lines = shapely.union_all(shapely.boundary(arr))
    faces = np.asarray(
        shapely.get_parts(shapely.polygonize(shapely.get_parts(lines))), dtype=object
    )
    if len(faces) == 0:
        return list(arr)
    probes = shapely.point_on_surface(faces)
    tree = shapely.STRtree(arr)
    face_idx, owner_idx = tree.query(probes, predicate="within")
    owner = np.full(len(faces), -1)
    for f, o in sorted(zip(face_idx.tolist(), owner_idx.tolist(), strict=True), reverse=True):
        owner[f] = o  # sorted descending: the lowest owner index is written last
    out: list[BaseGeometry] = []
    for i, g in enumerate(arr):
        mine = faces[owner == i]
        out.append(polygonal(shapely.coverage_union_all(mine)) if len(mine) else g)
    return out


def snap_coverage(
    geoms: Sequence[BaseGeometry],
    grid_size: float = GRID_SIZE,
    *,
    region: BaseGeometry | None = None,
) -> list[BaseGeometry]:
    """Rebuild nearly-tiling polygons from snap-rounded, noded boundaries.

    All boundaries are noded together on the precision grid (snap rounding: a vertex
    within half a cell of an edge becomes a vertex of that edge), polygonised into
    faces, and every face goes to the polygon holding its interior point (the lowest
    index where two overlap); a face of no polygon goes to the polygon sharing its
    longest edge. The result is a valid coverage whose shared borders match vertex for
    vertex, with no two parts of one boundary closer than the grid without meeting in
    a vertex — so it stays valid when every vertex is reprojected (an edge passing a
    hair's breadth from a vertex could cross it after reprojection).

    Examples
    --------
    >>> a = shapely.box(0, 0, 1, 1)
    >>> b = shapely.Polygon([(1.004, 0), (2, 0), (2, 1), (1.004, 1)])  # 4 mm gap
    >>> out = np.asarray(snap_coverage([a, b]), dtype=object)
    >>> bool(shapely.coverage_is_valid(out)), round(float(shapely.area(out).sum()), 6)
    (True, 2.0)
    """
    arr = np.asarray(list(geoms), dtype=object)
    live = np.flatnonzero([g is not None and not g.is_empty for g in arr])
    if len(live) == 0:
        return list(arr)
    lines = shapely.union_all(shapely.boundary(arr[live]), grid_size=grid_size)
    faces = np.asarray(
        shapely.get_parts(shapely.polygonize(shapely.get_parts(lines))), dtype=object
    )
    faces = faces[shapely.area(faces) > 0] if len(faces) else faces
    if len(faces) == 0:
        return list(arr)
    probes = shapely.point_on_surface(faces)
    owner = np.full(len(faces), -1)
    f_idx, o_idx = shapely.STRtree(arr[live]).query(probes, predicate="within")
    for f, o in sorted(zip(f_idx.tolist(), live[o_idx].tolist(), strict=True), reverse=True):
        owner[f] = o  # descending: the lowest owner index is written last
    orphans = np.flatnonzero(owner < 0).tolist()
    if orphans and region is not None:
        shapely.prepare(region)
        inside = shapely.contains(region, probes[orphans])
        orphans = [f for f, ok in zip(orphans, inside.tolist(), strict=True) if ok]
    if orphans and (owner >= 0).any():
        tree = shapely.STRtree(faces)
        for _ in range(3):  # orphans next to orphans wait for a neighbour to be owned
            pending = []
            for f in orphans:
                best, best_len = -1, 0.0
                for n in tree.query(faces[f], predicate="intersects").tolist():
                    if owner[n] < 0:
                        continue
                    length = shapely.intersection(faces[f].boundary, faces[n].boundary).length
                    if length > best_len:
                        best, best_len = int(owner[n]), length
                if best < 0:
                    pending.append(f)
                else:
                    owner[f] = best
            orphans = pending
            if not orphans:
                break
    out: list[BaseGeometry] = []
    for i, g in enumerate(arr):
        mine = faces[owner == i]
        if len(mine) == 0:
            out.append(g if g is None or g.is_empty else shapely.Polygon())
            continue
        out.append(polygonal(shapely.coverage_union_all(mine)))
    return out
