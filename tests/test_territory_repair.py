"""Geometry that holds on adversarial villages: supplied group polygons repaired (slivers,
gaps, overlaps), output grids valid after reprojection and tiling their village, villages
and groups in several parts handled through the adjacency graph, named policies for a
group in pieces or with several polygons. Every plan here passes the independent check."""

from __future__ import annotations

from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from geogrid.errors import InvalidInput
from partition import PartitionParams, partition_plan, validate_plan
from partition.validate import stray_households

_T = Transformer.from_crs(32649, 4326, always_xy=True)
X0, Y0 = 740_000.0, 2_560_000.0


def geo(g: BaseGeometry) -> BaseGeometry:
    return shapely.transform(g, lambda c: np.column_stack(_T.transform(c[:, 0] + X0, c[:, 1] + Y0)))


def village(
    code: str,
    outline: BaseGeometry,
    groups: Mapping[int, BaseGeometry],
    counts: Mapping[int, int],
    seed: int = 0,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """A village (local metres), its group polygons and households spread inside them."""
    rng = np.random.default_rng(seed)
    rows, pts = [], []
    for g, n in counts.items():
        src = groups.get(g, outline)
        x0, y0, x1, y1 = src.bounds
        inner = src.buffer(-1.0)
        k = 0
        while k < n:
            p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
            if inner.contains(p):
                rows.append((f"{code}-{g}-{k}", code, g))
                pts.append(geo(p))
                k += 1
    v = gpd.GeoDataFrame({"code": [code], "name": ["v"]}, geometry=[geo(outline)], crs=4326)
    hh = gpd.GeoDataFrame(
        pd.DataFrame(rows, columns=["register_no", "village_code", "group_no"]),
        geometry=pts,
        crs=4326,
    )
    gg = (
        gpd.GeoDataFrame(
            {"village_code": [code] * len(groups), "group_no": list(groups)},
            geometry=[geo(p) for p in groups.values()],
            crs=4326,
        )
        if groups
        else None
    )
    return v, hh, gg


def checked(v, hh, gg, **params):  # type: ignore[no-untyped-def]
    plan = partition_plan(hh, v, gg, params=PartitionParams(**params))
    assert validate_plan(plan, hh) == []
    assert (plan.grids.geometry.is_valid).all() and (plan.assignment.geometry.is_valid).all()
    assert plan.grids["households"].sum() + len(plan.unassigned) == len(hh)
    return plan


CODE = "440101001001"


def test_narrow_valley():
    outline = shapely.box(0, 0, 6000, 60)
    groups = {i + 1: shapely.box(600 * i, 0, 600 * (i + 1), 60) for i in range(10)}
    plan = checked(*village(CODE, outline, groups, {g: 40 + 7 * g for g in groups}))
    assert plan.grids["households"].between(100, 200).all()


def test_hole_is_no_grid_and_no_group():
    outline = shapely.box(0, 0, 3000, 3000).difference(shapely.box(1000, 1000, 2000, 2000))
    boxes = {
        1: shapely.box(0, 0, 3000, 1000),
        2: shapely.box(0, 2000, 3000, 3000),
        3: shapely.box(0, 1000, 1000, 2000),
        4: shapely.box(2000, 1000, 3000, 2000),
    }
    # the supplied polygons ignore the hole (a lake): repair cuts it out again
    plan = checked(*village(CODE, outline, boxes, {1: 160, 2: 140, 3: 90, 4: 70}))
    lake = geo(shapely.box(1100, 1100, 1900, 1900))
    assert not plan.grids.geometry.intersects(lake).any()


def test_sloppy_polygons_are_snapped_into_an_exact_coverage():
    outline = shapely.box(0, 0, 3000, 1000)
    sloppy = {  # gaps of 40 cm, overlaps of 30 cm, a 5 cm sliver gap, a crooked border
        1: shapely.box(0, 0, 999.8, 1000),
        2: shapely.Polygon(
            [(1000.2, 0), (2000.3, 0), (2000.05, 500), (2000.3, 1000), (1000.2, 1000)]
        ),
        3: shapely.box(2000.0, 0, 3000.05, 1000),
    }
    plan = checked(*village(CODE, outline, sloppy, {1: 150, 2: 150, 3: 150}))
    metric = plan.assignment.to_crs(32649).geometry.to_numpy()
    assert shapely.coverage_is_valid(metric)
    assert abs(shapely.union_all(metric).area - 3_000_000) < 1.0


def test_a_group_with_no_households_makes_no_invalid_or_empty_grid():
    outline = shapely.box(0, 0, 3000, 1000)
    groups = {i + 1: shapely.box(500 * i, 0, 500 * (i + 1), 1000) for i in range(6)}
    plan = checked(*village(CODE, outline, groups, {1: 260, 2: 0, 3: 80, 4: 70, 5: 0, 6: 90}))
    assert (plan.grids["households"] > 0).all()
    assert "oversized" in plan.grids.loc[plan.grids["households"] == 260, "flags"].iloc[0]


def test_islands_without_households_join_the_nearest_group():
    outline = shapely.union_all(
        [
            shapely.box(0, 0, 2000, 1000),
            shapely.box(2100, 0, 2110, 10),
            shapely.box(-50, 500, -45, 505),
            shapely.box(1000, 1100, 1020, 1120),
        ]
    )
    groups = {1: shapely.box(0, 0, 1000, 1000), 2: shapely.box(1000, 0, 2000, 1000)}
    plan = checked(*village(CODE, outline, groups, {1: 150, 2: 140}))
    assert len(plan.grids) == 2 and (plan.grids["households"] > 0).all()
    assert plan.grids["flags"].str.contains("island").all()
    covered = shapely.union_all(plan.grids.to_crs(32649).geometry.to_numpy())
    assert abs(covered.area - outline.area) < 1.0


def test_a_small_part_joins_a_grid_and_uses_no_quota():
    outline = shapely.union(shapely.box(0, 0, 3000, 1000), shapely.box(3500, 0, 3700, 200))
    groups = {
        1: shapely.box(0, 0, 1000, 1000),
        2: shapely.box(1000, 0, 2000, 1000),
        3: shapely.box(2000, 0, 3000, 1000),
        4: shapely.box(3500, 0, 3700, 200),
    }
    counts = {1: 120, 2: 90, 3: 60, 4: 30}
    plan = checked(*village(CODE, outline, groups, counts))
    assert plan.grids["households"].between(100, 200).all()  # no grid of 30
    assert plan.grids["flags"].str.contains("island").any()
    fixed = checked(*village(CODE, outline, groups, counts), group_pieces="refuse")
    del fixed
    v, hh, gg = village(CODE, outline, groups, counts)
    plan2 = partition_plan(hh, v, gg, cadres={CODE: 2})
    assert len(plan2.grids) == 2 and validate_plan(plan2, hh) == []


def _two_pieces():  # type: ignore[no-untyped-def]
    outline = shapely.box(0, 0, 3000, 1000)
    groups = {
        1: shapely.union(shapely.box(0, 0, 1000, 1000), shapely.box(2500, 0, 3000, 500)),
        2: shapely.box(1000, 0, 2500, 1000),
        3: shapely.box(2500, 500, 3000, 1000),
    }
    return village(CODE, outline, groups, {1: 150, 2: 160, 3: 110})


def test_a_group_in_two_pieces_is_refused_by_default_with_its_place():
    v, hh, gg = _two_pieces()
    with pytest.raises(InvalidInput, match=r"village 440101001001: group 1 lives in 2 separate"):
        partition_plan(hh, v, gg)


def test_a_group_in_two_pieces_kept_as_one_unit_moves_no_household():
    v, hh, gg = _two_pieces()
    plan = checked(v, hh, gg, group_pieces="keep")
    assert len(stray_households(plan, hh)) == 0  # nobody handed to another group's grid
    row = plan.grids[plan.grids["groups"].str.split(",").map(lambda g: "1" in g)]
    assert "multipart_group" in row["flags"].iloc[0]
    assert "kept as one unit" in plan.villages["notes"].iloc[0]


def test_a_duplicated_group_number_is_refused_or_kept_never_silently_merged():
    outline = shapely.box(0, 0, 2000, 1000)
    groups = {1: shapely.box(0, 0, 1000, 1000), 2: shapely.box(1000, 0, 2000, 1000)}
    v, hh, gg = village(CODE, outline, groups, {1: 150, 2: 150})
    assert gg is not None
    dup = gg.iloc[[0]].assign(geometry=[geo(shapely.box(1500, 0, 2000, 1000))])
    both = gpd.GeoDataFrame(pd.concat([gg, dup], ignore_index=True), crs=4326)
    with pytest.raises(InvalidInput, match="group 1 has 2 polygons"):
        partition_plan(hh, v, both)
    plan = checked(v, hh, both, group_pieces="keep")
    notes = plan.villages["notes"].iloc[0]
    assert "2 polygons kept as one unit" in notes and "without households attached" in notes
    assert len(stray_households(plan, hh)) == 0


def test_tiny_detached_piece_of_a_group_goes_to_its_neighbour():
    outline = shapely.box(0, 0, 2000, 1000)
    groups = {
        1: shapely.union(shapely.box(0, 0, 1000, 1000), shapely.box(1500, 400, 1510, 410)),
        2: shapely.box(1000, 0, 2000, 1000).difference(shapely.box(1500, 400, 1510, 410)),
    }
    plan = checked(*village(CODE, outline, groups, {1: 150, 2: 150}))  # refuse: no error
    one = plan.assignment.set_index("unit").to_crs(32649).geometry["1"]
    assert len(shapely.get_parts(one)) == 1


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    jitter=st.floats(0.0, 0.5),
    grow=st.floats(-0.6, 0.6),
)
def test_property_jittered_supplied_polygons_give_a_valid_tiling(seed, jitter, grow):
    """Vertices moved by up to ``jitter`` m, borders grown or shrunk by ``grow`` m:
    slivers, gaps and overlaps of every kind; the plan keeps every rule."""
    rng = np.random.default_rng(seed)
    xs = np.sort(rng.uniform(200, 2800, 4))
    cuts = [0.0, *xs.tolist(), 3000.0]
    groups = {}
    for i in range(5):
        box = shapely.segmentize(shapely.box(cuts[i], 0, cuts[i + 1], 1000), 50)
        # the same vertex moves the same way within a group, differently between groups
        moved = shapely.transform(
            box, lambda c, i=i: c + jitter * np.sin(c[:, ::-1] * 12.9898 + 7.0 * i)
        )
        groups[i + 1] = shapely.make_valid(moved).buffer(grow, join_style="mitre")
    counts = {g: int(rng.integers(30, 140)) for g in groups}
    v, hh, gg = village(CODE, shapely.box(0, 0, 3000, 1000), groups, counts, seed)
    plan = partition_plan(hh, v, gg)
    assert validate_plan(plan, hh) == []


def test_a_real_polygon_set_with_islands_keeps_every_rule():
    """libpysal's 48 US states (17 in several parts, 39 pieces in all) as one village's
    groups, scaled to 20 km: islands join grids, groups kept in pieces, no rule broken."""
    import os

    from libpysal import examples

    states = gpd.read_file(
        os.path.join(os.path.dirname(examples.__file__), "us_income", "us48.shp")
    )
    geoms = shapely.make_valid(states.geometry.to_numpy())
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    s = 20_000 / max(x1 - x0, y1 - y0)
    local = [shapely.transform(g, lambda c: (c - [x0, y0]) * s) for g in geoms]
    groups = {i + 1: g for i, g in enumerate(local)}
    counts = {g: 20 + (37 * g) % 110 for g in groups}
    v, hh, gg = village(CODE, shapely.union_all(local), groups, counts)
    with pytest.raises(InvalidInput, match="separate pieces"):
        partition_plan(hh, v, gg)
    plan = partition_plan(hh, v, gg, params=PartitionParams(group_pieces="keep"))
    problems = validate_plan(plan, hh, balance=True)
    assert {p.rule for p in problems} <= {"band"}  # the band may be out of reach; no other rule
    assert (plan.grids["households"] > 0).all()
    assert plan.grids["flags"].str.contains("island").any()
    assert len(stray_households(plan, hh)) == 0


def test_a_village_whose_groups_have_no_households_is_one_empty_grid():
    outline = shapely.box(0, 0, 2000, 1000)
    groups = {1: shapely.box(0, 0, 1000, 1000), 2: shapely.box(1000, 0, 2000, 1000)}
    v1, hh1, g1 = village(CODE, outline, groups, {1: 150, 2: 150})
    far = shapely.box(0, 3000, 2000, 4000)
    g_far = {1: shapely.box(0, 3000, 1000, 4000), 2: shapely.box(1000, 3000, 2000, 4000)}
    v2, _, g2 = village("440101001002", far, g_far, {})
    v = gpd.GeoDataFrame(pd.concat([v1, v2], ignore_index=True), crs=4326)
    gg = gpd.GeoDataFrame(pd.concat([g1, g2], ignore_index=True), crs=4326)
    plan = checked(v, hh1, gg)
    empty = plan.grids[plan.grids["village_code"] == "440101001002"]
    assert len(empty) == 1 and empty["flags"].iloc[0] == "empty"
    assert empty.geometry.is_valid.all()
