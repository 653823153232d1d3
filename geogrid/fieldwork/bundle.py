"""The field app's offline bundle: what a grid worker's phone keeps of their own area.

One read, scoped in SQL to the principal's scope (``scope_key LIKE prefix || '%'``, as
:mod:`geogrid.people.service` does; row-level security repeats it) and audited as a read of
personal data: the grid boundaries of the active plan, the households as a list with the
head of household's name and phone masked (:mod:`geogrid.people.mask`; plain values are
never read into the bundle), key units and due inspection points (from
:mod:`geogrid.fieldwork.units` and :mod:`geogrid.fieldwork.inspections` when present), the
cases waiting for the worker (their inbox), the worker's own recent visits (for editing,
with their versions) and the lists the forms need (case categories, visit tags, inspection
templates).

Services of the other field modules are looked up when the bundle is built, so the bundle
grows with them; a module that is not there yet gives an empty list.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.cases.queries import inbox, list_categories
from geogrid.people.mask import mask_name

__all__ = ["MAX_CASES", "MAX_GRIDS", "MAX_HOUSEHOLDS", "build_bundle"]

log = logging.getLogger(__name__)

#: At most this many households, grids and cases go into one bundle (a grid worker's area
#: holds ~150 households; a town leader's far more, cut here and flagged ``truncated``).
MAX_HOUSEHOLDS = 3000
MAX_GRIDS = 300
MAX_CASES = 100
MAX_VISITS = 50
#: Grid outlines are simplified to about this many degrees (~2 m) and rounded to 6 decimals.
SIMPLIFY_DEGREES = 0.00002

_GRIDS_SQL = text(
    f"""
    SELECT g.code, g.name, g.village_code, g.households,
           ST_AsGeoJSON(ST_SimplifyPreserveTopology(g.geom, {SIMPLIFY_DEGREES}), 6) AS geometry
      FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
     WHERE g.level = 3 AND g.code LIKE :prefix || '%'
     ORDER BY g.code
     LIMIT :lim
    """
)

#: Households in scope with their head (户主) from the members register: the name is masked
#: in Python, the phone is stored masked; the register's own personal columns (head_name,
#: phone) are not readable by the web role and not read here.
_HOUSEHOLDS_SQL = text(
    """
    SELECT h.id, h.register_no, h.house_no, h.natural_village, h.members, h.village_code,
           h.grid_code, round(ST_X(h.geom)::numeric, 6) AS lon,
           round(ST_Y(h.geom)::numeric, 6) AS lat, head.name AS head_name,
           head.phone_masked AS head_phone
      FROM households h
      LEFT JOIN LATERAL (
            SELECT m.name, m.phone_masked FROM household_members m
             WHERE m.household_id = h.id
             ORDER BY (m.relation = '户主') DESC NULLS LAST, m.id LIMIT 1) head ON true
     WHERE h.scope_key LIKE :prefix || '%'
     ORDER BY h.grid_code NULLS LAST, h.register_no, h.id
     LIMIT :lim
    """
)


def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """``geogrid.fieldwork.<module>.<name>`` when that service exists yet, else None."""
    try:
        mod = importlib.import_module(f"geogrid.fieldwork.{module}")
    except ImportError:
        return None
    found = getattr(mod, name, None)
    return found if callable(found) else None


def _jsonable(items: Any) -> Any:
    """Pydantic models and dataclasses (lists of them) as JSON-ready values."""
    return TypeAdapter(Any).dump_python(items, mode="json")


def _households(conn: Connection, prefix: str) -> tuple[list[dict[str, Any]], bool]:
    rows = conn.execute(_HOUSEHOLDS_SQL, {"prefix": prefix, "lim": MAX_HOUSEHOLDS + 1}).all()
    out = [
        {
            "id": int(r.id),
            "register_no": r.register_no,
            "house_no": r.house_no,
            "natural_village": r.natural_village,
            "members": int(r.members),
            "village_code": r.village_code,
            "grid_code": r.grid_code,
            "lon": float(r.lon) if r.lon is not None else None,
            "lat": float(r.lat) if r.lat is not None else None,
            "head": mask_name(r.head_name),
            "phone": r.head_phone,  # phone_masked: stored masked, the plain one is sealed
        }
        for r in rows[:MAX_HOUSEHOLDS]
    ]
    return out, len(rows) > MAX_HOUSEHOLDS


def _grids(conn: Connection, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "code": r.code,
            "name": r.name,
            "village_code": r.village_code,
            "households": int(r.households),
            "geometry": json.loads(r.geometry) if r.geometry else None,
        }
        for r in conn.execute(_GRIDS_SQL, {"prefix": prefix, "lim": MAX_GRIDS}).all()
    ]


def _bbox(grids: list[dict[str, Any]], households: list[dict[str, Any]]) -> list[float] | None:
    """[west, south, east, north] around the grids (else the households), or None."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(coords: Any) -> None:
        if coords and isinstance(coords[0], (int, float)):
            xs.append(float(coords[0]))
            ys.append(float(coords[1]))
        else:
            for c in coords or ():
                walk(c)

    for g in grids:
        if g["geometry"]:
            walk(g["geometry"]["coordinates"])
    if not xs:
        for h in households:
            if h["lon"] is not None:
                xs.append(h["lon"])
                ys.append(h["lat"])
    if not xs:
        return None
    return [min(xs), min(ys), max(xs), max(ys)]


def _extras(conn: Connection, principal: Principal, ip: str | None) -> dict[str, Any]:
    """What the other field services give (empty lists until they exist)."""
    out: dict[str, Any] = {
        "key_units": [],
        "due_inspections": [],
        "inspection_templates": [],
        "visits": [],
        "visit_tags": [],
    }
    list_units = _optional("units", "list_units")
    if list_units is not None:
        out["key_units"] = _jsonable(list_units(conn, principal=principal, limit=200))
    due_points = _optional("inspections", "due_points")
    if due_points is not None:
        out["due_inspections"] = _jsonable(due_points(conn, principal=principal))
    templates = _optional("inspections", "templates")
    if templates is not None:
        out["inspection_templates"] = _jsonable(templates(conn))
    list_visits = _optional("visits", "list_visits")
    if list_visits is not None and principal.role in ("grid_worker", "village_leader"):
        visits, _ = list_visits(
            conn, principal=principal, worker_id=principal.user_id, limit=MAX_VISITS, ip=ip
        )
        out["visits"] = _jsonable(visits)
    tags = _optional("visits", "tags")
    if tags is not None:
        out["visit_tags"] = _jsonable(tags(conn))
    return out


def build_bundle(
    conn: Connection, *, principal: Principal, ip: str | None = None
) -> dict[str, Any]:
    """The offline bundle of ``principal``'s own area; the read is audited.

    Parameters
    ----------
    conn
        A connection in a transaction carrying the principal's row-level scope (the caller
        commits, which keeps the audit entry).
    principal
        The signed-in worker; everything is limited to ``principal.scope`` in SQL.
    ip
        The client's address, for the audit log.

    Returns
    -------
    dict
        ``generated_at``, ``user`` (username, role, scope), ``bbox``, ``grids`` (GeoJSON
        geometries), ``households`` (masked), ``truncated``, ``cases`` (the inbox),
        ``categories``, ``key_units``, ``due_inspections``, ``inspection_templates``,
        ``visits`` (one's own, with versions) and ``visit_tags``.
    """
    prefix = principal.scope.prefix
    grids = _grids(conn, prefix)
    households, truncated = _households(conn, prefix)
    cases, _ = inbox(conn, principal=principal, limit=MAX_CASES)
    categories = [
        {"code": c.code, "name": c.name, "name_en": c.name_en, "parent_code": c.parent_code}
        for c in list_categories(conn)
    ]
    bundle: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(),
        "user": {
            "username": principal.username,
            "role": str(principal.role),
            "scope": str(principal.scope),
        },
        "bbox": _bbox(grids, households),
        "grids": grids,
        "households": households,
        "truncated": truncated,
        "cases": _jsonable(cases),
        "categories": categories,
        **_extras(conn, principal, ip),
    }
    audit.record(
        conn,
        actor=principal,
        action="field.bundle",
        target_type="household",
        target_ids=[str(h["id"]) for h in households],
        ip=ip,
        detail={
            "households": len(households),
            "cases": len(cases),
            "grids": len(grids),
            "truncated": truncated,
        },
    )
    return bundle
