"""Read plans: list, get, version, grids, the partition.Plan of a stored plan."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from geogrid.errors import (
    InvalidInput,
    NotFound,
)
from geogrid.plans.common import PlanInfo, _frame, _params_from_json
from partition import (
    Plan,
)
from partition.plan import PLAN_GRID_COLUMNS, PLAN_HOUSEHOLD_COLUMNS, PLAN_UNIT_COLUMNS

_PLAN_COLUMNS = (
    "p.id, p.town_code, p.name, p.status, p.params, p.metrics, p.author, p.parent_id, "
    "p.activated_at, p.created_at, p.updated_at, "
    "(SELECT count(*) FROM grids g WHERE g.plan_id = p.id AND g.level = 3) AS grids"
)


def _plan_info(row: Any) -> PlanInfo:
    metrics = dict(row.metrics or {})
    return PlanInfo(
        id=int(row.id),
        town_code=str(row.town_code),
        name=str(row.name),
        status=str(row.status),
        version=int(metrics.get("version", 1)),
        params=dict(row.params or {}),
        metrics=metrics,
        author=row.author,
        parent_id=row.parent_id,
        activated_at=row.activated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        grids=int(row.grids),
    )


def list_plans(conn: Connection, *, town_code: str | None = None) -> list[PlanInfo]:
    """Plans, newest first, optionally of one town.

    The ``unassigned`` and ``edits`` lists are left out of each plan's metrics here; use
    :func:`get_plan` for them.
    """
    rows = conn.execute(
        text(
            f"SELECT {_PLAN_COLUMNS} FROM plans p "
            "WHERE CAST(:town AS text) IS NULL OR p.town_code = :town ORDER BY p.id DESC"
        ),
        {"town": town_code},
    ).all()
    out = []
    for r in rows:
        info = _plan_info(r)
        light = {k: v for k, v in info.metrics.items() if k not in ("unassigned", "edits")}
        out.append(PlanInfo(**(asdict(info) | {"metrics": light})))
    return out


def get_plan(conn: Connection, plan_id: int) -> PlanInfo:
    """One plan's header, parameters and metrics.

    Raises
    ------
    NotFound
        No plan has this id.
    """
    row = conn.execute(
        text(f"SELECT {_PLAN_COLUMNS} FROM plans p WHERE p.id = :id"),
        {"id": plan_id},
    ).first()
    if row is None:
        raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
    return _plan_info(row)


def plan_version(conn: Connection, plan_id: int) -> int:
    """The current version of a plan (its ETag), :class:`NotFound` if unknown."""
    v = conn.execute(
        text("SELECT COALESCE((metrics->>'version')::int, 1) FROM plans WHERE id = :id"),
        {"id": plan_id},
    ).first()
    if v is None:
        raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
    return int(v[0])


def plan_grids(conn: Connection, plan_id: int, *, level: int = 3) -> dict[str, Any]:
    """A plan's grids of one level as a GeoJSON FeatureCollection (EPSG:4326).

    Properties: ``code, level, name, village_code, parent_code, households, population,
    deviation, polsby_popper, area_km2, groups, flags`` (level 3; the village and town
    levels carry their quality summary instead of deviation and flags).

    Raises
    ------
    NotFound
        Unknown plan.
    InvalidInput
        ``level`` is not 1, 2 or 3.
    """
    if level not in (1, 2, 3):
        raise InvalidInput(
            f"level must be 1 (town), 2 (village) or 3 (basic grid), not {level}.",
            detail={"level": level},
        )
    info = get_plan(conn, plan_id)
    rows = conn.execute(
        text(
            "SELECT g.code, g.level, g.name, g.village_code, p.code AS parent_code, "
            "g.households, g.population, g.metrics - 'units' AS metrics, g.locked, "
            "ST_AsGeoJSON(g.geom)::jsonb AS geometry "
            "FROM grids g LEFT JOIN grids p ON p.id = g.parent_id "
            "WHERE g.plan_id = :id AND g.level = :level ORDER BY g.code"
        ),
        {"id": plan_id, "level": level},
    ).all()
    target = int(info.params.get("target", 150))
    features = []
    for r in rows:
        m = dict(r.metrics or {})
        props: dict[str, Any] = {
            "code": r.code,
            "level": int(r.level),
            "name": r.name,
            "village_code": r.village_code,
            "parent_code": r.parent_code,
            "households": int(r.households),
            "population": int(r.population),
        }
        if level == 3:
            props |= {
                "deviation": int(m.get("deviation", int(r.households) - target)),
                "polsby_popper": m.get("polsby_popper"),
                "area_km2": m.get("area_km2"),
                "groups": m.get("groups", []),
                "flags": m.get("flags", []),
                "locked": bool(r.locked),
            }
        else:
            props["metrics"] = m
        features.append(
            {
                "type": "Feature",
                "id": r.code,
                "geometry": r.geometry,
                "properties": props,
            }
        )
    return {
        "type": "FeatureCollection",
        "plan_id": plan_id,
        "version": info.version,
        "level": level,
        "features": features,
    }


def load_plan(conn: Connection, plan_id: int) -> Plan:
    """Rebuild a stored plan as a :class:`partition.Plan` (for reports and edits).

    Grids, unit territories, bounds and parameters come from the store exactly as they
    were written (or last edited). Households are represented by one placeholder row per
    registered household of each unit at plan time (``<unit>#<n>``): a plan is a snapshot,
    so later imports do not change it.
    """
    info = get_plan(conn, plan_id)
    rows = conn.execute(
        text(
            "SELECT code, village_code, households, population, metrics, "
            "ST_AsBinary(geom) AS wkb FROM grids WHERE plan_id = :id AND level = 3 ORDER BY code"
        ),
        {"id": plan_id},
    ).all()
    grid_rows = []
    unit_rows = []
    hh_rows: list[tuple[str, str, str, str, bool]] = []
    for code, vc, households, population, m, wkb in rows:
        m = m or {}
        grid_rows.append(
            (
                code,
                vc,
                int(code[-3:]),
                3,
                int(households),
                int(population),
                ",".join(m.get("groups", [])),
                ",".join(m.get("flags", [])),
                float(m.get("area_km2", 0.0)),
                float(m.get("polsby_popper", 0.0)),
                wkb,
            )
        )
        for u in m.get("units", []):
            unit_rows.append(
                (
                    vc,
                    u["unit"],
                    u["group_no"],
                    u.get("village_part", 1),
                    code,
                    int(u["households"]),
                    int(u["population"]),
                    bytes.fromhex(u["wkb"]),
                )
            )
            hh_rows.extend(
                (f"{u['unit']}#{n}", vc, u["unit"], code, False)
                for n in range(int(u["households"]))
            )
    grids = _frame(grid_rows, [*PLAN_GRID_COLUMNS, "wkb"])
    assignment = _frame(unit_rows, [*PLAN_UNIT_COLUMNS, "wkb"])
    assignment["group_no"] = assignment["group_no"].astype("Int64")
    households = pd.DataFrame(hh_rows, columns=list(PLAN_HOUSEHOLD_COLUMNS))
    vm = {v["code"]: v for v in info.metrics.get("villages", [])}
    vrows = conn.execute(
        text(
            "SELECT code, name, ST_AsBinary(geom) AS wkb FROM admin_areas "
            "WHERE level = 'village' AND parent_code = :town ORDER BY code"
        ),
        {"town": info.town_code},
    ).all()
    vrows = [r for r in vrows if r[0] in vm]
    villages = _frame(vrows, ["code", "name", "wkb"])
    cadres = info.params.get("cadres") or {}
    villages["cadres"] = [cadres.get(c) for c in villages["code"]]
    for key in ("bound_in_band_share", "bound_mean_abs_dev", "notes"):
        villages[key] = [vm[c].get(key) for c in villages["code"]]
    villages["moved"] = [vm[c].get("households_moved") for c in villages["code"]]
    villages["notes"] = villages["notes"].fillna("")
    villages = villages[
        [
            "code",
            "name",
            "cadres",
            "bound_in_band_share",
            "bound_mean_abs_dev",
            "moved",
            "notes",
            "geometry",
        ]
    ]
    unassigned = pd.DataFrame(
        info.metrics.get("unassigned", []),
        columns=["register_no", "village_code", "reason"],
    )
    return Plan(
        grids=grids,
        assignment=assignment,
        households=households,
        unassigned=unassigned,
        villages=villages,
        params=_params_from_json(info.params),
        redraw=info.metrics.get("households_moved") is not None,
        meta={"plan_id": plan_id, "edited": bool(info.metrics.get("edits"))},
    )
