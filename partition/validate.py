"""The rules checker: every plan geogrid produces or edits is checked against these rules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from partition._geo import GRID_SIZE, cover_union, polygon_parts
from partition.plan import Plan, _metric_crs, _nw_key, _Proj, neighbours
from partition.solver import components

__all__ = ["RULES", "Violation", "validate_plan"]

#: Rule names reported in :class:`Violation`.
RULES = (
    "household_once",
    "grid_in_village",
    "whole_groups",
    "connected",
    "tiles_village",
    "code",
    "oversized_alone",
)

_CODE = re.compile(r"\d{15}")


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
    """

    rule: str
    village_code: str
    grid_code: str
    message: str

    def __str__(self) -> str:
        where = self.grid_code or self.village_code
        return f"[{self.rule}] {where}: {self.message}"


def _area_tol(geom: BaseGeometry) -> float:
    """Area tolerance: snapping moves a boundary by at most ~one grid cell."""
    return max(1.0, 1e-6 * geom.area, 2 * GRID_SIZE * geom.length)


def validate_plan(
    plan: Plan,
    households: pd.DataFrame | None = None,
    *,
    check_numbering: bool | None = None,
) -> list[Violation]:
    """Check a plan against the grid rules; an empty list means the plan is valid.

    Rules: every household in exactly one grid (or reported unassigned); every grid in
    one village; a grid is the union of whole groups (units) and its household count is
    theirs; each grid is connected through shared borders of real length (not corners)
    and is one polygon; the grids of a village tile it (shapely coverage validity, no
    overlap, union area = village area); codes are the 12-digit village code + 3 digits
    numbered north-west to south-east; a group above the band's upper bound is alone.

    Parameters
    ----------
    plan
        The plan to check.
    households
        Optional input households (``register_no``): each must be in the plan exactly
        once, assigned or unassigned.
    check_numbering
        Check NW→SE numbering; default: yes, except for redraws (which keep codes).

    Returns
    -------
    list of Violation
    """
    out: list[Violation] = []
    numbering = (
        not (plan.redraw or plan.meta.get("edited")) if check_numbering is None else check_numbering
    )
    grids = plan.grids
    assign = plan.assignment
    known = set(grids["code"])

    # -- households
    hh = plan.households
    dup = hh[hh.duplicated(["village_code", "register_no"])]
    for r in dup["register_no"].unique()[:20]:
        out.append(Violation("household_once", "", "", f"household {r} is in more than one grid"))
    missing = hh.loc[~hh["grid_code"].isin(known), "register_no"]
    for r in missing.unique()[:20]:
        out.append(Violation("household_once", "", "", f"household {r} is in no existing grid"))
    if households is not None:
        seen = pd.concat([hh["register_no"], plan.unassigned["register_no"]]).astype(str)
        have = seen.value_counts()
        want = households["register_no"].astype(str).value_counts()
        diff = want.sub(have.reindex(want.index, fill_value=0), fill_value=0)
        for r in diff[diff > 0].index[:20]:
            out.append(Violation("household_once", "", "", f"household {r} vanished from the plan"))
        extra = have.reindex(want.index, fill_value=0) - want
        for r in extra[extra > 0].index[:20]:
            out.append(Violation("household_once", "", "", f"household {r} counted twice"))

    # -- per village
    for code, vgeom in zip(plan.villages["code"], plan.villages.geometry, strict=True):
        vg = grids[grids["village_code"] == code]
        va = assign[assign["village_code"] == code]
        if len(vg) == 0:
            continue
        out.extend(_check_village(plan, code, vgeom, vg, va, numbering))
    # -- grids in unknown villages
    for gc, vc in zip(grids["code"], grids["village_code"], strict=True):
        if vc not in set(plan.villages["code"]):
            out.append(
                Violation("grid_in_village", vc, gc, "grid belongs to no village of the plan")
            )
    return out


def _check_village(
    plan: Plan,
    code: str,
    vgeom: BaseGeometry,
    vg: gpd.GeoDataFrame,
    va: gpd.GeoDataFrame,
    numbering: bool,
) -> list[Violation]:
    out: list[Violation] = []
    proj = _Proj(_metric_crs(vgeom))
    village = proj.to_metric(vgeom)
    gm = [proj.to_metric(g) for g in vg.geometry]
    um = [proj.to_metric(g) for g in va.geometry]
    codes = vg["code"].tolist()
    tol = _area_tol(village)

    # codes
    for gcode, gno in zip(codes, vg["grid_no"], strict=True):
        if not _CODE.fullmatch(str(gcode)) or not str(gcode).startswith(code):
            out.append(Violation("code", code, gcode, "code is not village code + 3 digits"))
        elif int(str(gcode)[-3:]) != int(gno):
            out.append(Violation("code", code, gcode, f"grid_no {gno} does not match the code"))
    if len(set(codes)) != len(codes):
        out.append(Violation("code", code, "", "duplicate grid codes"))
    if numbering:
        order = sorted(range(len(gm)), key=lambda i: _nw_key(gm[i]))
        nums = [int(vg["grid_no"].iloc[i]) for i in order]
        if nums != list(range(1, len(gm) + 1)):
            out.append(
                Violation("code", code, "", f"grids not numbered north-west to south-east: {nums}")
            )

    # whole groups: every unit in exactly one grid of this village; counts agree
    unit_grid = dict(zip(va["unit"], va["grid_code"], strict=True))
    if va["unit"].duplicated().any():
        out.append(Violation("whole_groups", code, "", "a group is assigned to several grids"))
    hh_units = plan.households[plan.households["village_code"] == code]
    for i, gcode in enumerate(codes):
        members = [j for j in range(len(va)) if va["grid_code"].iloc[j] == gcode]
        if not members:
            out.append(Violation("whole_groups", code, gcode, "grid has no groups"))
            continue
        names = [str(va["unit"].iloc[j]) for j in members]
        listed = [s for s in str(vg["groups"].iloc[i]).split(",") if s]
        if sorted(listed) != sorted(names):
            out.append(
                Violation("whole_groups", code, gcode, f"groups list {listed} != assigned {names}")
            )
        h = int(va["households"].iloc[members].sum())
        if h != int(vg["households"].iloc[i]):
            out.append(
                Violation(
                    "whole_groups",
                    code,
                    gcode,
                    f"households {vg['households'].iloc[i]} != sum of groups {h}",
                )
            )
        n_hh = int((hh_units["grid_code"] == gcode).sum())
        if n_hh != h:
            out.append(
                Violation(
                    "household_once", code, gcode, f"{n_hh} households point here, groups hold {h}"
                )
            )
        geom_union = cover_union([um[j] for j in members])
        diff = shapely.symmetric_difference(geom_union, gm[i]).area
        if diff > _area_tol(gm[i]):
            out.append(
                Violation(
                    "whole_groups",
                    code,
                    gcode,
                    f"geometry differs from its groups' union by {diff:.1f} m²",
                )
            )
        # connectivity: member units edge-connected, geometry one piece
        if len(members) > 1:
            nb = neighbours([um[j] for j in members])
            if len(components(list(range(len(members))), nb)) > 1:
                out.append(
                    Violation(
                        "connected", code, gcode, "groups are not joined along shared borders"
                    )
                )
        if len(polygon_parts(gm[i])) != 1:
            out.append(
                Violation(
                    "connected", code, gcode, f"grid is in {len(polygon_parts(gm[i]))} pieces"
                )
            )
        # grid in village
        outside = shapely.difference(gm[i], village).area
        if outside > tol:
            out.append(
                Violation(
                    "grid_in_village", code, gcode, f"{outside:.1f} m² lie outside the village"
                )
            )
        # oversized alone
        big = [
            n
            for n, j in zip(names, members, strict=True)
            if int(va["households"].iloc[j]) > plan.params.hi
        ]
        if big and len(members) > 1:
            out.append(
                Violation(
                    "oversized_alone", code, gcode, f"oversized group {big[0]} shares its grid"
                )
            )
    for unit, gcode in unit_grid.items():
        if gcode not in set(codes):
            out.append(
                Violation("whole_groups", code, "", f"group {unit} is in unknown grid {gcode}")
            )

    # tiling
    arr = np.asarray(gm, dtype=object)
    if not shapely.coverage_is_valid(arr):
        out.append(
            Violation("tiles_village", code, "", "grids overlap or their edges do not match")
        )
    total = float(shapely.area(arr).sum())
    covered = cover_union(gm)
    if abs(total - covered.area) > tol:
        out.append(
            Violation("tiles_village", code, "", f"grids overlap by {total - covered.area:.1f} m²")
        )
    gap = shapely.symmetric_difference(covered, village).area
    if gap > tol:
        out.append(
            Violation("tiles_village", code, "", f"grids and village differ by {gap:.1f} m²")
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
