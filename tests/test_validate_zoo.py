"""A zoo of broken plans, one per rule: the independent validator catches each, with its
rule, grid and place; a clean plan passes; ``check_plan`` refuses what breaks a rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from partition import PartitionParams, Plan, validate_plan
from partition._geo import as_multipolygon
from partition.plan import PLAN_GRID_COLUMNS, PLAN_UNIT_COLUMNS
from partition.validate import RULES, PlanRuleError, Violation, check_plan, stray_households

CODE = "440101001001"
METRIC = 32649
_TO_4326 = Transformer.from_crs(METRIC, 4326, always_xy=True)
X0, Y0 = 740_000.0, 2_560_000.0


def _geo(geom: BaseGeometry) -> BaseGeometry:
    """Local metres (origin X0, Y0) → EPSG:4326."""
    return shapely.transform(
        geom, lambda c: np.column_stack(_TO_4326.transform(c[:, 0] + X0, c[:, 1] + Y0))
    )


def _points_in(geom: BaseGeometry, n: int, rng: np.random.Generator) -> list[BaseGeometry]:
    x0, y0, x1, y1 = geom.bounds
    out: list[BaseGeometry] = []
    while len(out) < n:
        p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if geom.buffer(-1.0).contains(p):
            out.append(p)
    return out


def build(
    village: BaseGeometry,
    units: Mapping[str, tuple[BaseGeometry, int]],
    grids: Sequence[Sequence[str]],
    *,
    cadres: int | None = None,
    params: PartitionParams | None = None,
    flags: Mapping[int, str] | None = None,
) -> tuple[Plan, gpd.GeoDataFrame]:
    """A plan by hand: grids numbered in the given order, each the union of its units."""
    rng = np.random.default_rng(0)
    grid_of = {u: i for i, members in enumerate(grids) for u in members}
    code_of = [f"{CODE}{i + 1:03d}" for i in range(len(grids))]
    grid_rows, unit_rows, hh_rows, points = [], [], [], []
    for i, members in enumerate(grids):
        geom = shapely.union_all([units[u][0] for u in members])
        h = sum(units[u][1] for u in members)
        grid_rows.append(
            {
                "code": code_of[i], "village_code": CODE, "grid_no": i + 1, "level": 3,
                "households": h, "population": h, "groups": ",".join(members),
                "flags": (flags or {}).get(i, ""), "area_km2": geom.area / 1e6,
                "polsby_popper": 0.5, "geometry": as_multipolygon(_geo(geom)),
            }
        )  # fmt: skip
    for u, (geom, n) in units.items():
        gc = code_of[grid_of[u]]
        unit_rows.append(
            {
                "village_code": CODE, "unit": u, "group_no": int(u) if u.isdigit() else None,
                "part": 1, "grid_code": gc, "households": n, "population": n,
                "geometry": as_multipolygon(_geo(geom)),
            }
        )  # fmt: skip
        for k, p in enumerate(_points_in(geom, n, rng)):
            reg = f"{u}-{k:03d}"
            hh_rows.append(
                {"register_no": reg, "village_code": CODE, "unit": u, "grid_code": gc,
                 "outside_boundary": False}
            )  # fmt: skip
            points.append((reg, int(u) if u.isdigit() else 0, _geo(p)))
    plan = Plan(
        grids=gpd.GeoDataFrame(
            pd.DataFrame(grid_rows, columns=[*PLAN_GRID_COLUMNS, "geometry"]), crs=4326
        ),
        assignment=gpd.GeoDataFrame(
            pd.DataFrame(unit_rows, columns=[*PLAN_UNIT_COLUMNS, "geometry"]), crs=4326
        ),
        households=pd.DataFrame(hh_rows),
        unassigned=pd.DataFrame(columns=["register_no", "village_code", "reason"]),
        villages=gpd.GeoDataFrame(
            {
                "code": [CODE],
                "name": ["v"],
                "cadres": [cadres],
                "bound_in_band_share": [1.0],
                "bound_mean_abs_dev": [0.0],
                "moved": [None],
                "notes": [""],
            },
            geometry=[_geo(village)],
            crs=4326,
        ),
        params=params or PartitionParams(),
    )
    hh = gpd.GeoDataFrame(
        {"register_no": [r for r, _, _ in points], "group_no": [g for _, g, _ in points]},
        geometry=[p for _, _, p in points],
        crs=4326,
    )
    return plan, hh


# The base village: 3 columns × 2 rows of groups (1 2 3 on top, 4 5 6 below), 75
# households each; three grids of two groups, one per column (150 households each).
VILLAGE = shapely.box(0, 0, 3000, 1000)
TOP = {str(i + 1): shapely.box(1000 * i, 500, 1000 * (i + 1), 1000) for i in range(3)}
BOTTOM = {str(i + 4): shapely.box(1000 * i, 0, 1000 * (i + 1), 500) for i in range(3)}
UNITS = {u: (g, 75) for u, g in {**TOP, **BOTTOM}.items()}
COLUMNS = [["1", "4"], ["2", "5"], ["3", "6"]]


def base() -> tuple[Plan, gpd.GeoDataFrame]:
    return build(VILLAGE, UNITS, COLUMNS)


def _set_grid(plan: Plan, i: int, geom: BaseGeometry) -> None:
    plan.grids.loc[i, "geometry"] = _geo(geom)


# --------------------------------------------------------------------------- the zoo


def dup_household() -> tuple[Plan, Any]:
    plan, hh = base()
    row = plan.households.iloc[[0]].assign(grid_code=f"{CODE}002")
    plan.households = pd.concat([plan.households, row], ignore_index=True)
    return plan, hh


def household_elsewhere() -> tuple[Plan, Any]:
    plan, hh = base()
    reg = plan.households.loc[plan.households["unit"] == "1", "register_no"].iloc[0]
    hh.loc[hh["register_no"] == reg, "geometry"] = _geo(shapely.Point(2500, 750))
    return plan, hh


def household_in_two_grids() -> tuple[Plan, Any]:
    plan, hh = grids_overlap()  # grid 2 reaches 20 m into grid 1, over a household of group 1
    reg = plan.households.loc[plan.households["unit"] == "1", "register_no"].iloc[0]
    hh.loc[hh["register_no"] == reg, "geometry"] = _geo(shapely.Point(990, 750))
    return plan, hh


def household_vanished() -> tuple[Plan, Any]:
    plan, hh = base()
    plan.households = plan.households.iloc[1:].reset_index(drop=True)
    return plan, hh


def grid_not_union_of_groups() -> tuple[Plan, Any]:
    plan, hh = base()  # grid 1 takes 200 m of group 5 from grid 2
    _set_grid(plan, 0, shapely.box(0, 0, 1200, 1000).difference(shapely.box(1000, 500, 1200, 1000)))
    _set_grid(plan, 1, shapely.box(1000, 500, 2000, 1000).union(shapely.box(1200, 0, 2000, 500)))
    return plan, hh


def groups_meet_at_a_corner() -> tuple[Plan, Any]:
    # group 1 (top left) and group 5 (bottom middle) touch only at (1000, 500)
    return build(VILLAGE, UNITS, [["1", "5"], ["2", "4"], ["3", "6"]])


def sliver_passage() -> tuple[Plan, Any]:
    village = shapely.box(0, 0, 2000, 1000)
    neck = shapely.box(900, 999.8, 1100, 1000)  # 20 cm wide
    a = shapely.union_all([shapely.box(0, 0, 900, 1000), neck, shapely.box(1100, 0, 2000, 1000)])
    b = shapely.box(900, 0, 1100, 999.8)
    return build(village, {"1": (a, 150), "2": (b, 150)}, [["1"], ["2"]])


def grid_outside_village() -> tuple[Plan, Any]:
    plan, hh = base()
    plan.villages.loc[0, "geometry"] = _geo(shapely.box(0, 0, 3000, 990))
    return plan, hh


def gap_in_village() -> tuple[Plan, Any]:
    plan, hh = base()
    plan.villages.loc[0, "geometry"] = _geo(shapely.box(0, 0, 3000, 1100))
    return plan, hh


def grids_overlap() -> tuple[Plan, Any]:
    plan, hh = base()
    _set_grid(plan, 1, shapely.box(980, 0, 2000, 1000))
    return plan, hh


def edges_do_not_match() -> tuple[Plan, Any]:
    plan, hh = base()  # grid 1's border with grid 2 has a vertex grid 2 lacks, 3 cm off
    shape = shapely.Polygon([(0, 0), (1000, 0), (1000.03, 500), (1000, 1000), (0, 1000)])
    _set_grid(plan, 0, shape)
    return plan, hh


def invalid_geometry() -> tuple[Plan, Any]:
    plan, hh = base()
    bowtie = shapely.Polygon([(0, 0), (1000, 1000), (1000, 0), (0, 1000)])
    plan.grids.loc[0, "geometry"] = shapely.MultiPolygon([_geo(bowtie)])
    return plan, hh


def empty_grid() -> tuple[Plan, Any]:
    units = dict(UNITS)
    units["3"] = (TOP["3"], 0)
    units["6"] = (BOTTOM["6"], 0)
    return build(VILLAGE, units, COLUMNS)


def out_of_band() -> tuple[Plan, Any]:
    return build(VILLAGE, UNITS, [["1", "4", "2", "5"], ["3", "6"]])


def wrong_k() -> tuple[Plan, Any]:
    return build(VILLAGE, UNITS, COLUMNS, cadres=2)


def bad_code() -> tuple[Plan, Any]:
    plan, hh = base()
    plan.grids.loc[2, "code"] = f"{CODE}007"
    plan.assignment["grid_code"] = plan.assignment["grid_code"].replace(f"{CODE}003", f"{CODE}007")
    plan.households["grid_code"] = plan.households["grid_code"].replace(f"{CODE}003", f"{CODE}007")
    return plan, hh


def oversized_shares() -> tuple[Plan, Any]:
    units = dict(UNITS)
    units["1"] = (TOP["1"], 250)
    return build(VILLAGE, units, COLUMNS, flags={0: "oversized"})


def groups_list_wrong() -> tuple[Plan, Any]:
    plan, hh = base()
    plan.grids.loc[0, "groups"] = "1,4,9"
    return plan, hh


def group_in_two_pieces() -> tuple[Plan, Any]:
    units = dict(UNITS)  # group 1 also owns a detached block inside group 3's column
    units["1"] = (TOP["1"].union(shapely.box(2400, 600, 2600, 800)), 75)
    units["3"] = (TOP["3"].difference(shapely.box(2400, 600, 2600, 800)), 75)
    return build(VILLAGE, units, COLUMNS)


# (builder, rule, grid number or None for the village, a place is expected)
ZOO: list[tuple[Callable[[], tuple[Plan, Any]], str, int | None, bool]] = [
    (dup_household, "household_once", None, False),
    (household_in_two_grids, "household_once", 1, True),
    (household_vanished, "household_once", None, False),
    (grid_not_union_of_groups, "whole_groups", 1, True),
    (groups_list_wrong, "whole_groups", 1, False),
    (groups_meet_at_a_corner, "connected", 1, True),
    (sliver_passage, "connected", 1, True),
    (group_in_two_pieces, "connected", 1, True),
    (grid_outside_village, "grid_in_village", 1, True),
    (gap_in_village, "tiles_village", None, True),
    (grids_overlap, "tiles_village", 1, True),
    (edges_do_not_match, "tiles_village", None, True),
    (invalid_geometry, "valid_geometry", 1, True),
    (empty_grid, "empty_grid", 3, True),
    (out_of_band, "band", 1, True),
    (wrong_k, "k", None, True),
    (bad_code, "code", None, False),
    (oversized_shares, "oversized_alone", 1, False),
]


def test_the_clean_plan_keeps_every_rule():
    plan, hh = base()
    assert validate_plan(plan, hh, balance=True) == []
    assert check_plan(plan, hh) == []


def test_the_zoo_covers_every_rule():
    assert {rule for _, rule, _, _ in ZOO} == set(RULES)


@pytest.mark.parametrize(("make", "rule", "grid", "placed"), ZOO, ids=[f.__name__ for f, *_ in ZOO])
def test_each_broken_plan_is_caught_with_rule_grid_and_place(make, rule, grid, placed):
    plan, hh = make()
    found = [v for v in validate_plan(plan, hh, balance=True) if v.rule == rule]
    assert found, f"{make.__name__}: no {rule}"
    if grid is not None:
        assert any(v.grid_code == f"{CODE}{grid:03d}" for v in found), found
    assert all(v.village_code in ("", CODE) for v in found)
    if placed:
        hit = next(v for v in found if v.place is not None)
        lon, lat = hit.place
        village = plan.villages.geometry.iloc[0]
        assert shapely.Point(lon, lat).distance(village) < 0.01  # on the village, in degrees
    with pytest.raises(PlanRuleError) as err:
        check_plan(plan, hh)
    assert err.value.violations
    assert f"[{err.value.violations[0].rule}]" in str(err.value)


def test_accepted_imbalance_passes_only_the_balance_rules():
    plan, hh = out_of_band()
    accepted = check_plan(plan, hh, accept_imbalance=True)
    assert {v.rule for v in accepted} == {"band"}
    plan, hh = grids_overlap()
    with pytest.raises(PlanRuleError):
        check_plan(plan, hh, accept_imbalance=True)


def test_the_place_of_a_household_in_two_grids_is_the_household():
    plan, hh = household_in_two_grids()
    reg = plan.households.loc[plan.households["unit"] == "1", "register_no"].iloc[0]
    (v,) = [v for v in validate_plan(plan, hh) if f"household {reg} " in v.message]
    assert shapely.Point(*v.place).distance(_geo(shapely.Point(990, 750))) < 1e-6
    assert v.rule == "household_once" and "inside 2 grids" in v.message


def test_a_household_living_among_another_grid_is_listed_not_hidden():
    plan, hh = household_elsewhere()
    assert validate_plan(plan, hh, balance=True) == []  # it stays with its group's grid
    stray = stray_households(plan, hh)
    assert stray[["grid_code", "lies_in"]].values.tolist() == [[f"{CODE}001", f"{CODE}003"]]


def test_violation_text_names_rule_grid_and_place():
    v = Violation("connected", CODE, f"{CODE}001", "grid is in 2 pieces", (113.1, 23.2))
    assert str(v) == "[connected] 440101001001001: grid is in 2 pieces (at 113.100000, 23.200000)"
    assert v.as_dict()["place"] == [113.1, 23.2]


def test_an_isthmus_of_the_village_itself_is_no_fault_of_its_grid():
    neck = shapely.box(900, 499.75, 1100, 500.25)  # the village itself narrows to 50 cm
    village = shapely.union_all(
        [shapely.box(0, 0, 900, 1000), neck, shapely.box(1100, 0, 2000, 1000)]
    )
    plan, hh = build(village, {"1": (village, 150)}, [["1"]])
    assert validate_plan(plan, hh, balance=True) == []
