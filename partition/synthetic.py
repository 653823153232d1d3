"""Synthetic villages for tests, doctests, benchmarks and demos (no files needed).

A random village is a star-shaped polygon (optionally with a hole, optionally a second
part), villager groups are clusters of household points around random centres inside it.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

__all__ = ["random_town", "random_village"]

#: Metric CRS used for synthetic geometry (UTM 49N, around Guangzhou).
SYNTH_CRS = 32649
_ORIGIN = (740_000.0, 2_560_000.0)


def _star(rng: np.random.Generator, cx: float, cy: float, radius: float) -> shapely.Polygon:
    m = int(rng.integers(7, 14))
    ang = np.sort(rng.uniform(0, 2 * np.pi, m))
    r = radius * rng.uniform(0.6, 1.0, m)
    poly = shapely.Polygon(np.column_stack([cx + r * np.cos(ang), cy + r * np.sin(ang)]))
    return shapely.make_valid(poly).buffer(0)


def random_village(
    rng: np.random.Generator,
    *,
    code: str = "440101001001",
    n_groups: int = 12,
    households: tuple[int, int] = (20, 90),
    radius: float = 1500.0,
    hole: bool = False,
    two_parts: bool = False,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Build one random village and its households (EPSG:4326).

    Parameters
    ----------
    rng
        Source of randomness.
    code
        12-digit village code.
    n_groups
        Number of villager groups (clusters of households).
    households
        Range of households per group.
    radius
        Approximate village radius in metres.
    hole, two_parts
        Cut a hole in the middle / add a detached second part.
    offset
        Metric offset of the village centre (to place several villages side by side).

    Returns
    -------
    (villages, households)
        One-row village GeoDataFrame and household points with ``register_no,
        village_code, group_no, population``.

    Examples
    --------
    >>> v, hh = random_village(np.random.default_rng(0), n_groups=3)
    >>> len(v), hh["group_no"].nunique(), str(hh.crs)
    (1, 3, 'EPSG:4326')
    """
    cx, cy = _ORIGIN[0] + offset[0], _ORIGIN[1] + offset[1]
    poly = _star(rng, cx, cy, radius)
    if hole:
        poly = poly.difference(shapely.Point(cx, cy).buffer(radius * 0.15))
    geom = poly
    if two_parts:
        geom = shapely.union(poly, _star(rng, cx + 2.6 * radius, cy, radius * 0.5))
    pts_x: list[np.ndarray] = []
    pts_y: list[np.ndarray] = []
    gno: list[np.ndarray] = []
    minx, miny, maxx, maxy = geom.bounds
    for g in range(n_groups):
        while True:
            c = rng.uniform([minx, miny], [maxx, maxy])
            if geom.contains(shapely.Point(c)):
                break
        n = int(rng.integers(households[0], households[1] + 1))
        p = c + rng.normal(0, radius * 0.12, (n, 2))
        inside = shapely.contains_xy(geom, p[:, 0], p[:, 1])
        p[~inside] = c
        pts_x.append(p[:, 0])
        pts_y.append(p[:, 1])
        gno.append(np.full(n, g + 1))
    x = np.concatenate(pts_x) if pts_x else np.zeros(0)
    y = np.concatenate(pts_y) if pts_y else np.zeros(0)
    groups = np.concatenate(gno) if gno else np.zeros(0, dtype=int)
    hh = gpd.GeoDataFrame(
        {
            "register_no": [f"{code}-{i:05d}" for i in range(len(x))],
            "village_code": code,
            "group_no": groups.astype(np.int64),
            "population": rng.integers(1, 6, len(x)),
        },
        geometry=shapely.points(np.column_stack([x, y])) if len(x) else [],
        crs=SYNTH_CRS,
    ).to_crs(4326)
    mp = geom if isinstance(geom, shapely.MultiPolygon) else shapely.MultiPolygon([geom])
    v = gpd.GeoDataFrame({"code": [code], "name": [f"村{code[-3:]}"]}, geometry=[mp], crs=SYNTH_CRS)
    return v.to_crs(4326), hh


def random_town(
    rng: np.random.Generator, n_villages: int = 4, **kwargs: object
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Several random villages side by side (see :func:`random_village`).

    Examples
    --------
    >>> v, hh = random_town(np.random.default_rng(1), 2, n_groups=2)
    >>> v["code"].tolist()
    ['440101001001', '440101001002']
    """
    vs, hs = [], []
    for i in range(n_villages):
        v, h = random_village(
            rng,
            code=f"440101001{i + 1:03d}",
            offset=(i * 4000.0, 0.0),
            **kwargs,  # type: ignore[arg-type]
        )
        vs.append(v)
        hs.append(h)
    return (
        gpd.GeoDataFrame(gpd.pd.concat(vs, ignore_index=True), crs=4326),
        gpd.GeoDataFrame(gpd.pd.concat(hs, ignore_index=True), crs=4326),
    )
