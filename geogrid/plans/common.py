"""Shared pieces of the plan service: constants, value objects, ETags, parameters, JSON."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

from geogrid.errors import (
    Conflict,
)
from partition import (
    PartitionParams,
)

SRID = 4326
STAFF_ROLES = ("leader", "guide", "info_officer")
STAFF_POSTS = ("A", "B")

#: ``progress(done, total, village_code)``: called with ``(0, total, None)`` before the
#: first village and after each village (any order).
ProgressFn = Callable[[int, int, str | None], None]


class StaleVersion(Conflict):
    """The caller edited an older version of a plan than the stored one (ETag mismatch)."""


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
