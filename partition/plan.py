"""Partition households into basic grids, village by village.

:func:`partition_plan` validates the inputs, splits them into one picklable work item
per village and runs :func:`partition_village` on each (serially, in a process pool, or on
a Dask cluster), then assembles a :class:`Plan`.

Named policies for awkward input
--------------------------------
* **Village in several parts** — every part is partitioned on its own (a group with
  households in two parts becomes one unit per part, flagged).
* **Oversized group** (more households than ``hi``) — ``split_large=False``: the group is
  its own grid, flagged ``oversized``; ``split_large=True``: its households are split into
  contiguous, balanced parts, each its own grid, flagged ``split_group``.
* **Empty village** (no households) — ``empty_village="single"``: one grid covering the
  village, flagged ``empty``; ``"skip"``: no grid, noted in :attr:`Plan.villages`.
* **Households outside every village** (no known village code and no village polygon
  containing them) — listed in :attr:`Plan.unassigned`; households outside their own
  village's polygon stay with their group and are marked ``outside_boundary``.
* **Fixed number of grids** larger than the number of groups — :class:`InvalidInput`.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from geogrid.errors import InvalidInput
from partition._geo import (
    GRID_SIZE,
    MIN_SHARED_BORDER,
    as_multipolygon,
    clean,
    cover_union,
    polygon_parts,
    rebuild_coverage,
    renode,
    shared_lengths,
    snap_coverage,
    union,
    utm_crs,
)
from partition.exact import balance_cost
from partition.redraw import redraw_labels, repair_labels
from partition.solver import (
    BalanceBound,
    ExactRecord,
    Objective,
    balance_bound_parts,
    partition_units,
)
from partition.territories import SuppliedGroups, derive_metric, repair_metric, supplied_groups

__all__ = [
    "PartitionParams",
    "Plan",
    "VillageWork",
    "partition_plan",
    "partition_village",
    "village_work",
]

log = logging.getLogger(__name__)

HOUSEHOLD_COLUMNS = ("register_no", "group_no")
VILLAGE_COLUMNS = ("code",)
GROUP_COLUMNS = ("village_code", "group_no")
GRID_LEVEL = 3
#: Default CP-SAT budget per village (deterministic seconds); see PartitionParams.
DEFAULT_EXACT_SECONDS = 0.05

#: Columns of a plan's frames besides the geometry: ``Plan.grids`` (level-3 grids),
#: ``Plan.assignment`` (villager group or part → grid) and ``Plan.households``.
PLAN_GRID_COLUMNS = (
    "code", "village_code", "grid_no", "level", "households", "population", "groups",
    "flags", "area_km2", "polsby_popper",
)  # fmt: skip
PLAN_UNIT_COLUMNS = (
    "village_code", "unit", "group_no", "part", "grid_code", "households", "population",
)  # fmt: skip
PLAN_HOUSEHOLD_COLUMNS = (
    "register_no", "village_code", "unit", "grid_code", "outside_boundary",
)  # fmt: skip


@dataclass(frozen=True)
class PartitionParams:
    """Parameters of a partition run (stored with the plan).

    Parameters
    ----------
    target, lo, hi
        Target households per grid and the tolerance band.
    seed
        Seed of the per-village :class:`numpy.random.Generator` (mixed with the code).
    split_large
        Split groups above ``hi`` into contiguous parts instead of leaving them alone.
    empty_village
        Policy for villages without households: ``"single"`` or ``"skip"``.
    group_pieces
        Policy for a supplied group living in separate pieces or given several polygons
        (:func:`partition.territories.supplied_groups`): ``"refuse"`` or ``"keep"``.
    restarts, kicks
        Search effort: KMeans starts per k and perturbation rounds per start.
    exact_seconds
        CP-SAT budget per village (deterministic seconds, about one core's seconds): the
        heuristic's plan for every number of grids evaluated is handed to an exact model
        of the same balance objective, which improves it or proves it optimal
        (:mod:`partition.exact`); 0 → heuristic only. The default keeps a county of
        ~300k households within ~30 s on 2 cores; more proves more villages optimal.
    """

    target: int = 150
    lo: int = 100
    hi: int = 200
    seed: int = 0
    split_large: bool = False
    empty_village: Literal["single", "skip"] = "single"
    group_pieces: Literal["refuse", "keep"] = "refuse"
    restarts: int = 2
    kicks: int = 8
    exact_seconds: float = DEFAULT_EXACT_SECONDS

    def __post_init__(self) -> None:
        if not (isinstance(self.exact_seconds, int | float) and 0 <= self.exact_seconds < 1e6):
            raise InvalidInput(f"exact_seconds must be >= 0, got {self.exact_seconds!r}.")
        if not 0 < self.lo <= self.target <= self.hi:
            raise InvalidInput(
                f"need 0 < min <= target <= max, got {self.lo} <= {self.target} <= {self.hi}."
            )
        if self.empty_village not in ("single", "skip"):
            raise InvalidInput("empty_village must be 'single' or 'skip'.")
        if self.group_pieces not in ("refuse", "keep"):
            raise InvalidInput("group_pieces must be 'refuse' or 'keep'.")

    def objective(self, **changes: float) -> Objective:
        """The solver objective for these parameters."""
        return replace(
            Objective(target=float(self.target), lo=float(self.lo), hi=float(self.hi)),
            **changes,
        )


@dataclass
class VillageWork:
    """Everything needed to partition one village (picklable, EPSG:4326)."""

    code: str
    name: str
    geometry: BaseGeometry
    households: pd.DataFrame  # register_no, group_no, population, lon, lat
    groups: dict[int, BaseGeometry] | None = None
    k: int | None = None
    existing: list[tuple[str, BaseGeometry, str | None]] | None = None
    locked: frozenset[str] = frozenset()
    multipart: frozenset[int] = frozenset()  # supplied groups kept in pieces (policy keep)
    group_notes: tuple[str, ...] = ()  # what the group-pieces policy found


@dataclass
class VillageResult:
    """Output of :func:`partition_village` (EPSG:4326 geometries)."""

    code: str
    grids: list[dict[str, Any]]
    units: list[dict[str, Any]]
    households: pd.DataFrame  # register_no, unit, grid_code, outside_boundary
    bound: BalanceBound
    notes: list[str]
    moved: int | None = None
    exact: list[ExactRecord] = field(default_factory=list)
    moved_fresh: int | None = None
    exact_bound: float | None = None


@dataclass
class Plan:
    """A partition result: grids, group→grid assignment and what could not be placed.

    Attributes
    ----------
    grids
        One row per grid: ``code, village_code, grid_no, level, households, population,
        groups`` (text, e.g. ``"1,2,5"``), ``flags`` (text), geometry MultiPolygon,
        EPSG:4326.
    assignment
        One row per unit (group or group part): ``village_code, unit, group_no, part,
        grid_code, households, population`` plus the unit territory as geometry.
    households
        ``register_no, village_code, unit, grid_code, outside_boundary``.
    unassigned
        Households in no grid, with ``reason``.
    villages
        Per village: code, name, geometry (EPSG:4326), bounds the group sizes allow
        (in-band share, mean deviation, balance cost), households moved and those a fresh
        partition would move (redraw), whether the exact solver proved every kept
        component optimal and the largest gap it left, notes.
    params
        The :class:`PartitionParams` used.
    """

    grids: gpd.GeoDataFrame
    assignment: gpd.GeoDataFrame
    households: pd.DataFrame
    unassigned: pd.DataFrame
    villages: gpd.GeoDataFrame
    params: PartitionParams
    redraw: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def households_moved(self) -> int | None:
        """Households assigned to another grid than in the existing plan (redraw only)."""
        if not self.redraw:
            return None
        return int(self.villages["moved"].fillna(0).sum())

    @property
    def households_moved_fresh(self) -> int | None:
        """Households a fresh partition would have moved (redraw only), for comparison."""
        if not self.redraw or "moved_fresh" not in self.villages.columns:
            return None
        return int(self.villages["moved_fresh"].fillna(0).sum())


# --------------------------------------------------------------------------- geometry utils


def _metric_crs(geom4326: BaseGeometry) -> CRS:
    c = geom4326.centroid if not geom4326.is_empty else shapely.Point(0, 0)
    return utm_crs(c.x, c.y)


class _Proj:
    """Forward/backward transformers between EPSG:4326 and a metric CRS."""

    def __init__(self, metric: CRS) -> None:
        self.metric = metric
        self.fwd = Transformer.from_crs(4326, metric, always_xy=True)
        self.inv = Transformer.from_crs(metric, 4326, always_xy=True)

    def to_metric(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(
            geom, lambda c: np.column_stack(self.fwd.transform(c[:, 0], c[:, 1]))
        )

    def to_4326(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(
            geom, lambda c: np.column_stack(self.inv.transform(c[:, 0], c[:, 1]))
        )

    def xy(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = self.fwd.transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.column_stack([x, y])


def neighbours(
    geoms: Sequence[BaseGeometry], min_border: float = MIN_SHARED_BORDER
) -> list[list[int]]:
    """Edge adjacency lists: ``i`` and ``j`` are neighbours if they share > ``min_border`` m.

    Polygons meeting only at a corner are not neighbours.

    Examples
    --------
    >>> import shapely
    >>> neighbours([shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10),
    ...             shapely.box(20, 10, 30, 20)])
    [[1], [0], []]
    """
    nb: list[list[int]] = [[] for _ in geoms]
    for (i, j), length in shared_lengths(geoms).items():
        if length > min_border:
            nb[i].append(j)
            nb[j].append(i)
    return [sorted(x) for x in nb]


# --------------------------------------------------------------------------- input checks


def _check_frame(frame: Any, what: str, columns: Iterable[str], geom_type: str | None) -> None:
    if not isinstance(frame, gpd.GeoDataFrame):
        raise InvalidInput(f"{what} must be a GeoDataFrame.")
    if frame.crs is None:
        raise InvalidInput(f"{what} have no CRS; set it (e.g. EPSG:4326) first.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{what} lack the column(s) {', '.join(missing)}.")
    if geom_type and len(frame):
        types = set(frame.geom_type.dropna())
        bad = types - ({"Point"} if geom_type == "Point" else {"Polygon", "MultiPolygon"})
        if bad or frame.geometry.isna().any():
            raise InvalidInput(f"{what} must all be {geom_type} geometries, found {sorted(bad)}.")


def _check_villages(villages: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    _check_frame(villages, "villages", VILLAGE_COLUMNS, "Polygon")
    v = villages.to_crs(4326).copy()
    v["code"] = v["code"].astype(str)
    bad_codes = v.loc[~v["code"].str.fullmatch(r"\d{12}"), "code"].tolist()
    if bad_codes:
        raise InvalidInput(f"village codes must be 12 digits: {bad_codes[:5]}.")
    if v["code"].duplicated().any():
        raise InvalidInput(
            f"duplicate village codes: {v.loc[v['code'].duplicated(), 'code'].tolist()[:5]}."
        )
    invalid = v.loc[~v.geometry.is_valid, "code"].tolist()
    if invalid:
        raise InvalidInput(
            f"village geometries are invalid: {invalid[:5]}; repair them (e.g. make_valid) first."
        )
    empty = v.loc[v.geometry.is_empty, "code"].tolist()
    if empty:
        raise InvalidInput(f"village geometries are empty: {empty[:5]}.")
    if "name" not in v.columns:
        v["name"] = v["code"]
    return v.sort_values("code").reset_index(drop=True)


def _single_points(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Unwrap one-point MultiPoints (as GeoPackage writers often store points)."""
    multi = (frame.geom_type == "MultiPoint").to_numpy()
    if not multi.any():
        return frame
    geoms = frame.geometry.to_numpy()
    n = shapely.get_num_geometries(geoms[multi])
    if (n != 1).any():
        raise InvalidInput(f"{int((n != 1).sum())} household geometries hold several points.")
    frame = frame.copy()
    frame.loc[multi, frame.geometry.name] = shapely.get_geometry(geoms[multi], 0)
    return frame


def _check_households(households: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if isinstance(households, gpd.GeoDataFrame) and households.crs is not None:
        households = _single_points(households)
    _check_frame(households, "households", HOUSEHOLD_COLUMNS, "Point")
    h = households.to_crs(4326).copy()
    if h["register_no"].isna().any():
        raise InvalidInput("households have an empty register_no.")
    h["register_no"] = h["register_no"].astype(str)
    key = ["village_code", "register_no"] if "village_code" in h.columns else ["register_no"]
    dup = h.duplicated(key)
    if dup.any():
        raise InvalidInput(
            f"duplicate household {' + '.join(key)}: {h.loc[dup, 'register_no'].tolist()[:5]}; "
            "a register number must be unique within its village."
        )
    if h["group_no"].isna().any():
        raise InvalidInput(
            f"{int(h['group_no'].isna().sum())} households have no group_no; assign them first."
        )
    h["group_no"] = h["group_no"].astype(np.int64)
    if "population" not in h.columns:
        h["population"] = 1
    h["population"] = h["population"].fillna(0).astype(np.int64)
    if "village_code" not in h.columns:
        h["village_code"] = None
    h["village_code"] = h["village_code"].astype("string")
    empty = h.geometry.is_empty
    if empty.any():
        raise InvalidInput(f"{int(empty.sum())} households have empty geometry.")
    return h


def _locate(h: gpd.GeoDataFrame, v: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Give every household a known village code; return (located, unassigned)."""
    known = set(v["code"])
    ok = h["village_code"].isin(known).fillna(False).to_numpy(dtype=bool)
    h = h.copy()
    if (~ok).any():
        lost = h.loc[~ok]
        joined = gpd.sjoin(
            lost[["geometry"]], v[["code", "geometry"]], predicate="within", how="left"
        )
        joined = joined[~joined.index.duplicated(keep="first")]
        h.loc[~ok, "village_code"] = joined["code"].reindex(lost.index).astype("string")
    found = h["village_code"].isin(known).fillna(False).to_numpy(dtype=bool)
    unassigned = pd.DataFrame(
        {
            "register_no": h.loc[~found, "register_no"].to_numpy(),
            "village_code": households_code(h.loc[~found]),
            "reason": "outside_every_village",
        }
    )
    if len(unassigned):
        log.warning(
            "%d households lie outside every village; reported, not assigned", len(unassigned)
        )
    return h.loc[found], unassigned


def households_code(frame: pd.DataFrame) -> list[str | None]:
    """Village codes of ``frame`` as plain strings (missing → None)."""
    return [None if pd.isna(x) else str(x) for x in frame["village_code"]]


def village_work(
    households: gpd.GeoDataFrame,
    villages: gpd.GeoDataFrame,
    groups: gpd.GeoDataFrame | None = None,
    *,
    cadres: Mapping[str, int] | None = None,
    existing: gpd.GeoDataFrame | None = None,
    locked: Iterable[str] | None = None,
    group_pieces: str = "refuse",
) -> tuple[list[VillageWork], pd.DataFrame]:
    """Validate the inputs and cut them into one :class:`VillageWork` per village.

    Supplied group polygons go through :func:`partition.territories.supplied_groups`
    with the ``group_pieces`` policy (several polygons or pieces of one group).

    Returns the work items (sorted by village code) and the unassigned households.

    Raises
    ------
    geogrid.errors.InvalidInput
        Missing CRS or columns, wrong geometry types, invalid village geometry, bad or
        duplicate codes, cadre counts that are not positive integers, locked grids
        without a redraw or not among the existing grids.
    """
    v = _check_villages(villages)
    h = _check_households(households)
    h, unassigned = _locate(h, v)
    g_by_village: dict[str, dict[int, BaseGeometry]] = {}
    pieces = SuppliedGroups({}, {}, {})
    if groups is not None:
        _check_frame(groups, "group polygons", GROUP_COLUMNS, "Polygon")
        xy = shapely.get_coordinates(h.geometry.values)
        where = pd.DataFrame(
            {
                "village_code": h["village_code"].astype(str).to_numpy(),
                "group_no": h["group_no"].to_numpy(),
                "lon": xy[:, 0],
                "lat": xy[:, 1],
            }
        )
        pieces = supplied_groups(groups.to_crs(4326), where, policy=group_pieces)
        g_by_village = pieces.polygons
    ex_by_village: dict[str, list[tuple[str, BaseGeometry, str | None]]] = {}
    if existing is not None:
        _check_frame(existing, "existing grids", ("code",), "Polygon")
        e = existing.to_crs(4326)
        vc = (
            e["village_code"].astype(str)
            if "village_code" in e.columns
            else e["code"].astype(str).str[:12]
        )
        grp = e["groups"] if "groups" in e.columns else pd.Series([None] * len(e), index=e.index)
        for code, vcode, geom, gtxt in zip(e["code"].astype(str), vc, e.geometry, grp, strict=True):
            ex_by_village.setdefault(vcode, []).append(
                (code, geom, None if gtxt is None or pd.isna(gtxt) else str(gtxt))
            )
    locked_set = frozenset(str(c) for c in locked) if locked is not None else frozenset()
    if locked_set:
        known = {c for grids in ex_by_village.values() for c, _, _ in grids}
        if existing is None:
            raise InvalidInput("locked grids need the existing grids (a redraw).")
        unknown = sorted(locked_set - known)
        if unknown:
            raise InvalidInput(
                f"locked grids not among the existing grids: {unknown[:5]}.",
                detail={"grid_codes": unknown[:20]},
            )
    if cadres is not None:
        bad = {c: k for c, k in cadres.items() if not isinstance(k, int | np.integer) or k < 1}
        if bad:
            raise InvalidInput(
                f"cadre counts must be positive integers: {dict(list(bad.items())[:5])}."
            )
    lonlat = shapely.get_coordinates(h.geometry.values)
    h = pd.DataFrame(
        {
            "register_no": h["register_no"].to_numpy(),
            "village_code": h["village_code"].astype(str).to_numpy(),
            "group_no": h["group_no"].to_numpy(),
            "population": h["population"].to_numpy(),
            "lon": lonlat[:, 0],
            "lat": lonlat[:, 1],
        }
    )
    by_v = {
        code: frame.drop(columns="village_code").reset_index(drop=True)
        for code, frame in h.groupby("village_code", sort=True)
    }
    empty = pd.DataFrame(
        {"register_no": [], "group_no": [], "population": [], "lon": [], "lat": []}
    )
    work = [
        VillageWork(
            code=code,
            name=str(name),
            geometry=geom,
            households=by_v.get(code, empty),
            groups=g_by_village.get(code),
            k=None if cadres is None else (int(cadres[code]) if code in cadres else None),
            existing=ex_by_village.get(code) if existing is not None else None,
            locked=frozenset(c for c in locked_set if c[:12] == code),
            multipart=pieces.multipart.get(code, frozenset()),
            group_notes=tuple(pieces.notes.get(code, ())),
        )
        for code, name, geom in zip(v["code"], v["name"], v.geometry, strict=True)
    ]
    return work, unassigned


# --------------------------------------------------------------------------- one village


@dataclass
class _Unit:
    name: str
    group_no: int | None
    part: int
    geom: BaseGeometry  # metric
    hh: np.ndarray  # household row indices
    w: int
    pop: int
    alone: str | None = None  # flag when the unit must stand alone
    island: bool = False  # joined to another part of the village (policy: islands)


def _village_rng(seed: int, code: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(code)])


def _bisect(xy: np.ndarray, idx: np.ndarray, k: int, out: list[np.ndarray]) -> None:
    """Recursive principal-axis bisection of points ``idx`` into ``k`` near-equal parts."""
    if k <= 1 or len(idx) <= 1:
        out.append(idx)
        return
    pts = xy[idx] - xy[idx].mean(axis=0)
    cov = pts.T @ pts
    _, vecs = np.linalg.eigh(cov)
    axis = vecs[:, -1]
    proj = pts @ axis
    order = idx[np.lexsort((idx, proj))]
    k1 = k // 2
    cut = round(len(idx) * k1 / k)
    _bisect(xy, order[:cut], k1, out)
    _bisect(xy, order[cut:], k - k1, out)


def _split_unit(unit: _Unit, xy: np.ndarray, params: PartitionParams) -> list[_Unit]:
    """Split an oversized unit into contiguous balanced parts (``split_large``).

    Households are cut into ``k`` near-equal parts by recursive bisection along the
    principal axis; the parts' territories are derived inside the group's territory
    (Voronoi, dissolved, fragments handed over), so each part is one connected polygon.
    """
    k = max(math.ceil(unit.w / params.hi), round(unit.w / params.target))
    if k <= 1:
        return [unit]
    parts: list[np.ndarray] = []
    _bisect(xy, np.asarray(unit.hh), k, parts)
    codes = np.empty(len(xy), dtype=np.int64)
    for j, p in enumerate(parts):
        codes[p] = j
    terr = derive_metric(unit.geom, xy[unit.hh], codes[unit.hh])
    return [
        _Unit(
            name=f"{unit.name}.{j + 1}",
            group_no=unit.group_no,
            part=unit.part,
            geom=terr[j],
            hh=np.sort(parts[j]),
            w=len(parts[j]),
            pop=0,
            alone="split_group",
        )
        for j in range(len(parts))
    ]


def _units_for_part(
    work: VillageWork,
    part_geom: BaseGeometry,
    part_no: int,
    multi_part: bool,
    hh_idx: np.ndarray,
    xy: np.ndarray,
    groups_m: dict[int, BaseGeometry] | None,
    notes: list[str],
    params: PartitionParams,
) -> list[_Unit]:
    codes = work.households["group_no"].to_numpy()[hh_idx].astype(np.int64)
    supplied = None
    if groups_m:
        supplied = {g: geom for g, geom in groups_m.items() if geom.intersects(part_geom)}
    if len(hh_idx) == 0 and not supplied:
        return []
    suffix = f"@{part_no + 1}" if multi_part else ""
    meta: dict[int, tuple[str, int, str | None]] = {
        int(g): (f"{g}{suffix}", int(g), None) for g in np.unique(codes).tolist()
    }
    if supplied:
        meta.update({int(g): (f"{g}{suffix}", int(g), None) for g in supplied})
    if params.split_large and len(codes):
        # policy split_large: oversized groups without a supplied polygon are split here,
        # before territories are derived, so the parts come out of the same Voronoi tiling
        nxt = int(max(meta)) + 1
        gs, counts = np.unique(codes, return_counts=True)
        for g, c in zip(gs.tolist(), counts.tolist(), strict=True):
            if c <= params.hi or (supplied and g in supplied):
                continue
            k = max(math.ceil(c / params.hi), round(c / params.target))
            pieces: list[np.ndarray] = []
            sel = np.flatnonzero(codes == g)
            _bisect(xy[hh_idx], sel, k, pieces)
            del meta[int(g)]
            for j, piece in enumerate(pieces):
                codes[piece] = nxt
                meta[nxt] = (f"{g}.{j + 1}{suffix}", int(g), "split_group")
                nxt += 1
    if supplied:
        terr, repairs = repair_metric(part_geom, supplied, xy[hh_idx], codes, work.multipart)
        notes.extend(repairs)
    else:
        terr = derive_metric(part_geom, xy[hh_idx], codes)
    units = []
    for g in sorted(terr, key=lambda c: _unit_sort(meta[c][0])):
        mine = hh_idx[codes == g]
        name, gno, alone = meta[g]
        units.append(
            _Unit(
                name=name,
                group_no=gno,
                part=part_no,
                geom=terr[g],
                hh=mine,
                w=len(mine),
                pop=0,
                alone=alone,
            )
        )
    return units


def _initial_from_existing(
    units: list[_Unit], existing_m: list[tuple[str, BaseGeometry, set[str] | None]]
) -> list[str | None]:
    """Old grid code of every unit: by its ``groups`` list, else by largest overlap."""
    out: list[str | None] = []
    for u in units:
        code = None
        for ecode, _, names in existing_m:
            if names is not None and u.name in names:
                code = ecode
                break
        if code is None:
            best = 0.0
            for ecode, egeom, _ in existing_m:
                a = u.geom.intersection(egeom).area if u.geom.intersects(egeom) else 0.0
                if a > best + 1e-9:
                    code, best = ecode, a
            if best < 0.5 * u.geom.area:
                code = None if best == 0 else code
        out.append(code)
    return out


def _attach_islands(
    units: list[_Unit], n_parts: int, params: PartitionParams, notes: list[str]
) -> tuple[list[_Unit], list[tuple[int, int]]]:
    """Policy for a village in several parts, through the group adjacency graph.

    A part without households (an islet, a detached field) is no grid of its own: it
    joins the territory of the nearest group. A part with fewer households than ``lo``
    is partitioned with the nearest larger part: its nearest group is linked to the
    nearest group there (a link of the adjacency graph). Grids holding such pieces are
    flagged ``island``; within each part a grid stays connected through shared borders.
    Returns the units and the links.
    """
    w_part = [sum(u.w for u in units if u.part == p) for p in range(n_parts)]
    if max(w_part, default=0) == 0:
        return units, []
    out = [u for u in units if not (u.alone == "empty" and u.w == 0)]
    empties = [u for u in units if u.alone == "empty" and u.w == 0]
    for e in empties:
        j = min(range(len(out)), key=lambda i: (out[i].geom.distance(e.geom), i))
        out[j].geom = union([out[j].geom, e.geom])
        out[j].island = True
    if empties:
        notes.append(f"{len(empties)} part(s) without households joined the nearest group")
    small = [p for p in range(n_parts) if 0 < w_part[p] < params.lo]
    big = [p for p in range(n_parts) if w_part[p] >= params.lo]
    links: list[tuple[int, int]] = []
    for p in small if big else []:
        mine = [i for i, u in enumerate(out) if u.part == p]
        others = [i for i, u in enumerate(out) if u.part in big]
        if not mine or not others:
            continue
        i, j = min(
            ((i, j) for i in mine for j in others),
            key=lambda ij: (out[ij[0]].geom.distance(out[ij[1]].geom), ij),
        )
        for m in mine:
            out[m].part = out[j].part
            out[m].island = True
        out[j].island = True
        links.append((i, j))
        notes.append(
            f"part {p + 1} ({w_part[p]} households) is partitioned with part {out[j].part + 1}"
        )
    return out, links


def _edge_match(units: list[_Unit], notes: list[str]) -> None:
    """Make the unit territories a valid coverage (shared edges vertex for vertex).

    Territories from one Voronoi tiling already are; repaired, split or snapped ones
    may carry a neighbour's vertex 1–2 cm off or missing, which the tiling rule (shapely
    coverage validity) refuses. Snapping to neighbours' vertices within two precision
    cells fixes that without moving any boundary visibly.
    """
    geoms = [u.geom for u in units]
    arr = np.asarray(geoms, dtype=object)
    if len(geoms) < 2 or (shapely.is_valid(arr).all() and shapely.coverage_is_valid(arr)):
        return
    geoms = [g if g.is_valid else clean(g) for g in geoms]
    for make in (  # snap-rounded faces first: valid, matched, safe to reproject
        lambda: snap_coverage(geoms, region=union(geoms)),
        lambda: renode(geoms, tolerance=2 * GRID_SIZE),
        lambda: rebuild_coverage(geoms),
    ):
        fixed = make()
        farr = np.asarray(fixed, dtype=object)
        if shapely.is_valid(farr).all() and shapely.coverage_is_valid(farr):
            for u, g in zip(units, fixed, strict=True):
                u.geom = g
            return
    notes.append("group territories could not be edge-matched exactly")


def partition_village(work: VillageWork, params: PartitionParams) -> VillageResult:
    """Partition one village into grids (pure function of its inputs and ``params``).

    Parameters
    ----------
    work
        The village, its households, optional group polygons, fixed grid count and
        existing grids (redraw).
    params
        Target, band, seed and policies.

    Returns
    -------
    VillageResult
        Grids, unit assignment and household assignment in EPSG:4326.
    """
    rng = _village_rng(params.seed, work.code)
    proj = _Proj(_metric_crs(work.geometry))
    village_m = clean(proj.to_metric(work.geometry))
    parts = polygon_parts(village_m)
    hh = work.households
    xy = proj.xy(hh["lon"].to_numpy(), hh["lat"].to_numpy()) if len(hh) else np.zeros((0, 2))
    inside = (
        shapely.intersects_xy(village_m, xy[:, 0], xy[:, 1]) if len(xy) else np.zeros(0, dtype=bool)
    )
    if len(parts) > 1 and len(xy):
        pts = shapely.points(xy)
        dist = np.column_stack([shapely.distance(p, pts) for p in parts])
        part_of = np.argmin(dist, axis=1)
    else:
        part_of = np.zeros(len(xy), dtype=np.int64)
    notes: list[str] = list(work.group_notes)
    if (~inside).any():
        notes.append(f"{int((~inside).sum())} households lie outside the village boundary")
    if len(parts) > 1:
        notes.append(f"village in {len(parts)} parts")
    groups_m = (
        {g: clean(proj.to_metric(geom)) for g, geom in work.groups.items()} if work.groups else None
    )
    units: list[_Unit] = []
    for p, part in enumerate(parts):
        idx = np.flatnonzero(part_of == p)
        pu = _units_for_part(work, part, p, len(parts) > 1, idx, xy, groups_m, notes, params)
        if not pu:
            pu = [
                _Unit(
                    name="-" if len(parts) == 1 else f"-@{p + 1}",
                    group_no=None,
                    part=p,
                    geom=part,
                    hh=idx,
                    w=0,
                    pop=0,
                    alone="empty",
                )
            ]
        units.extend(pu)
    links: list[tuple[int, int]] = []
    if len(parts) > 1:
        units, links = _attach_islands(units, len(parts), params, notes)
    pop_all = hh["population"].to_numpy() if len(hh) else np.zeros(0)
    if params.split_large:
        split: list[_Unit] = []
        for u in units:
            if u.w > params.hi and u.alone is None:  # supplied polygon: split inside it
                split.extend(_split_unit(u, xy, params))
            else:
                split.append(u)
        units = split
    _edge_match(units, notes)
    for u in units:
        u.pop = int(pop_all[u.hh].sum()) if len(u.hh) else 0
    if work.existing is None and work.k is not None:
        ngroups = len({u.name for u in units if u.w > 0 or u.group_no is not None})
        if work.k > ngroups:
            raise InvalidInput(
                f"village {work.code}: {work.k} cadres (grids) requested but it has only "
                f"{ngroups} villager groups; a grid is a union of whole groups.",
                detail={"village_code": work.code, "cadres": work.k, "groups": ngroups},
            )
    w_parts = [
        [u.w for u in units if u.alone != "empty" and u.part == p] for p in range(len(parts))
    ]
    bound = balance_bound_parts(
        w_parts,
        params.target,
        params.lo,
        params.hi,
        work.k if work.existing is None else None,
        out_of_band=params.objective().out_of_band,
    )
    records: list[ExactRecord] = []

    geoms = [u.geom for u in units]
    nb = neighbours(geoms)
    for i, j in links:  # a small part of the village joins the nearest group's grid
        nb[i] = sorted({*nb[i], j})
        nb[j] = sorted({*nb[j], i})
    w = np.array([u.w for u in units], dtype=float)
    arr = np.asarray(geoms, dtype=object)
    cxy = shapely.get_coordinates(shapely.centroid(arr)) if len(arr) else np.zeros((0, 2))
    area = shapely.area(arr).astype(float) if len(arr) else np.zeros(0)
    labels = np.full(len(units), -1, dtype=np.int64)
    flags_of: dict[int, set[str]] = {}
    moved: int | None = None
    moved_fresh: int | None = None
    old_codes: list[str | None] = []
    label_codes: dict[int, str] = {}

    if work.existing is not None:
        existing_m = [
            (c, clean(proj.to_metric(geom)), set(t.split(",")) if t else None)
            for c, geom, t in work.existing
        ]
        old_codes = _initial_from_existing(units, existing_m)
        code_ids = {c: i for i, c in enumerate(sorted({c for c in old_codes if c}))}
        old = np.array([code_ids[c] if c else -1 for c in old_codes], dtype=np.int64)
        locked = np.array([c is not None and c in work.locked for c in old_codes], dtype=bool)
        locked_ids = frozenset(int(x) for x in old[locked].tolist())
        start = np.where(locked | ~np.isin(old, list(locked_ids)), old, -1)
        nxt = len(code_ids)
        # policy: oversized / split / empty units stand alone; of the pieces of an old grid
        # (each such unit, the rest together) the heaviest keeps the grid's code
        for r in sorted(set(start.tolist()) - {-1} - locked_ids):
            members = np.flatnonzero(start == r).tolist()
            alone = [i for i in members if units[i].alone or units[i].w > params.hi]
            rest = [i for i in members if i not in alone]
            if len(members) < 2 or not alone:
                continue
            pieces = [[i] for i in alone] + ([rest] if rest else [])
            pieces.sort(key=lambda q: (-w[q].sum(), q))
            for q in pieces[1:]:
                start[q] = nxt
                nxt += 1
        # units in different village parts never share a grid
        for r in sorted(set(start.tolist()) - {-1} - locked_ids):
            in_r = np.flatnonzero(start == r)
            partsr = sorted({units[i].part for i in in_r})
            for p in partsr[1:]:
                start[[i for i in in_r if units[i].part == p]] = nxt
                nxt += 1
        start = repair_labels(start, w, nb, forbidden=locked_ids)
        start[locked] = old[locked]  # locked grids stay exactly as they are
        fixed = np.array([bool(u.alone) or u.w > params.hi for u in units]) | locked
        red = redraw_labels(
            start, old, fixed, w, cxy, area, nb, rng,
            objective=params.objective(), restarts=params.restarts, kicks=params.kicks,
            exact_seconds=params.exact_seconds,
        )  # fmt: skip
        labels, moved, moved_fresh = red.labels, red.moved, red.moved_fresh
        notes.append(
            f"redraw moved {moved} households; a fresh partition would move {moved_fresh}"
            + (" (the fresh partition was kept)" if red.fresh_chosen else "")
        )
        inv_code = {i: c for c, i in code_ids.items()}
        label_codes = {r: c for r, c in inv_code.items() if (labels == r).any()}
        for i, u in enumerate(units):
            if u.alone or u.w > params.hi:
                flags_of.setdefault(int(labels[i]), set()).add(u.alone or "oversized")
            if locked[i]:
                flags_of.setdefault(int(labels[i]), set()).add("locked")
    else:
        nxt = 0
        by_part: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            if u.alone:
                labels[i] = nxt
                flags_of.setdefault(nxt, set()).add(u.alone)
                nxt += 1
            else:
                by_part.setdefault(u.part, []).append(i)
        k_left = None if work.k is None else work.k - nxt
        part_ks: dict[int, int | None] = dict.fromkeys(by_part)
        if k_left is not None:
            if k_left < len(by_part):
                raise InvalidInput(
                    f"village {work.code}: {work.k} grids requested but it needs at least "
                    f"{nxt + len(by_part)} (village parts and split groups each need a grid).",
                    detail={"village_code": work.code},
                )
            weights = {p: float(w[ix].sum()) + 1e-9 for p, ix in by_part.items()}
            share = dict.fromkeys(by_part, 1)
            for _ in range(k_left - len(by_part)):
                room = [p for p in by_part if share[p] < len(by_part[p])]
                p = max(room, key=lambda q: (weights[q] / share[q], -q))
                share[p] += 1
            part_ks = {p: share[p] for p in by_part}
        for p in sorted(by_part):
            ix = np.asarray(by_part[p])
            local = {g: j for j, g in enumerate(ix.tolist())}
            sub_nb = [[local[v] for v in nb[g] if v in local] for g in ix.tolist()]
            lab, over = partition_units(
                w[ix],
                cxy[ix],
                area[ix],
                sub_nb,
                rng,
                objective=params.objective(),
                k=part_ks[p],
                restarts=params.restarts,
                kicks=params.kicks,
                exact_seconds=params.exact_seconds * len(ix) / max(1, len(units)),
                records=records,
            )
            for r in np.flatnonzero(over).tolist():
                flags_of.setdefault(nxt + r, set()).add("oversized")
            labels[ix] = lab + nxt
            nxt += int(lab.max()) + 1 if len(lab) else 0
    res = _assemble(
        work, params, proj, units, labels, flags_of, bound, notes, moved, label_codes, hh, inside
    )
    res.exact = records
    res.moved_fresh = moved_fresh
    if work.existing is None:
        cost = balance_cost(
            [g["households"] for g in res.grids], params.target, params.lo, params.hi,
            params.objective().out_of_band,
        )  # fmt: skip
        res.exact_bound = cost - sum(e.final - e.bound for e in records if e.chosen)
    return res


def _nw_key(geom: BaseGeometry) -> tuple[float, float, float]:
    """North-west → south-east ordering key of a metric geometry (diagonal, then north)."""
    c = geom.centroid
    return (round(c.x - c.y, 3), round(-c.y, 3), round(c.x, 3))


def _assemble(
    work: VillageWork,
    params: PartitionParams,
    proj: _Proj,
    units: list[_Unit],
    labels: np.ndarray,
    flags_of: dict[int, set[str]],
    bound: BalanceBound,
    notes: list[str],
    moved: int | None,
    label_codes: dict[int, str],
    hh: pd.DataFrame,
    inside: np.ndarray,
) -> VillageResult:
    grids_m: dict[int, BaseGeometry] = {}
    for r in sorted(set(labels.tolist())):
        members = [units[i].geom for i in range(len(units)) if labels[i] == r]
        grids_m[r] = cover_union(members)
    if label_codes:  # redraw keeps the existing codes; new grids numbered after them
        used = {int(c[-3:]) for c in label_codes.values()}
        nxt = max(used, default=0) + 1
        numbers: dict[int, int] = {}
        for r in sorted(grids_m, key=lambda q: _nw_key(grids_m[q])):
            if r in label_codes:
                numbers[r] = int(label_codes[r][-3:])
            else:
                numbers[r] = nxt
                nxt += 1
    else:
        order = sorted(grids_m, key=lambda q: _nw_key(grids_m[q]))
        numbers = {r: j + 1 for j, r in enumerate(order)}
    out_of_band_forced = bound.max_in_band_share < 1.0 - 1e-9
    grids: list[dict[str, Any]] = []
    for r, geom in grids_m.items():
        mem = [i for i in range(len(units)) if labels[i] == r]
        h = sum(units[i].w for i in mem)
        flags = set(flags_of.get(r, set()))
        if any(
            units[i].group_no in work.multipart and len(polygon_parts(units[i].geom)) > 1
            for i in mem
        ):
            flags.add("multipart_group")  # policy keep: a group in pieces
        if h == 0 and not any(u.w for u in units):
            flags.add("empty")  # policy empty_village: a village without households
        if any(units[i].island for i in mem) and len(polygon_parts(geom)) > 1:
            flags.add("island")  # a part of the village joined to this grid
        if not params.lo <= h <= params.hi and "empty" not in flags:
            flags.add("out_of_band")
            if out_of_band_forced:
                flags.add("forced_imbalance")
        code = f"{work.code}{numbers[r]:03d}"
        grids.append(
            {
                "code": code,
                "village_code": work.code,
                "grid_no": numbers[r],
                "level": GRID_LEVEL,
                "households": int(h),
                "population": int(sum(units[i].pop for i in mem)),
                "groups": ",".join(
                    units[i].name for i in sorted(mem, key=lambda i: _unit_sort(units[i].name))
                ),
                "flags": ",".join(sorted(flags)),
                "area_km2": float(geom.area / 1e6),
                "polsby_popper": float(4 * math.pi * geom.area / geom.length**2)
                if geom.length
                else 0.0,
                "geometry": as_multipolygon(proj.to_4326(geom)),
            }
        )
    grids.sort(key=lambda g: g["grid_no"])
    code_of = {r: f"{work.code}{numbers[r]:03d}" for r in grids_m}
    unit_rows = [
        {
            "village_code": work.code,
            "unit": u.name,
            "group_no": u.group_no,
            "part": u.part + 1,
            "grid_code": code_of[int(labels[i])],
            "households": int(u.w),
            "population": int(u.pop),
            "geometry": as_multipolygon(proj.to_4326(u.geom)),
        }
        for i, u in enumerate(units)
    ]
    unit_rows.sort(key=lambda d: _unit_sort(d["unit"]))
    reg = hh["register_no"].to_numpy() if len(hh) else np.zeros(0, dtype=object)
    h_unit = np.empty(len(hh), dtype=object)
    h_grid = np.empty(len(hh), dtype=object)
    for i, u in enumerate(units):
        h_unit[u.hh] = u.name
        h_grid[u.hh] = code_of[int(labels[i])]
    households = pd.DataFrame(
        {
            "register_no": reg,
            "village_code": work.code,
            "unit": h_unit,
            "grid_code": h_grid,
            "outside_boundary": ~inside if len(hh) else np.zeros(0, dtype=bool),
        }
    )
    return VillageResult(work.code, grids, unit_rows, households, bound, notes, moved)


def _unit_sort(name: str) -> tuple[int, str]:
    head = name.split("@")[0].split(".")[0]
    return (int(head) if head.isdigit() else -1, name)


def _empty_result(work: VillageWork) -> VillageResult:
    return VillageResult(
        work.code, [], [], pd.DataFrame(), BalanceBound(1.0, 0.0), ["empty village skipped"]
    )


# --------------------------------------------------------------------------- many villages


ProgressFn = Callable[[str], None]


def _die_with_parent(parent: int) -> None:
    """Initializer of the village pool's workers: a worker outlives no parent.

    Forked workers share the pool's pipes (no EOF reaches them) and every descriptor of the
    parent, a server's listening socket included: orphaned by a killed server process,
    they would wait forever holding its port. On Linux the kernel kills them with their
    parent (``PR_SET_PDEATHSIG``); a parent already gone makes the worker leave at once.
    """
    import os
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux; elsewhere a no-op failure)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        os._exit(1)


def _run_one(work: VillageWork, params: PartitionParams) -> VillageResult:
    if len(work.households) == 0 and not work.groups and params.empty_village == "skip":
        return _empty_result(work)
    return partition_village(work, params)


def run_villages(
    work: Sequence[VillageWork],
    params: PartitionParams,
    *,
    jobs: int | None = None,
    scheduler: Any = None,
    progress: ProgressFn | None = None,
) -> list[VillageResult]:
    """Run :func:`partition_village` over ``work``: serial, process pool or Dask.

    Parameters
    ----------
    jobs
        Worker processes; ``None`` → number of CPUs; ``1`` → in this process.
    scheduler
        A Dask scheduler address (``"tcp://..."``) or a ``distributed.Client``; when
        given, villages run on that cluster and ``jobs`` is ignored.
    progress
        Called with each village code as it finishes (any order).

    Returns
    -------
    list of VillageResult
        In the order of ``work`` (results do not depend on scheduling).
    """
    results: dict[str, VillageResult] = {}

    def done(res: VillageResult) -> None:
        results[res.code] = res
        if progress is not None:
            progress(res.code)

    if scheduler is not None:
        from distributed import Client, as_completed

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        try:
            futures = [client.submit(_run_one, w, params, pure=False) for w in work]
            for fut in as_completed(futures):
                done(fut.result())
        finally:
            if client is not scheduler:
                client.close()
    else:
        import os

        n = jobs if jobs is not None else (os.cpu_count() or 1)
        n = max(1, min(n, len(work)))
        if n == 1:
            for w in work:
                done(_run_one(w, params))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures import as_completed as cf_completed

            # fork: workers inherit the imported modules (forkserver/spawn re-import
            # geopandas and scikit-learn in every worker, seconds each)
            method = "fork" if sys.platform == "linux" else "spawn"
            ctx = mp.get_context(method)
            with ProcessPoolExecutor(
                max_workers=n, mp_context=ctx, initializer=_die_with_parent,
                initargs=(os.getpid(),),
            ) as pool:  # fmt: skip
                futs = [pool.submit(_run_one, w, params) for w in work]
                for f in cf_completed(futs):
                    done(f.result())
    return [results[w.code] for w in work]


def partition_plan(
    households: gpd.GeoDataFrame,
    villages: gpd.GeoDataFrame,
    groups: gpd.GeoDataFrame | None = None,
    *,
    params: PartitionParams | None = None,
    cadres: Mapping[str, int] | None = None,
    existing: gpd.GeoDataFrame | None = None,
    locked: Iterable[str] | None = None,
    jobs: int | None = 1,
    scheduler: Any = None,
    progress: ProgressFn | None = None,
) -> Plan:
    """Partition every village into basic grids of whole villager groups.

    Parameters
    ----------
    households
        Points with ``register_no``, ``group_no`` and optionally ``village_code`` and
        ``population`` (any CRS; it must be set).
    villages
        Polygons with a 12-digit ``code`` (and ``name``).
    groups
        Optional group polygons (``village_code``, ``group_no``) for some villages;
        checked and repaired, missing ones derived from households.
    params
        :class:`PartitionParams`; default target 150 in 100–200, seed 0.
    cadres
        Exact grid count per village code (villages not listed are free).
    existing
        Current grids (``code``, geometry, optional ``groups``): redraw with minimal change
        that keeps every grid in the band where a feasible plan exists (see
        :mod:`partition.redraw`).
    locked
        Codes of existing grids that must stay exactly as they are in a redraw.
    jobs, scheduler, progress
        See :func:`run_villages`.

    Returns
    -------
    Plan

    Raises
    ------
    geogrid.errors.InvalidInput
        Invalid inputs (see :func:`village_work`) or an impossible cadre count.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> v = gpd.GeoDataFrame({"code": ["440101001001"]},
    ...     geometry=[shapely.box(113.30, 23.10, 113.31, 23.11)], crs=4326)
    >>> hh = gpd.GeoDataFrame({"register_no": ["a", "b"], "group_no": [1, 2]},
    ...     geometry=shapely.points([(113.301, 23.101), (113.309, 23.109)]), crs=4326)
    >>> partition_plan(hh, v).grids[["code", "households", "groups"]].values.tolist()
    [['440101001001001', 2, '1,2']]
    """
    params = params or PartitionParams()
    work, unassigned = village_work(
        households, villages, groups, cadres=cadres, existing=existing, locked=locked,
        group_pieces=params.group_pieces,
    )  # fmt: skip
    results = run_villages(work, params, jobs=jobs, scheduler=scheduler, progress=progress)
    return assemble_plan(work, results, unassigned, params, redraw=existing is not None)


def assemble_plan(
    work: Sequence[VillageWork],
    results: Sequence[VillageResult],
    unassigned: pd.DataFrame,
    params: PartitionParams,
    *,
    redraw: bool = False,
) -> Plan:
    """Collect per-village results into one :class:`Plan`."""
    grid_rows = [g for r in results for g in r.grids]
    grids = gpd.GeoDataFrame(
        pd.DataFrame(grid_rows, columns=[*PLAN_GRID_COLUMNS, "geometry"]),
        geometry="geometry",
        crs=4326,
    )
    assignment = gpd.GeoDataFrame(
        pd.DataFrame(
            [u for r in results for u in r.units], columns=[*PLAN_UNIT_COLUMNS, "geometry"]
        ),
        geometry="geometry",
        crs=4326,
    )
    assignment["group_no"] = assignment["group_no"].astype("Int64")
    hh_frames = [r.households for r in results if len(r.households)]
    households = (
        pd.concat(hh_frames, ignore_index=True)
        if hh_frames
        else pd.DataFrame(columns=list(PLAN_HOUSEHOLD_COLUMNS))
    )
    villages = gpd.GeoDataFrame(
        {
            "code": [w.code for w in work],
            "name": [w.name for w in work],
            "cadres": [w.k for w in work],
            "bound_in_band_share": [r.bound.max_in_band_share for r in results],
            "bound_mean_abs_dev": [r.bound.min_mean_abs_dev for r in results],
            "bound_cost": [r.bound.min_cost for r in results],
            "moved": [r.moved for r in results],
            "moved_fresh": [r.moved_fresh for r in results],
            # exact solver (fresh plans): every kept component proven optimal, the largest
            # gap left, and a proven lower bound of the balance cost for the kept grid counts
            "exact_proven": [
                None if r.moved is not None else all(e.proven for e in r.exact if e.chosen)
                for r in results
            ],
            "exact_gap": [
                None
                if r.moved is not None
                else max((e.gap for e in r.exact if e.chosen), default=0.0)
                for r in results
            ],
            "exact_bound": [r.exact_bound for r in results],
            "notes": ["; ".join(r.notes) for r in results],
        },
        geometry=[w.geometry for w in work],
        crs=4326,
    )
    return Plan(
        grids, assignment, households, unassigned.reset_index(drop=True), villages, params, redraw
    )
