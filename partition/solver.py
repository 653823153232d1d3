"""Pure solvers: balanced, contiguous regions of weighted units on a graph.

Units are villager groups (or parts of a split group); weights are household counts.
Everything here takes arrays and an explicit :class:`numpy.random.Generator` and knows
nothing about geometry files, CRSs or villages.

The partitioner is a clustering start (scikit-learn :class:`~sklearn.cluster.KMeans` on
household-weighted unit centroids) grown into contiguous regions from one seed per
cluster, followed by a contiguity-preserving local search that moves boundary units
between neighbouring regions (with iterated perturbations) to minimise

``sum_r (h_r - T)^2 / T + M * out_of_band(h_r) + lam * nmi_r + mu * moved_households``

where ``nmi`` is the normalised moment of inertia of the region (1 for a disc, larger
when elongated) — balance first, compactness second, and, for a redraw, stability.

Every number of regions is evaluated at full effort unless the group-size bounds
(:mod:`partition.bounds`) prove it cannot win; with a CP-SAT budget each heuristic plan is
handed to the exact model of the balance terms (:mod:`partition.exact`), which improves it
or proves it optimal; an improved plan is then polished for compactness by moves that never
raise its balance cost. The minimal-change redraw lives in :mod:`partition.redraw`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from geogrid.errors import InvalidInput

__all__ = [
    "BalanceBound",
    "Objective",
    "balance_bound",
    "balance_bound_parts",
    "components",
    "partition_units",
    "solve_k",
]

Neighbors = Sequence[Sequence[int]]


@dataclass(frozen=True)
class Objective:
    """Weights of the partition objective.

    Parameters
    ----------
    target, lo, hi
        Target household count and the tolerance band.
    out_of_band
        Penalty per household outside ``[lo, hi]`` (``M``).
    compactness
        Weight of the normalised moment of inertia (``lam``); secondary. At 6 a region
        whose inertia is 10 % above a disc's costs as much as ~9 households of deviation
        from a 150 target; measured on the sample county it costs <1 household of mean
        deviation and raises mean Polsby–Popper by ~0.02.
    move
        Penalty per household assigned away from its initial region (``mu``); used by
        the minimal-change redraw, 0 otherwise.
    balance
        Weight of the squared deviation term (a redraw sets it tiny).
    """

    target: float = 150.0
    lo: float = 100.0
    hi: float = 200.0
    out_of_band: float = 10.0
    compactness: float = 6.0
    move: float = 0.0
    balance: float = 1.0

    def region(self, h: float, area: float, inertia: float) -> float:
        """Cost of one region with ``h`` households, ``area`` and area ``inertia``."""
        dev = h - self.target
        out = max(0.0, self.lo - h) + max(0.0, h - self.hi)
        nmi = 2.0 * math.pi * inertia / (area * area) if area > 0 else 1.0
        return (
            self.balance * dev * dev / self.target + self.out_of_band * out + self.compactness * nmi
        )


# --------------------------------------------------------------------------- graph utils


def components(nodes: Sequence[int], nbrs: Neighbors) -> list[list[int]]:
    """Connected components of the subgraph induced by ``nodes`` (sorted, deterministic).

    Examples
    --------
    >>> components([0, 1, 2, 3], [[1], [0], [], []])
    [[0, 1], [2], [3]]
    """
    inside = set(nodes)
    seen: set[int] = set()
    out: list[list[int]] = []
    for start in sorted(inside):
        if start in seen:
            continue
        comp = [start]
        seen.add(start)
        stack = [start]
        while stack:
            u = stack.pop()
            for v in nbrs[u]:
                if v in inside and v not in seen:
                    seen.add(v)
                    comp.append(v)
                    stack.append(v)
        out.append(sorted(comp))
    return out


def _connected_without(members: set[int], drop: int, nbrs: Neighbors) -> bool:
    """Whether ``members - {drop}`` is connected (and non-empty)."""
    rest = members - {drop}
    if not rest:
        return False
    start = next(v for v in nbrs[drop] if v in rest) if any(v in rest for v in nbrs[drop]) else None
    if start is None:
        return len(rest) == 0
    seen = {start}
    stack = [start]
    while stack:
        u = stack.pop()
        for v in nbrs[u]:
            if v in rest and v not in seen:
                seen.add(v)
                stack.append(v)
    return len(seen) == len(rest)


# --------------------------------------------------------------------------- state


class _State:
    """Region statistics kept incrementally for O(1) move deltas (plain floats: fast)."""

    def __init__(
        self,
        labels: np.ndarray,
        k: int,
        w: np.ndarray,
        xy: np.ndarray,
        area: np.ndarray,
        obj: Objective,
        initial: np.ndarray | None,
    ) -> None:
        self.labels = np.asarray(labels, dtype=np.int64).copy()
        self.lab: list[int] = self.labels.tolist()
        self.k = k
        self.w: list[float] = w.astype(float).tolist()
        self.x: list[float] = xy[:, 0].astype(float).tolist()
        self.y: list[float] = xy[:, 1].astype(float).tolist()
        self.a: list[float] = area.astype(float).tolist()
        self.obj = obj
        self.t, self.lo, self.hi = float(obj.target), float(obj.lo), float(obj.hi)
        self.initial: list[int] | None = (
            None if initial is None else np.asarray(initial).astype(int).tolist()
        )
        self.s2: list[float] = [
            a * (x * x + y * y) + a * a / (2.0 * math.pi)
            for a, x, y in zip(self.a, self.x, self.y, strict=True)
        ]
        self.h = [0.0] * k
        self.A = [0.0] * k
        self.Sx = [0.0] * k
        self.Sy = [0.0] * k
        self.S2 = [0.0] * k
        self.members: list[set[int]] = [set() for _ in range(k)]
        for i, r in enumerate(self.lab):
            self._add(i, r, 1.0)
        self.cost = [self._cost(r) for r in range(k)]

    def _add(self, i: int, r: int, sign: float) -> None:
        a = self.a[i]
        self.h[r] += sign * self.w[i]
        self.A[r] += sign * a
        self.Sx[r] += sign * a * self.x[i]
        self.Sy[r] += sign * a * self.y[i]
        self.S2[r] += sign * self.s2[i]
        if sign > 0:
            self.members[r].add(i)
        else:
            self.members[r].discard(i)

    def _stats_cost(self, h: float, A: float, Sx: float, Sy: float, S2: float) -> float:  # noqa: N803 (moment names)
        obj = self.obj
        dev = h - self.t
        out = (self.lo - h if h < self.lo else 0.0) + (h - self.hi if h > self.hi else 0.0)
        if A > 0:
            inertia = S2 - (Sx * Sx + Sy * Sy) / A
            nmi = 2.0 * math.pi * (inertia if inertia > 0 else 0.0) / (A * A)
        else:
            nmi = 1.0
        return obj.balance * dev * dev / self.t + obj.out_of_band * out + obj.compactness * nmi

    def _cost(self, r: int) -> float:
        return self._stats_cost(self.h[r], self.A[r], self.Sx[r], self.Sy[r], self.S2[r])

    def move_penalty(self, i: int, r: int) -> float:
        if self.initial is None or self.obj.move == 0:
            return 0.0
        return self.obj.move * self.w[i] if self.initial[i] != r else 0.0

    def delta(self, i: int, b: int) -> tuple[float, float, float]:
        """Cost change of moving unit ``i`` to region ``b``; also the two new costs."""
        a_ = self.lab[i]
        wa, ar, s2 = self.w[i], self.a[i], self.s2[i]
        ax, ay = ar * self.x[i], ar * self.y[i]
        ca = self._stats_cost(
            self.h[a_] - wa, self.A[a_] - ar, self.Sx[a_] - ax, self.Sy[a_] - ay, self.S2[a_] - s2
        )
        cb = self._stats_cost(
            self.h[b] + wa, self.A[b] + ar, self.Sx[b] + ax, self.Sy[b] + ay, self.S2[b] + s2
        )
        d = ca + cb - self.cost[a_] - self.cost[b]
        if self.initial is not None and self.obj.move:
            d += self.move_penalty(i, b) - self.move_penalty(i, a_)
        return d, ca, cb

    def apply(self, i: int, b: int, ca: float, cb: float) -> None:
        a_ = self.lab[i]
        self._add(i, a_, -1.0)
        self._add(i, b, 1.0)
        self.lab[i] = b
        self.labels[i] = b
        self.cost[a_], self.cost[b] = ca, cb

    def total(self) -> float:
        pen = 0.0
        if self.initial is not None and self.obj.move:
            pen = sum(self.move_penalty(i, r) for i, r in enumerate(self.lab))
        return float(sum(self.cost)) + pen


def _descend(st: _State, nbrs: Neighbors, rng: np.random.Generator, max_pass: int = 60) -> None:
    """First-improvement local search over boundary-unit moves, keeping contiguity."""
    n = len(st.labels)
    for _ in range(max_pass):
        improved = False
        for i in rng.permutation(n).tolist():
            a_ = st.lab[i]
            if len(st.members[a_]) == 1:
                continue
            lab = st.lab
            targets = {lab[j] for j in nbrs[i]} - {a_}
            if not targets:
                continue
            best = None
            for b in sorted(targets):
                d, ca, cb = st.delta(i, b)
                if d < -1e-9 and (best is None or d < best[0]):
                    best = (d, b, ca, cb)
            if best is None or not _connected_without(st.members[a_], i, nbrs):
                continue
            st.apply(i, best[1], best[2], best[3])
            improved = True
        if not improved:
            return


def _perturb(st: _State, nbrs: Neighbors, rng: np.random.Generator, moves: int) -> None:
    """Random valid boundary moves (a kick for iterated local search)."""
    n = len(st.labels)
    done = 0
    for i in rng.permutation(n).tolist():
        if done >= moves:
            break
        a_ = st.lab[i]
        targets = sorted({st.lab[j] for j in nbrs[i]} - {a_})
        if not targets or len(st.members[a_]) == 1:
            continue
        if not _connected_without(st.members[a_], i, nbrs):
            continue
        b = targets[int(rng.integers(len(targets)))]
        _, ca, cb = st.delta(i, b)
        st.apply(i, b, ca, cb)
        done += 1


# --------------------------------------------------------------------------- start


def _seeded_growth(
    w: np.ndarray, xy: np.ndarray, nbrs: Neighbors, k: int, rng: np.random.Generator
) -> np.ndarray:
    """KMeans (household-weighted) seeds grown into ``k`` contiguous regions.

    Regions take turns, lightest first, each absorbing the free neighbouring unit that
    KMeans put in its cluster and lies nearest its seed — the KMeans labelling repaired
    to contiguity.
    """
    n = len(w)
    if k >= n:
        return np.arange(n)
    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)))
    hint = km.fit_predict(xy, sample_weight=w.astype(float) + 1e-3)
    centers = km.cluster_centers_
    labels = np.full(n, -1)
    seeds: list[int] = []
    for r in range(k):
        d = ((xy - centers[r]) ** 2).sum(axis=1)
        for i in np.argsort(d, kind="stable").tolist():
            if labels[i] < 0:
                labels[i] = r
                seeds.append(i)
                break
    weight = np.array([w[s] for s in seeds], dtype=float)
    frontier: list[set[int]] = [{v for v in nbrs[s] if labels[v] < 0} for s in seeds]
    free = int((labels < 0).sum())
    while free:
        order = sorted(range(k), key=lambda r: (weight[r], r))
        for r in order:
            cand = [v for v in frontier[r] if labels[v] < 0]
            frontier[r] = set(cand)
            if not cand:
                continue
            sx, sy = xy[seeds[r]]
            v = min(
                cand,
                key=lambda u: (
                    hint[u] != r,
                    (xy[u, 0] - sx) ** 2 + (xy[u, 1] - sy) ** 2,
                    u,
                ),
            )
            labels[v] = r
            weight[r] += w[v]
            frontier[r].discard(v)
            frontier[r].update(u for u in nbrs[v] if labels[u] < 0)
            free -= 1
            break
        else:  # pragma: no cover - graph not connected: caller's contract violated
            raise InvalidInput("unit graph is not connected; partition components separately.")
    return labels


def solve_k(
    w: np.ndarray,
    xy: np.ndarray,
    area: np.ndarray,
    nbrs: Neighbors,
    k: int,
    rng: np.random.Generator,
    *,
    objective: Objective | None = None,
    initial: np.ndarray | None = None,
    restarts: int = 2,
    kicks: int = 8,
) -> tuple[np.ndarray, float]:
    """Partition one connected unit graph into exactly ``k`` contiguous regions.

    Parameters
    ----------
    w, xy, area
        Unit weights (households), metric centroids ``(n, 2)`` and areas.
    nbrs
        Adjacency lists (edge adjacency only); the graph must be connected.
    k
        Number of regions, ``1 <= k <= n``.
    rng
        Source of all randomness.
    objective
        Cost weights; default :class:`Objective`.
    initial
        Start labelling (contiguous, values in ``0..k-1``); with ``objective.move`` the
        search pays for every household moved away from it.
    restarts, kicks
        Independent KMeans starts and perturbation rounds per start.

    Returns
    -------
    (numpy.ndarray, float)
        Region label per unit (``0..k-1``) and the objective value.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([80, 70, 90, 60]); xy = np.array([[0, 0], [1, 0], [2, 0], [3, 0.]])
    >>> labels, _ = solve_k(w, xy, np.ones(4), [[1], [0, 2], [1, 3], [2]], 2,
    ...                     np.random.default_rng(0))
    >>> sorted(np.bincount(labels, weights=w).tolist())
    [150.0, 150.0]
    """
    obj = objective or Objective()
    n = len(w)
    if not 1 <= k <= n:
        raise InvalidInput(f"cannot make {k} regions from {n} units.")
    if initial is not None and (k == 1 or k == n):
        labels = np.asarray(initial, dtype=np.int64)
        return labels, _State(labels, k, w, xy, area, obj, initial).total()
    if k == 1:
        labels = np.zeros(n, dtype=np.int64)
        return labels, _State(labels, 1, w, xy, area, obj, initial).total()
    if k == n:
        labels = np.arange(n, dtype=np.int64)
        return labels, _State(labels, k, w, xy, area, obj, initial).total()
    starts: list[np.ndarray] = []
    if initial is not None:
        starts.append(np.asarray(initial, dtype=np.int64))
    else:
        starts.extend(_seeded_growth(w, xy, nbrs, k, rng) for _ in range(max(1, restarts)))
    best_labels: np.ndarray | None = None
    best_cost = math.inf
    for start in starts:
        st = _State(start, k, w, xy, area, obj, initial)
        _descend(st, nbrs, rng)
        cur_labels, cur_cost = st.labels.copy(), st.total()
        for _ in range(kicks):
            trial = _State(cur_labels, k, w, xy, area, obj, initial)
            _perturb(trial, nbrs, rng, moves=max(1, min(3, n // 6)))
            _descend(trial, nbrs, rng)
            if trial.total() < cur_cost - 1e-9:
                cur_labels, cur_cost = trial.labels.copy(), trial.total()
        if cur_cost < best_cost - 1e-9:
            best_labels, best_cost = cur_labels, cur_cost
    assert best_labels is not None
    return best_labels, best_cost


# --------------------------------------------------------------------------- k choice


def _score(h: np.ndarray, lo: float, hi: float, target: float) -> tuple[int, float]:
    """Plan-level ranking: out-of-band regions first, then mean absolute deviation."""
    out = int(((h < lo) | (h > hi)).sum())
    return out, float(np.abs(h - target).mean())


def candidate_ks(total: float, n: int, target: float, lo: float, hi: float) -> list[int]:
    """Numbers of regions to evaluate for ``total`` households on ``n`` units.

    Every ``k`` from 1 to ``n``, nearest ``total / target`` first; :func:`partition_units`
    skips a ``k`` only when the group-size bound proves it cannot beat the best found.

    Examples
    --------
    >>> candidate_ks(1000, 9, 150, 100, 200)
    [7, 6, 8, 5, 9, 4, 3, 2, 1]
    >>> candidate_ks(90, 3, 150, 100, 200)
    [1, 2, 3]
    """
    if n <= 1 or total <= 0:
        return [1]
    x = total / target
    return sorted(range(1, n + 1), key=lambda k: (abs(k - x), k))


@dataclass
class ExactRecord:
    """What the exact solver did for one component and number of regions.

    Attributes
    ----------
    units, k
        Size of the problem.
    heuristic
        Balance cost of the heuristic's plan.
    final
        Balance cost of the plan kept (never above ``heuristic``).
    bound
        Proven lower bound of the balance cost (CP-SAT's, or the group sizes').
    proven
        Whether ``final`` is proven optimal.
    status
        ``"bound"`` (the heuristic met the group-size bound), ``"skipped"`` (too large or
        no budget) or the CP-SAT status.
    seconds
        Wall time of the CP-SAT call.
    deterministic
        CP-SAT deterministic time spent (what the budget counts).
    chosen
        Whether this ``k`` was the one kept for the component.
    """

    units: int
    k: int
    heuristic: float
    final: float
    bound: float
    proven: bool
    status: str
    seconds: float = 0.0
    deterministic: float = 0.0
    chosen: bool = False

    @property
    def gap(self) -> float:
        """Relative gap of ``final`` to ``bound`` (0 when proven)."""
        if self.proven or self.final <= 0:
            return 0.0
        return max(0.0, (self.final - self.bound) / self.final)


#: Largest component (units) and model (units x regions) handed to CP-SAT.
EXACT_MAX_UNITS = 60
EXACT_MAX_CELLS = 900
#: Below :data:`EXACT_EVERY_K` seconds per call CP-SAT runs only on the number of regions
#: the heuristic chose, and only on components of at most :data:`EXACT_QUICK_UNITS` units
#: (larger ones are rarely proven in a fraction of a second; building the model would
#: cost more than it gives). From it on, every number of regions evaluated gets CP-SAT.
EXACT_EVERY_K = 1.0
EXACT_QUICK_UNITS = 16


def _balance(lab: np.ndarray, w: np.ndarray, k: int, obj: Objective) -> float:
    from partition.exact import balance_cost

    h = np.bincount(lab, weights=w, minlength=k)
    return balance_cost(h, obj.target, obj.lo, obj.hi, obj.out_of_band)


def _polish(
    lab: np.ndarray,
    w: np.ndarray,
    xy: np.ndarray,
    area: np.ndarray,
    nbrs: Neighbors,
    k: int,
    obj: Objective,
    rng: np.random.Generator,
) -> np.ndarray:
    """Improve compactness by moves that never raise the balance cost (lexicographic)."""
    big = 1e5
    lex = replace(obj, balance=big, out_of_band=obj.out_of_band * big, move=0.0)
    st = _State(lab, k, w, xy, area, lex, None)
    _descend(st, nbrs, rng)
    out = st.labels.copy()
    return out if _balance(out, w, k, obj) <= _balance(lab, w, k, obj) + 1e-9 else lab


class _Exact:
    """Per-call exact-solver settings, budget bookkeeping and records."""

    def __init__(self, seconds: float, records: list[ExactRecord] | None) -> None:
        self.left = max(0.0, float(seconds))
        self.records = records

    def improve(
        self,
        lab: np.ndarray,
        w: np.ndarray,
        xy: np.ndarray,
        area: np.ndarray,
        nbrs: Neighbors,
        k: int,
        obj: Objective,
        share: float,
    ) -> tuple[np.ndarray, ExactRecord]:
        """CP-SAT warm-started from ``lab``; returns the better labelling and a record."""
        from partition.bounds import k_bounds
        from partition.exact import solve_exact

        n = len(w)
        h0 = _balance(lab, w, k, obj)
        bounds = k_bounds(w.astype(int).tolist(), obj.target, obj.lo, obj.hi, obj.out_of_band, [k])
        lb = bounds[0].cost if bounds else 0.0
        rec = ExactRecord(n, k, h0, h0, lb, h0 <= lb + 1e-9, "bound")
        integral = obj.target == round(obj.target) and np.allclose(w, np.round(w))
        integral = (
            integral
            and abs(obj.out_of_band * obj.target - round(obj.out_of_band * obj.target)) < 1e-9
        )
        budget = self.left * share
        # the exact step draws nothing from ``rng``: the heuristic's stream, and so its
        # plans, are the same with or without it (seeded from the problem instead)
        seed = (
            zlib.crc32(np.asarray(w, dtype=np.float64).tobytes() + k.to_bytes(4, "little"))
            & 0x7FFFFFFF
        )
        if not rec.proven and (
            k in (1, n)
            or (
                n <= (EXACT_MAX_UNITS if budget >= EXACT_EVERY_K / 2 else EXACT_QUICK_UNITS)
                and n * k <= EXACT_MAX_CELLS
                and budget > 0.01
                and integral
            )
        ):
            res = solve_exact(
                w.astype(int),
                nbrs,
                k,
                target=obj.target,
                lo=obj.lo,
                hi=obj.hi,
                out_of_band=obj.out_of_band,
                hint=lab,
                seconds=budget,
                seed=seed,
                lower_bound=lb,
            )
            self.left = max(0.0, self.left - res.deterministic_time)
            rec = replace(
                rec,
                bound=res.bound,
                proven=res.proven,
                status=res.status,
                seconds=res.seconds,
                deterministic=res.deterministic_time,
            )
            if res.cost < h0 - 1e-9:
                new = _polish(res.labels, w, xy, area, nbrs, k, obj, np.random.default_rng(seed))
                lab = new
                rec = replace(rec, final=_balance(new, w, k, obj))
        elif not rec.proven:
            rec = replace(rec, status="skipped")
        if self.records is not None:
            self.records.append(rec)
        return lab, rec


def partition_units(
    w: np.ndarray,
    xy: np.ndarray,
    area: np.ndarray,
    nbrs: Neighbors,
    rng: np.random.Generator,
    *,
    objective: Objective | None = None,
    k: int | None = None,
    restarts: int = 2,
    kicks: int = 8,
    exact_seconds: float = 0.0,
    records: list[ExactRecord] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced contiguous partition of a unit graph (any number of components).

    Units heavier than ``objective.hi`` stand alone (policy "oversized alone"); every
    remaining connected component is partitioned on its own. Without ``k`` every number
    of regions is evaluated at full effort (heuristic, then CP-SAT) unless the group-size
    bound proves it cannot beat the best found, ranked by (share of regions in band, mean
    deviation, cost); with a fixed ``k`` it is shared among the components in proportion
    to households.

    Parameters
    ----------
    w, xy, area, nbrs, rng
        As in :func:`solve_k`; the graph may be disconnected.
    objective
        Cost weights (target and band).
    k
        Exact total number of regions, or ``None`` to choose.
    restarts, kicks
        Heuristic effort (see :func:`solve_k`).
    exact_seconds
        CP-SAT budget (deterministic seconds) for the whole call, shared among the
        components and numbers of regions; 0 → heuristic only.
    records
        If given, one :class:`ExactRecord` is appended per component and ``k`` evaluated.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Region label per unit (``0..K-1``) and a boolean "oversized" flag per region.

    Raises
    ------
    geogrid.errors.InvalidInput
        ``k`` larger than the number of units, or smaller than the number of pieces that
        must be separate regions (oversized units plus disconnected components).
    """
    obj = objective or Objective()
    n = len(w)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    if k is not None and k > n:
        raise InvalidInput(f"{k} grids requested but there are only {n} villager groups.")
    if k is not None and k < 1:
        raise InvalidInput("the number of grids must be at least 1.")
    big = [i for i in range(n) if w[i] > obj.hi]
    if k is not None and len(big) >= k and len(big) < n:
        big = []  # fixed k leaves no room to isolate: oversized groups just join in
    rest = [i for i in range(n) if i not in set(big)]
    comps = components(rest, nbrs)
    ks: list[int | None]
    if k is None:
        ks = [None] * len(comps)
    else:
        free = k - len(big)
        if free < len(comps):
            raise InvalidInput(
                f"{k} grids requested but the village needs at least {len(big) + len(comps)} "
                "(separate parts and oversized groups each need their own grid)."
            )
        weights = np.array([w[c].sum() for c in comps], dtype=float) + 1e-9
        share = np.ones(len(comps), dtype=np.int64)
        caps = np.array([len(c) for c in comps])
        for _ in range(free - len(comps)):
            room = share < caps
            ratio = np.where(room, weights / share, -1.0)
            share[int(np.argmax(ratio))] += 1
        ks = [int(s) for s in share]
    exact = _Exact(exact_seconds, records)
    with threadpool_limits(limits=1):  # tiny problems: thread start-up dominates
        return _partition_components(
            w, xy, area, nbrs, rng, obj, big, comps, ks, restarts, kicks, exact
        )


def _partition_components(
    w: np.ndarray,
    xy: np.ndarray,
    area: np.ndarray,
    nbrs: Neighbors,
    rng: np.random.Generator,
    obj: Objective,
    big: list[int],
    comps: list[list[int]],
    ks: Sequence[int | None],
    restarts: int,
    kicks: int,
    exact: _Exact,
) -> tuple[np.ndarray, np.ndarray]:
    from partition.bounds import k_bounds

    n = len(w)
    labels = np.full(n, -1, dtype=np.int64)
    oversized: list[bool] = []
    nxt = 0
    for i in big:
        labels[i] = nxt
        oversized.append(True)
        nxt += 1
    sizes = [len(c) for c in comps]
    for ci, (comp, kc) in enumerate(zip(comps, ks, strict=True)):
        idx = np.asarray(comp)
        local = {g: j for j, g in enumerate(comp)}
        sub_nbrs = [[local[v] for v in nbrs[g] if v in local] for g in comp]
        sw, sxy, sa = w[idx], xy[idx], area[idx]
        total = float(sw.sum())
        comp_share = len(comp) / max(1, sum(sizes[ci:]))  # of the budget left

        def polish(
            lab: np.ndarray,
            cost: float,
            kk: int,
            share: float,
            sw: np.ndarray = sw,
            sxy: np.ndarray = sxy,
            sa: np.ndarray = sa,
            sub_nbrs: Neighbors = sub_nbrs,
        ) -> tuple[np.ndarray, float, ExactRecord]:
            new, rec = exact.improve(lab, sw, sxy, sa, sub_nbrs, kk, obj, share)
            if new is not lab:
                lab, cost = new, _State(new, kk, sw, sxy, sa, obj, None).total()
            return lab, cost, rec

        def run(
            kk: int,
            sw: np.ndarray = sw,
            sxy: np.ndarray = sxy,
            sa: np.ndarray = sa,
            sub_nbrs: Neighbors = sub_nbrs,
        ) -> tuple[np.ndarray, float]:
            return solve_k(
                sw, sxy, sa, sub_nbrs, kk, rng, objective=obj, restarts=restarts, kicks=kicks
            )

        if kc is None:

            def key(
                lab: np.ndarray, cost: float, kk: int, sw: np.ndarray = sw
            ) -> tuple[float, float, float]:
                h = np.bincount(lab, weights=sw, minlength=kk)
                out, dev = _score(h, obj.lo, obj.hi, obj.target)
                # share of in-band grids counting the oversized ones, then deviation
                return (-(kk - out) / (kk + len(big)), dev, cost / kk)

            cands = candidate_ks(total, len(comp), obj.target, obj.lo, obj.hi)
            integral = np.allclose(sw, np.round(sw))
            kb = (
                {b.k: b for b in k_bounds(np.round(sw).astype(int).tolist(), obj.target,
                                          obj.lo, obj.hi, obj.out_of_band)}
                if integral else {}
            )  # fmt: skip
            every_k = exact.left >= EXACT_EVERY_K
            best: tuple[tuple[float, float, float], np.ndarray, ExactRecord | None] | None = None
            for kk in cands:
                b = kb.get(kk)
                if best is not None and b is not None:
                    floor = (-b.in_band / (kk + len(big)), b.abs_dev / kk)
                    if floor > best[0][:2]:
                        continue  # the group sizes prove kk cannot win
                lab, cost = run(kk)
                rec = None
                if every_k:  # the nearest k first: half the component's budget, then half...
                    lab, cost, rec = polish(lab, cost, kk, comp_share / 2)
                cand = (key(lab, cost, kk), lab, rec)
                if best is None or cand[0] < best[0]:
                    best = cand
            assert best is not None
            lab, rec = best[1], best[2]
            if rec is None:
                lab, _, rec = polish(lab, 0.0, int(lab.max()) + 1, comp_share)
            rec.chosen = True
        else:
            lab, cost = run(kc)
            lab, _, rec = polish(lab, cost, kc, comp_share)
            rec.chosen = True
        kk = int(lab.max()) + 1
        labels[idx] = lab + nxt
        oversized.extend([False] * kk)
        nxt += kk
    return labels, np.asarray(oversized, dtype=bool)


# --------------------------------------------------------------------------- bounds

from partition.bounds import (  # noqa: E402  (re-exported: the bounds' old home)
    BalanceBound,
    balance_bound,
    balance_bound_parts,
)
