"""Exact balance: an OR-Tools CP-SAT model of the partition objective's balance part.

For one connected unit graph and a number of regions ``k`` the model minimises

``sum_r (h_r - T)^2 / T + M * out_of_band(h_r)``

— exactly the balance terms of :class:`partition.solver.Objective` (``balance = 1``;
the compactness term is not modelled) — over all partitions of the units into ``k``
non-empty, *contiguous* regions. Contiguity is a single-commodity flow: the lowest-numbered
unit of each region (its root) supplies one unit of flow to every other member, and flow
may only run along an edge whose two ends share a region. Regions are numbered by their
lowest unit (symmetry breaking). The heuristic's plan is given as a complete hint, so the
search starts from it and never returns anything worse; a lower bound computed from the
group sizes (:func:`partition.solver.cost_bound`) is added as a redundant constraint, so a
heuristic plan that meets it is proven at once.

CP-SAT runs with one worker and a fixed seed under a *deterministic* time limit, so the same
inputs give the same plan whatever the load; a wall-clock limit of several times the budget
is only a safety net (were it ever to bite, the result could depend on the load).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geogrid.errors import InvalidInput
from partition.bounds import subset_sums

__all__ = ["ExactResult", "balance_cost", "canonical", "solve_exact"]

log = logging.getLogger(__name__)

Neighbors = Sequence[Sequence[int]]

#: Wall-clock safety net over the deterministic budget (only for badly overloaded machines).
WALL_FACTOR = 5.0
WALL_SLACK = 1.0


@dataclass(frozen=True)
class ExactResult:
    """Outcome of :func:`solve_exact`.

    Attributes
    ----------
    labels
        Region per unit (``0..k-1``, numbered by lowest unit), or the hint when the solver
        found nothing better.
    cost
        Balance cost of ``labels`` (:func:`balance_cost`).
    bound
        Proven lower bound of the balance cost over all contiguous ``k``-partitions.
    proven
        Whether ``cost`` is proven optimal (``cost <= bound``).
    status
        CP-SAT status name (``OPTIMAL``, ``FEASIBLE``, ``UNKNOWN``, ``INFEASIBLE``).
    seconds
        Wall time spent.
    deterministic_time
        CP-SAT's deterministic time spent (what the budget counts).
    """

    labels: np.ndarray
    cost: float
    bound: float
    proven: bool
    status: str
    seconds: float
    deterministic_time: float = 0.0

    @property
    def gap(self) -> float:
        """Relative gap ``(cost - bound) / cost`` (0 when proven)."""
        if self.proven or self.cost <= 0:
            return 0.0
        return max(0.0, (self.cost - self.bound) / self.cost)


def balance_cost(h: np.ndarray | Sequence[float], target: float, lo: float, hi: float,
                 out_of_band: float) -> float:  # fmt: skip
    """Balance cost of region sizes ``h``: ``sum (h - T)^2 / T + M * out_of_band``.

    Examples
    --------
    >>> balance_cost([150, 210, 90], 150, 100, 200, 10.0)
    248.0
    """
    a = np.asarray(h, dtype=float)
    out = np.maximum(0.0, lo - a) + np.maximum(0.0, a - hi)
    return float(((a - target) ** 2).sum() / target + out_of_band * out.sum())


def canonical(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    """Renumber regions by their lowest unit (the model's symmetry breaking).

    Examples
    --------
    >>> canonical([2, 2, 0, 1, 0]).tolist()
    [0, 0, 1, 2, 1]
    """
    lab = np.asarray(labels, dtype=np.int64)
    remap: dict[int, int] = {}
    for x in lab.tolist():
        if x not in remap:
            remap[x] = len(remap)
    return np.array([remap[x] for x in lab.tolist()], dtype=np.int64)


def _flows(labels: np.ndarray, nbrs: Neighbors) -> dict[tuple[int, int], int]:
    """Flow of the hint: a BFS tree per region from its root, arc flow = subtree size."""
    n = len(labels)
    flow: dict[tuple[int, int], int] = {}
    parent = [-1] * n
    order: list[int] = []
    seen = [False] * n
    for root in range(n):
        if seen[root]:
            continue
        seen[root] = True
        queue = [root]
        while queue:
            u = queue.pop(0)
            order.append(u)
            for v in sorted(nbrs[u]):
                if not seen[v] and labels[v] == labels[u]:
                    seen[v] = True
                    parent[v] = u
                    queue.append(v)
    size = [1] * n
    for u in reversed(order):
        if parent[u] >= 0:
            size[parent[u]] += size[u]
            flow[(parent[u], u)] = size[u]
    return flow


def _flow_contiguity(
    m: Any, nbrs: Neighbors, cap: int, is_root: Sequence[Any], tie: Callable[[int, int, Any], None]
) -> tuple[dict[tuple[int, int], Any], dict[tuple[int, int], Any]]:
    """Contiguity as a single-commodity flow on model ``m``.

    Each root (``is_root[i]`` = 1) supplies up to ``cap`` units, every other unit consumes
    one, and flow runs only along an edge whose boolean ``e`` holds — ``tie(i, j, e)`` adds
    "``i`` and ``j`` share a region" under ``e``. Returns the edge booleans and the arc
    flows (for hints).
    """
    n = len(nbrs)
    inflow: list[list[Any]] = [[] for _ in range(n)]
    outflow: list[list[Any]] = [[] for _ in range(n)]
    arcs: dict[tuple[int, int], Any] = {}
    same: dict[tuple[int, int], Any] = {}
    for i in range(n):
        for j in nbrs[i]:
            if j <= i:
                continue
            e = m.new_bool_var(f"e{i}_{j}")
            same[(i, j)] = e
            tie(i, j, e)
            for u, v in ((i, j), (j, i)):
                f = m.new_int_var(0, cap, f"f{u}_{v}")
                m.add(f <= cap * e)
                arcs[(u, v)] = f
                outflow[u].append(f)
                inflow[v].append(f)
    for i in range(n):
        supply = m.new_int_var(0, cap, f"q{i}")
        m.add(supply <= cap * is_root[i])
        m.add(sum(inflow[i]) - sum(outflow[i]) == 1 - is_root[i] - supply)
        m.add(sum(inflow[i]) <= cap * (1 - is_root[i]))  # nothing flows into a root
    return same, arcs


def solve_exact(
    w: np.ndarray | Sequence[int],
    nbrs: Neighbors,
    k: int,
    *,
    target: float,
    lo: float,
    hi: float,
    out_of_band: float,
    hint: np.ndarray | None = None,
    seconds: float = 1.0,
    seed: int = 0,
    lower_bound: float | None = None,
) -> ExactResult:
    """Minimise the balance cost over contiguous partitions into exactly ``k`` regions.

    Parameters
    ----------
    w
        Integer unit weights (households), ``n`` of them.
    nbrs
        Adjacency lists (edge adjacency); the graph must be connected.
    k
        Number of regions, ``1 <= k <= n``.
    target, lo, hi, out_of_band
        As in :class:`partition.solver.Objective`; ``target`` and ``out_of_band * target``
        must be integers (the model works in units of ``1 / target``).
    hint
        A contiguous labelling with ``k`` regions (the heuristic's): a complete hint.
    seconds
        Deterministic time budget of CP-SAT (about seconds of one core).
    seed
        CP-SAT random seed.
    lower_bound
        A known lower bound of the cost (added as a redundant constraint).

    Returns
    -------
    ExactResult

    Raises
    ------
    geogrid.errors.InvalidInput
        Non-integer weights or scale, ``k`` out of range, an invalid hint.

    Examples
    --------
    >>> r = solve_exact([80, 70, 90, 60], [[1], [0, 2], [1, 3], [2]], 2,
    ...                 target=150, lo=100, hi=200, out_of_band=10)
    >>> r.labels.tolist(), r.cost, r.proven
    ([0, 0, 1, 1], 0.0, True)
    """
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    wi = [int(x) for x in w]
    if any(x != y for x, y in zip(wi, w, strict=True)) or any(x < 0 for x in wi):
        raise InvalidInput("exact solver: unit weights must be non-negative integers.")
    n = len(wi)
    if not 1 <= k <= n:
        raise InvalidInput(f"exact solver: cannot make {k} regions from {n} units.")
    T = round(target)  # noqa: N806 (the target, as in the formula)
    scaled = out_of_band * target
    if target != T or abs(scaled - round(scaled)) > 1e-9:
        raise InvalidInput("exact solver: target and out_of_band * target must be integers.")
    MT = round(scaled)  # noqa: N806
    ilo, ihi = math.ceil(lo), math.floor(hi)
    W = sum(wi)  # noqa: N806
    hint_lab = None if hint is None else canonical(hint)
    if hint_lab is not None and (len(hint_lab) != n or int(hint_lab.max()) + 1 != k):
        raise InvalidInput("exact solver: the hint must label every unit with k regions.")
    if k == 1 or k == n:
        lab = np.zeros(n, dtype=np.int64) if k == 1 else np.arange(n, dtype=np.int64)
        c = balance_cost(np.bincount(lab, weights=wi, minlength=k), T, lo, hi, out_of_band)
        return ExactResult(lab, c, c, True, "OPTIMAL", time.perf_counter() - t0)

    m = cp_model.CpModel()
    cells = [(i, r) for i in range(n) for r in range(min(i, k - 1) + 1)]  # region r <= unit i
    x = {c: m.new_bool_var(f"x{c[0]}_{c[1]}") for c in cells}  # unit i in region r
    p = {c: m.new_bool_var(f"p{c[0]}_{c[1]}") for c in cells}  # region r has a unit <= i
    root = {c: m.new_bool_var(f"s{c[0]}_{c[1]}") for c in cells}  # i is r's lowest unit

    for i in range(n):
        m.add_exactly_one(x[(i, r)] for r in range(min(i, k - 1) + 1))
    for i, r in cells:
        xi, pi, si = x[(i, r)], p[(i, r)], root[(i, r)]
        if i == r:  # the first unit region r may hold
            m.add(pi == xi)
            m.add(si == xi)
        else:
            prev = p[(i - 1, r)]
            m.add_implication(prev, pi)
            m.add_implication(xi, pi)
            m.add_bool_or([prev, xi]).only_enforce_if(pi)
            m.add_implication(si, xi)
            m.add_implication(si, prev.Not())
            m.add_bool_or([si, prev, xi.Not()])
        if r >= 1:  # regions numbered by their lowest unit
            m.add_implication(xi, p[(i - 1, r - 1)])
    for r in range(k):
        m.add(p[(n - 1, r)] == 1)  # every region non-empty
    is_root = [sum(root[(i, r)] for r in range(min(i, k - 1) + 1)) for i in range(n)]

    # contiguity: flow from each region's root along same-region edges
    def tie(i: int, j: int, e: cp_model.IntVar) -> None:
        for r in range(min(j, k - 1) + 1):  # j > i: region r possible for j
            if r <= i:
                m.add(x[(i, r)] == x[(j, r)]).only_enforce_if(e)
            else:
                m.add(x[(j, r)] == 0).only_enforce_if(e)

    same, arcs = _flow_contiguity(m, nbrs, n - k, is_root, tie)

    # balance
    span = max(T, W - T)
    h, sq, out = [], [], []
    # a region's households are a sum of whole groups: only subset sums are possible
    sizes = cp_model.Domain.from_values(subset_sums(wi).astype(int).tolist())
    for r in range(k):
        hr = m.new_int_var_from_domain(sizes, f"h{r}")
        m.add(hr == sum(wi[i] * x[(i, r)] for i in range(r, n)))
        d = m.new_int_var(-T, W - T, f"d{r}")
        m.add(d == hr - T)
        s2 = m.new_int_var(0, span * span, f"sq{r}")
        m.add_multiplication_equality(s2, [d, d])
        o = m.new_int_var(0, max(ilo, W), f"o{r}")
        m.add(o >= ilo - hr)
        m.add(o >= hr - ihi)
        h.append(hr)
        sq.append(s2)
        out.append(o)
    m.add(sum(h) == W)
    total = sum(sq) + MT * sum(out)
    if lower_bound is not None and lower_bound > 0:
        m.add(total >= math.floor(lower_bound * T - 1e-6))
    m.minimize(total)

    if hint_lab is not None:
        hvals = np.bincount(hint_lab, weights=wi, minlength=k).astype(int).tolist()
        flows = _flows(hint_lab, nbrs)
        for i in range(n):
            seen = set(hint_lab[: i + 1].tolist())
            first = {r: int(np.flatnonzero(hint_lab == r)[0]) for r in range(k)}
            for r in range(min(i, k - 1) + 1):
                m.add_hint(x[(i, r)], int(hint_lab[i] == r))
                m.add_hint(p[(i, r)], int(r in seen))
                m.add_hint(root[(i, r)], int(first[r] == i))
        for (i, j), e in same.items():
            m.add_hint(e, int(hint_lab[i] == hint_lab[j]))
        for arc, f in arcs.items():
            m.add_hint(f, flows.get(arc, 0))
        for r in range(k):
            m.add_hint(h[r], hvals[r])
            m.add_hint(sq[r], (hvals[r] - T) ** 2)
            m.add_hint(out[r], max(0, ilo - hvals[r], hvals[r] - ihi))

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = int(seed) % (2**31)
    solver.parameters.max_deterministic_time = float(seconds)
    solver.parameters.max_time_in_seconds = float(seconds) * WALL_FACTOR + WALL_SLACK
    status = solver.solve(m)
    name = solver.status_name(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        lab = np.array(
            [
                next(r for r in range(min(i, k - 1) + 1) if solver.value(x[(i, r)]))
                for i, _ in enumerate(wi)
            ],
            dtype=np.int64,
        )
    elif hint_lab is not None:
        lab = hint_lab
    else:
        lab = np.zeros(n, dtype=np.int64) - 1
    cost = (
        balance_cost(np.bincount(lab, weights=wi, minlength=k), T, lo, hi, out_of_band)
        if lab.min() >= 0
        else math.inf
    )
    if hint_lab is not None:  # never worse than the hint
        hc = balance_cost(np.bincount(hint_lab, weights=wi, minlength=k), T, lo, hi, out_of_band)
        if hc < cost - 1e-9:
            lab, cost = hint_lab, hc
    bound = solver.best_objective_bound / T if status != cp_model.INFEASIBLE else math.inf
    if lower_bound is not None:
        bound = max(bound, lower_bound)
    proven = status == cp_model.OPTIMAL or cost <= bound + 1e-9
    if proven:
        bound = min(bound, cost)
    return ExactResult(
        lab, cost, bound, proven, name, time.perf_counter() - t0, float(solver.deterministic_time)
    )


@dataclass(frozen=True)
class RedrawExact:
    """Outcome of :func:`solve_redraw_exact`.

    Attributes
    ----------
    labels
        Region per unit: ``0..m-1`` the old grids, ``m..`` new ones.
    out_of_band, moved
        Households outside the band and households moved (units with an old grid whose
        region differs from it).
    proven
        Whether ``(out_of_band, moved)`` is proven lexicographically minimal.
    """

    labels: np.ndarray
    out_of_band: int
    moved: int
    proven: bool


def solve_redraw_exact(
    w: np.ndarray | Sequence[int],
    nbrs: Neighbors,
    old: np.ndarray,
    n_old: int,
    extra: int,
    *,
    target: float,
    lo: float,
    hi: float,
    hint: np.ndarray,
    seconds: float = 1.0,
    seed: int = 0,
) -> RedrawExact:
    """Lexicographic redraw: fewest households out of band, then fewest moved, then balance.

    Regions ``0..n_old-1`` are the old grids (a unit with ``old[i] = r`` stays put when it
    ends in region ``r``); up to ``extra`` new regions may be opened and any old one may
    be emptied (a grid removed). Every region used is contiguous (the flow of
    :func:`solve_exact`, with a free choice of root). Three CP-SAT solves, each warm-started
    from the last and given a third of the budget, fix the out-of-band households, then the
    households moved, then minimise the squared deviation.

    Parameters
    ----------
    w, nbrs
        Integer unit weights and adjacency (a connected graph).
    old
        Old region per unit (``-1``: none).
    n_old, extra
        Number of old regions and the most new ones.
    target, lo, hi
        Target and band.
    hint
        A contiguous labelling in the same numbering (the heuristic's redraw).
    seconds, seed
        Deterministic budget and CP-SAT seed.

    Returns
    -------
    RedrawExact

    Examples
    --------
    >>> r = solve_redraw_exact([60, 60, 160, 60, 60, 60], [[1], [0, 2], [1, 3], [2, 4], [3, 5],
    ...     [4]], np.array([0, 0, 0, 1, 1, 1]), 2, 1, target=150, lo=100, hi=200,
    ...     hint=np.array([2, 2, 0, 1, 1, 1]))
    >>> r.out_of_band, r.moved, r.proven
    (0, 120, True)
    """
    from ortools.sat.python import cp_model

    wi = [int(x) for x in w]
    n, W = len(wi), sum(wi)  # noqa: N806
    K = n_old + extra  # noqa: N806
    T = round(target)  # noqa: N806
    ilo, ihi = math.ceil(lo), math.floor(hi)
    m = cp_model.CpModel()
    x = {(i, r): m.new_bool_var(f"x{i}_{r}") for i in range(n) for r in range(K)}
    root = {(i, r): m.new_bool_var(f"s{i}_{r}") for i in range(n) for r in range(K)}
    used = [m.new_bool_var(f"u{r}") for r in range(K)]
    for i in range(n):
        m.add_exactly_one(x[(i, r)] for r in range(K))
    for r in range(K):
        for i in range(n):
            m.add_implication(x[(i, r)], used[r])
            m.add_implication(root[(i, r)], x[(i, r)])
        m.add(sum(root[(i, r)] for i in range(n)) == used[r])
    for r in range(n_old, K - 1):  # new regions are interchangeable: open them in order
        m.add_implication(used[r + 1], used[r])
    is_root = [sum(root[(i, r)] for r in range(K)) for i in range(n)]

    def tie(i: int, j: int, e: cp_model.IntVar) -> None:
        for r in range(K):
            m.add(x[(i, r)] == x[(j, r)]).only_enforce_if(e)

    _flow_contiguity(m, nbrs, n - 1, is_root, tie)
    outs, sqs = [], []
    for r in range(K):
        hr = m.new_int_var(0, W, f"h{r}")
        m.add(hr == sum(wi[i] * x[(i, r)] for i in range(n)))
        o = m.new_int_var(0, max(ilo, W), f"o{r}")
        m.add(o >= ilo * used[r] - hr)
        m.add(o >= hr - ihi)
        d = m.new_int_var(-T, W, f"d{r}")
        m.add(d == hr - T * used[r])
        s2 = m.new_int_var(0, max(T, W) ** 2, f"sq{r}")
        m.add_multiplication_equality(s2, [d, d])
        outs.append(o)
        sqs.append(s2)
    out_total = sum(outs)
    moved = sum(wi[i] * (1 - x[(i, int(old[i]))]) for i in range(n) if 0 <= old[i] < n_old)

    lab = np.asarray(hint, dtype=np.int64).copy()
    proven = True
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = int(seed) % (2**31)
    solver.parameters.max_deterministic_time = float(seconds) / 3
    solver.parameters.max_time_in_seconds = float(seconds) / 3 * WALL_FACTOR + WALL_SLACK
    for stage, goal in enumerate((out_total, moved, sum(sqs))):
        m.clear_hints()
        for i in range(n):
            for r in range(K):
                m.add_hint(x[(i, r)], int(lab[i] == r))
        m.minimize(goal)
        status = solver.solve(m)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            proven = proven and stage == 2
            break
        if stage < 2 and status != cp_model.OPTIMAL:
            proven = False
        lab = np.array(
            [next(r for r in range(K) if solver.value(x[(i, r)])) for i in range(n)],
            dtype=np.int64,
        )
        m.add(goal <= int(solver.objective_value))
    h = np.bincount(lab, weights=wi, minlength=K)
    usedr = np.bincount(lab, minlength=K) > 0
    oob = int((np.maximum(0, ilo - h[usedr]) + np.maximum(0, h[usedr] - ihi)).sum())
    mv = int(sum(wi[i] for i in range(n) if 0 <= old[i] < n_old and lab[i] != old[i]))
    return RedrawExact(lab, oob, mv, proven)
