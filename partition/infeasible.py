"""Why a village's grids miss the band or the fixed grid count, and what is achievable.

:func:`explain_imbalance` reads only what a :class:`~partition.plan.Plan` carries (grids,
units, the per-village bound on the in-band share and on the mean deviation) and says,
per village with a band or grid-count violation, what stands in the way: an oversized
group, too few households, a part of the village too small for a grid, a fixed count
the households cannot fill, or group sizes that admit no better split — and, when the
bound allows every grid in the band, that the partitioner fell short of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from partition.plan import Plan
from partition.validate import BALANCE_RULES, Violation

__all__ = ["VillageImbalance", "explain_imbalance"]


@dataclass
class VillageImbalance:
    """One village whose grids miss the band (or fixed count), and why.

    Attributes
    ----------
    village_code, name
        The village.
    grids, out_of_band
        Grids made and how many are outside ``[lo, hi]`` (an oversized group alone in its
        grid, or an empty village's grid, not counted).
    in_band_share, mean_abs_dev
        What the plan reached.
    bound_in_band_share, bound_mean_abs_dev
        The best any plan can reach given the group sizes (contiguity ignored).
    k
        The fixed grid count asked for, if any.
    reasons
        Human-readable causes, most specific first.
    infeasible
        Whether the group sizes (or parts, or ``k``) make the band unreachable; false
        means the bound does not rule a plan within the band out (it ignores adjacency
        and is not always tight) and the partitioner did not find one.
    """

    village_code: str
    name: str
    grids: int
    out_of_band: int
    in_band_share: float
    mean_abs_dev: float
    bound_in_band_share: float
    bound_mean_abs_dev: float
    k: int | None
    reasons: list[str] = field(default_factory=list)
    infeasible: bool = True

    def __str__(self) -> str:
        best = (
            f"the group sizes allow at most {100 * self.bound_in_band_share:.0f}% in band "
            f"and mean |deviation| ≥ {self.bound_mean_abs_dev:.1f}"
        )
        got = (
            f"{self.out_of_band} of {self.grids} grids out of band "
            f"({100 * self.in_band_share:.0f}% in band, mean |deviation| {self.mean_abs_dev:.1f})"
        )
        return f"{self.village_code} {self.name}: {got}; {best}; " + "; ".join(self.reasons)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return dict(self.__dict__)


def explain_imbalance(
    plan: Plan, violations: Sequence[Violation] | None = None
) -> list[VillageImbalance]:
    """Explain every village with a band or fixed-count violation.

    Parameters
    ----------
    plan
        The plan.
    violations
        Its violations (from :func:`~partition.validate.validate_plan` with
        ``balance=True``); villages named by a ``band`` or ``k`` violation are explained.
        Default: every village with a grid out of the band not excused by a flag.

    Returns
    -------
    list of VillageImbalance
        In village-code order.
    """
    p = plan.params
    g = plan.grids
    if violations is None:
        flags = g["flags"].astype(str)
        out = ~g["households"].between(p.lo, p.hi) & ~flags.str.contains("oversized|empty")
        codes = set(g.loc[out, "village_code"].astype(str))
    else:
        codes = {v.village_code for v in violations if v.rule in BALANCE_RULES}
    result: list[VillageImbalance] = []
    for row in plan.villages.itertuples(index=False):
        code = str(row.code)
        if code not in codes:
            continue
        vg = g[g["village_code"] == code]
        va = plan.assignment[plan.assignment["village_code"] == code]
        h = vg["households"].astype(int)
        exempt = vg["flags"].astype(str).str.contains("oversized|empty").to_numpy()
        cadres = getattr(row, "cadres", None)
        k = None if cadres is None or pd.isna(cadres) else int(cadres)
        item = VillageImbalance(
            village_code=code,
            name=str(row.name),
            grids=len(vg),
            out_of_band=int((~h.between(p.lo, p.hi) & ~exempt).sum()),
            in_band_share=float(h.between(p.lo, p.hi).mean()) if len(vg) else 0.0,
            mean_abs_dev=float((h - p.target).abs().mean()) if len(vg) else 0.0,
            bound_in_band_share=float(row.bound_in_band_share),
            bound_mean_abs_dev=float(row.bound_mean_abs_dev),
            k=k,
        )
        item.reasons, item.infeasible = _reasons(plan, va, k, item)
        result.append(item)
    return result


def _reasons(
    plan: Plan, va: pd.DataFrame, k: int | None, item: VillageImbalance
) -> tuple[list[str], bool]:
    p = plan.params
    reasons: list[str] = []
    w = va["households"].astype(int)
    total = int(w.sum())
    big = va[w > p.hi]
    for unit, n in zip(big["unit"], big["households"], strict=True):
        reasons.append(f"group {unit} alone has {int(n)} households, above {p.hi}")
    if 0 < total < p.lo:
        reasons.append(f"the village has only {total} households, fewer than {p.lo}")
    elif len(big):
        rest = int(w[w <= p.hi].sum())
        if 0 < rest < p.lo:
            reasons.append(
                f"besides the oversized group(s), its groups hold only {rest} households, "
                f"fewer than {p.lo}"
            )
    parts = va["part"].astype(int) if "part" in va.columns else pd.Series(dtype=int)
    if parts.nunique() > 1:
        for part, n in w.groupby(parts.to_numpy()).sum().items():
            if 0 < int(n) < p.lo:
                reasons.append(
                    f"part {part} of the village (not joined to the rest) holds only "
                    f"{int(n)} households, fewer than {p.lo}"
                )
    if k is not None and k > 0:
        mean = total / k
        if not p.lo <= mean <= p.hi:
            reasons.append(
                f"{k} grids asked for: {total} households make {mean:.1f} per grid, "
                f"outside {p.lo}–{p.hi}"
            )
        if item.grids != k:
            reasons.append(f"{item.grids} grids made where {k} were asked for")
    infeasible = item.bound_in_band_share < 1.0 - 1e-9 or bool(reasons)
    if item.bound_in_band_share < 1.0 - 1e-9 and not reasons:
        sizes = ", ".join(str(int(x)) for x in sorted(w, reverse=True)[:12])
        reasons.append(
            f"the group sizes ({sizes}{', …' if len(w) > 12 else ''}) admit no split with "
            f"more than {100 * item.bound_in_band_share:.0f}% of grids in the band"
        )
    if not infeasible:
        reasons.append(
            "the bound on group sizes does not rule out every grid in the band, but the "
            "partitioner found no such plan (adjacency, or the sizes in combination, may "
            "forbid it; more effort or another seed may find one)"
        )
    return reasons, infeasible
