"""Exact balance (CP-SAT) and the group-size bounds, checked against brute force."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from geogrid.errors import InvalidInput
from partition import PartitionParams, partition_plan
from partition.bounds import balance_bound, balance_bound_parts, k_bounds
from partition.exact import WALL_FACTOR, WALL_SLACK, balance_cost, canonical, solve_exact
from partition.solver import EXACT_EVERY_K, ExactRecord, components, partition_units, solve_k
from partition.synthetic import random_village

T, LO, HI, M = 150, 100, 200, 10.0


def _lattice(rng: np.random.Generator, rows: int, cols: int, drop: float = 0.25):
    """A connected lattice graph with some edges dropped, and random weights."""
    n = rows * cols
    edges = []
    for r, c in itertools.product(range(rows), range(cols)):
        i = r * cols + c
        if c + 1 < cols:
            edges.append((i, i + 1))
        if r + 1 < rows:
            edges.append((i, i + cols))
    while True:
        keep = [e for e in edges if rng.random() > drop]
        nb: list[list[int]] = [[] for _ in range(n)]
        for a, b in keep:
            nb[a].append(b)
            nb[b].append(a)
        if len(components(list(range(n)), nb)) == 1:
            break
    xy = np.array([[c, r] for r, c in itertools.product(range(rows), range(cols))], float)
    return nb, xy


def _partitions(n: int, k: int):
    """All set partitions of ``range(n)`` into ``k`` blocks (restricted growth strings)."""

    def rec(i: int, lab: list[int], used: int):
        if i == n:
            if used == k:
                yield list(lab)
            return
        for r in range(min(used + 1, k)):
            lab.append(r)
            yield from rec(i + 1, lab, max(used, r + 1))
            lab.pop()

    yield from rec(0, [], 0)


def _contiguous(lab, nb) -> bool:
    return all(
        len(components([i for i in range(len(lab)) if lab[i] == r], nb)) == 1 for r in set(lab)
    )


def _brute(w, nb, k):
    """Best balance cost, most in-band regions and least sum |dev| over contiguous plans."""
    best, inband, dev = np.inf, -1, np.inf
    for lab in _partitions(len(w), k):
        if not _contiguous(lab, nb):
            continue
        h = np.bincount(lab, weights=w, minlength=k)
        best = min(best, balance_cost(h, T, LO, HI, M))
        inband = max(inband, int(((h >= LO) & (h <= HI)).sum()))
        dev = min(dev, float(np.abs(h - T).sum()))
    return best, inband, dev


CASES = [(seed, rows, cols) for seed in range(6) for rows, cols in ((2, 3), (2, 4), (3, 3))]


@pytest.mark.parametrize(("seed", "rows", "cols"), CASES)
def test_exact_is_the_brute_force_optimum_and_bounds_hold(seed, rows, cols):
    rng = np.random.default_rng(seed)
    nb, _ = _lattice(rng, rows, cols)
    n = rows * cols
    w = rng.integers(10, 140, size=n)
    if seed % 3 == 0:
        w[0] = 230  # an oversized group
    bounds = {b.k: b for b in k_bounds(w.tolist(), T, LO, HI, M)}
    for k in range(2, min(n, 5)):
        opt, inband, dev = _brute(w, nb, k)
        res = solve_exact(w, nb, k, target=T, lo=LO, hi=HI, out_of_band=M, seconds=20)
        assert res.proven and res.status == "OPTIMAL"
        assert res.cost == pytest.approx(opt)
        assert res.bound <= opt + 1e-9
        assert len(set(res.labels.tolist())) == k and _contiguous(res.labels.tolist(), nb)
        # the group-size bounds never promise more than the best plan gives
        b = bounds[k]
        assert b.cost <= opt + 1e-9
        assert b.in_band >= inband
        assert b.abs_dev <= dev + 1e-9


def test_bound_is_valid_without_contiguity_on_random_group_sizes():
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(2, 8))
        w = rng.integers(0, 260, size=n).tolist()
        free = balance_bound(w, T, LO, HI)
        for k in range(1, n + 1):
            fixed = balance_bound(w, T, LO, HI, k)
            for lab in _partitions(n, k):
                h = np.bincount(lab, weights=w, minlength=k)
                share = float(((h >= LO) & (h <= HI)).mean())
                mad = float(np.abs(h - T).mean())
                cost = balance_cost(h, T, LO, HI, M)
                for b in (free, fixed):
                    assert share <= b.max_in_band_share + 1e-9, (w, lab)
                    assert mad >= b.min_mean_abs_dev - 1e-9, (w, lab)
                    assert cost >= b.min_cost - 1e-9, (w, lab)


def test_bound_counts_oversized_groups_that_share_a_grid():
    # two oversized groups together leave one grid for the 150: half the grids in band
    assert balance_bound([250, 250, 150], T, LO, HI, k=2).max_in_band_share == 0.5
    # an oversized group's grid is out of band whatever joins it
    assert balance_bound([201, 100, 100, 100], T, LO, HI, k=3).max_in_band_share == 2 / 3
    # parts partitioned apart: each part needs its own grid
    b = balance_bound_parts([[150, 150], [40]], T, LO, HI)
    assert b.max_in_band_share == pytest.approx(2 / 3)
    assert b.min_cost >= (40 - T) ** 2 / T + M * (LO - 40) - 1e-9


def test_hint_is_never_made_worse_and_is_proven_when_it_meets_the_bound():
    w = [75, 75, 75, 75, 150, 150]
    nb = [[1], [0, 2], [1, 3], [2, 4], [3, 5], [4]]
    hint = np.array([0, 0, 1, 1, 2, 3])
    res = solve_exact(
        w, nb, 4, target=T, lo=LO, hi=HI, out_of_band=M, hint=hint, seconds=5, lower_bound=0.0
    )
    assert res.cost == 0.0 and res.proven
    assert res.labels.tolist() == canonical(hint).tolist()


def test_exact_rejects_what_it_cannot_model():
    nb = [[1], [0]]
    with pytest.raises(InvalidInput, match="integers"):
        solve_exact([1.5, 2], nb, 1, target=T, lo=LO, hi=HI, out_of_band=M)
    with pytest.raises(InvalidInput, match="integers"):
        solve_exact([1, 2], nb, 1, target=150.5, lo=LO, hi=HI, out_of_band=M)
    with pytest.raises(InvalidInput, match="regions"):
        solve_exact([1, 2], nb, 3, target=T, lo=LO, hi=HI, out_of_band=M)
    with pytest.raises(InvalidInput, match="hint"):
        solve_exact([1, 2], nb, 2, target=T, lo=LO, hi=HI, out_of_band=M, hint=np.zeros(2))


def test_exact_is_deterministic_and_keeps_its_time_budget():
    rng = np.random.default_rng(3)
    nb, xy = _lattice(rng, 6, 7, drop=0.15)
    w = rng.integers(20, 120, size=len(nb)).astype(float)
    k = round(w.sum() / T)
    hint, _ = solve_k(w, xy, np.ones(len(w)), nb, k, np.random.default_rng(0))
    budget = 0.5
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        res = solve_exact(
            w.astype(int), nb, k, target=T, lo=LO, hi=HI, out_of_band=M, hint=hint,
            seconds=budget, seed=5,
        )  # fmt: skip
        took = time.perf_counter() - t0
        assert took <= budget * WALL_FACTOR + WALL_SLACK + 1.0  # + model building
        runs.append(res)
    assert runs[0].labels.tolist() == runs[1].labels.tolist()
    assert runs[0].cost == runs[1].cost
    assert runs[0].cost <= balance_cost(np.bincount(hint, weights=w), T, LO, HI, M) + 1e-9
    assert _contiguous(runs[0].labels.tolist(), nb)
    assert runs[0].proven or runs[0].gap > 0


def test_partition_units_with_exact_is_never_worse_and_records_proofs():
    rng = np.random.default_rng(4)
    nb, xy = _lattice(rng, 3, 4)
    w = rng.integers(30, 110, size=len(nb)).astype(float)
    area = np.ones(len(w))
    for k in (None, 3):
        heur, _ = partition_units(w, xy, area, nb, np.random.default_rng(1), k=k)
        recs: list[ExactRecord] = []
        lab, _ = partition_units(
            w, xy, area, nb, np.random.default_rng(1), k=k, exact_seconds=30, records=recs
        )
        assert _contiguous(lab.tolist(), nb)
        chosen = [r for r in recs if r.chosen]
        assert len(chosen) == 1 and chosen[0].proven and chosen[0].final <= chosen[0].heuristic
        kk = int(lab.max()) + 1
        opt, _, _ = _brute(w, nb, kk)
        assert chosen[0].final == pytest.approx(opt)
        if k is not None:
            hk = int(heur.max()) + 1
            cost_h = balance_cost(np.bincount(heur, weights=w, minlength=hk), T, LO, HI, M)
            assert chosen[0].final <= cost_h + 1e-9
        again, _ = partition_units(w, xy, area, nb, np.random.default_rng(1), k=k, exact_seconds=30)
        assert again.tolist() == lab.tolist()


def test_plan_reports_proofs_and_is_deterministic():
    v, hh = random_village(np.random.default_rng(21), n_groups=9)
    params = PartitionParams(exact_seconds=20.0)
    a = partition_plan(hh, v, params=params)
    b = partition_plan(hh, v, params=params)
    assert a.grids[["code", "groups"]].equals(b.grids[["code", "groups"]])
    assert bool(a.villages["exact_proven"].all())
    assert float(a.villages["exact_gap"].max()) == 0.0
    cost = balance_cost(a.grids["households"].to_numpy(), T, LO, HI, M)
    assert float(a.villages["exact_bound"].iloc[0]) == pytest.approx(cost)
    # the heuristic alone proves less, and never beats the proven optimum
    h = partition_plan(hh, v, params=PartitionParams(exact_seconds=0.0))
    assert balance_cost(h.grids["households"].to_numpy(), T, LO, HI, M) >= cost - 1e-9 or (
        len(h.grids) != len(a.grids)
    )
    redraw = partition_plan(hh, v, existing=a.grids, params=params)
    assert redraw.villages["exact_proven"].iloc[0] is None
    with pytest.raises(InvalidInput, match="exact_seconds"):
        PartitionParams(exact_seconds=-1)


@pytest.mark.parametrize(("rows", "cols", "budget"), [(3, 4, 0.3), (5, 7, 1.2)])
def test_partition_budget_is_shared_and_respected(rows, cols, budget):
    rng = np.random.default_rng(6)
    nb, xy = _lattice(rng, rows, cols, drop=0.1)
    w = rng.integers(20, 90, size=len(nb)).astype(float)
    recs: list[ExactRecord] = []
    t0 = time.perf_counter()
    partition_units(
        w, xy, np.ones(len(w)), nb, np.random.default_rng(2), exact_seconds=budget, records=recs
    )
    took = time.perf_counter() - t0
    ran = [r for r in recs if r.status not in ("bound", "skipped")]
    assert ran or all(r.status == "bound" for r in recs)
    if budget < EXACT_EVERY_K:  # a small budget goes to the chosen number of regions only
        assert len(recs) == 1 and recs[0].chosen
    else:
        assert ran, "CP-SAT must have run on a 35-unit graph"
    # CP-SAT may overrun a deterministic limit by a hair; never by another budget
    assert sum(r.deterministic for r in recs) <= budget * 1.1
    assert sum(r.seconds for r in recs) <= budget * WALL_FACTOR + WALL_SLACK * len(ran)
    assert took < 30


def test_cli_exact_option_proves_and_reports(tmp_path):
    import json

    from typer.testing import CliRunner

    from geogrid.cli import build_app

    v, hh = random_village(np.random.default_rng(21), n_groups=9)
    v.to_file(tmp_path / "v.gpkg", layer="villages")
    hh.to_file(tmp_path / "hh.gpkg", layer="households")
    base = ["partition", "--households", str(tmp_path / "hh.gpkg"), "--villages",
            str(tmp_path / "v.gpkg"), "--jobs", "1", "-o", str(tmp_path / "g.gpkg")]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(build_app(), [*base, "--exact", "20", "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    village = json.loads((tmp_path / "e.json").read_text())["villages"][0]
    assert village["exact_proven"] is True and village["exact_gap"] == 0.0
    assert village["balance_cost"] == pytest.approx(village["exact_bound"])
    res = runner.invoke(build_app(), [*base, "--exact", "-1"])
    assert res.exit_code != 0
