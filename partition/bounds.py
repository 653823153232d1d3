"""What the group sizes allow at best: bounds valid for every plan.

Contiguity is ignored, so every bound here holds for every partition of the groups into
non-empty grids — contiguous or not, with oversized groups alone or joined. For exactly
``k`` grids of groups ``w`` (total ``W``; ``S`` the sums of non-empty subsets of ``w``):

* **in-band grids** ``c_k``: an in-band grid holds only groups ``<= hi`` and at least
  ``m`` of them (``m`` = fewest such groups reaching ``lo``); every other grid at least one
  group. So ``c_k <= min(k, W_small // lo, n_small // m)`` and ``c_k * m + (k - c_k) <= n``;
  ``c_k < k`` when an oversized group exists or ``W`` lies outside ``[k lo, k hi]``; ``c_k =
  0`` when no subset sums into the band.
* **sum of |h - T|** ``D_k = max(|W - kT|, k d0)``, ``d0`` the least distance of ``S`` to ``T``.
* **balance cost** (``sum f(h)``, ``f(h) = (h - T)^2 / T + M * out_of_band(h)``, the
  objective's balance terms) ``C_k``: the larger of the convex bound (``f`` is convex, so
  sizes as equal as integers allow are best) and the Lagrangian bound ``max_λ k min_{s∈S}
  (f(s) - λ s) + λ W`` (any ``λ`` gives a valid bound; a grid of them is tried), and the
  heavy-group bound ``sum_{w_i > T} f(w_i)``: above ``T`` ``f`` is increasing and
  superadditive, so a grid holding groups heavier than the target costs at least the sum of
  their costs alone.

A village free to choose ``k`` is bounded by the best ``k``; a village in parts combines
the parts' options (exhaustively while that is small, else the parts are pooled, a looser
but still valid bound).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BalanceBound",
    "KBound",
    "balance_bound",
    "balance_bound_parts",
    "k_bounds",
    "subset_sums",
]

#: Combinations of per-part grid counts tried exhaustively before parts are pooled.
MAX_COMBOS = 20_000


@dataclass(frozen=True)
class BalanceBound:
    """What the group sizes allow at best, ignoring contiguity.

    Attributes
    ----------
    max_in_band_share
        Upper bound on the share of grids within ``[lo, hi]``.
    min_mean_abs_dev
        Lower bound on the mean absolute deviation from the target.
    min_cost
        Lower bound on the balance cost ``sum (h - T)^2 / T + M * out_of_band``.
    """

    max_in_band_share: float
    min_mean_abs_dev: float
    min_cost: float = 0.0


@dataclass(frozen=True)
class KBound:
    """Bounds for exactly ``k`` grids: in-band grids, sum of |dev|, balance cost."""

    k: int
    in_band: int
    abs_dev: float
    cost: float


def _f(h: np.ndarray, target: float, lo: float, hi: float, m: float) -> np.ndarray:
    return (h - target) ** 2 / target + m * (np.maximum(0.0, lo - h) + np.maximum(0.0, h - hi))


def subset_sums(w: Sequence[int]) -> np.ndarray:
    """Sums of the non-empty subsets of non-negative integers ``w`` (sorted)."""
    bits = 1
    for x in w:
        bits |= bits << int(x)
    total = sum(int(x) for x in w)
    sums = [s for s in range(1, total + 1) if (bits >> s) & 1]
    if any(int(x) == 0 for x in w):
        sums.insert(0, 0)
    return np.asarray(sums, dtype=float)


def k_bounds(
    w: Sequence[int],
    target: float,
    lo: float,
    hi: float,
    out_of_band: float = 10.0,
    ks: Sequence[int] | None = None,
) -> list[KBound]:
    """Bounds for ``k`` grids (``ks``, default ``1..n``) of integer group sizes ``w``.

    Examples
    --------
    >>> [(b.k, b.in_band, b.abs_dev) for b in k_bounds([90, 90, 90], 150, 100, 200)]
    [(1, 0, 120.0), (2, 1, 60.0), (3, 0, 180.0)]
    >>> k_bounds([75, 75, 75, 75], 150, 100, 200, ks=[2])[0].cost
    0.0
    """
    ws = [int(x) for x in w]
    n, total = len(ws), sum(ws)
    if n == 0:
        return []
    small = sorted((x for x in ws if x <= hi), reverse=True)
    n_small, w_small = len(small), sum(small)
    has_over = n_small < n
    sums = subset_sums(ws)
    small_sums = subset_sums(small) if small else np.zeros(0)
    in_band_possible = bool(((small_sums >= lo) & (small_sums <= hi)).any())
    d0 = float(np.abs(sums - target).min())
    m = n_small + 1
    acc = 0
    for i, x in enumerate(small):
        acc += x
        if acc >= lo:
            m = i + 1
            break
    # Lagrangian: phi(lam) = min_s f(s) - lam * s over a grid of lam
    fs = _f(sums, target, lo, hi, out_of_band)
    lam_lo = 2 * (sums.min() - target) / target - out_of_band - 1
    lam_hi = 2 * (sums.max() - target) / target + out_of_band + 1
    lams = np.linspace(lam_lo, lam_hi, 257)
    phi = (fs[None, :] - lams[:, None] * sums[None, :]).min(axis=1)
    heavy_w = np.array([x for x in ws if x > target], dtype=float)
    heavy = float(_f(heavy_w, target, lo, hi, out_of_band).sum()) if len(heavy_w) else 0.0
    out: list[KBound] = []
    for k in ks if ks is not None else range(1, n + 1):
        if not 1 <= k <= n:
            continue
        c = 0
        if in_band_possible:
            c = min(k, int(w_small // lo), n_small // m)
            if m > 1:
                c = min(c, (n - k) // (m - 1))
            if has_over or total > k * hi or total < k * lo:
                c = min(c, k - 1)
            c = max(c, 0)
        dev = float(max(abs(total - k * target), k * d0))
        q, rem = divmod(total, k)
        convex = float(
            rem * _f(np.array([q + 1.0]), target, lo, hi, out_of_band)[0]
            + (k - rem) * _f(np.array([float(q)]), target, lo, hi, out_of_band)[0]
        )
        lagr = float((k * phi + lams * total).max())
        out.append(KBound(k, c, dev, max(convex, lagr, heavy, 0.0)))
    return out


def balance_bound(
    w: Sequence[int],
    target: float,
    lo: float,
    hi: float,
    k: int | None = None,
    *,
    out_of_band: float = 10.0,
) -> BalanceBound:
    """Bound the best balance any partition of groups ``w`` into grids can reach.

    With ``k`` the plan has exactly ``k`` grids; else any number.

    Examples
    --------
    >>> b = balance_bound([90, 90, 90], 150, 100, 200)
    >>> b.max_in_band_share
    0.5
    >>> balance_bound([75, 75, 75, 75], 150, 100, 200).min_mean_abs_dev
    0.0
    >>> balance_bound([250, 250, 150], 150, 100, 200, k=2).max_in_band_share
    0.5
    """
    return balance_bound_parts([list(w)], target, lo, hi, k, out_of_band=out_of_band)


def balance_bound_parts(
    parts: Sequence[Sequence[int]],
    target: float,
    lo: float,
    hi: float,
    k: int | None = None,
    *,
    out_of_band: float = 10.0,
) -> BalanceBound:
    """:func:`balance_bound` for a village in parts, each partitioned on its own.

    Examples
    --------
    >>> round(balance_bound_parts([[60, 70, 80], [28]], 150, 100, 200).max_in_band_share, 3)
    0.333
    """
    parts = [[int(x) for x in p] for p in parts if len(p)]
    if not parts:
        return BalanceBound(1.0, 0.0, 0.0)
    if k is not None and k < len(parts):
        parts = [[x for p in parts for x in p]]  # infeasible k: bound the pooled groups
    n_combos = math.prod(len(p) for p in parts)
    if len(parts) > 1 and n_combos > MAX_COMBOS:
        parts = [[x for p in parts for x in p]]
    opts = [k_bounds(p, target, lo, hi, out_of_band) for p in parts]
    best_share, best_dev, best_cost = -1.0, math.inf, math.inf
    for combo in itertools.product(*opts):
        grids = sum(b.k for b in combo)
        if k is not None and grids != k:
            continue
        best_share = max(best_share, sum(b.in_band for b in combo) / grids)
        best_dev = min(best_dev, sum(b.abs_dev for b in combo) / grids)
        best_cost = min(best_cost, sum(b.cost for b in combo))
    if best_share < 0:  # k beyond the number of groups: no plan; nothing to promise
        return BalanceBound(0.0, 0.0, 0.0)
    return BalanceBound(float(best_share), float(best_dev), float(best_cost))
