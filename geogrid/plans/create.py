"""Create a plan: check, partition, store grids and metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text

from geogrid.errors import (
    InvalidInput,
    NotFound,
)
from geogrid.plans.common import ProgressFn, _frame, _json, _params_json, _split, _wkb
from geogrid.plans.inputs import _town, load_inputs
from partition import (
    PartitionParams,
    Plan,
    partition_plan,
    quality_report,
)

log = logging.getLogger(__name__)


def check_create(
    conn: Connection,
    *,
    town_code: str,
    cadres: Mapping[str, int] | None = None,
    redraw_from: int | None = None,
) -> None:
    """Check a plan request before it is queued: the town, cadre villages, redraw plan.

    Raises
    ------
    NotFound
        Unknown town or plan.
    InvalidInput
        Cadres for villages outside the town, or a redraw plan of another town.
    """
    _town(conn, town_code)
    if cadres:
        known = {
            str(c)
            for (c,) in conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'village' AND parent_code = :t"),
                {"t": town_code},
            )
        }
        _check_cadres(cadres, known, town_code)
    if redraw_from is not None:
        row = conn.execute(
            text("SELECT town_code FROM plans WHERE id = :id"), {"id": redraw_from}
        ).first()
        if row is None:
            raise NotFound(
                f"plan {redraw_from} (to redraw from) does not exist.",
                detail={"plan_id": redraw_from},
            )
        _same_town(redraw_from, str(row[0]), town_code)


def _check_cadres(cadres: Mapping[str, int], known: set[str], town_code: str) -> None:
    unknown = sorted(set(cadres) - known)
    if unknown:
        raise InvalidInput(
            f"cadre counts name villages that are not in town {town_code}: "
            f"{', '.join(unknown[:10])}.",
            detail={"village_codes": unknown},
        )


def _same_town(plan_id: int, plan_town: str, town_code: str) -> None:
    if plan_town != town_code:
        raise InvalidInput(
            f"plan {plan_id} belongs to town {plan_town}, not {town_code}; "
            "a redraw starts from a plan of the same town.",
            detail={"plan_id": plan_id, "town_code": plan_town},
        )


def _existing_grids(conn: Connection, plan_id: int, town_code: str) -> gpd.GeoDataFrame:
    row = conn.execute(text("SELECT town_code FROM plans WHERE id = :id"), {"id": plan_id}).first()
    if row is None:
        raise NotFound(
            f"plan {plan_id} (to redraw from) does not exist.",
            detail={"plan_id": plan_id},
        )
    _same_town(plan_id, str(row[0]), town_code)
    rows = conn.execute(
        text(
            "SELECT code, village_code, metrics->'groups' AS groups, ST_AsBinary(geom) AS wkb "
            "FROM grids WHERE plan_id = :id AND level = 3 ORDER BY code"
        ),
        {"id": plan_id},
    ).all()
    return _frame(
        [(c, v, ",".join(g or []), w) for c, v, g, w in rows],
        ["code", "village_code", "groups", "wkb"],
    )


def _village_metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(village) for village in report["villages"]]


def _grid_metrics(
    row: Any, units: list[dict[str, Any]], target: int, flags: list[str]
) -> dict[str, Any]:
    return {
        "deviation": int(row.households) - target,
        "polsby_popper": round(float(row.polsby_popper), 4),
        "area_km2": round(float(row.area_km2), 4),
        "flags": flags,
        "groups": _split(row.groups),
        "units": units,
    }


def _plan_metrics(
    plan: Plan, inputs: Mapping[str, Any], unassigned_extra: list[dict[str, Any]]
) -> dict[str, Any]:
    report = quality_report(plan)
    unassigned = [
        {
            "register_no": str(r.register_no),
            "village_code": r.village_code,
            "reason": r.reason,
        }
        for r in plan.unassigned.itertuples()
    ] + unassigned_extra
    totals = dict(report["totals"])
    totals["unassigned_households"] = len(unassigned)
    return {
        "version": 1,
        "totals": totals,
        "villages": _village_metrics(report),
        "inputs": {k: v for k, v in inputs.items() if k != "without_group_register_nos"},
        "unassigned": unassigned,
        "households_moved": plan.households_moved,
        "edits": [],
    }


def create_plan(
    engine: Engine,
    town_code: str,
    *,
    params: PartitionParams | None = None,
    cadres: Mapping[str, int] | None = None,
    name: str | None = None,
    author: str | None = None,
    redraw_from: int | None = None,
    locked: Sequence[str] | None = None,
    jobs: int | None = 1,
    progress: ProgressFn | None = None,
) -> int:
    """Partition a town and store the result as a draft plan.

    Inputs are read with :func:`load_inputs`; :func:`partition.partition_plan` runs outside
    any transaction; the plan, its grids (levels 1–3), group memberships and the derived
    group territories are then written in one transaction.

    Parameters
    ----------
    engine
        Database engine.
    town_code
        12-digit town code.
    params
        Partition parameters (default target 150 in 100–200, seed 0).
    cadres
        Exact number of grids per village code (villages not listed are free).
    name, author
        Plan name (default: town name and time) and author.
    redraw_from
        Id of a plan of the same town to redraw from with minimal change: its basic grids
        are the partitioner's ``existing``; households moved are recorded in the metrics
        and the plan's ``parent_id`` is set. The grids locked in that plan (and those
        named in ``locked``) are kept exactly as they are, and stay locked in the new plan.
    locked
        Further codes of grids of ``redraw_from`` to keep as they are (redraw only).
    jobs
        Worker processes for the partitioner (``1``: this process; ``None``: CPUs).
    progress
        See :data:`ProgressFn`.

    Returns
    -------
    int
        The id of the new draft plan.

    Raises
    ------
    NotFound
        Unknown town or ``redraw_from`` plan.
    InvalidInput
        Bad inputs or parameters (e.g. more cadres than villager groups in a village).
    """
    params = params or PartitionParams()
    with engine.connect() as conn:
        town_name, _ = _town(conn, town_code)
        households, villages, groups, inputs = load_inputs(conn, town_code)
        existing = _existing_grids(conn, redraw_from, town_code) if redraw_from else None
        keep = set(locked or ())
        if redraw_from:
            keep |= {
                str(c)
                for (c,) in conn.execute(
                    text("SELECT code FROM grids WHERE plan_id = :p AND level = 3 AND locked"),
                    {"p": redraw_from},
                )
            }
    if keep and existing is None:
        raise InvalidInput(
            "locked grids need a plan to redraw from (redraw_from).",
            detail={"reason": "locked_without_redraw"},
        )
    if cadres:
        _check_cadres(cadres, set(villages["code"]), town_code)
    total = len(villages)
    done = 0
    lock = threading.Lock()

    def step(code: str) -> None:
        nonlocal done
        with lock:
            done += 1
            n = done
        if progress is not None:
            progress(n, total, code)

    if progress is not None:
        progress(0, total, None)
    plan = partition_plan(
        households,
        villages,
        groups if len(groups) else None,
        params=params,
        cadres=dict(cadres) if cadres else None,
        existing=existing,
        locked=sorted(keep) or None,
        jobs=jobs,
        progress=step,
    )
    # the independent rules check: a plan breaking a rule is never stored (PlanRuleError
    # names rule, grid and place); grids out of the band are stored flagged, as before
    from partition.validate import check_plan

    check_plan(plan, households, accept_imbalance=True)
    extra = [
        {"register_no": r, "village_code": v, "reason": "no_group"}
        for v, r in inputs["without_group_register_nos"]
    ]
    metrics = _plan_metrics(plan, inputs, extra)
    stored_params = _params_json(params) | {
        "cadres": dict(cadres) if cadres else None,
        "redraw_from": redraw_from,
        "locked": sorted(keep),
    }
    when = datetime.now().astimezone()
    name = name or f"{town_name} {when:%Y-%m-%d %H:%M}"
    with engine.begin() as conn:
        plan_id = int(
            conn.execute(
                text(
                    "INSERT INTO plans (town_code, name, status, params, metrics, author, "
                    "parent_id) VALUES (:town, :name, 'draft', CAST(:params AS jsonb), "
                    "CAST(:metrics AS jsonb), :author, :parent) RETURNING id"
                ),
                {
                    "town": town_code,
                    "name": name,
                    "params": _json(stored_params),
                    "metrics": _json(metrics),
                    "author": author,
                    "parent": redraw_from,
                },
            ).scalar_one()
        )
        _write_grids(conn, plan_id, town_code, town_name, plan, metrics)
    log.info("plan %d: %d grids for town %s", plan_id, len(plan.grids), town_code)
    return plan_id


def _group_ids(conn: Connection, village_codes: Sequence[str]) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        text(
            "SELECT village_code, group_no, id FROM villager_groups "
            "WHERE village_code = ANY(:codes)"
        ),
        {"codes": list(village_codes)},
    ).all()
    return {(str(v), int(g)): int(i) for v, g, i in rows}


def _insert_grid(conn: Connection, values: dict[str, Any]) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO grids (plan_id, code, level, parent_id, village_code, name, geom, "
                "households, population, metrics, locked) VALUES (:plan_id, :code, :level, "
                ":parent_id, :village_code, :name, "
                "CASE WHEN CAST(:wkb AS text) IS NULL THEN NULL "
                "ELSE ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4326)) END, "
                ":households, :population, CAST(:metrics AS jsonb), :locked) RETURNING id"
            ),
            {"locked": False, **values},
        ).scalar_one()
    )


def _write_grids(
    conn: Connection,
    plan_id: int,
    town_code: str,
    town_name: str,
    plan: Plan,
    metrics: Mapping[str, Any],
) -> None:
    grids = plan.grids
    town_geom = conn.execute(
        text(
            "SELECT encode(ST_AsBinary(COALESCE(t.geom, (SELECT ST_Multi(ST_Union(v.geom)) "
            "FROM admin_areas v WHERE v.level = 'village' AND v.parent_code = t.code))), 'hex') "
            "FROM admin_areas t WHERE t.code = :code"
        ),
        {"code": town_code},
    ).scalar_one()
    level1 = _insert_grid(
        conn,
        {
            "plan_id": plan_id,
            "code": town_code,
            "level": 1,
            "parent_id": None,
            "village_code": None,
            "name": town_name,
            "wkb": town_geom,
            "households": int(grids["households"].sum()),
            "population": int(grids["population"].sum()),
            "metrics": _json({"totals": metrics["totals"]}),
        },
    )
    vmetrics = {v["code"]: v for v in metrics["villages"]}
    village_ids: dict[str, int] = {}
    for v in plan.villages.itertuples():
        vg = grids[grids["village_code"] == v.code]
        village_ids[v.code] = _insert_grid(
            conn,
            {
                "plan_id": plan_id,
                "code": v.code,
                "level": 2,
                "parent_id": level1,
                "village_code": v.code,
                "name": str(v.name),
                "wkb": _wkb(v.geometry),
                "households": int(vg["households"].sum()),
                "population": int(vg["population"].sum()),
                "metrics": _json(vmetrics.get(v.code, {})),
            },
        )
    write_basic_grids(conn, plan_id, plan, village_ids)


def write_basic_grids(
    conn: Connection, plan_id: int, plan: Plan, village_ids: Mapping[str, int]
) -> None:
    """Insert the basic grids of ``plan`` (level 3), their group memberships and units.

    ``village_ids`` maps each village code to its level-2 grid row. A grid the
    partitioner flagged ``locked`` (kept from a redraw) is stored locked. Derived group
    territories are written back to the groups without a supplied polygon.
    """
    grids = plan.grids
    assign = plan.assignment
    params = plan.params
    names = dict(zip(plan.villages["code"], plan.villages["name"], strict=True))
    gids = _group_ids(conn, list(plan.villages["code"]))
    # units per group: a group that is several units (split parts, multi-part villages)
    # gets part numbers 1, 2, ... in unit order; a one-unit group gets part NULL
    unit_count: dict[tuple[str, int], int] = {}
    for vc, gno in zip(assign["village_code"], assign["group_no"], strict=True):
        if not pd.isna(gno):
            unit_count[(vc, int(gno))] = unit_count.get((vc, int(gno)), 0) + 1
    part_no: dict[tuple[str, int], int] = {}
    units_of: dict[str, list[dict[str, Any]]] = {}
    memberships: list[dict[str, Any]] = []
    derived: dict[int, list[shapely.Geometry]] = {}
    for u in assign.itertuples():
        gno = None if pd.isna(u.group_no) else int(u.group_no)
        part: int | None = None
        gid = gids.get((u.village_code, gno)) if gno is not None else None
        if gno is not None:
            key = (u.village_code, gno)
            if unit_count[key] > 1:
                part = part_no[key] = part_no.get(key, 0) + 1
            if gid is None:
                raise InvalidInput(
                    f"group {gno} of village {u.village_code} is in the plan but not in "
                    "the villager_groups table.",
                    detail={"village_code": u.village_code, "group_no": gno},
                )
            memberships.append({"grid": u.grid_code, "group_id": gid, "part": part})
            derived.setdefault(gid, []).append(u.geometry)
        units_of.setdefault(u.grid_code, []).append(
            {
                "unit": str(u.unit),
                "group_no": gno,
                "group_id": gid,
                "part": part,
                "village_part": int(u.part),
                "households": int(u.households),
                "population": int(u.population),
                "wkb": _wkb(u.geometry),
            }
        )
    grid_ids: dict[str, int] = {}
    for g in grids.itertuples():
        flags = _split(g.flags)
        grid_ids[g.code] = _insert_grid(
            conn,
            {
                "plan_id": plan_id,
                "code": g.code,
                "level": 3,
                "parent_id": village_ids[g.village_code],
                "village_code": g.village_code,
                "name": f"{names[g.village_code]}第{int(g.grid_no)}网格",
                "wkb": _wkb(g.geometry),
                "households": int(g.households),
                "population": int(g.population),
                "metrics": _json(_grid_metrics(g, units_of.get(g.code, []), params.target, flags)),
                "locked": "locked" in flags,
            },
        )
    if memberships:
        conn.execute(
            text(
                "INSERT INTO grid_groups (grid_id, group_id, plan_id, part) "
                "VALUES (:grid_id, :group_id, :plan_id, :part)"
            ),
            [
                {
                    "grid_id": grid_ids[m["grid"]],
                    "group_id": m["group_id"],
                    "plan_id": plan_id,
                    "part": m["part"],
                }
                for m in memberships
            ],
        )
    # derived territories go back to the groups that have no supplied polygon
    rows = [
        {
            "id": gid,
            "wkb": _wkb(shapely.union_all(geoms) if len(geoms) > 1 else geoms[0]),
        }
        for gid, geoms in derived.items()
    ]
    if rows:
        conn.execute(
            text(
                "UPDATE villager_groups SET "
                "geom = ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4326)), "
                "territory_source = 'derived', updated_at = now() "
                "WHERE id = :id AND territory_source IS DISTINCT FROM 'supplied'"
            ),
            rows,
        )
