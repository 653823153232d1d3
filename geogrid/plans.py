"""The plan service: partition a town from the database and manage its plans.

A *plan* is one partition of a town into basic grids (网格), stored with its parameters,
quality metrics and grids at three levels (1 town, 2 village, 3 basic grid). Plans move
draft → active → archived; only drafts may be edited, and activating a draft archives the
town's previous active plan in the same transaction.

Every function is keyword-only after its first argument, takes an :class:`~sqlalchemy.Engine`
(when it writes) or a :class:`~sqlalchemy.Connection` (when it reads), and raises the domain
errors of :mod:`geogrid.errors`. No HTTP here: :mod:`api.routes.plans` and the ``geogrid
plan`` commands call these functions.

Storage of a plan
-----------------
* ``plans.params``: the :class:`partition.PartitionParams` used (``target``, ``min``,
  ``max``, ``seed``, ...), plus ``cadres`` and ``redraw_from`` when given.
* ``plans.metrics``: ``version`` (bumped by every edit; the ETag of the plan), ``totals`` and
  ``villages`` (the partitioner's quality report, with the per-village balance bounds),
  ``inputs`` (what was loaded, see the failed-geocode policy below), ``unassigned``
  households, ``households_moved`` (redraw) and an ``edits`` log.
* ``grids`` level 3: geometry, households, population and ``metrics`` with ``deviation``,
  ``polsby_popper``, ``area_km2``, ``flags``, ``groups`` and ``units`` — the territory
  (WKB, hex) and household count of every member unit as the partitioner saw them. The
  units are what lets an edit be re-validated later without re-deriving territories
  (supplied polygons are repaired by the partitioner, and split-group parts exist only
  in the plan).
* ``grid_groups``: one row per member group; ``part`` is ``NULL`` for a group that is one
  unit of the plan, ``1, 2, ...`` when the group is split into several units
  (``--split-large`` parts, or a group straddling the parts of a multi-part village).

Failed geocodes
---------------
Households whose geocoding failed have no point but do have a villager group. They are
kept in their group (the count of a grid is the count of its groups' registers) and are
given to the partitioner at a stand-in point, first of: a point on the group's *supplied*
polygon; the group's member household nearest to the members' centroid; a point on the
group's previously derived polygon; a point on the village polygon. Their count is
recorded in ``plans.metrics["inputs"]["placed_failed_geocodes"]``. Households with no
villager group cannot be placed in a grid of whole groups: they are left out of the
partition and counted in ``inputs["without_group"]`` (their register numbers are listed
in ``plans.metrics["unassigned"]`` with reason ``no_group``).
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from geogrid.errors import (
    Conflict,
    GeogridError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    log_summary,
)
from geogrid.overlays import assign_grids
from geogrid.placement import assign_household_grids
from partition import (
    PartitionParams,
    Plan,
    move_group,
    partition_plan,
    quality_report,
)
from partition.plan import PLAN_GRID_COLUMNS, PLAN_HOUSEHOLD_COLUMNS, PLAN_UNIT_COLUMNS

__all__ = [
    "STAFF_POSTS",
    "STAFF_ROLES",
    "GroupChange",
    "MoveCheck",
    "MoveResult",
    "NeedsConfirmation",
    "PlanDiff",
    "PlanInfo",
    "PlanJob",
    "PlanJobs",
    "ProgressFn",
    "StaffPost",
    "StaleVersion",
    "activate_plan",
    "assign_staff",
    "band_warnings",
    "check_create",
    "check_move",
    "create_plan",
    "diff_plans",
    "get_plan",
    "grid_staff",
    "list_plans",
    "load_inputs",
    "load_plan",
    "move_group_in_plan",
    "move_reason",
    "params_from_options",
    "plan_grids",
    "plan_version",
    "version_from_if_match",
]

log = logging.getLogger(__name__)

SRID = 4326
STAFF_ROLES = ("leader", "guide", "info_officer")
STAFF_POSTS = ("A", "B")

#: ``progress(done, total, village_code)``: called with ``(0, total, None)`` before the
#: first village and after each village (any order).
ProgressFn = Callable[[int, int, str | None], None]


class StaleVersion(Conflict):
    """The caller edited an older version of a plan than the stored one (ETag mismatch)."""


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class PlanInfo:
    """A plan's header: what :func:`list_plans` and :func:`get_plan` return."""

    id: int
    town_code: str
    name: str
    status: str
    version: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    author: str | None
    parent_id: int | None
    activated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    grids: int

    @property
    def etag(self) -> str:
        """Strong entity tag of the plan's current version."""
        return make_etag(self.id, self.version)


@dataclass(frozen=True)
class GroupChange:
    """One plan unit (a group, or a part of a split group) that changed grid."""

    village_code: str
    group_no: int | None
    unit: str
    group_id: int | None
    from_grid: str | None
    to_grid: str | None
    households: int


@dataclass(frozen=True)
class PlanDiff:
    """Differences between two plans of one town (``a`` → ``b``)."""

    a: int
    b: int
    town_code: str
    changes: list[GroupChange]
    households_moved: int
    groups_compared: int


@dataclass(frozen=True)
class MoveResult:
    """Outcome of :func:`move_group_in_plan`."""

    plan_id: int
    version: int
    unit: str
    village_code: str
    from_grid: str
    to_grid: str
    households: int

    @property
    def etag(self) -> str:
        return make_etag(self.plan_id, self.version)


@dataclass(frozen=True)
class StaffPost:
    """A staff member at a post of a grid (public duty contact; no resident data)."""

    staff_id: int
    name: str
    role: str
    post: str
    phone: str | None
    photo: str | None
    duties: str | None
    grid_code: str
    plan_id: int


# --------------------------------------------------------------------------- helpers


def make_etag(plan_id: int, version: int) -> str:
    """The entity tag of a plan version.

    >>> make_etag(3, 2)
    '"plan-3-v2"'
    """
    return f'"plan-{plan_id}-v{version}"'


def parse_etag(etag: str, plan_id: int) -> int | None:
    """The version an entity tag names for ``plan_id``; ``None`` if it is not one of ours.

    ``*`` (any version) is returned as ``-1``.

    >>> parse_etag('"plan-3-v2"', 3), parse_etag('W/"plan-3-v2"', 3), parse_etag('"x"', 3)
    (2, 2, None)
    >>> parse_etag('*', 3)
    -1
    """
    tag = etag.strip()
    if tag == "*":
        return -1
    tag = tag.removeprefix("W/").strip('"')
    prefix = f"plan-{plan_id}-v"
    if not tag.startswith(prefix) or not tag[len(prefix) :].isdigit():
        return None
    return int(tag[len(prefix) :])


def version_from_if_match(if_match: str, plan_id: int) -> int | None:
    """The version an ``If-Match`` header expects (``None`` for ``*``: any version).

    Raises
    ------
    StaleVersion
        No entity tag in the header is one of this plan's: it cannot match.

    >>> version_from_if_match('"plan-3-v2"', 3), version_from_if_match("*", 3)
    (2, None)
    """
    versions = [parse_etag(tag, plan_id) for tag in if_match.split(",") if tag.strip()]
    if -1 in versions:
        return None
    mine = [v for v in versions if v is not None]
    if not mine:
        raise StaleVersion(
            f"If-Match {if_match.strip()!r} names no version of plan {plan_id}; "
            f"send the ETag of GET /api/plans/{plan_id} (e.g. {make_etag(plan_id, 1)}).",
            detail={"plan_id": plan_id},
        )
    return max(mine)


def params_from_options(
    *,
    target: int = 150,
    lo: int = 100,
    hi: int = 200,
    seed: int = 0,
    split_large: bool = False,
    exact_seconds: float | None = None,
) -> PartitionParams:
    """Partition parameters from user options (validated; :class:`InvalidInput` if not).

    ``exact_seconds`` is the CP-SAT budget per village (``None``: the default).

    >>> params_from_options(target=120, lo=80, hi=160).target
    120
    """
    params = PartitionParams(target=target, lo=lo, hi=hi, seed=seed, split_large=split_large)
    if exact_seconds is not None:
        params = replace(params, exact_seconds=float(exact_seconds))
    return params


def _params_json(params: PartitionParams) -> dict[str, Any]:
    return {
        "target": params.target,
        "min": params.lo,
        "max": params.hi,
        "seed": params.seed,
        "split_large": params.split_large,
        "empty_village": params.empty_village,
        "restarts": params.restarts,
        "kicks": params.kicks,
        "exact_seconds": params.exact_seconds,
    }


def _params_from_json(d: Mapping[str, Any]) -> PartitionParams:
    return PartitionParams(
        target=int(d.get("target", 150)),
        lo=int(d.get("min", 100)),
        hi=int(d.get("max", 200)),
        seed=int(d.get("seed", 0)),
        split_large=bool(d.get("split_large", False)),
        empty_village=d.get("empty_village", "single"),
        restarts=int(d.get("restarts", 2)),
        kicks=int(d.get("kicks", 8)),
        exact_seconds=float(d.get("exact_seconds", 0.0)),  # plans from before CP-SAT: none
    )


def _wkb(geom: shapely.Geometry) -> str:
    return str(shapely.to_wkb(geom, hex=True))


def _frame(rows: Sequence[Any], columns: list[str], geom_col: str = "wkb") -> gpd.GeoDataFrame:
    df = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    geoms = shapely.from_wkb([bytes(b) if b is not None else None for b in df[geom_col]])
    return gpd.GeoDataFrame(df.drop(columns=geom_col), geometry=list(geoms), crs=SRID)


def _split(text_list: str | None) -> list[str]:
    return [s for s in str(text_list or "").split(",") if s]


def _unit_group_no(unit: str) -> int | None:
    head = unit.split("@")[0].split(".")[0]
    return int(head) if head.isdigit() else None


# --------------------------------------------------------------------------- inputs


def _town(conn: Connection, town_code: str) -> tuple[str, Any]:
    row = conn.execute(
        text(
            "SELECT name, ST_AsBinary(geom) FROM admin_areas WHERE code = :code AND level = 'town'"
        ),
        {"code": town_code},
    ).first()
    if row is None:
        raise NotFound(
            f"town {town_code} does not exist; import its boundary first "
            "(geogrid import boundaries ... --level town).",
            detail={"town_code": town_code},
        )
    return str(row[0]), row[1]


def load_inputs(
    conn: Connection, town_code: str
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame, dict[str, Any]]:
    """Read a town's households, villages and supplied group polygons for the partitioner.

    Parameters
    ----------
    conn
        An open connection.
    town_code
        12-digit code of the town.

    Returns
    -------
    households : GeoDataFrame
        ``register_no, village_code, group_no, population`` (= members) and a Point per
        household, EPSG:4326. Failed geocodes are placed by the policy in the module
        docstring; households without a group are left out.
    villages : GeoDataFrame
        ``code, name`` and polygon of every village of the town.
    groups : GeoDataFrame
        ``village_code, group_no`` and polygon of every group whose territory was supplied.
    inputs : dict
        What was loaded: ``households``, ``placed_failed_geocodes``, ``without_group`` and
        ``without_group_register_nos`` (register numbers, by village).

    Raises
    ------
    NotFound
        The town does not exist.
    InvalidInput
        The town has no villages, or a village has no boundary.
    """
    _town(conn, town_code)
    vrows = conn.execute(
        text(
            "SELECT code, name, ST_AsBinary(geom) AS wkb FROM admin_areas "
            "WHERE level = 'village' AND parent_code = :town ORDER BY code"
        ),
        {"town": town_code},
    ).all()
    if not vrows:
        raise InvalidInput(
            f"town {town_code} has no villages; import the village boundaries first.",
            detail={"town_code": town_code},
        )
    missing = [r[0] for r in vrows if r[2] is None]
    if missing:
        raise InvalidInput(
            f"villages without a boundary in town {town_code}: {', '.join(missing[:10])}; "
            "import their polygons first.",
            detail={"village_codes": missing},
        )
    villages = _frame(vrows, ["code", "name", "wkb"])

    # One query: every grouped household of the town, failed geocodes placed at a
    # stand-in point (see the module docstring for the order of preference).
    hrows = conn.execute(
        text(
            """
            WITH v AS (
                SELECT code, geom FROM admin_areas
                WHERE level = 'village' AND parent_code = :town
            ),
            anchor AS (  -- per group: the member household nearest the members' centroid
                SELECT h.group_id,
                       ST_ClosestPoint(ST_Collect(h.geom), ST_Centroid(ST_Collect(h.geom))) AS pt
                FROM households h JOIN v ON v.code = h.village_code
                WHERE h.geom IS NOT NULL AND h.group_id IS NOT NULL
                GROUP BY h.group_id
            )
            SELECT h.register_no, h.village_code, g.group_no, h.members AS population,
                   (h.geom IS NULL) AS placed,
                   ST_AsBinary(COALESCE(
                       h.geom,
                       CASE WHEN g.territory_source = 'supplied'
                            THEN ST_PointOnSurface(g.geom) END,
                       a.pt,
                       ST_PointOnSurface(g.geom),
                       ST_PointOnSurface(v.geom)
                   )) AS wkb
            FROM households h
            JOIN v ON v.code = h.village_code
            JOIN villager_groups g ON g.id = h.group_id
            LEFT JOIN anchor a ON a.group_id = h.group_id
            ORDER BY h.village_code, h.register_no
            """
        ),
        {"town": town_code},
    ).all()
    households = _frame(
        hrows, ["register_no", "village_code", "group_no", "population", "placed", "wkb"]
    )
    placed = int(households["placed"].sum()) if len(households) else 0
    households = households.drop(columns="placed")
    ungrouped = conn.execute(
        text(
            "SELECT h.village_code, h.register_no FROM households h "
            "JOIN admin_areas v ON v.code = h.village_code "
            "WHERE v.level = 'village' AND v.parent_code = :town AND h.group_id IS NULL "
            "ORDER BY 1, 2"
        ),
        {"town": town_code},
    ).all()
    if ungrouped:
        log.warning(
            "town %s: %d households have no villager group and are left out of the partition",
            town_code,
            len(ungrouped),
        )
    grows = conn.execute(
        text(
            "SELECT g.village_code, g.group_no, ST_AsBinary(g.geom) AS wkb "
            "FROM villager_groups g JOIN admin_areas v ON v.code = g.village_code "
            "WHERE v.level = 'village' AND v.parent_code = :town "
            "AND g.territory_source = 'supplied' AND g.geom IS NOT NULL "
            "ORDER BY 1, 2"
        ),
        {"town": town_code},
    ).all()
    groups = _frame(grows, ["village_code", "group_no", "wkb"])
    inputs = {
        "households": len(households),
        "placed_failed_geocodes": placed,
        "without_group": len(ungrouped),
        "without_group_register_nos": [[str(v), str(r)] for v, r in ungrouped],
        "supplied_group_polygons": len(groups),
        "failed_geocode_policy": (
            "kept in their group, placed at a point on the supplied group polygon, else "
            "the member household nearest the group centroid, else a point on the derived "
            "group polygon, else a point on the village"
        ),
    }
    return households, villages, groups, inputs


# --------------------------------------------------------------------------- create


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
            f"plan {plan_id} (to redraw from) does not exist.", detail={"plan_id": plan_id}
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
        {"register_no": str(r.register_no), "village_code": r.village_code, "reason": r.reason}
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


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        f = float(value)
        return None if math.isnan(f) else f
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
        {"id": gid, "wkb": _wkb(shapely.union_all(geoms) if len(geoms) > 1 else geoms[0])}
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


# --------------------------------------------------------------------------- read


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
            {"type": "Feature", "id": r.code, "geometry": r.geometry, "properties": props}
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
        info.metrics.get("unassigned", []), columns=["register_no", "village_code", "reason"]
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


# --------------------------------------------------------------------------- diff


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


# --------------------------------------------------------------------------- activate


#: Every change of a plan (edit or status) bumps its version, so its ETag changes too.
_BUMP = (
    "metrics = jsonb_set(metrics, '{version}', "
    "to_jsonb(COALESCE((metrics->>'version')::int, 1) + 1))"
)


def activate_plan(engine: Engine, plan_id: int) -> PlanInfo:
    """Make a draft the town's active plan; the previous active plan is archived.

    Both changes happen in one transaction holding row locks on every plan of the town
    (``SELECT … FOR UPDATE``, in id order), so concurrent activations are serialised and
    the town never has two active plans or none in between. Both plans' versions (ETags)
    are bumped.

    Raises
    ------
    NotFound
        No plan has this id.
    IllegalTransition
        The plan is not a draft (active or archived plans cannot be activated).
    """
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT town_code FROM plans WHERE id = :id"), {"id": plan_id}
        ).first()
        if row is None:
            raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
        town = row[0]
        locked = conn.execute(
            text("SELECT id, status FROM plans WHERE town_code = :town ORDER BY id FOR UPDATE"),
            {"town": town},
        ).all()
        status = {int(i): str(s) for i, s in locked}
        if status[plan_id] != "draft":
            raise IllegalTransition(
                f"plan {plan_id} is {status[plan_id]}; only a draft plan can be activated "
                "(create a redraw from it to change an active or archived plan).",
                detail={"plan_id": plan_id, "status": status[plan_id]},
            )
        conn.execute(
            text(
                f"UPDATE plans SET status = 'archived', updated_at = now(), {_BUMP} "
                "WHERE town_code = :town AND status = 'active'"
            ),
            {"town": town},
        )
        try:
            conn.execute(
                text(
                    "UPDATE plans SET status = 'active', activated_at = now(), "
                    f"updated_at = now(), {_BUMP} WHERE id = :id"
                ),
                {"id": plan_id},
            )
        except IntegrityError as exc:  # pragma: no cover - excluded by the locks above
            raise Conflict(
                f"another plan of town {town} was activated at the same time; retry.",
                detail={"plan_id": plan_id},
            ) from exc
        # overlays (cases, key units, inspection points) and households follow the new
        # grids, atomically
        assign_grids(conn, town_code=town)
        assign_household_grids(conn, town_code=town)
        return get_plan(conn, plan_id)


# --------------------------------------------------------------------------- edits


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
            detail={"group": f"{vc}/{unit}", "plan_id": plan_id, "reason": "unknown_group"},
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
            conn, plan_id, group=group, to_grid_code=to_grid_code, village_code=village_code
        )
        if not confirm and (warnings := band_warnings(chk)):
            raise NeedsConfirmation(
                f"moving group {chk.village_code}/{chk.unit} leaves grid "
                f"{warnings[0]['grid']} with {warnings[0]['after']} households, outside "
                f"{warnings[0]['min']}-{warnings[0]['max']}; confirm the move to make it.",
                detail={"reason": "out_of_band", "warnings": warnings},
            )
        vc, unit, src, to_grid_code = chk.village_code, chk.unit, chk.from_grid, chk.to_grid
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
                {"p": plan_id, "to": to_grid_code, "src": src, "gid": moved_unit["group_id"]},
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


# --------------------------------------------------------------------------- staff


def _grid_id(conn: Connection, grid_code: str, plan_id: int | None) -> tuple[int, int]:
    """(grid id, plan id) of a grid code in ``plan_id``, default: its town's active plan."""
    if plan_id is not None:
        row = conn.execute(
            text("SELECT id, plan_id FROM grids WHERE plan_id = :p AND code = :c"),
            {"p": plan_id, "c": grid_code},
        ).first()
        if row is None:
            get_plan(conn, plan_id)  # NotFound for an unknown plan
            raise NotFound(
                f"grid {grid_code} is not in plan {plan_id}.",
                detail={"grid_code": grid_code, "plan_id": plan_id},
            )
        return int(row[0]), int(row[1])
    row = conn.execute(
        text(
            "SELECT g.id, g.plan_id FROM grids g JOIN plans p ON p.id = g.plan_id "
            "WHERE g.code = :c AND p.status = 'active' ORDER BY g.level LIMIT 1"
        ),
        {"c": grid_code},
    ).first()
    if row is None:
        raise NotFound(
            f"no active plan has a grid {grid_code}; activate a plan or name the plan.",
            detail={"grid_code": grid_code},
        )
    return int(row[0]), int(row[1])


def grid_staff(conn: Connection, *, grid_code: str, plan_id: int | None = None) -> list[StaffPost]:
    """Staff posted to a grid: name, role, post, duty phone, photo and duties.

    Parameters
    ----------
    grid_code
        Code of the grid (any level: town, village or basic grid).
    plan_id
        The plan; default: the active plan holding that code.
    """
    gid, pid = _grid_id(conn, grid_code, plan_id)
    rows = conn.execute(
        text(
            "SELECT s.id, s.name, a.role, a.post, s.phone, s.photo, s.duties "
            "FROM staff_assignments a JOIN staff s ON s.id = a.staff_id "
            "WHERE a.grid_id = :g ORDER BY "
            "array_position(ARRAY['leader','guide','info_officer']::text[], a.role::text), a.post"
        ),
        {"g": gid},
    ).all()
    return [
        StaffPost(
            staff_id=int(r[0]),
            name=str(r[1]),
            role=str(r[2]),
            post=str(r[3]),
            phone=r[4],
            photo=r[5],
            duties=r[6],
            grid_code=grid_code,
            plan_id=pid,
        )
        for r in rows
    ]


def assign_staff(
    engine: Engine,
    *,
    grid_code: str,
    role: Literal["leader", "guide", "info_officer"] | str,
    post: Literal["A", "B"] | str = "A",
    staff_id: int | None = None,
    name: str | None = None,
    phone: str | None = None,
    photo: str | None = None,
    duties: str | None = None,
    plan_id: int | None = None,
) -> StaffPost:
    """Put a staff member at a post (role + A/B) of a grid, replacing whoever held it.

    Give ``staff_id`` for a known person (``name``/``phone``/``photo``/``duties``, when
    given, update that record), or ``name`` (and the rest) to create one.

    Raises
    ------
    InvalidInput
        Unknown role or post, or neither ``staff_id`` nor ``name``.
    NotFound
        Unknown grid, plan or staff id.
    """
    if role not in STAFF_ROLES:
        raise InvalidInput(
            f"role must be one of {', '.join(STAFF_ROLES)}, not {role!r}.", detail={"role": role}
        )
    if post not in STAFF_POSTS:
        raise InvalidInput(f"post must be A or B, not {post!r}.", detail={"post": post})
    if staff_id is None and not (name and name.strip()):
        raise InvalidInput("give a staff_id or the name of a new staff member.")
    with engine.begin() as conn:
        gid, pid = _grid_id(conn, grid_code, plan_id)
        town = conn.execute(
            text("SELECT town_code FROM plans WHERE id = :p"), {"p": pid}
        ).scalar_one()
        if staff_id is None:
            staff_id = int(
                conn.execute(
                    text(
                        "INSERT INTO staff (name, phone, photo, duties, town_code) "
                        "VALUES (:n, :ph, :pic, :d, :t) RETURNING id"
                    ),
                    {"n": name, "ph": phone, "pic": photo, "d": duties, "t": town},
                ).scalar_one()
            )
        else:
            found = conn.execute(
                text(
                    "UPDATE staff SET name = COALESCE(:n, name), phone = COALESCE(:ph, phone), "
                    "photo = COALESCE(:pic, photo), duties = COALESCE(:d, duties), "
                    "updated_at = now() WHERE id = :id RETURNING id"
                ),
                {"n": name, "ph": phone, "pic": photo, "d": duties, "id": staff_id},
            ).first()
            if found is None:
                raise NotFound(
                    f"staff member {staff_id} does not exist.", detail={"staff_id": staff_id}
                )
        conn.execute(
            text(
                "INSERT INTO staff_assignments (staff_id, grid_id, role, post) "
                "VALUES (:s, :g, :r, :p) ON CONFLICT (grid_id, role, post) "
                "DO UPDATE SET staff_id = EXCLUDED.staff_id, updated_at = now()"
            ),
            {"s": staff_id, "g": gid, "r": role, "p": post},
        )
        posts = grid_staff(conn, grid_code=grid_code, plan_id=pid)
    return next(p for p in posts if p.role == role and p.post == post)


# --------------------------------------------------------------------------- background jobs


JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass
class PlanJob:
    """A plan being created in the background (see :class:`PlanJobs`)."""

    id: str
    town_code: str
    status: JobStatus = "queued"
    done: int = 0
    total: int = 0
    village_code: str | None = None
    plan_id: int | None = None
    error: str | None = None
    error_type: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    finished_at: datetime | None = None


def job_error(exc: BaseException) -> tuple[str, str]:
    """``(code, description)`` reported for a failed job: clean, like every error body.

    A domain error keeps its class name and message; anything else (a database error
    whose message holds the SQL and its parameters, a bug) becomes ``InternalError``.

    >>> job_error(InvalidInput("target must be positive"))
    ('InvalidInput', 'target must be positive')
    >>> job_error(RuntimeError("SELECT secret"))[0]
    'InternalError'
    """
    if isinstance(exc, GeogridError):
        return type(exc).__name__, exc.message
    return "InternalError", "the plan could not be created: an unexpected error (logged)"


class PlanJobs:
    """Runs :func:`create_plan` in a worker thread and tracks progress by job id.

    The thread spends its time in the partitioner (a process pool when ``jobs`` is not 1)
    and in the database, never on the caller's event loop. Jobs live in memory: a
    restart forgets them (the plans they created stay).

    Parameters
    ----------
    engine
        Database engine.
    jobs
        Worker processes per plan (passed to :func:`create_plan`).
    workers
        Plans created at the same time.
    keep
        Finished jobs remembered.
    """

    def __init__(
        self, engine: Engine, *, jobs: int | None = None, workers: int = 1, keep: int = 200
    ) -> None:
        self.engine = engine
        self.jobs = jobs
        self.keep = keep
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plan-job")
        self._lock = threading.Lock()
        self._jobs: dict[str, PlanJob] = {}
        self._futures: dict[str, Future[None]] = {}

    def submit(self, town_code: str, **kwargs: Any) -> PlanJob:
        """Queue :func:`create_plan` for ``town_code`` (``kwargs`` as for it)."""
        job = PlanJob(id=uuid.uuid4().hex, town_code=town_code)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._futures[job.id] = self._pool.submit(self._run, job, kwargs)
        return self.get(job.id)

    def _run(self, job: PlanJob, kwargs: dict[str, Any]) -> None:
        def progress(done: int, total: int, code: str | None) -> None:
            with self._lock:
                job.done, job.total, job.village_code = done, total, code

        with self._lock:
            job.status = "running"
        try:
            plan_id = create_plan(
                self.engine, job.town_code, jobs=self.jobs, progress=progress, **kwargs
            )
        except Exception as exc:  # reported through the job, never lost
            error_type, error = job_error(exc)
            if isinstance(exc, GeogridError):
                log.warning("plan job %s failed: %s", job.id, exc.message)
            else:  # the message may hold SQL and its parameters: the log gets a summary
                log.error("plan job %s failed: %s", job.id, log_summary(exc))
            with self._lock:
                job.status = "failed"
                job.error, job.error_type = error, error_type
                job.finished_at = datetime.now().astimezone()
            return
        with self._lock:
            job.status = "done"
            job.plan_id = plan_id
            job.finished_at = datetime.now().astimezone()

    def get(self, job_id: str) -> PlanJob:
        """A snapshot of a job; :class:`NotFound` if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist.", detail={"job_id": job_id})
            return PlanJob(**asdict(job))

    def wait(self, job_id: str, timeout: float | None = None) -> PlanJob:
        """Block until a job finishes (tests, CLI); returns its final snapshot."""
        fut = self._futures.get(job_id)
        if fut is None:
            return self.get(job_id)
        fut.result(timeout=timeout)
        return self.get(job_id)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        for j in sorted(finished, key=lambda j: j.created_at)[: max(0, len(finished) - self.keep)]:
            self._jobs.pop(j.id, None)
            self._futures.pop(j.id, None)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop accepting jobs; wait for running ones by default."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
