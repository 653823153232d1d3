"""Partitioner: solver, territories, rules and the awkward-input policies."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geogrid.errors import InvalidInput
from partition import (
    PartitionParams,
    balance_bound,
    derive_territories,
    move_group,
    partition_plan,
    quality_report,
    render_html_report,
    repair_territories,
    solve_k,
    validate_plan,
)
from partition.plan import neighbours
from partition.synthetic import SYNTH_CRS, random_town, random_village

CODE = "440101001001"


def _plan_key(plan):
    g = plan.grids
    return (
        g[["code", "households", "groups"]].values.tolist(),
        [round(float(x), 12) for x in shapely.area(g.geometry.values)],
    )


# --------------------------------------------------------------------------- import rule


def test_partition_imports_no_database_or_web_code():
    code = (
        "import sys, partition, partition.plan, partition.report, partition.validate, "
        "partition.edit, partition.territories, partition.solver\n"
        "bad = [m for m in ('sqlalchemy', 'fastapi', 'geoalchemy2', 'psycopg', 'alembic') "
        "if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- solver


def test_solve_k_balances_a_path():
    w = np.array([50, 100, 80, 70, 60, 90], dtype=float)
    xy = np.column_stack([np.arange(6.0), np.zeros(6)])
    nb = [[1], [0, 2], [1, 3], [2, 4], [3, 5], [4]]
    labels, _ = solve_k(w, xy, np.ones(6), nb, 3, np.random.default_rng(1))
    sums = sorted(np.bincount(labels, weights=w).tolist())
    assert sums == [150.0, 150.0, 150.0]
    # contiguity on a path: each label is one run
    assert all(np.all(np.diff(np.flatnonzero(labels == r)) == 1) for r in range(3))


def test_balance_bound_sees_forced_imbalance():
    b = balance_bound([90, 90, 90], 150, 100, 200)
    assert b.max_in_band_share == 0.5
    assert balance_bound([150, 150], 150, 100, 200).min_mean_abs_dev == 0.0
    assert balance_bound([300, 50, 60], 150, 100, 200).max_in_band_share == 0.5


def test_corner_contact_is_not_adjacency():
    boxes = [shapely.box(0, 0, 10, 10), shapely.box(10, 10, 20, 20), shapely.box(10, 0, 20, 10)]
    assert neighbours(boxes) == [[2], [2], [0, 1]]


# --------------------------------------------------------------------------- territories


def test_derived_territories_tile_village_with_duplicate_points():
    rng = np.random.default_rng(4)
    village = shapely.Point(0, 0).buffer(1000).difference(shapely.box(-100, -100, 100, 100))
    xy = rng.uniform(-700, 700, (300, 2))
    xy = xy[shapely.contains_xy(village, xy[:, 0], xy[:, 1])]
    groups = (xy[:, 0] > 0).astype(int) + 2 * (xy[:, 1] > 0)
    xy[:20] = xy[20]  # duplicate points, several groups at one spot
    groups[:10] = (groups[20] + 1) % 4
    hh = gpd.GeoDataFrame({"group_no": groups}, geometry=shapely.points(xy), crs=SYNTH_CRS)
    terr = derive_territories(village, hh)
    assert sorted(terr["group_no"]) == sorted(set(groups.tolist()))
    assert shapely.coverage_is_valid(terr.geometry.values)
    # snap rounding to the 1 cm grid moves the outline by < 1 cm: the area by < 1e-6
    assert abs(terr.area.sum() - village.area) < 1e-6 * village.area
    assert abs(shapely.union_all(terr.geometry.values).area - village.area) < 1e-6 * village.area
    assert all(len(shapely.get_parts(g)) == 1 for g in terr.geometry)


def test_repair_fixes_overlaps_gaps_and_missing_groups():
    village = shapely.box(0, 0, 300, 100)
    groups = gpd.GeoDataFrame(
        {"group_no": [1, 2]},
        geometry=[shapely.box(0, 0, 120, 100), shapely.box(110, 0, 195, 100)],  # overlap + gap
        crs=SYNTH_CRS,
    )
    pts = [(50, 50), (150, 50), (260, 30), (270, 70)]
    hh = gpd.GeoDataFrame({"group_no": [1, 2, 3, 3]}, geometry=shapely.points(pts), crs=SYNTH_CRS)
    terr, notes = repair_territories(village, groups, hh)
    assert sorted(terr["group_no"]) == [1, 2, 3]
    assert abs(terr.area.sum() - village.area) < 1.0
    assert abs(shapely.union_all(terr.geometry.values).area - village.area) < 1.0
    assert any("overlap" in n for n in notes)
    assert any("derived" in n for n in notes)


def test_validation_errors_are_precise():
    v, hh = random_village(np.random.default_rng(0), n_groups=3)
    with pytest.raises(InvalidInput, match="no CRS"):
        partition_plan(hh.set_crs(None, allow_override=True), v)
    with pytest.raises(InvalidInput, match="group_no"):
        partition_plan(hh.drop(columns="group_no"), v)
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    bad = gpd.GeoDataFrame({"code": [CODE]}, geometry=[bowtie], crs=4326)
    with pytest.raises(InvalidInput, match="invalid"):
        partition_plan(hh, bad)
    with pytest.raises(InvalidInput, match="12 digits"):
        partition_plan(hh, v.assign(code="123"))


# --------------------------------------------------------------------------- rules, property


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_groups=st.integers(1, 16),
    hole=st.booleans(),
    two_parts=st.booleans(),
    big=st.booleans(),
)
def test_rules_hold_on_random_villages(seed, n_groups, hole, two_parts, big):
    rng = np.random.default_rng(seed)
    sizes = (40, 260) if big else (15, 90)
    v, hh = random_village(rng, n_groups=n_groups, hole=hole, two_parts=two_parts, households=sizes)
    plan = partition_plan(hh, v, params=PartitionParams(seed=seed))
    assert validate_plan(plan, hh) == []
    assert len(plan.households) == len(hh)
    again = partition_plan(hh, v, params=PartitionParams(seed=seed))
    assert _plan_key(again) == _plan_key(plan)


# --------------------------------------------------------------------------- edge cases


def test_one_group_village():
    v, hh = random_village(np.random.default_rng(1), n_groups=1)
    plan = partition_plan(hh, v)
    assert len(plan.grids) == 1 and plan.grids["groups"].iloc[0] == "1"
    assert validate_plan(plan, hh) == []


def test_village_with_hole_is_tiled():
    v, hh = random_village(np.random.default_rng(2), n_groups=10, hole=True)
    plan = partition_plan(hh, v)
    assert validate_plan(plan, hh) == []
    assert len(shapely.get_interior_ring(plan.grids.union_all(), 0).coords) > 0


def test_village_in_two_parts_never_makes_a_disconnected_grid():
    v, hh = random_village(np.random.default_rng(3), n_groups=10, two_parts=True)
    plan = partition_plan(hh, v)
    assert validate_plan(plan, hh) == []
    parts = plan.assignment.groupby("grid_code")["part"].nunique()
    assert (parts == 1).all()
    assert set(plan.assignment["part"]) == {1, 2}
    assert all(len(shapely.get_parts(g)) == 1 for g in plan.grids.geometry)


def test_oversized_group_alone_and_flagged_or_split():
    v, hh = random_village(np.random.default_rng(5), n_groups=5, households=(150, 300))
    plan = partition_plan(hh, v)
    assert validate_plan(plan, hh) == []
    over = plan.grids[plan.grids["households"] > 200]
    assert len(over) and over["flags"].str.contains("oversized").all()
    assert (~over["groups"].str.contains(",")).all()
    split = partition_plan(hh, v, params=PartitionParams(split_large=True))
    assert validate_plan(split, hh) == []
    assert split.grids["households"].max() <= 200
    assert split.grids["flags"].str.contains("split_group").any()


def test_groups_touching_only_at_a_corner_are_not_joined():
    # 2x2 checkerboard: groups 1 and 4 meet only at the centre point
    cells = {1: (0, 100), 2: (100, 100), 3: (0, 0), 4: (100, 0)}
    sizes = {1: 75, 2: 130, 3: 130, 4: 75}
    boxes = {g: shapely.box(x, y, x + 100, y + 100) for g, (x, y) in cells.items()}
    metric = gpd.GeoDataFrame(
        {"village_code": CODE, "group_no": list(boxes)},
        geometry=list(boxes.values()),
        crs=SYNTH_CRS,
    )
    origin = np.array([740_000.0, 2_560_000.0])
    groups = metric.set_geometry(metric.translate(*origin)).to_crs(4326)
    village = gpd.GeoDataFrame(
        {"code": [CODE]}, geometry=[shapely.box(*origin, *(origin + 200))], crs=SYNTH_CRS
    ).to_crs(4326)
    rows = []
    rng = np.random.default_rng(0)
    for g, (x, y) in cells.items():
        p = origin + rng.uniform([x + 10, y + 10], [x + 90, y + 90], (sizes[g], 2))
        rows += [(f"{g}-{i}", g, pt) for i, pt in enumerate(p)]
    hh = gpd.GeoDataFrame(
        {
            "register_no": [r[0] for r in rows],
            "village_code": CODE,
            "group_no": [r[1] for r in rows],
        },
        geometry=shapely.points([r[2] for r in rows]),
        crs=SYNTH_CRS,
    ).to_crs(4326)
    plan = partition_plan(hh, village, groups)
    assert validate_plan(plan, hh) == []
    assert "1,4" not in set(plan.grids["groups"])
    assert not any(set(s.split(",")) == {"1", "4"} for s in plan.grids["groups"])
    target = plan.assignment.loc[plan.assignment["unit"] == "4", "grid_code"].iloc[0]
    if plan.assignment.loc[plan.assignment["unit"] == "1", "grid_code"].iloc[0] != target:
        with pytest.raises(InvalidInput):
            move_group(plan, 1, target)


def test_cadre_count_larger_than_groups_is_a_clear_error():
    v, hh = random_village(np.random.default_rng(6), n_groups=4)
    with pytest.raises(InvalidInput, match="only 4 villager groups"):
        partition_plan(hh, v, cadres={CODE: 9})
    plan = partition_plan(hh, v, cadres={CODE: 2})
    assert len(plan.grids) == 2
    assert validate_plan(plan, hh) == []


def test_empty_village_policy():
    v1, hh1 = random_village(np.random.default_rng(7), n_groups=4)
    v2, _ = random_village(np.random.default_rng(8), code="440101001002", offset=(5000, 0))
    villages = gpd.GeoDataFrame(pd.concat([v1, v2], ignore_index=True), crs=4326)
    plan = partition_plan(hh1, villages)
    empty = plan.grids[plan.grids["village_code"] == "440101001002"]
    assert len(empty) == 1 and empty["flags"].iloc[0] == "empty"
    assert validate_plan(plan, hh1) == []
    skipped = partition_plan(hh1, villages, params=PartitionParams(empty_village="skip"))
    assert "440101001002" not in set(skipped.grids["village_code"])


def test_households_outside_every_village_are_reported():
    v, hh = random_village(np.random.default_rng(9), n_groups=4)
    far = hh.iloc[:3].copy()
    far["register_no"] = ["x1", "x2", "x3"]
    far["village_code"] = None
    far = far.set_geometry(far.translate(1.0, 0.0))  # a degree east: in no village
    both = gpd.GeoDataFrame(pd.concat([hh, far], ignore_index=True), crs=4326)
    plan = partition_plan(both, v)
    assert sorted(plan.unassigned["register_no"]) == ["x1", "x2", "x3"]
    assert set(plan.unassigned["reason"]) == {"outside_every_village"}
    assert validate_plan(plan, both) == []
    assert quality_report(plan)["totals"]["unassigned_households"] == 3


# --------------------------------------------------------------------------- redraw, edit


def test_redraw_with_unchanged_data_moves_nothing():
    v, hh = random_town(np.random.default_rng(10), 2, n_groups=12)
    plan = partition_plan(hh, v)
    again = partition_plan(hh, v, existing=plan.grids)
    assert again.households_moved == 0
    assert _plan_key(again) == _plan_key(plan)
    assert validate_plan(again, hh) == []


def test_redraw_after_growth_repairs_and_reports_moves():
    v, hh = random_village(np.random.default_rng(11), n_groups=12)
    plan = partition_plan(hh, v)
    g = int(plan.assignment.sort_values("households")["group_no"].iloc[-1])
    grow = hh[hh["group_no"] == g].copy()
    extra = pd.concat([grow.assign(register_no=grow["register_no"] + f"n{i}") for i in range(2)])
    more = gpd.GeoDataFrame(pd.concat([hh, extra], ignore_index=True), crs=4326)
    redraw = partition_plan(more, v, existing=plan.grids)
    assert validate_plan(redraw, more) == []
    assert redraw.households_moved is not None and redraw.households_moved > 0
    assert set(plan.grids["code"]) <= set(redraw.grids["code"])


def test_move_group_revalidates_and_refuses_bad_edits():
    v, hh = random_village(np.random.default_rng(12), n_groups=14)
    plan = partition_plan(hh, v)
    a = plan.assignment
    done = False
    for unit, grid in zip(a["unit"], a["grid_code"], strict=True):
        for other in plan.grids["code"]:
            if other == grid:
                continue
            try:
                edited = move_group(plan, unit, other)
            except InvalidInput:
                continue
            assert validate_plan(edited) == []
            moved = edited.assignment.loc[edited.assignment["unit"] == unit, "grid_code"].iloc[0]
            assert moved == other
            row = edited.grids[edited.grids["code"] == other].iloc[0]
            assert unit in row["groups"].split(",")
            assert (
                row["households"]
                == edited.assignment.loc[
                    edited.assignment["grid_code"] == other, "households"
                ].sum()
            )
            done = True
            break
        if done:
            break
    assert done
    with pytest.raises(InvalidInput, match="does not exist"):
        move_group(plan, 1, CODE + "999")
    with pytest.raises(InvalidInput, match="already"):
        move_group(plan, a["unit"].iloc[0], a["grid_code"].iloc[0])


# --------------------------------------------------------------------------- report, parallel


def test_report_json_and_offline_html():
    v, hh = random_village(np.random.default_rng(13), n_groups=8)
    plan = partition_plan(hh, v)
    rep = quality_report(plan)
    json.dumps(rep)
    assert rep["totals"]["grids"] == len(plan.grids)
    assert {
        "households",
        "population",
        "deviation",
        "polsby_popper",
        "area_km2",
        "groups",
        "flags",
    } <= set(rep["grids"][0])
    page = render_html_report(plan, asset_base_url="/static/vendor/leaflet")
    assert "http://" not in page and "https://" not in page
    assert "/static/vendor/leaflet/leaflet.js" in page


def test_process_pool_and_dask_give_the_serial_plan():
    from distributed import Client, LocalCluster

    v, hh = random_town(np.random.default_rng(14), 3, n_groups=8)
    serial = partition_plan(hh, v, jobs=1)
    pooled = partition_plan(hh, v, jobs=2)
    assert _plan_key(pooled) == _plan_key(serial)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        seen: list[str] = []
        dask_plan = partition_plan(hh, v, scheduler=client, progress=seen.append)
    assert _plan_key(dask_plan) == _plan_key(serial)
    assert sorted(seen) == sorted(v["code"])


def test_split_large_inside_a_supplied_group_polygon():
    origin = np.array([740_000.0, 2_560_000.0])
    boxes = {1: shapely.box(0, 0, 300, 200), 2: shapely.box(300, 0, 400, 200)}
    groups = gpd.GeoDataFrame(
        {"village_code": CODE, "group_no": list(boxes)},
        geometry=[shapely.affinity.translate(b, *origin) for b in boxes.values()],
        crs=SYNTH_CRS,
    ).to_crs(4326)
    village = gpd.GeoDataFrame(
        {"code": [CODE]},
        geometry=[shapely.box(*origin, *(origin + np.array([400, 200])))],
        crs=SYNTH_CRS,
    ).to_crs(4326)
    rng = np.random.default_rng(3)
    p1 = origin + rng.uniform([5, 5], [295, 195], (420, 2))
    p2 = origin + rng.uniform([305, 5], [395, 195], (120, 2))
    hh = gpd.GeoDataFrame(
        {
            "register_no": [f"r{i}" for i in range(540)],
            "village_code": CODE,
            "group_no": [1] * 420 + [2] * 120,
        },
        geometry=shapely.points(np.vstack([p1, p2])),
        crs=SYNTH_CRS,
    ).to_crs(4326)
    plan = partition_plan(hh, village, groups, params=PartitionParams(split_large=True))
    assert validate_plan(plan, hh) == []
    parts = plan.grids[plan.grids["flags"].str.contains("split_group")]
    assert len(parts) >= 3
    assert parts["households"].max() <= 200


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_groups=st.integers(2, 12), grow=st.floats(-8.0, 8.0))
def test_rules_hold_with_sloppy_supplied_group_polygons(seed, n_groups, grow):
    v, hh = random_village(np.random.default_rng(seed), n_groups=n_groups)
    first = partition_plan(hh, v)
    units = first.assignment.to_crs(SYNTH_CRS)
    sloppy = units.geometry.buffer(grow)  # overlaps (grow > 0) or gaps (grow < 0)
    groups = gpd.GeoDataFrame(
        {"village_code": units["village_code"], "group_no": units["group_no"].astype(int)},
        geometry=sloppy,
        crs=SYNTH_CRS,
    ).iloc[: max(1, n_groups - 1)]  # one group left without a polygon
    # shrinking can cut a group's polygon in two pieces, each with households: the
    # default policy refuses such input (tested in test_territory_repair); keep them here
    plan = partition_plan(hh, v, groups.to_crs(4326), params=PartitionParams(group_pieces="keep"))
    assert validate_plan(plan, hh) == []
