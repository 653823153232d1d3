"""Planner edits on a plan: move one group to an adjacent grid, re-validated."""

from __future__ import annotations

import math
from dataclasses import replace

import geopandas as gpd
import pandas as pd

from geogrid.errors import InvalidInput
from partition._geo import MIN_SHARED_BORDER, as_multipolygon, cover_union, shared_lengths
from partition.plan import Plan, _metric_crs, _Proj, _unit_sort, neighbours
from partition.solver import components

__all__ = ["move_group"]

#: Flags that pin a unit to a grid of its own; such units cannot be moved.
_ALONE_FLAGS = {"oversized", "split_group", "empty"}


def move_group(
    plan: Plan, group: int | str, to_grid: str, *, village_code: str | None = None
) -> Plan:
    """Move one villager group to an adjacent grid and return the edited plan.

    The edit is refused (with the reason) if the group is not in the village of
    ``to_grid``, is already there, must stand alone (oversized, split part, empty
    village), is not joined to ``to_grid`` along a shared border, or if its grid would be
    left empty or disconnected. Both grids' geometry and metrics are recomputed; codes
    are kept. The input plan is not modified.

    Parameters
    ----------
    plan
        The plan to edit.
    group
        Group number or unit name (``"3"``, ``"3@2"`` for part 2 of a two-part village).
    to_grid
        Code of the receiving grid (15 digits).
    village_code
        Village of the group; default: the first 12 digits of ``to_grid``.

    Returns
    -------
    Plan
        A new plan with ``meta["edited"]`` set.

    Raises
    ------
    geogrid.errors.InvalidInput
        The edit breaks a rule; the message says which.
    """
    from partition.validate import validate_plan

    village_code = village_code or str(to_grid)[:12]
    grids, assign = plan.grids, plan.assignment
    if to_grid not in set(grids["code"]):
        raise InvalidInput(f"grid {to_grid} does not exist in this plan.")
    if str(grids.loc[grids["code"] == to_grid, "village_code"].iloc[0]) != village_code:
        raise InvalidInput(
            f"grid {to_grid} is not in village {village_code}; grids never cross villages."
        )
    va = assign[assign["village_code"] == village_code].reset_index(drop=True)
    name = str(group)
    hits = va.index[va["unit"] == name].tolist()
    if not hits and isinstance(group, int | str) and str(group).isdigit():
        hits = va.index[va["group_no"].astype("Int64") == int(group)].tolist()
    if not hits:
        raise InvalidInput(f"group {group} does not exist in village {village_code}.")
    if len(hits) > 1:
        names = ", ".join(va.loc[hits, "unit"])
        raise InvalidInput(f"group {group} is split into {names}; name the part to move.")
    i = hits[0]
    unit = str(va.at[i, "unit"])
    src = str(va.at[i, "grid_code"])
    if src == to_grid:
        raise InvalidInput(f"group {unit} is already in grid {to_grid}.")
    flags = set(str(grids.loc[grids["code"] == src, "flags"].iloc[0]).split(","))
    if flags & _ALONE_FLAGS or int(va.at[i, "households"]) > plan.params.hi:
        why = ", ".join(sorted(flags & _ALONE_FLAGS)) or "oversized"
        raise InvalidInput(f"group {unit} must stand alone in its grid ({why}).")
    dst_flags = set(str(grids.loc[grids["code"] == to_grid, "flags"].iloc[0]).split(","))
    if dst_flags & _ALONE_FLAGS:
        raise InvalidInput(f"grid {to_grid} holds a group that must stand alone.")
    proj = _Proj(
        _metric_crs(plan.villages.loc[plan.villages["code"] == village_code].geometry.iloc[0])
    )
    geoms = [proj.to_metric(g) for g in va.geometry]
    src_members = [j for j in range(len(va)) if va.at[j, "grid_code"] == src]
    dst_members = [j for j in range(len(va)) if va.at[j, "grid_code"] == to_grid]
    if len(src_members) == 1:
        raise InvalidInput(f"moving group {unit} would leave grid {src} empty.")
    lengths = shared_lengths(geoms)
    border = sum(lengths.get((min(i, j), max(i, j)), 0.0) for j in dst_members)
    if border <= MIN_SHARED_BORDER:
        raise InvalidInput(
            f"group {unit} does not share a border with grid {to_grid} "
            f"({border:.1f} m; touching at a corner does not count)."
        )
    rest = [j for j in src_members if j != i]
    nb = neighbours([geoms[j] for j in rest])
    if len(components(list(range(len(rest))), nb)) > 1:
        raise InvalidInput(f"moving group {unit} would split grid {src} in two.")

    new_assign = assign.copy()
    mask = (new_assign["village_code"] == village_code) & (new_assign["unit"] == unit)
    new_assign.loc[mask, "grid_code"] = to_grid
    new_hh = plan.households.copy()
    hm = (new_hh["village_code"] == village_code) & (new_hh["unit"] == unit)
    new_hh.loc[hm, "grid_code"] = to_grid
    new_grids = plan.grids.copy()
    bound = float(
        plan.villages.loc[plan.villages["code"] == village_code, "bound_in_band_share"].iloc[0]
    )
    for code, members in ((src, rest), (to_grid, [*dst_members, i])):
        row = new_grids.index[new_grids["code"] == code][0]
        geom4326 = cover_union([va.geometry.iloc[j] for j in members])  # keeps shared vertices
        geom = proj.to_metric(geom4326)
        h = int(va.loc[members, "households"].sum())
        f = {x for x in str(new_grids.at[row, "flags"]).split(",") if x} - {
            "out_of_band",
            "forced_imbalance",
        }
        if not plan.params.lo <= h <= plan.params.hi:
            f.add("out_of_band")
            if bound < 1.0 - 1e-9:
                f.add("forced_imbalance")
        new_grids.at[row, "households"] = h
        new_grids.at[row, "population"] = int(va.loc[members, "population"].sum())
        new_grids.at[row, "groups"] = ",".join(
            sorted((str(va.at[j, "unit"]) for j in members), key=_unit_sort)
        )
        new_grids.at[row, "flags"] = ",".join(sorted(f))
        new_grids.at[row, "area_km2"] = float(geom.area / 1e6)
        new_grids.at[row, "polsby_popper"] = float(4 * math.pi * geom.area / geom.length**2)
        new_grids.at[row, "geometry"] = as_multipolygon(geom4326)
    edited = replace(
        plan,
        grids=gpd.GeoDataFrame(new_grids, geometry="geometry", crs=plan.grids.crs),
        assignment=gpd.GeoDataFrame(new_assign, geometry="geometry", crs=plan.assignment.crs),
        households=pd.DataFrame(new_hh),
        meta={**plan.meta, "edited": True},
    )
    sub = replace(
        edited,
        grids=edited.grids[edited.grids["village_code"] == village_code],
        assignment=edited.assignment[edited.assignment["village_code"] == village_code],
        villages=edited.villages[edited.villages["code"] == village_code],
        households=new_hh[new_hh["village_code"] == village_code],
    )
    problems = validate_plan(sub, check_numbering=False)
    if problems:
        raise InvalidInput(
            f"moving group {unit} to {to_grid} breaks the rules: {problems[0]}",
            detail={"violations": [str(p) for p in problems]},
        )
    return edited
