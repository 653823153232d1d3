"""The rules checker: every plan geogrid produces or edits is checked against these rules.

The checks work on the plan's *output geometries* (grids and group territories in
EPSG:4326, measured in a local metric CRS), not on the partitioner's intermediate data,
and use their own geometry code (robust overlay unions, boundary intersections), so a
bug in the partitioner's coverage helpers cannot hide itself here.

Tolerances (stated, in metres of the village's UTM zone):

* area: :func:`area_tolerance` — ``max(1 m², 1e-6 × area, 2 × 1 cm × perimeter)``: a
  boundary may move by about one precision cell (1 cm) when coordinates are rounded;
* a shared border counts only above :data:`MIN_BORDER` (1 m): corners never join grids;
* a grid joined only through a passage narrower than :data:`SLIVER_WIDTH` (1 m) is not
  connected;
* a household point counts as inside its grid within :data:`POINT_TOLERANCE` (5 cm).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.errors
from shapely.geometry.base import BaseGeometry

from geogrid.errors import InvalidInput
from partition._geo import GRID_SIZE, polygon_parts
from partition.plan import Plan, _metric_crs, _nw_key, _Proj

__all__ = [
    "BALANCE_RULES",
    "RULES",
    "PlanRuleError",
    "Violation",
    "area_tolerance",
    "check_plan",
    "stray_households",
    "validate_plan",
    "violations_by_rule",
]

#: Rule names reported in :class:`Violation`, in the order they are checked.
RULES = (
    "household_once",  # every household in exactly one grid, the one its point lies in
    "whole_groups",  # a grid is the union of whole groups; counts and lists agree
    "connected",  # groups joined by borders of real length; one piece; no sliver passage
    "grid_in_village",  # a grid lies inside its village
    "tiles_village",  # a village's grids cover it, no gap, no overlap, edges matched
    "valid_geometry",  # every grid and group geometry is a valid (Multi)Polygon
    "empty_grid",  # no grid without area, none without households (but the empty policy)
    "band",  # households within [lo, hi] (oversized groups and empty villages excepted)
    "k",  # a village with a fixed grid count has exactly that many grids
    "code",  # 12-digit village code + 3 digits, numbered north-west to south-east
    "oversized_alone",  # a group above hi is alone in its grid
)

#: Rules about balance: an infeasible band or grid count may be accepted by the planner.
BALANCE_RULES = frozenset({"band", "k"})

#: Shared borders at most this long (m) do not join two grids or groups.
MIN_BORDER = 1.0
#: A grid whose pieces meet only through a passage narrower than this (m) is not connected.
SLIVER_WIDTH = 1.0
#: A household point within this distance (m) of its grid counts as inside it.
POINT_TOLERANCE = 0.05
#: Grid flags that excuse a grid from the band rule.
_BAND_EXEMPT = frozenset({"oversized", "empty"})
#: Grid flag allowing a kept group in several pieces (policy ``group_pieces="keep"``).
MULTIPART_FLAG = "multipart_group"
#: Grid flag of a grid holding a detached part of its village (connected within each part).
ISLAND_FLAG = "island"

_CODE = re.compile(r"\d{15}")
_MAX_PER_RULE = 20


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes
    ----------
    rule
        One of :data:`RULES`.
    village_code, grid_code
        Where (either may be empty).
    message
        What is wrong, in one sentence.
    place
        ``(lon, lat)`` in EPSG:4326 of a point showing the problem, when there is one.
    """

    rule: str
    village_code: str
    grid_code: str
    message: str
    place: tuple[float, float] | None = None

    def __str__(self) -> str:
        where = self.grid_code or self.village_code or "plan"
        at = f" (at {self.place[0]:.6f}, {self.place[1]:.6f})" if self.place else ""
        return f"[{self.rule}] {where}: {self.message}{at}"

    def as_dict(self) -> dict[str, object]:
        """The violation as JSON-ready data."""
        return {
            "rule": self.rule,
            "village_code": self.village_code,
            "grid_code": self.grid_code,
            "message": self.message,
            "place": list(self.place) if self.place else None,
        }


class PlanRuleError(InvalidInput):
    """A plan breaks rules; :attr:`violations` lists them (the message names the first)."""

    def __init__(self, violations: Sequence[Violation], what: str = "the plan") -> None:
        self.violations = list(violations)
        first = self.violations[0]
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        super().__init__(
            f"{what} breaks the grid rules: {first}{more}",
            detail={"violations": [v.as_dict() for v in self.violations]},
        )


def area_tolerance(geom: BaseGeometry) -> float:
    """Area tolerance (m²) of a metric geometry: rounding moves a boundary ≤ ~1 cm.

    Examples
    --------
    >>> area_tolerance(shapely.box(0, 0, 1000, 1000))
    80.0
    """
    return float(max(1.0, 1e-6 * geom.area, 2 * GRID_SIZE * geom.length))


# --------------------------------------------------------------------------- helpers


def _robust_union(geoms: Sequence[BaseGeometry]) -> BaseGeometry:
    """Overlay union (never the coverage union: overlapping grids must not confuse it)."""
    arr = np.asarray([g for g in geoms if g is not None and not g.is_empty], dtype=object)
    if len(arr) == 0:
        return shapely.Polygon()
    try:
        return shapely.union_all(arr)
    except shapely.errors.GEOSException:
        return shapely.union_all(shapely.make_valid(arr), grid_size=GRID_SIZE)


def _overlay(op: Any, a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    """``op(a, b)`` (a shapely overlay function), on the precision grid if GEOS refuses."""
    try:
        return op(a, b)
    except shapely.errors.GEOSException:
        return op(a, b, grid_size=GRID_SIZE)


def _largest(geom: BaseGeometry) -> BaseGeometry | None:
    """The largest polygon part of ``geom`` (where to point at), if any."""
    return max(polygon_parts(geom), key=lambda p: p.area, default=None)


def _safe(geom: BaseGeometry) -> BaseGeometry:
    return geom if geom.is_valid else shapely.make_valid(geom)


def _border(a: BaseGeometry, b: BaseGeometry) -> float:
    """Length of the common border of two polygonal geometries (m)."""
    try:
        return float(shapely.intersection(a.boundary, b.boundary, grid_size=GRID_SIZE).length)
    except shapely.errors.GEOSException:
        return 0.0


def _joined(geoms: Sequence[BaseGeometry], extra: Iterable[tuple[int, int]] = ()) -> int:
    """Number of groups of ``geoms`` joined by borders longer than :data:`MIN_BORDER`."""
    n = len(geoms)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in extra:
        parent[find(i)] = find(j)
    if n > 1:
        arr = np.asarray(geoms, dtype=object)
        left, right = shapely.STRtree(arr).query(arr, predicate="intersects")
        for i, j in zip(left.tolist(), right.tolist(), strict=True):
            if i < j and find(i) != find(j) and _border(arr[i], arr[j]) > MIN_BORDER:
                parent[find(i)] = find(j)
    return len({find(i) for i in range(n)})


class _Where:
    """Turns a metric geometry into a ``(lon, lat)`` place."""

    def __init__(self, proj: _Proj) -> None:
        self.proj = proj

    def __call__(self, geom: BaseGeometry | None) -> tuple[float, float] | None:
        if geom is None or geom.is_empty:
            return None
        p = self.proj.to_4326(shapely.point_on_surface(_safe(geom)))
        return (round(float(p.x), 7), round(float(p.y), 7))


def _invalid_place(geom4326: BaseGeometry) -> tuple[float, float] | None:
    reason = shapely.is_valid_reason(geom4326)
    m = re.search(r"\[([-\d.eE+]+) ([-\d.eE+]+)", str(reason))
    return (round(float(m.group(1)), 7), round(float(m.group(2)), 7)) if m else None


# --------------------------------------------------------------------------- entry points


def validate_plan(
    plan: Plan,
    households: pd.DataFrame | None = None,
    *,
    check_numbering: bool | None = None,
    balance: bool = False,
) -> list[Violation]:
    """Check a plan against every grid rule; an empty list means the plan is valid.

    Parameters
    ----------
    plan
        The plan to check.
    households
        Optional input households (``register_no``, optional ``village_code``; a
        GeoDataFrame adds the point check): each must be in the plan exactly once,
        assigned or unassigned, and lie inside the grid it is assigned to (unless it
        lies outside its village, which the plan marks).
    check_numbering
        Check north-west → south-east numbering; default: yes, except for redraws and
        edited plans (which keep codes).
    balance
        Also check the band and fixed grid counts (:data:`BALANCE_RULES`). Off by
        default: whether an infeasible band is acceptable is the planner's decision
        (:func:`check_plan` checks them unless told to accept imbalance), and a
        planner's edit may leave a grid out of the band.

    Returns
    -------
    list of Violation
        At most 20 per rule and village.
    """
    out: list[Violation] = []
    numbering = (
        not (plan.redraw or plan.meta.get("edited")) if check_numbering is None else check_numbering
    )
    out.extend(_check_households(plan, households))
    village_codes = set(plan.villages["code"].astype(str))
    for gc, vc in zip(plan.grids["code"], plan.grids["village_code"], strict=True):
        if str(vc) not in village_codes:
            out.append(Violation("grid_in_village", str(vc), str(gc), "grid is in no village"))
    for row in plan.villages.itertuples(index=False):
        code = str(row.code)
        vg = plan.grids[plan.grids["village_code"] == code]
        va = plan.assignment[plan.assignment["village_code"] == code]
        cadres = getattr(row, "cadres", None)
        k = None if cadres is None or pd.isna(cadres) or plan.redraw else int(cadres)
        out.extend(_check_village(plan, code, row.geometry, vg, va, numbering, balance, k))
    return out


def check_plan(
    plan: Plan,
    households: pd.DataFrame | None = None,
    *,
    accept_imbalance: bool = False,
) -> list[Violation]:
    """Validate ``plan`` and raise unless it keeps every rule.

    Parameters
    ----------
    accept_imbalance
        The planner accepts grids out of the band and fixed counts not met (the
        :data:`BALANCE_RULES` violations are returned, not raised).

    Returns
    -------
    list of Violation
        The accepted balance violations (empty when ``accept_imbalance`` is false).

    Raises
    ------
    PlanRuleError
        When any other rule (or, without ``accept_imbalance``, a balance rule) is broken.
    """
    problems = validate_plan(plan, households, balance=True)
    hard = [p for p in problems if accept_imbalance is False or p.rule not in BALANCE_RULES]
    if hard:
        raise PlanRuleError(hard)
    return problems


# --------------------------------------------------------------------------- households


def _check_households(plan: Plan, households: pd.DataFrame | None) -> list[Violation]:
    out: list[Violation] = []
    hh = plan.households
    known = set(plan.grids["code"])
    for r in hh.loc[hh.duplicated(["village_code", "register_no"]), "register_no"].unique()[:20]:
        out.append(Violation("household_once", "", "", f"household {r} is in more than one grid"))
    missing = hh.loc[~hh["grid_code"].isin(known)]
    for r, v, g in missing[["register_no", "village_code", "grid_code"]].values[:20]:
        out.append(
            Violation("household_once", str(v), "", f"household {r} is in no grid (points to {g})")
        )
    if households is None:
        return out
    inp = pd.DataFrame(households).copy()
    inp["register_no"] = inp["register_no"].astype(str)
    key = _household_key(inp)
    if "village_code" in key:
        inp["village_code"] = inp["village_code"].astype(str)
    seen = pd.concat(
        [hh[key].astype(str), plan.unassigned[key].astype(str)]
        if len(plan.unassigned)
        else [hh[key].astype(str)]
    )
    have = seen.value_counts()
    want = inp[key].value_counts()
    have_w = have.reindex(want.index, fill_value=0)
    for r in want.index[(want - have_w) > 0][:20]:
        out.append(Violation("household_once", "", "", f"household {_key(r)} vanished"))
    for r in want.index[(have_w - want) > 0][:20]:
        out.append(Violation("household_once", "", "", f"household {_key(r)} is counted twice"))
    extra = have.index.difference(want.index)
    for r in extra[:20]:
        out.append(Violation("household_once", "", "", f"household {_key(r)} is not in the input"))
    if isinstance(households, gpd.GeoDataFrame) and households.crs is not None and len(hh):
        out.extend(_check_points(plan, households, key))
    return out


def _key(r: object) -> str:
    return "/".join(map(str, r)) if isinstance(r, tuple) else str(r)


def _locate(plan: Plan, households: gpd.GeoDataFrame, key: list[str]) -> pd.DataFrame:
    """Where every assigned household's point lies: the grids whose interior holds it.

    Returns ``register_no, village_code, grid_code`` (assigned), ``holders`` (tuple of
    grid codes containing the point), ``near`` (within :data:`POINT_TOLERANCE` of a
    grid: a point on a border) and ``lon, lat``. Households the plan marks as outside
    their village boundary are left out.
    """
    inp = pd.DataFrame(households.drop(columns=households.geometry.name)).copy()
    inp["register_no"] = inp["register_no"].astype(str)
    if "village_code" in key:
        inp["village_code"] = inp["village_code"].astype(str)
    xy = shapely.get_coordinates(households.geometry.to_crs(4326).to_numpy())
    inp["lon"], inp["lat"] = xy[:, 0], xy[:, 1]
    inp = inp[~inp[key].duplicated(keep=False)]  # duplicates are reported elsewhere
    hh = plan.households.copy()
    hh[key] = hh[key].astype(str)
    hh = hh.merge(inp[[*key, "lon", "lat"]], on=key, how="inner")
    if "outside_boundary" in hh.columns:
        hh = hh[~hh["outside_boundary"].fillna(False).astype(bool)]
    grids = plan.grids.set_index("code")
    frames = []
    for vcode, vhh in hh.groupby("village_code", sort=True):
        vgrids = grids[grids["village_code"] == vcode]
        if not len(vgrids) or not len(vhh):
            continue
        proj = _Proj(_metric_crs(plan.villages.set_index("code").geometry.get(vcode)))
        codes = [str(c) for c in vgrids.index]
        arr = np.asarray([_safe(proj.to_metric(g)) for g in vgrids.geometry], dtype=object)
        tree = shapely.STRtree(arr)
        pm = shapely.points(proj.xy(vhh["lon"].to_numpy(), vhh["lat"].to_numpy()))
        holders: list[list[str]] = [[] for _ in range(len(vhh))]
        for p, g in zip(*(a.tolist() for a in tree.query(pm, predicate="within")), strict=True):
            holders[p].append(codes[g])
        near = np.zeros(len(vhh), dtype=bool)
        p_idx, _ = tree.query(pm, predicate="dwithin", distance=POINT_TOLERANCE)
        near[p_idx] = True
        holder_col = pd.Series([tuple(sorted(h)) for h in holders], index=vhh.index, dtype=object)
        frames.append(vhh.assign(holders=holder_col, near=near))
    if not frames:
        return pd.DataFrame(columns=[*hh.columns, "holders", "near"])
    return pd.concat(frames, ignore_index=True)


def stray_households(plan: Plan, households: gpd.GeoDataFrame) -> pd.DataFrame:
    """Households whose point lies in another grid than the one their group is in.

    Grids are unions of whole groups; a register's group and a household's location can
    disagree (a house of group 3 among the houses of group 5). Such households stay
    with their group (and its grid); this lists them so that no planner is surprised.

    Returns
    -------
    pandas.DataFrame
        ``register_no, village_code, grid_code`` (assigned), ``lies_in``, ``lon, lat``.
    """
    key = _household_key(households)
    loc = _locate(plan, households, key)
    one = loc[loc["holders"].map(len) == 1]
    stray = one[[h[0] != g for h, g in zip(one["holders"], one["grid_code"], strict=True)]]
    return pd.DataFrame(
        {
            "register_no": stray["register_no"].to_numpy(),
            "village_code": stray["village_code"].to_numpy(),
            "grid_code": stray["grid_code"].to_numpy(),
            "lies_in": [h[0] for h in stray["holders"]],
            "lon": stray["lon"].to_numpy(),
            "lat": stray["lat"].to_numpy(),
        }
    )


def _household_key(households: pd.DataFrame) -> list[str]:
    by_code = "village_code" in households.columns and households["village_code"].notna().all()
    return ["village_code", "register_no"] if by_code else ["register_no"]


def _check_points(plan: Plan, households: gpd.GeoDataFrame, key: list[str]) -> list[Violation]:
    """On the map, each household lies in exactly one grid (a point on a border counts
    for the grids it touches; one inside two grids or inside none is a violation)."""
    out: list[Violation] = []
    loc = _locate(plan, households, key)
    n_two = n_none = 0
    for reg, vcode, gcode, holders, near, lon, lat in loc[
        ["register_no", "village_code", "grid_code", "holders", "near", "lon", "lat"]
    ].itertuples(index=False, name=None):
        place = (round(float(lon), 7), round(float(lat), 7))
        if len(holders) > 1 and n_two < _MAX_PER_RULE:
            n_two += 1
            out.append(
                Violation(
                    "household_once",
                    str(vcode),
                    str(gcode),
                    f"household {reg} lies inside {len(holders)} grids: {', '.join(holders)}",
                    place,
                )
            )
        elif not holders and not near and n_none < _MAX_PER_RULE:
            n_none += 1
            out.append(
                Violation(
                    "household_once",
                    str(vcode),
                    str(gcode),
                    f"household {reg} lies inside its village but in no grid",
                    place,
                )
            )
    return out


# --------------------------------------------------------------------------- one village


def _check_village(
    plan: Plan,
    code: str,
    vgeom: BaseGeometry,
    vg: gpd.GeoDataFrame,
    va: gpd.GeoDataFrame,
    numbering: bool,
    balance: bool,
    k: int | None,
) -> list[Violation]:
    out: list[Violation] = []
    proj = _Proj(_metric_crs(vgeom))
    where = _Where(proj)
    village = _safe(proj.to_metric(vgeom))
    codes = [str(c) for c in vg["code"]]
    flags = [set(str(f).split(",")) - {""} for f in vg["flags"]]
    params = plan.params

    if balance and k is not None and len(vg) != k:
        out.append(
            Violation("k", code, "", f"{len(vg)} grids where {k} were asked for", where(village))
        )
    if len(vg) == 0:
        return out

    # -- geometry validity (before anything measures areas)
    gm: list[BaseGeometry] = []
    for gcode, g4326 in zip(codes, vg.geometry, strict=True):
        if g4326 is None or g4326.is_empty:
            out.append(Violation("empty_grid", code, gcode, "grid has no geometry"))
            gm.append(shapely.Polygon())
            continue
        if g4326.geom_type not in ("Polygon", "MultiPolygon"):
            out.append(
                Violation("valid_geometry", code, gcode, f"grid is a {g4326.geom_type}", None)
            )
        if not g4326.is_valid:
            out.append(
                Violation(
                    "valid_geometry",
                    code,
                    gcode,
                    f"invalid grid geometry: {shapely.is_valid_reason(g4326)}",
                    _invalid_place(g4326),
                )
            )
        gm.append(_safe(proj.to_metric(g4326)))
    um: list[BaseGeometry] = []
    for unit, u4326 in zip(va["unit"], va.geometry, strict=True):
        if u4326 is not None and not u4326.is_empty and not u4326.is_valid:
            out.append(
                Violation(
                    "valid_geometry",
                    code,
                    "",
                    f"invalid territory of group {unit}: {shapely.is_valid_reason(u4326)}",
                    _invalid_place(u4326),
                )
            )
        um.append(
            shapely.Polygon() if u4326 is None or u4326.is_empty else _safe(proj.to_metric(u4326))
        )

    # -- codes and numbering
    for gcode, gno in zip(codes, vg["grid_no"], strict=True):
        if not _CODE.fullmatch(gcode) or not gcode.startswith(code):
            out.append(Violation("code", code, gcode, "code is not village code + 3 digits"))
        elif int(gcode[-3:]) != int(gno):
            out.append(Violation("code", code, gcode, f"grid_no {gno} does not match the code"))
    if len(set(codes)) != len(codes):
        out.append(Violation("code", code, "", "duplicate grid codes"))
    if numbering and all(not g.is_empty for g in gm):
        order = sorted(range(len(gm)), key=lambda i: _nw_key(gm[i]))
        nums = [int(vg["grid_no"].iloc[i]) for i in order]
        if nums != list(range(1, len(gm) + 1)):
            out.append(
                Violation("code", code, "", f"grids not numbered north-west to south-east: {nums}")
            )

    # -- whole groups
    unit_grid = va["grid_code"].astype(str).tolist()
    units = va["unit"].astype(str).tolist()
    if va["unit"].duplicated().any():
        dup = va.loc[va["unit"].duplicated(), "unit"].iloc[0]
        out.append(Violation("whole_groups", code, "", f"group {dup} is assigned to several grids"))
    for unit, gcode, geom in zip(units, unit_grid, um, strict=True):
        if gcode not in codes:
            out.append(
                Violation(
                    "whole_groups",
                    code,
                    "",
                    f"group {unit} is in unknown grid {gcode}",
                    where(geom),
                )
            )
    hh_v = plan.households[plan.households["village_code"] == code]
    hh_per_grid = hh_v["grid_code"].astype(str).value_counts()
    for i, gcode in enumerate(codes):
        out.extend(
            _check_grid(
                plan,
                code,
                gcode,
                i,
                vg,
                va,
                gm[i],
                um,
                units,
                unit_grid,
                flags[i],
                where,
                int(hh_per_grid.get(gcode, 0)),
                village,
                balance,
            )
        )
    out.extend(_check_tiling(code, village, gm, codes, where))
    del params
    return out


def _check_grid(
    plan: Plan,
    code: str,
    gcode: str,
    i: int,
    vg: gpd.GeoDataFrame,
    va: gpd.GeoDataFrame,
    geom: BaseGeometry,
    um: list[BaseGeometry],
    units: list[str],
    unit_grid: list[str],
    flags: set[str],
    where: _Where,
    n_hh: int,
    village: BaseGeometry,
    balance: bool,
) -> list[Violation]:
    out: list[Violation] = []
    params = plan.params
    members = [j for j, g in enumerate(unit_grid) if g == gcode]
    h_stated = int(vg["households"].iloc[i])
    if not members:
        out.append(Violation("whole_groups", code, gcode, "grid has no groups", where(geom)))
        return out
    names = [units[j] for j in members]
    listed = [s for s in str(vg["groups"].iloc[i]).split(",") if s]
    if sorted(listed) != sorted(names):
        out.append(
            Violation("whole_groups", code, gcode, f"groups list {listed} != assigned {names}")
        )
    h = int(va["households"].iloc[members].sum())
    if h != h_stated:
        out.append(
            Violation("whole_groups", code, gcode, f"households {h_stated} != sum of groups {h}")
        )
    if n_hh != h:
        out.append(
            Violation(
                "household_once", code, gcode, f"{n_hh} households point here, groups hold {h}"
            )
        )
    if geom.is_empty:
        return out
    if geom.area <= area_tolerance(geom) and geom.area < 1.0:
        out.append(Violation("empty_grid", code, gcode, "grid has no area", where(geom)))
    if h_stated == 0 and "empty" not in flags:
        out.append(Violation("empty_grid", code, gcode, "grid holds no households", where(geom)))

    # geometry = union of its groups
    mine = [um[j] for j in members]
    gu = _robust_union(mine)
    diff = _overlay(shapely.symmetric_difference, gu, geom)
    if diff.area > area_tolerance(geom):
        out.append(
            Violation(
                "whole_groups",
                code,
                gcode,
                f"geometry differs from the union of its groups by {diff.area:.1f} m²",
                where(_largest(diff)),
            )
        )

    # connectivity: groups joined by borders of real length; pieces; sliver passages.
    # Policies: a group kept in pieces (multipart_group) may be in several pieces; a grid
    # holding a detached part of the village (island) must be connected within each part.
    multipart = MULTIPART_FLAG in flags
    island = ISLAND_FLAG in flags
    vparts = polygon_parts(village)

    def part_of(piece: BaseGeometry) -> int:
        if len(vparts) < 2:
            return 0
        p = shapely.point_on_surface(piece)
        return min(range(len(vparts)), key=lambda k: (vparts[k].distance(p), k))

    pieces: list[BaseGeometry] = []
    owner: list[int] = []
    for j, u in enumerate(mine):
        parts = polygon_parts(u)
        spread = len({part_of(p) for p in parts}) == len(parts)
        if len(parts) > 1 and not multipart and not (island and spread):
            out.append(
                Violation(
                    "connected",
                    code,
                    gcode,
                    f"group {names[j]} is in {len(parts)} separate pieces",
                    where(parts[-1]),
                )
            )
        pieces.extend(parts)
        owner.extend([j] * len(parts))
    region = [part_of(p) for p in pieces] if island else [0] * len(pieces)
    same = [
        (a, b)
        for a in range(len(pieces))
        for b in range(a)
        if owner[a] == owner[b] and (multipart or region[a] != region[b] or not island)
    ]
    for r in sorted(set(region)):
        sub = [k for k in range(len(pieces)) if region[k] == r]
        local = {k: n for n, k in enumerate(sub)}
        links = [(local[a], local[b]) for a, b in same if a in local and b in local]
        if len({owner[k] for k in sub}) > 1 and _joined([pieces[k] for k in sub], links) > 1:
            out.append(
                Violation(
                    "connected",
                    code,
                    gcode,
                    "its groups are not joined along shared borders",
                    where(pieces[sub[0]]),
                )
            )
    parts = polygon_parts(geom)
    per_region = [part_of(p) if island else 0 for p in parts]
    if not multipart and len(per_region) != len(set(per_region)):
        out.append(
            Violation("connected", code, gcode, f"grid is in {len(parts)} pieces", where(parts[-1]))
        )
    opened_village: BaseGeometry | None = None
    for part in parts:
        least = max(area_tolerance(geom), 100.0)
        opened = polygon_parts(shapely.buffer(part, -SLIVER_WIDTH / 2, quad_segs=2))
        big = [p for p in opened if p.area > least]
        if len(big) > 1:
            # a passage of the village itself (an isthmus) is no fault of the grid
            if opened_village is None:  # the village's morphological opening
                opened_village = shapely.buffer(
                    shapely.buffer(village, -SLIVER_WIDTH / 2, quad_segs=2),
                    SLIVER_WIDTH / 2 + GRID_SIZE,
                    quad_segs=2,
                )
            there = _overlay(shapely.intersection, opened_village, part)
            if len([p for p in polygon_parts(there) if p.area > least]) >= len(big):
                continue
            out.append(
                Violation(
                    "connected",
                    code,
                    gcode,
                    f"grid's {len(big)} parts are joined only through passages narrower "
                    f"than {SLIVER_WIDTH:g} m",
                    where(big[-1]),
                )
            )

    # inside the village
    outside = _overlay(shapely.difference, geom, village)
    if outside.area > area_tolerance(geom):
        out.append(
            Violation(
                "grid_in_village",
                code,
                gcode,
                f"{outside.area:.1f} m² lie outside the village",
                where(_largest(outside)),
            )
        )

    # oversized groups alone; band
    big_groups = [
        n for n, j in zip(names, members, strict=True) if int(va["households"].iloc[j]) > params.hi
    ]
    if big_groups and len(members) > 1:
        out.append(
            Violation(
                "oversized_alone", code, gcode, f"oversized group {big_groups[0]} shares its grid"
            )
        )
    lone_oversized = bool(big_groups) and len(members) == 1
    out_of_band = not params.lo <= h_stated <= params.hi
    if balance and out_of_band and not flags & _BAND_EXEMPT and not lone_oversized:
        out.append(
            Violation(
                "band",
                code,
                gcode,
                f"{h_stated} households, outside the band {params.lo}–{params.hi}",
                where(geom),
            )
        )
    return out


def _check_tiling(
    code: str, village: BaseGeometry, gm: list[BaseGeometry], codes: list[str], where: _Where
) -> list[Violation]:
    out: list[Violation] = []
    live = [(c, g) for c, g in zip(codes, gm, strict=True) if not g.is_empty]
    if not live:
        return out
    arr = np.asarray([g for _, g in live], dtype=object)
    names = [c for c, _ in live]
    tol = area_tolerance(village)
    # overlaps, pair by pair
    left, right = shapely.STRtree(arr).query(arr, predicate="intersects")
    n_over = 0
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j or n_over >= _MAX_PER_RULE:
            continue
        inter = _overlay(shapely.intersection, arr[i], arr[j])
        if inter.area > min(area_tolerance(arr[i]), area_tolerance(arr[j])):
            n_over += 1
            out.append(
                Violation(
                    "tiles_village",
                    code,
                    names[i],
                    f"overlaps grid {names[j]} by {inter.area:.1f} m²",
                    where(_largest(inter)),
                )
            )
    covered = _robust_union(list(arr))
    gap = _overlay(shapely.difference, village, covered)
    if gap.area > tol:
        big = _largest(gap)
        out.append(
            Violation(
                "tiles_village",
                code,
                "",
                f"{gap.area:.1f} m² of the village lie in no grid (tolerance {tol:.1f} m²)",
                where(big),
            )
        )
    if not n_over and gap.area <= tol and len(arr) > 1:
        try:
            ok = bool(shapely.coverage_is_valid(arr))
        except shapely.errors.GEOSException:
            ok = False
        if not ok:
            edges = shapely.coverage_invalid_edges(arr)
            bad = next((e for e in edges if e is not None and not e.is_empty), None)
            out.append(
                Violation(
                    "tiles_village",
                    code,
                    "",
                    "grid borders do not match vertex for vertex",
                    where(bad.centroid if bad is not None else None),
                )
            )
    return out


def violations_by_rule(violations: Sequence[Violation]) -> dict[str, int]:
    """Count violations per rule (handy for reports and benchmarks).

    Examples
    --------
    >>> violations_by_rule([Violation("code", "1", "", "x"), Violation("code", "2", "", "y")])
    {'code': 2}
    """
    counts: dict[str, int] = {}
    for v in violations:
        counts[v.rule] = counts.get(v.rule, 0) + 1
    return counts
