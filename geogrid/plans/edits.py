"""Edit a draft plan: check and move a villager group between grids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from geogrid.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from geogrid.plans.common import MoveResult, _json, _wkb
from geogrid.plans.create import _village_metrics
from geogrid.plans.diff import _unit_key, _units
from geogrid.plans.read import load_plan
from partition import (
    Plan,
    move_group,
    quality_report,
)

log = logging.getLogger(__name__)


def _resolve_group(conn: Connection, group: int | str, village_code: str | None) -> tuple[str, str]:
    """(village_code, unit name) of a group given by id, ``"VILLAGE/GROUP"`` or number."""
    if isinstance(group, int) and village_code is None:
        row = conn.execute(
            text("SELECT village_code, group_no FROM villager_groups WHERE id = :id"),
            {"id": group},
        ).first()
        if row is None:
            raise NotFound(f"villager group id {group} does not exist.", detail={"group_id": group})
        return str(row[0]), str(row[1])
    s = str(group).strip()
    if "/" in s:
        vc, _, unit = s.partition("/")
        if village_code is not None and vc != village_code:
            raise InvalidInput(f"group {s} is not in village {village_code}.")
        village_code = vc
        s = unit
    if village_code is None or not (len(village_code) == 12 and village_code.isdigit()):
        raise InvalidInput(
            f"name the group as VILLAGECODE/GROUPNO (12-digit village code), got {group!r}.",
            detail={"group": str(group)},
        )
    if not s:
        raise InvalidInput(f"no group number in {group!r}.", detail={"group": str(group)})
    return village_code, s


@dataclass(frozen=True)
class MoveCheck:
    """A move of one group checked against the rules, not yet stored (see :func:`check_move`)."""

    plan: Plan
    edited: Plan
    village_code: str
    unit: str
    from_grid: str
    to_grid: str
    households: int


#: Reason codes of refused moves (``detail["reason"]`` of the error), by message pattern of
#: :func:`partition.move_group`; the pages translate them.
_MOVE_REASONS = (
    ("does not share a border", "not_adjacent"),
    ("would split grid", "breaks_contiguity"),
    ("would leave grid", "leaves_empty"),
    ("must stand alone", "stands_alone"),
    ("already in grid", "same_grid"),
    ("grids never cross villages", "other_village"),
    ("does not exist in this plan", "unknown_grid"),
    ("does not exist in village", "unknown_group"),
    ("is split into", "split_group"),
    ("breaks the rules", "breaks_rules"),
)


def move_reason(message: str) -> str:
    """The reason code of a refused move from its message (``"refused"`` if unknown).

    >>> move_reason("moving group 3 would split grid 420117105201002 in two.")
    'breaks_contiguity'
    >>> move_reason("something else")
    'refused'
    """
    return next((code for pattern, code in _MOVE_REASONS if pattern in message), "refused")


class NeedsConfirmation(Conflict):
    """The edit is allowed but leaves grids outside the band: repeat it with ``confirm``."""


def check_move(
    conn: Connection,
    plan_id: int,
    *,
    group: int | str,
    to_grid_code: str,
    village_code: str | None = None,
) -> MoveCheck:
    """Check a move of one group of a plan without storing it.

    Raises
    ------
    NotFound
        Unknown plan or group id.
    InvalidInput
        The move breaks a rule: ``detail["reason"]`` names it (:func:`move_reason`, or
        ``grid_locked`` when either grid is locked).
    """
    vc, unit = _resolve_group(conn, group, village_code)
    to_grid_code = str(to_grid_code).strip()
    if not (len(to_grid_code) == 15 and to_grid_code.isdigit()):
        raise InvalidInput(
            f"grid code must be 15 digits (village code + 3), got {to_grid_code!r}.",
            detail={"to": to_grid_code, "reason": "unknown_grid"},
        )
    plan = load_plan(conn, plan_id)
    assign = plan.assignment
    hits = assign[(assign["village_code"] == vc) & (assign["unit"] == unit)]
    if hits.empty and unit.isdigit():
        hits = assign[(assign["village_code"] == vc) & (assign["group_no"] == int(unit))]
    if hits.empty:
        raise InvalidInput(
            f"group {vc}/{unit} is not in plan {plan_id}.",
            detail={
                "group": f"{vc}/{unit}",
                "plan_id": plan_id,
                "reason": "unknown_group",
            },
        )
    if len(hits) > 1:
        names = ", ".join(f"{vc}/{n}" for n in sorted(hits["unit"], key=_unit_key))
        raise InvalidInput(
            f"group {vc}/{unit} is split into {names}; name the part to move.",
            detail={"parts": list(hits["unit"]), "reason": "split_group"},
        )
    unit = str(hits["unit"].iloc[0])
    src = str(hits["grid_code"].iloc[0])
    locked = [
        str(c)
        for (c,) in conn.execute(
            text("SELECT code FROM grids WHERE plan_id = :p AND code = ANY(:c) AND locked"),
            {"p": plan_id, "c": [src, to_grid_code]},
        )
    ]
    if locked and src != to_grid_code:
        raise InvalidInput(
            f"grid {locked[0]} is locked; unlock it before moving groups into or out of it.",
            detail={"grid_code": locked[0], "reason": "grid_locked"},
        )
    try:
        edited = move_group(plan, unit, to_grid_code, village_code=vc)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message, detail={**exc.detail, "reason": move_reason(exc.message)}
        ) from exc
    return MoveCheck(
        plan=plan,
        edited=edited,
        village_code=vc,
        unit=unit,
        from_grid=src,
        to_grid=to_grid_code,
        households=int(hits["households"].iloc[0]),
    )


def band_warnings(check: MoveCheck) -> list[dict[str, Any]]:
    """Grids a checked move leaves outside the band (or takes further from it).

    Each warning: ``grid``, ``before`` and ``after`` households, ``min``, ``max`` and
    ``reason`` ``below_band`` or ``above_band``.
    """
    lo, hi = check.plan.params.lo, check.plan.params.hi

    def off(h: int) -> int:
        return lo - h if h < lo else (h - hi if h > hi else 0)

    out = []
    for code in (check.from_grid, check.to_grid):
        b = int(check.plan.grids.loc[check.plan.grids["code"] == code, "households"].iloc[0])
        a = int(check.edited.grids.loc[check.edited.grids["code"] == code, "households"].iloc[0])
        if off(a) > 0 and off(a) > off(b):
            out.append(
                {"grid": code, "before": b, "after": a, "min": lo, "max": hi,
                 "reason": "below_band" if a < lo else "above_band"}
            )  # fmt: skip
    return out


def move_group_in_plan(
    engine: Engine,
    plan_id: int,
    *,
    group: int | str,
    to_grid_code: str,
    village_code: str | None = None,
    expected_version: int | None = None,
    author: str | None = None,
    confirm: bool = True,
) -> MoveResult:
    """Move one villager group of a draft plan to an adjacent grid, re-validated.

    The plan row is locked for the edit. :func:`partition.move_group` checks the move
    (same village, adjacent along a real border, both grids stay connected and non-empty,
    the grids still tile the village; neither grid locked); then both grids' geometry,
    counts and metrics, the group's ``grid_groups`` row and the plan's quality totals are
    updated, the plan's version is bumped and the edit is logged with the village's
    snapshots (:mod:`geogrid.planner.history`), so that it can be undone.

    Parameters
    ----------
    engine
        Database engine.
    plan_id
        The draft plan.
    group
        A ``villager_groups.id`` (int), ``"VILLAGECODE/GROUPNO"``, or a group number /
        unit name (``"3"``, ``"3.2"``, ``"3@1"``) together with ``village_code``.
    to_grid_code
        15-digit code of the receiving grid.
    expected_version
        The version the caller edited (from the ETag); ``None`` skips the check.
    author
        Recorded in the plan's edit log.
    confirm
        ``False``: refuse (:class:`NeedsConfirmation`) a move that leaves a grid outside
        the plan's band; the web API asks for this explicit confirmation.

    Raises
    ------
    NotFound
        Unknown plan or group id.
    IllegalTransition
        The plan is not a draft.
    StaleVersion
        ``expected_version`` is not the current version (someone else edited the plan).
    InvalidInput
        The move breaks a rule; the message says which, ``detail["reason"]`` names it.
    NeedsConfirmation
        ``confirm`` is false and the move leaves the band (``detail["warnings"]``).
    """
    from geogrid.planner.history import apply_edit, lock_draft, snapshot

    with engine.begin() as conn:
        metrics = lock_draft(conn, plan_id, expected_version).metrics
        version = int(metrics.get("version", 1))
        chk = check_move(
            conn,
            plan_id,
            group=group,
            to_grid_code=to_grid_code,
            village_code=village_code,
        )
        if not confirm and (warnings := band_warnings(chk)):
            raise NeedsConfirmation(
                f"moving group {chk.village_code}/{chk.unit} leaves grid "
                f"{warnings[0]['grid']} with {warnings[0]['after']} households, outside "
                f"{warnings[0]['min']}-{warnings[0]['max']}; confirm the move to make it.",
                detail={"reason": "out_of_band", "warnings": warnings},
            )
        vc, unit, src, to_grid_code = (
            chk.village_code,
            chk.unit,
            chk.from_grid,
            chk.to_grid,
        )
        before = snapshot(conn, plan_id, vc)
        edited = chk.edited
        report = quality_report(edited)
        by_code = {g["code"]: g for g in report["grids"]}
        ea = edited.assignment
        units = {name: u for (v, name), (_, u) in _units(conn, plan_id).items() if v == vc}
        for code in (src, to_grid_code):
            g = edited.grids[edited.grids["code"] == code].iloc[0]
            old = conn.execute(
                text("SELECT id, metrics FROM grids WHERE plan_id = :p AND code = :c"),
                {"p": plan_id, "c": code},
            ).one()
            members = ea[(ea["village_code"] == vc) & (ea["grid_code"] == code)]["unit"].tolist()
            m = dict(old[1] or {})
            q = by_code[code]
            m |= {
                "deviation": q["deviation"],
                "polsby_popper": q["polsby_popper"],
                "area_km2": q["area_km2"],
                "flags": q["flags"],
                "groups": q["groups"],
                "units": [units[n] for n in sorted(members, key=_unit_key)],
            }
            conn.execute(
                text(
                    "UPDATE grids SET geom = ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4326)), "
                    "households = :h, population = :pop, metrics = CAST(:m AS jsonb) "
                    "WHERE id = :id"
                ),
                {
                    "wkb": _wkb(g.geometry),
                    "h": int(g.households),
                    "pop": int(g.population),
                    "m": _json(m),
                    "id": int(old[0]),
                },
            )
        moved_unit = units[unit]
        if moved_unit.get("group_id") is not None:
            conn.execute(
                text(
                    "UPDATE grid_groups SET grid_id = "
                    "(SELECT id FROM grids WHERE plan_id = :p AND code = :to) "
                    "WHERE plan_id = :p AND group_id = :gid AND grid_id = "
                    "(SELECT id FROM grids WHERE plan_id = :p AND code = :src)"
                ),
                {
                    "p": plan_id,
                    "to": to_grid_code,
                    "src": src,
                    "gid": moved_unit["group_id"],
                },
            )
        new_version = version + 1
        households = chk.households
        totals = dict(report["totals"])
        totals["unassigned_households"] = metrics.get("totals", {}).get(
            "unassigned_households", totals["unassigned_households"]
        )
        metrics |= {
            "version": new_version,
            "totals": totals,
            "villages": _village_metrics(report),
            "edits": [
                *metrics.get("edits", []),
                {
                    "version": new_version,
                    "group": f"{vc}/{unit}",
                    "from": src,
                    "to": to_grid_code,
                    "households": households,
                    "author": author,
                    "at": datetime.now().astimezone().isoformat(timespec="seconds"),
                },
            ],
        }
        conn.execute(
            text("UPDATE plans SET metrics = CAST(:m AS jsonb), updated_at = now() WHERE id = :id"),
            {"m": _json(metrics), "id": plan_id},
        )
        vrow = next(v for v in metrics["villages"] if v["code"] == vc)
        conn.execute(
            text(
                "UPDATE grids SET metrics = CAST(:m AS jsonb) "
                "WHERE plan_id = :p AND level = 2 AND code = :c"
            ),
            {"m": _json(vrow), "p": plan_id, "c": vc},
        )
        conn.execute(
            text("UPDATE grids SET metrics = CAST(:m AS jsonb) WHERE plan_id = :p AND level = 1"),
            {"m": _json({"totals": totals}), "p": plan_id},
        )
        payload = {"group": f"{vc}/{unit}", "from": src, "to": to_grid_code,
                   "households": households}  # fmt: skip
        apply_edit(conn, plan_id, kind="move", village_code=vc, payload=payload, before=before,
                   author=author, bump=False)  # fmt: skip
    return MoveResult(
        plan_id=plan_id,
        version=new_version,
        unit=unit,
        village_code=vc,
        from_grid=src,
        to_grid=to_grid_code,
        households=households,
    )
