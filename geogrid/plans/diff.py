"""Compare two plans group by group."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from geogrid.errors import (
    InvalidInput,
)
from geogrid.plans.common import GroupChange, PlanDiff, _unit_group_no
from geogrid.plans.read import get_plan


def _units(conn: Connection, plan_id: int) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    rows = conn.execute(
        text(
            "SELECT code, village_code, metrics->'units' FROM grids "
            "WHERE plan_id = :id AND level = 3"
        ),
        {"id": plan_id},
    ).all()
    return {(vc, u["unit"]): (code, u) for code, vc, units in rows for u in units or []}


def diff_plans(conn: Connection, a: int, b: int) -> PlanDiff:
    """Which groups (and group parts) changed grid from plan ``a`` to plan ``b``.

    Groups are matched by village and unit name (group number, ``3.1`` for part 1 of a
    split group, ``3@2`` for a group's share of part 2 of a multi-part village). A unit
    present in one plan only is listed with the missing side ``None`` and not counted as
    moved.

    Returns
    -------
    PlanDiff
        The changes sorted by village and group, and ``households_moved``: households of
        the units present in both plans whose grid code differs.

    Raises
    ------
    NotFound
        Either plan does not exist.
    InvalidInput
        The plans belong to different towns.
    """
    pa, pb = get_plan(conn, a), get_plan(conn, b)
    if pa.town_code != pb.town_code:
        raise InvalidInput(
            f"plans {a} (town {pa.town_code}) and {b} (town {pb.town_code}) are of different "
            "towns; only plans of one town can be compared.",
            detail={"a": a, "b": b},
        )
    ua, ub = _units(conn, a), _units(conn, b)
    changes: list[GroupChange] = []
    moved = 0
    for key in sorted(set(ua) | set(ub), key=lambda k: (k[0], _unit_key(k[1]))):
        ga = ua.get(key)
        gb = ub.get(key)
        code_a = ga[0] if ga else None
        code_b = gb[0] if gb else None
        if code_a == code_b:
            continue
        unit = (gb or ga)[1]  # type: ignore[index]
        hh = int(unit["households"])
        if ga and gb:
            moved += hh
        changes.append(
            GroupChange(
                village_code=key[0],
                group_no=unit.get("group_no"),
                unit=key[1],
                group_id=unit.get("group_id"),
                from_grid=code_a,
                to_grid=code_b,
                households=hh,
            )
        )
    return PlanDiff(
        a=a,
        b=b,
        town_code=pa.town_code,
        changes=changes,
        households_moved=moved,
        groups_compared=len(set(ua) & set(ub)),
    )


def _unit_key(name: str) -> tuple[int, str]:
    g = _unit_group_no(name)
    return (-1 if g is None else g, name)
