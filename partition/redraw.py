"""Minimal-change redraw that keeps the band: the labels side (pure arrays and graphs).

Given the units of a village (villager groups), their old grid (a label per unit, ``-1``
for a unit no old grid holds), the units that may not move (oversized or split groups
standing alone, and every unit of a *locked* grid), :func:`redraw_labels` finds new labels
ranked lexicographically by

1. households outside the band (a grid may be added where growth demands one, or removed
   where shrinkage does),
2. households moved away from their old grid,
3. balance (squared deviation from the target), then compactness.

For every connected component of movable units, the old number of grids and one or two
grids more or fewer are searched from the old plan (a split of the heaviest grid, a merge of
the lightest into its lightest neighbour), and a *fresh* partition of the same units, its
grids matched to the old ones to keep as many households in place as possible, competes on
the same ranking: a redraw is never worse than starting afresh. With a CP-SAT budget the
winner of a small component is handed to :func:`partition.exact.solve_redraw_exact`, which
makes (households out of band, households moved) lexicographically minimal over every
contiguous plan with up to two new grids, proving it where it can. The households a fresh
partition would move are reported with the redraw's own.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from partition.solver import Objective, components, partition_units, solve_k

__all__ = ["RedrawResult", "redraw_labels", "repair_labels"]

Neighbors = Sequence[Sequence[int]]

#: Grids more (or fewer) than the old plan tried per component.
MAX_EXTRA_GRIDS = 2
#: Largest component handed to CP-SAT (below 0.5 s of budget / from it on).
EXACT_QUICK_UNITS = 16
EXACT_UNITS = 40


@dataclass
class RedrawResult:
    """Labels of a redraw and what they cost.

    Attributes
    ----------
    labels
        New label per unit; a label below ``n_old`` keeps that old grid's code.
    moved
        Households whose unit changed grid (units with an old grid only).
    moved_fresh
        Households a fresh partition of the movable units would have moved (its grids
        matched to the old ones so as to move as few as possible).
    out_of_band
        Households outside the band over the movable grids (redraw's plan).
    fresh_chosen
        Components where the fresh partition won.
    """

    labels: np.ndarray
    moved: int
    moved_fresh: int
    out_of_band: int
    fresh_chosen: int = 0


def repair_labels(
    labels: np.ndarray, w: np.ndarray, nb: Neighbors, forbidden: frozenset[int] = frozenset()
) -> np.ndarray:
    """Make every label class connected: stray pieces and unlabelled units join neighbours.

    A unit labelled ``-1`` joins its lightest labelled neighbour whose label is not
    ``forbidden`` (locked grids take no one); a unit with none starts a new label.

    Examples
    --------
    >>> repair_labels(np.array([0, -1, 1, 0]), np.ones(4), [[1], [0, 2], [1, 3], [2]]).tolist()
    [0, 0, 1, 1]
    """
    labels = labels.copy()
    for r in sorted(set(labels.tolist()) - {-1}):
        members = [i for i in range(len(labels)) if labels[i] == r]
        comps = components(members, nb)
        if len(comps) > 1:
            comps.sort(key=lambda c: (-w[c].sum(), c))
            for c in comps[1:]:
                labels[c] = -1
    while (labels < 0).any():
        progress = False
        for i in np.flatnonzero(labels < 0).tolist():
            cand = sorted({int(labels[j]) for j in nb[i] if labels[j] >= 0} - forbidden)
            if not cand:
                continue
            weight = {r: float(w[labels == r].sum()) for r in cand}
            labels[i] = min(cand, key=lambda r: (weight[r], r))
            progress = True
        if not progress:
            free = np.flatnonzero(labels < 0)
            labels[free[0]] = labels.max() + 1
    return labels


def _out(h: np.ndarray, obj: Objective) -> float:
    return float((np.maximum(0.0, obj.lo - h) + np.maximum(0.0, h - obj.hi)).sum())


def _rank(
    lab: np.ndarray, w: np.ndarray, old: np.ndarray, obj: Objective
) -> tuple[float, float, float]:
    """(households out of band, households moved, balance) of local labels ``lab``."""
    ids = sorted(set(lab.tolist()))
    h = np.array([w[lab == r].sum() for r in ids], dtype=float)
    moved = float(w[(old >= 0) & (lab != old)].sum())
    bal = float(((h - obj.target) ** 2).sum() / obj.target)
    return _out(h, obj), moved, bal


def _split_heaviest(
    lab: np.ndarray, w: np.ndarray, xy: np.ndarray, area: np.ndarray, nb: Neighbors,
    new: int, obj: Objective, rng: np.random.Generator,
) -> np.ndarray | None:  # fmt: skip
    """Split the heaviest grid with two or more units in two; the lighter half is ``new``."""
    ids = sorted(set(lab.tolist()), key=lambda r: (-w[lab == r].sum(), r))
    for r in ids:
        members = np.flatnonzero(lab == r)
        if len(members) < 2:
            continue
        local = {g: j for j, g in enumerate(members.tolist())}
        sub = [[local[v] for v in nb[g] if v in local] for g in members.tolist()]
        if len(components(list(range(len(members))), sub)) > 1:
            continue
        half, _ = solve_k(w[members], xy[members], area[members], sub, 2, rng, objective=obj)
        h0, h1 = w[members[half == 0]].sum(), w[members[half == 1]].sum()
        light = 0 if (h0, 0) < (h1, 1) else 1
        out = lab.copy()
        out[members[half == light]] = new
        return out
    return None


def _merge_lightest(lab: np.ndarray, w: np.ndarray, nb: Neighbors) -> np.ndarray | None:
    """Merge the lightest grid into its lightest neighbouring grid."""
    ids = sorted(set(lab.tolist()), key=lambda r: (w[lab == r].sum(), r))
    for r in ids:
        members = np.flatnonzero(lab == r)
        nbr = sorted({int(lab[j]) for i in members.tolist() for j in nb[i]} - {r})
        if not nbr:
            continue
        into = min(nbr, key=lambda q: (w[lab == q].sum(), q))
        out = lab.copy()
        out[members] = into
        return out
    return None


def _match_fresh(fresh: np.ndarray, old: np.ndarray, w: np.ndarray, keep: list[int],
                 first_new: int) -> np.ndarray:  # fmt: skip
    """Relabel a partition onto old labels ``keep`` keeping most households in place.

    Regions matched to no old label (or sharing no household with it) get new labels from
    ``first_new`` on.
    """
    f_ids = sorted(set(fresh.tolist()))
    gain = np.zeros((len(f_ids), len(keep)))
    for a, f in enumerate(f_ids):
        for b, r in enumerate(keep):
            gain[a, b] = w[(fresh == f) & (old == r)].sum()
    rows, cols = linear_sum_assignment(gain, maximize=True) if keep else ([], [])
    to = {f_ids[a]: keep[b] for a, b in zip(rows, cols, strict=True) if gain[a, b] > 0}
    nxt = first_new
    for f in f_ids:
        if f not in to:
            to[f] = nxt
            nxt += 1
    return np.array([to[int(x)] for x in fresh], dtype=np.int64)


def _exact(
    best: np.ndarray, w: np.ndarray, nb: Neighbors, old: np.ndarray, n_old: int,
    objective: Objective, seconds: float,
) -> np.ndarray:  # fmt: skip
    """CP-SAT on a component's redraw, warm-started from ``best`` (local labels)."""
    from partition.exact import solve_redraw_exact

    new = sorted(x for x in set(best.tolist()) if x >= n_old)
    to = {x: n_old + j for j, x in enumerate(new)}
    hint = np.array([to.get(int(x), int(x)) for x in best], dtype=np.int64)
    seed = zlib.crc32(np.asarray(w, dtype=np.float64).tobytes()) & 0x7FFFFFFF
    res = solve_redraw_exact(
        np.round(w).astype(int), nb, old, n_old, max(MAX_EXTRA_GRIDS, len(new)),
        target=objective.target, lo=objective.lo, hi=objective.hi, hint=hint,
        seconds=seconds, seed=seed,
    )  # fmt: skip
    return res.labels


def redraw_labels(
    start: np.ndarray,
    old: np.ndarray,
    fixed: np.ndarray,
    w: np.ndarray,
    xy: np.ndarray,
    area: np.ndarray,
    nb: Neighbors,
    rng: np.random.Generator,
    *,
    objective: Objective,
    restarts: int = 2,
    kicks: int = 8,
    exact_seconds: float = 0.0,
) -> RedrawResult:
    """Redraw: labels ranked by (out-of-band households, households moved, balance).

    Parameters
    ----------
    start
        Repaired start labels (every class connected, none ``-1``); locked and fixed units
        carry their own labels.
    old
        Old label per unit (``-1``: no old grid) — what "moved" is counted against.
    fixed
        Units that keep their start label (locked grids, oversized or split groups).
    w, xy, area, nb, rng
        Unit weights, metric centroids, areas, adjacency and the randomness source.
    objective
        The partition objective (target, band); the redraw derives its own weights.
    restarts, kicks
        Heuristic effort.
    exact_seconds
        CP-SAT budget for the whole call (deterministic seconds), shared among the
        components by size: the best plan found is handed to
        :func:`partition.exact.solve_redraw_exact`, which makes (out of band, moved)
        lexicographically minimal where it can prove it.

    Returns
    -------
    RedrawResult
    """
    n = len(w)
    labels = start.copy()
    nxt = int(start.max()) + 1 if n else 0
    big = float(w.sum()) + 1.0  # one household out of band outweighs every move
    obj = Objective(
        target=objective.target, lo=objective.lo, hi=objective.hi, out_of_band=big,
        compactness=1e-3, move=1.0, balance=1e-3,
    )  # fmt: skip
    fresh_labels = start.copy()
    out_total = 0.0
    fresh_won = 0
    free = [i for i in range(n) if not fixed[i]]
    for comp in components(free, nb):
        ix = np.asarray(comp)
        local = {g: j for j, g in enumerate(comp)}
        sub = [[local[v] for v in nb[g] if v in local] for g in comp]
        sw, sxy, sa = w[ix], xy[ix], area[ix]
        s_old = old[ix]
        cl = sorted(set(start[ix].tolist()))
        # local label space: 0..len(cl)-1 are the start labels, then new ones
        to_local = {r: j for j, r in enumerate(cl)}
        init = np.array([to_local[int(x)] for x in start[ix]], dtype=np.int64)
        l_old = np.array([to_local.get(int(x), -1) for x in s_old], dtype=np.int64)
        l_old[s_old < 0] = -1
        cands: list[np.ndarray] = []
        for extra in range(-MAX_EXTRA_GRIDS, MAX_EXTRA_GRIDS + 1):
            lab: np.ndarray | None = init
            for step in range(abs(extra)):
                if lab is None:
                    break
                if extra > 0:
                    lab = _split_heaviest(lab, sw, sxy, sa, sub, len(cl) + step, objective, rng)
                else:
                    lab = _merge_lightest(lab, sw, sub)
            if lab is None:
                continue
            kk = len(set(lab.tolist()))
            if kk < 1 or kk > len(comp):
                continue
            # solve_k wants labels 0..kk-1 and pays for moves away from its start
            ids = sorted(set(lab.tolist()))
            dense = {r: j for j, r in enumerate(ids)}
            d_lab = np.array([dense[int(x)] for x in lab], dtype=np.int64)
            if 1 < kk < len(comp):
                d_lab, _ = solve_k(
                    sw, sxy, sa, sub, kk, rng, objective=obj, initial=d_lab, kicks=kicks
                )
            cands.append(np.array([ids[int(x)] for x in d_lab], dtype=np.int64))
        fresh_local, _ = partition_units(
            sw, sxy, sa, sub, rng, objective=objective, restarts=restarts, kicks=kicks
        )
        keep = list(range(len(cl)))
        fresh = _match_fresh(fresh_local, l_old, sw, keep, len(cl))
        f_rank = _rank(fresh, sw, l_old, objective)
        # every candidate's grids matched to the old ones so as to move the fewest
        cands = [_match_fresh(c, l_old, sw, keep, len(cl)) for c in cands]
        best = min(cands, key=lambda lab: _rank(lab, sw, l_old, objective))
        b_rank = _rank(best, sw, l_old, objective)
        if f_rank < b_rank:
            best, b_rank = fresh, f_rank
            fresh_won += 1
        budget = exact_seconds * len(comp) / max(1, len(free))
        limit = EXACT_UNITS if budget >= 0.5 else EXACT_QUICK_UNITS
        if budget > 0.01 and 1 < len(comp) <= limit and np.allclose(sw, np.round(sw)):
            ex = _exact(best, sw, sub, l_old, len(cl), objective, budget)
            e_rank = _rank(ex, sw, l_old, objective)
            if e_rank < b_rank:
                best, b_rank = ex, e_rank
        # back to village labels: start labels keep theirs, new ones are numbered on
        for lab, target in ((best, labels), (fresh, fresh_labels)):
            glob = {j: r for r, j in to_local.items()}
            for x in sorted(set(lab.tolist())):
                if x not in glob:
                    glob[x] = nxt
                    nxt += 1
            target[ix] = [glob[int(x)] for x in lab]
        out_total += b_rank[0]
    had = old >= 0
    return RedrawResult(
        labels,
        int(w[had & (labels != old)].sum()),
        int(w[had & (fresh_labels != old)].sum()),
        int(out_total),
        fresh_won,
    )
