"""Infeasibility stated: which villages miss the band or their grid count, why, and the best
the group sizes allow (partition.infeasible), and the command's exit code."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from partition import partition_plan, validate_plan
from partition.infeasible import explain_imbalance
from partition.synthetic import SYNTH_CRS

X0, Y0 = 740_000.0, 2_560_000.0


def row_village(code: str, sizes: Sequence[int], *, gap_after: int | None = None):  # type: ignore[no-untyped-def]
    """Groups side by side in a row (1 km each); optionally a detached part after a group."""
    rng = np.random.default_rng(0)
    boxes, rows, pts = [], [], []
    x = X0
    for i, n in enumerate(sizes):
        box = shapely.box(x, Y0, x + 1000, Y0 + 1000)
        boxes.append(box)
        for k in range(n):
            rows.append((f"{code}-{i}-{k}", code, i + 1))
            pts.append(shapely.Point(rng.uniform(x + 5, x + 995), rng.uniform(Y0 + 5, Y0 + 995)))
        x += 1000 + (3000 if gap_after is not None and i == gap_after else 0)
    v = gpd.GeoDataFrame(
        {"code": [code], "name": [f"村{code[-3:]}"]},
        geometry=[shapely.union_all(boxes)],
        crs=SYNTH_CRS,
    )
    groups = gpd.GeoDataFrame(
        {"village_code": code, "group_no": range(1, len(sizes) + 1)}, geometry=boxes, crs=SYNTH_CRS
    )
    hh = gpd.GeoDataFrame(
        pd.DataFrame(rows, columns=["register_no", "village_code", "group_no"]),
        geometry=pts,
        crs=SYNTH_CRS,
    )
    return v, hh, groups


def explained(v, hh, g, **kw):  # type: ignore[no-untyped-def]
    plan = partition_plan(hh, v, g, **kw)
    problems = validate_plan(plan, hh, balance=True)
    assert {p.rule for p in problems} <= {"band", "k"}
    return explain_imbalance(plan, problems)


def test_a_feasible_village_needs_no_explanation():
    assert explained(*row_village("440101001001", [80, 70, 90, 60])) == []


def test_too_few_households():
    (item,) = explained(*row_village("440101001001", [30, 33]))
    assert item.infeasible and "only 63 households" in str(item)
    assert item.bound_in_band_share == 0.0


def test_an_oversized_group_and_what_is_left():
    (item,) = explained(*row_village("440101001001", [260, 40, 30]))
    text = str(item)
    assert "group 1 alone has 260 households, above 200" in text
    assert "hold only 70 households" in text
    assert item.out_of_band == 1  # the oversized group's own grid is excused


def test_group_sizes_that_admit_no_split():
    (item,) = explained(*row_village("440101001001", [90, 90, 90]))
    assert item.infeasible
    assert item.bound_in_band_share < 1.0
    assert "group sizes (90, 90, 90)" in str(item) or "at most" in str(item)


def test_a_fixed_count_the_households_cannot_fill():
    v, hh, g = row_village("440101001001", [100, 110, 120, 130])
    (item,) = explained(v, hh, g, cadres={"440101001001": 2})
    assert item.k == 2 and "230.0 per grid" in str(item)


def test_a_village_in_two_parts_is_named_with_its_figures():
    # part 1: 60 | 150 (one grid of 210 or a grid of 60); part 2, 3 km away: 95 | 95
    v, hh, g = row_village("440101001001", [60, 150, 95, 95], gap_after=1)
    (item,) = explained(v, hh, g)
    assert str(item).startswith("440101001001 村001: 1 of 3 grids out of band")
    assert item.mean_abs_dev >= item.bound_mean_abs_dev - 1e-9


def test_contiguity_not_sizes_is_named_when_the_bound_allows_the_band():
    # sizes 60 | 100 | 60 in a row: {100} and {60, 60} would fit, but the 60s never touch
    (item,) = explained(*row_village("440101001001", [60, 100, 60]))
    assert item.bound_in_band_share == 1.0
    assert not item.infeasible
    assert "adjacency, or the sizes in combination, may forbid it" in str(item)
