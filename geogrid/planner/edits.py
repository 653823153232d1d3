"""Edits of a draft plan: preview a move, rename and lock grids, re-run one village.

Every edit runs in one transaction holding the plan's row lock (:func:`lock_draft`),
checks the caller's version (``If-Match``), bumps the version and is logged with the
village's snapshots so that it can be undone (:mod:`geogrid.planner.history`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import shapely
from sqlalchemy import Connection, Engine, text

from geogrid.errors import IllegalTransition, InvalidInput, NotFound
from geogrid.planner.history import EditResult, apply_edit, lock_draft, snapshot
from geogrid.plans.common import _json, _params_from_json
from partition._geo import cover_union

__all__ = ["MovePreview", "preview_move", "rename_grid", "rerun_village", "set_lock"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME = 60


@dataclass(frozen=True)
class MovePreview:
    """What a move would do, before it is made (nothing is stored).

    ``allowed`` false: ``reason`` (a code the pages translate) and ``message`` say why.
    ``warnings``: grids the move leaves outside the band; such a move needs an explicit
    confirmation (``needs_confirmation``).
    """

    allowed: bool
    reason: str | None
    message: str | None
    village_code: str | None = None
    unit: str | None = None
    from_grid: str | None = None
    to_grid: str | None = None
    households: int | None = None
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def needs_confirmation(self) -> bool:
        return self.allowed and bool(self.warnings)


def preview_move(
    conn: Connection,
    plan_id: int,
    *,
    group: str,
    to_grid_code: str,
    expected_version: int | None = None,
) -> MovePreview:
    """Check a move of ``group`` to ``to_grid_code`` and say what it would do.

    Refusals (not a draft, edited since ``expected_version``, not adjacent, breaks
    contiguity, leaves a grid empty, grid locked...) are answers, not errors: ``allowed``
    is false with the reason. Unknown plans still raise :class:`NotFound`.
    """
    from geogrid import plans

    info = plans.get_plan(conn, plan_id)
    vc, _, unit = str(group).partition("/")

    def refused(reason: str, why: str) -> MovePreview:
        return MovePreview(
            False, reason, why, village_code=vc or None, unit=unit or None, to_grid=to_grid_code
        )

    if info.status != "draft":
        return refused("not_draft", f"plan {plan_id} is {info.status}, not a draft.")
    if expected_version is not None and expected_version >= 0 and expected_version != info.version:
        why = f"plan {plan_id} is at version {info.version}, not {expected_version}."
        return refused("stale_version", why)
    try:
        chk = plans.check_move(conn, plan_id, group=group, to_grid_code=to_grid_code)
    except (InvalidInput, NotFound) as exc:
        return refused(str(exc.detail.get("reason", "refused")), exc.message)

    def count(p: Any, code: str) -> int:
        return int(p.grids.loc[p.grids["code"] == code, "households"].iloc[0])

    codes = (chk.from_grid, chk.to_grid)
    return MovePreview(
        allowed=True,
        reason=None,
        message=None,
        village_code=chk.village_code,
        unit=chk.unit,
        from_grid=chk.from_grid,
        to_grid=chk.to_grid,
        households=chk.households,
        before={c: count(chk.plan, c) for c in codes},
        after={c: count(chk.edited, c) for c in codes},
        warnings=plans.band_warnings(chk),
    )


def _basic_grid(conn: Connection, plan_id: int, code: str) -> Any:
    row = conn.execute(
        text(
            "SELECT id, village_code, name, locked FROM grids "
            "WHERE plan_id = :p AND code = :c AND level = 3"
        ),
        {"p": plan_id, "c": code},
    ).first()
    if row is None:
        raise NotFound(
            f"grid {code} is not a basic grid of plan {plan_id}.",
            detail={"grid_code": code, "plan_id": plan_id},
        )
    return row


def rename_grid(
    engine: Engine,
    plan_id: int,
    code: str,
    name: str,
    *,
    expected_version: int | None = None,
    author: str | None = None,
) -> EditResult:
    """Give a basic grid of a draft a new name (1–60 characters, no control characters).

    Raises
    ------
    InvalidInput
        Empty, too long or unchanged name (``detail["reason"]``).
    NotFound, IllegalTransition, geogrid.plans.StaleVersion
        Unknown grid or plan, not a draft, stale version.
    """
    clean = " ".join(str(name).split())
    if not clean:
        raise InvalidInput("a grid name cannot be empty.", detail={"reason": "name_empty"})
    if len(clean) > MAX_NAME or _CONTROL.search(clean):
        raise InvalidInput(
            f"a grid name has at most {MAX_NAME} characters and no control characters.",
            detail={"reason": "name_invalid"},
        )
    with engine.begin() as conn:
        lock_draft(conn, plan_id, expected_version)
        grid = _basic_grid(conn, plan_id, code)
        if grid.name == clean:
            raise InvalidInput(
                f"grid {code} is already called {clean}.", detail={"reason": "unchanged"}
            )
        before = snapshot(conn, plan_id, grid.village_code)
        conn.execute(text("UPDATE grids SET name = :n WHERE id = :id"), {"n": clean, "id": grid.id})
        return apply_edit(
            conn, plan_id, kind="rename", village_code=grid.village_code,
            payload={"grid": code, "from": grid.name, "to": clean}, before=before, author=author,
        )  # fmt: skip


def set_lock(
    engine: Engine,
    plan_id: int,
    code: str,
    locked: bool,
    *,
    expected_version: int | None = None,
    author: str | None = None,
) -> EditResult:
    """Lock a basic grid of a draft (redraws and village re-runs keep it) or unlock it.

    Raises
    ------
    InvalidInput
        The grid is already locked (unlocked): ``detail["reason"] == "unchanged"``.
    NotFound, IllegalTransition, geogrid.plans.StaleVersion
        Unknown grid or plan, not a draft, stale version.
    """
    with engine.begin() as conn:
        lock_draft(conn, plan_id, expected_version)
        grid = _basic_grid(conn, plan_id, code)
        if bool(grid.locked) == bool(locked):
            state = "locked" if locked else "unlocked"
            raise InvalidInput(f"grid {code} is already {state}.", detail={"reason": "unchanged"})
        before = snapshot(conn, plan_id, grid.village_code)
        conn.execute(
            text("UPDATE grids SET locked = :l WHERE id = :id"), {"l": bool(locked), "id": grid.id}
        )
        return apply_edit(
            conn, plan_id, kind="lock" if locked else "unlock", village_code=grid.village_code,
            payload={"grid": code, "name": grid.name}, before=before, author=author,
        )  # fmt: skip


def _village_inputs(
    engine: Engine, plan_id: int, village_code: str, expected_version: int | None
) -> tuple[Any, gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame, list[Any]]:
    from geogrid import plans

    with engine.connect() as conn:
        info = plans.get_plan(conn, plan_id)
        if info.status != "draft":
            raise IllegalTransition(
                f"plan {plan_id} is {info.status}; only a draft plan can be edited.",
                detail={"plan_id": plan_id, "status": info.status, "reason": "not_draft"},
            )
        if expected_version is not None and 0 <= expected_version != info.version:
            raise plans.StaleVersion(
                f"plan {plan_id} is at version {info.version}, not {expected_version}: "
                "reload it and repeat the edit.",
                detail={"plan_id": plan_id, "version": info.version},
            )
        households, villages, groups, _ = plans.load_inputs(conn, info.town_code)
        locked = list(
            conn.execute(
                text(
                    "SELECT code, metrics->'units' AS units, ST_AsBinary(geom) AS wkb "
                    "FROM grids WHERE plan_id = :p AND level = 3 AND village_code = :v "
                    "AND locked ORDER BY code"
                ),
                {"p": plan_id, "v": village_code},
            ).all()
        )
    v = villages[villages["code"] == village_code]
    if v.empty:
        raise NotFound(
            f"village {village_code} is not in the town of plan {plan_id}.",
            detail={"village_code": village_code},
        )
    return (
        info,
        households[households["village_code"] == village_code],
        v,
        groups[groups["village_code"] == village_code],
        locked,
    )


def rerun_village(
    engine: Engine,
    plan_id: int,
    village_code: str,
    *,
    grids: int | None = None,
    expected_version: int | None = None,
    author: str | None = None,
) -> EditResult:
    """Partition one village of a draft again, into ``grids`` grids (``None``: free).

    Other villages are untouched. Locked grids of the village are kept exactly as they
    are (their codes, groups and geometry); the rest of the village is partitioned into
    ``grids`` minus the locked ones, with grid codes the locked grids do not use. The
    households are read afresh from the register; the plan's parameters are kept.

    Raises
    ------
    InvalidInput
        ``grids`` smaller than the locked grids + 1, or more grids than groups.
    NotFound, IllegalTransition, geogrid.plans.StaleVersion
        Unknown plan or village, not a draft, stale version.
    """
    from geogrid import plans
    from partition import partition_plan, quality_report
    from partition.validate import check_plan

    if grids is not None and not 1 <= grids <= 999:
        raise InvalidInput("the number of grids must be 1-999.", detail={"reason": "grids_range"})
    info, hh, village, groups, locked = _village_inputs(
        engine, plan_id, village_code, expected_version
    )
    free_k = None
    if locked:
        if grids is not None and grids <= len(locked):
            raise InvalidInput(
                f"village {village_code} has {len(locked)} locked grids; ask for more grids "
                "than that, or unlock some.",
                detail={"reason": "grids_below_locked", "locked": len(locked)},
            )
        free_k = None if grids is None else grids - len(locked)
        kept_groups = {u["group_no"] for r in locked for u in (r.units or [])}
        # the rest of the village is the union of the other grids' unit territories, and
        # those are its groups' polygons: they tile it exactly (no slivers along the locks)
        free = _free_units(engine, plan_id, village_code)
        if not free:
            raise InvalidInput(
                f"every grid of village {village_code} is locked; unlock one to re-run it.",
                detail={"reason": "grids_below_locked", "locked": len(locked)},
            )
        village = village.set_geometry([cover_union([g for _, g in free])], crs=village.crs)
        by_group: dict[int, list[Any]] = {}
        for gno, geom in free:
            by_group.setdefault(int(gno), []).append(geom)
        groups = gpd.GeoDataFrame(
            {"village_code": [village_code] * len(by_group), "group_no": list(by_group)},
            geometry=[cover_union(gs) for gs in by_group.values()],
            crs=4326,
        )
        hh = hh[~hh["group_no"].isin(kept_groups)]
    else:
        free_k = grids
    params = _params_from_json(info.params)
    plan = partition_plan(
        hh, village, groups if len(groups) else None, params=params,
        cadres={village_code: free_k} if free_k else None, jobs=1,
    )  # fmt: skip
    check_plan(plan, hh, accept_imbalance=True)
    plan = _renumber(plan, village_code, {str(r.code) for r in locked})
    fresh = quality_report(plan)["villages"][0]
    with engine.begin() as conn:
        lock_draft(conn, plan_id, expected_version)
        before = snapshot(conn, plan_id, village_code)
        conn.execute(
            text(
                "DELETE FROM grids WHERE plan_id = :p AND level = 3 AND village_code = :v "
                "AND NOT locked"
            ),
            {"p": plan_id, "v": village_code},
        )
        parent = conn.execute(
            text("SELECT id FROM grids WHERE plan_id = :p AND level = 2 AND code = :v"),
            {"p": plan_id, "v": village_code},
        ).scalar_one()
        plans.write_basic_grids(conn, plan_id, plan, {village_code: parent})
        _refresh_metrics(conn, plan_id, village_code, fresh if not locked else None)
        payload = {
            "village": village_code,
            "name": str(village["name"].iloc[0]),
            "grids": grids,
            "grids_before": len(before["grids"]),
            "locked": [str(r.code) for r in locked],
        }
        return apply_edit(
            conn, plan_id, kind="rerun", village_code=village_code, payload=payload,
            before=before, author=author,
        )  # fmt: skip


def _free_units(engine: Engine, plan_id: int, village_code: str) -> list[tuple[int, Any]]:
    """(group number, territory) of the units of a village's grids that are not locked."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT metrics->'units' FROM grids WHERE plan_id = :p AND level = 3 "
                "AND village_code = :v AND NOT locked"
            ),
            {"p": plan_id, "v": village_code},
        ).scalars()
        return [
            (int(u["group_no"]), shapely.from_wkb(bytes.fromhex(u["wkb"])))
            for units in rows
            for u in units or []
            if u.get("group_no") is not None
        ]


def _renumber(plan: Any, village_code: str, taken: set[str]) -> Any:
    """The plan with its grids renumbered to codes that the locked grids do not use."""
    from dataclasses import replace

    if not taken:
        return plan
    free = (
        f"{village_code}{n:03d}" for n in range(1, 1000) if f"{village_code}{n:03d}" not in taken
    )
    mapping = {c: next(free) for c in sorted(plan.grids["code"])}
    grids = plan.grids.copy()
    grids["code"] = grids["code"].map(mapping)
    grids["grid_no"] = [int(c[-3:]) for c in grids["code"]]
    assignment = plan.assignment.copy()
    assignment["grid_code"] = assignment["grid_code"].map(mapping)
    households = plan.households.copy()
    households["grid_code"] = households["grid_code"].map(lambda c: mapping.get(c, c))
    return replace(plan, grids=grids, assignment=assignment, households=households)


def _refresh_metrics(
    conn: Connection, plan_id: int, village_code: str, fresh: dict[str, Any] | None
) -> None:
    """Recompute a plan's quality rows and totals from its stored grids after a re-run.

    ``fresh``: the re-run village's quality row, whose balance bounds replace the stored
    ones (they depend on the households, read afresh).
    """
    from geogrid import plans
    from partition import quality_report

    if fresh is not None:
        metrics = conn.execute(
            text("SELECT metrics FROM plans WHERE id = :p"), {"p": plan_id}
        ).scalar_one()
        villages = [v if v.get("code") != village_code else {**v, **fresh}
                    for v in metrics.get("villages", [])]  # fmt: skip
        conn.execute(
            text("UPDATE plans SET metrics = jsonb_set(metrics, '{villages}', CAST(:v AS jsonb)) "
                 "WHERE id = :p"),
            {"v": _json(villages), "p": plan_id},
        )  # fmt: skip
    report = quality_report(plans.load_plan(conn, plan_id))
    metrics = conn.execute(
        text("SELECT metrics FROM plans WHERE id = :p"), {"p": plan_id}
    ).scalar_one()
    totals = dict(report["totals"])
    totals["unassigned_households"] = metrics.get("totals", {}).get(
        "unassigned_households", totals["unassigned_households"]
    )
    keep = {v["code"]: v for v in metrics.get("villages", [])}
    villages = []
    for v in report["villages"]:
        old = keep.get(v["code"], {})
        villages.append(
            {**old, **{k: val for k, val in v.items() if val is not None or k not in old}}
        )
    metrics |= {"totals": totals, "villages": villages}
    conn.execute(
        text("UPDATE plans SET metrics = CAST(:m AS jsonb) WHERE id = :p"),
        {"m": _json(metrics), "p": plan_id},
    )
    row = next(v for v in villages if v["code"] == village_code)
    conn.execute(
        text(
            "UPDATE grids v SET metrics = CAST(:m AS jsonb), "
            "households = (SELECT COALESCE(sum(households), 0) FROM grids g "
            "              WHERE g.plan_id = :p AND g.level = 3 AND g.village_code = :c), "
            "population = (SELECT COALESCE(sum(population), 0) FROM grids g "
            "              WHERE g.plan_id = :p AND g.level = 3 AND g.village_code = :c) "
            "WHERE v.plan_id = :p AND v.level = 2 AND v.code = :c"
        ),
        {"m": _json(row), "p": plan_id, "c": village_code},
    )
    conn.execute(
        text("UPDATE grids SET metrics = CAST(:m AS jsonb) WHERE plan_id = :p AND level = 1"),
        {"m": _json({"totals": totals}), "p": plan_id},
    )
