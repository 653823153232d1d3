"""Offline geocoding of households without coordinates, against the gazetteer.

The gazetteer is what PostGIS already knows: address points (from earlier imports with
coordinates, or a points file), villager-group territories and village boundaries. For
each row, in order:

1. a known address point for its normalised address → precision ``house``;
2. else a point inside its villager group's polygon → ``group``;
3. else a point inside its village → ``village``;
4. else ``failed``, with the reason.

Points placed at group or village precision are *spread* deterministically inside the
polygon: each household draws its own pseudo-random point from a hash of its key
(village code + register number), so re-importing the same row gives the same point and
households are never stacked on one centroid. They are approximate by construction and
marked so by their precision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

#: Candidate points drawn per household before falling back to a point on the surface.
CANDIDATES = 48
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def key_seeds(keys: Sequence[str] | np.ndarray) -> np.ndarray:
    """64-bit seeds from text keys (stable across runs and machines).

    >>> key_seeds(["420117105201/0001"]).dtype
    dtype('uint64')
    >>> bool(key_seeds(["a"])[0] == key_seeds(["a"])[0])
    True
    """
    out = np.empty(len(keys), dtype=np.uint64)
    for i, k in enumerate(keys):
        out[i] = int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "little")
    return out


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Counter-based mixing (SplitMix64 finaliser), vectorised on uint64."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(seeds: np.ndarray, stream: int) -> np.ndarray:
    """``len(seeds) × CANDIDATES`` uniforms in [0, 1) for one stream."""
    with np.errstate(over="ignore"):
        counters = (
            seeds[:, None]
            + np.uint64(stream) * np.uint64(0xD1B54A32D192ED03)
            + (np.arange(CANDIDATES, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15))
        )
    return (_splitmix64(counters) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def spread_points(polygon: BaseGeometry, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One deterministic point inside ``polygon`` per seed.

    >>> from shapely import box
    >>> x, y = spread_points(box(0, 0, 1, 1), key_seeds(["a", "b", "c"]))
    >>> bool(((0 < x) & (x < 1) & (0 < y) & (y < 1)).all()), len(set(x.round(9)))
    (True, 3)
    """
    minx, miny, maxx, maxy = polygon.bounds
    ux, uy = _uniform(seeds, 1), _uniform(seeds, 2)
    cx = minx + ux * (maxx - minx)
    cy = miny + uy * (maxy - miny)
    shapely.prepare(polygon)
    inside = shapely.contains_xy(polygon, cx, cy)
    first = inside.argmax(axis=1)
    found = inside[np.arange(len(seeds)), first]
    x = cx[np.arange(len(seeds)), first]
    y = cy[np.arange(len(seeds)), first]
    if not found.all():  # a sliver-like polygon in a large bounding box
        fallback = shapely.point_on_surface(polygon)
        x[~found], y[~found] = fallback.x, fallback.y
    return x, y


@dataclass(frozen=True)
class Gazetteer:
    """What the store knows, keyed for lookups.

    Attributes
    ----------
    address_points
        Normalised address → (lon, lat).
    groups
        (village code, group number) → polygon, for groups with a territory.
    villages
        Village code → polygon.
    """

    address_points: Mapping[str, tuple[float, float]]
    groups: Mapping[tuple[str, int], BaseGeometry]
    villages: Mapping[str, BaseGeometry]


def geocode(frame: pd.DataFrame, gazetteer: Gazetteer) -> pd.DataFrame:
    """Place rows without coordinates.

    Parameters
    ----------
    frame
        Columns ``key`` (unique text per household), ``village_code``, ``group_no``
        (nullable integer) and ``address_norm`` (nullable text).
    gazetteer
        Address points and polygons to place against.

    Returns
    -------
    DataFrame
        Same index, columns ``lon``, ``lat``, ``precision`` (``house``, ``group``,
        ``village``, ``failed``), ``source`` and ``reason`` (why it failed, else None).
    """
    n = len(frame)
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    precision = np.full(n, "failed", dtype=object)
    source = np.full(n, None, dtype=object)
    reason = np.full(n, None, dtype=object)
    if n == 0:
        return pd.DataFrame(
            {"lon": lon, "lat": lat, "precision": precision, "source": source, "reason": reason},
            index=frame.index,
        )

    addr = frame["address_norm"].to_numpy(dtype=object)
    hits = [gazetteer.address_points.get(a) if isinstance(a, str) and a else None for a in addr]
    house = np.array([h is not None for h in hits])
    if house.any():
        pts = np.array([h for h in hits if h is not None], dtype=float)
        lon[house], lat[house] = pts[:, 0], pts[:, 1]
        precision[house] = "house"
        source[house] = "gazetteer:address-point"

    seeds = key_seeds(frame["key"].to_numpy(dtype=object))
    villages = frame["village_code"].to_numpy(dtype=object)
    groups = frame["group_no"].to_numpy(dtype=object)
    todo = ~house
    # by group polygon
    by_group: dict[tuple[str, int], list[int]] = {}
    for i in np.flatnonzero(todo):
        g = groups[i]
        if g is None or pd.isna(g):
            continue
        k = (str(villages[i]), int(g))
        if k in gazetteer.groups:
            by_group.setdefault(k, []).append(int(i))
    for k, rows in by_group.items():
        idx = np.asarray(rows)
        lon[idx], lat[idx] = spread_points(gazetteer.groups[k], seeds[idx])
        precision[idx] = "group"
        source[idx] = "gazetteer:group-polygon"
        todo[idx] = False
    # by village polygon
    by_village: dict[str, list[int]] = {}
    for i in np.flatnonzero(todo):
        v = str(villages[i])
        if v in gazetteer.villages:
            by_village.setdefault(v, []).append(int(i))
        else:
            reason[i] = f"no boundary for village {v}"
    for v, rows in by_village.items():
        idx = np.asarray(rows)
        lon[idx], lat[idx] = spread_points(gazetteer.villages[v], seeds[idx])
        precision[idx] = "village"
        source[idx] = "gazetteer:village-polygon"
    return pd.DataFrame(
        {"lon": lon, "lat": lat, "precision": precision, "source": source, "reason": reason},
        index=frame.index,
    )
