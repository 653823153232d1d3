"""Fire inspections: points and schedules, checklist templates, records, failed item → case.

**Schedules.** A point is inspected ``weekly``, ``monthly``, ``quarterly``, ``halfyearly``
or ``yearly``; a new point of a key unit takes its default from the unit's risk level
(:data:`RISK_SCHEDULE`: high → weekly, medium → monthly, low → quarterly). The next due
date is the last inspection (or the point's registration) plus the period — 7 days, or
whole months clipped to the month's end — moved forward to the next working day of the
working calendar (make-up working days count, holidays do not). A year the calendar does
not know is never guessed: ``next_due`` stays empty and ``due_problem`` says why, until
the year is declared (:func:`refresh_points`). Due state on day ``d``: ``overdue`` when
``next_due < d``, ``due`` when within :data:`SOON_DAYS`, ``ok`` after, ``unknown`` without.

**Records.** An inspection answers every item of the point's template (``pass``, ``fail``
or ``na``), may carry photos and the unit manager's signature (images in the file store,
by sha256), and is idempotent by its client-made ``client_id``. It is *on time* when made
on or before the due date it answered.

**Failed items.** A failed item opens one case of its fire-hazard category (消防隐患,
class ``03`` of the case dictionary; :func:`geogrid.cases.service.create_case`, source
``inspection``) and a link (``inspection_case_links``) — unless that item of that point
already has an open link, which the next inspection shows to re-check; a passed
re-check resolves the link (the case itself follows its own workflow).

**Completion rate** of a grid over a period: inspections that answered a due date in the
period and were on time ÷ (those inspections + points whose due date in the period has
passed without one). A late inspection is one cycle done late, not several missed.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Final, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.cases.calendar import CalendarUnknown, load_calendar
from geogrid.errors import Conflict, InvalidInput
from geogrid.fieldwork.checklists import templates
from geogrid.fieldwork.common import (
    area_filter,
    check_page,
    make_etag,
    scoped_row,
    stale,
    today_local,
)
from geogrid.fieldwork.filings import add_months, roll_forward
from geogrid.fieldwork.units import place

__all__ = [
    "RISK_SCHEDULE",
    "SCHEDULES",
    "PointCreate",
    "PointPublic",
    "PointUpdate",
    "create_point",
    "due_points",
    "get_point",
    "list_points",
    "next_due",
    "overdue_points",
    "record_inspection",
    "refresh_points",
    "templates",
    "update_point",
]

Schedule = Literal["weekly", "monthly", "quarterly", "halfyearly", "yearly"]
SCHEDULES: Final = ("weekly", "monthly", "quarterly", "halfyearly", "yearly")
_MONTHS: Final = {"monthly": 1, "quarterly": 3, "halfyearly": 6, "yearly": 12}
#: The default schedule of a key unit's point by the unit's risk level.
RISK_SCHEDULE: Final[dict[int, str]] = {3: "weekly", 2: "monthly", 1: "quarterly"}
SOON_DAYS: Final = 7
MAX_LIMIT: Final = 1000
SCOPE: Final = "(:scope_prefix = '' OR p.scope_key LIKE :scope_prefix || '%')"
_POINT_NO: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")


# --------------------------------------------------------------------------- due dates


def next_due(conn: Connection, schedule: str, basis: dt.date) -> dt.date:
    """The due date of the inspection after one on ``basis``; see the module docs.

    Raises
    ------
    CalendarUnknown
        The date falls in (or the roll-forward reaches) a year the calendar lacks.
    """
    if schedule == "weekly":
        nominal = basis + dt.timedelta(days=7)
    elif schedule in _MONTHS:
        nominal = add_months(basis, _MONTHS[schedule])
    else:
        raise InvalidInput(f"schedule must be one of {', '.join(SCHEDULES)}")
    return roll_forward(load_calendar(conn), nominal)


_STALE_POINTS = """
    SELECT p.id, p.schedule, coalesce(p.last_inspected, p.registered_on) AS basis
    FROM inspection_points p
    WHERE (p.due_cal IS DISTINCT FROM :v
           OR p.due_basis IS DISTINCT FROM coalesce(p.last_inspected, p.registered_on)
           OR p.due_schedule IS DISTINCT FROM p.schedule)
"""
#: One statement for every recomputed point (one layer-version bump, not one per row).
_SET_DUES = text(
    """
    UPDATE inspection_points p SET next_due = v.due, due_problem = v.problem, due_cal = :v,
           due_basis = v.basis, due_schedule = v.schedule
    FROM unnest(CAST(:ids AS bigint[]), CAST(:dues AS date[]), CAST(:problems AS text[]),
                CAST(:bases AS date[]), CAST(:schedules AS text[]))
         AS v(id, due, problem, basis, schedule)
    WHERE p.id = v.id
    """
)


def refresh_points(conn: Connection, point_id: int | None = None) -> int:
    """Recompute ``next_due`` where it was computed from another calendar version, last
    inspection or schedule (or never: points loaded by import). Returns how many."""
    cal = load_calendar(conn)
    sql = _STALE_POINTS + (" AND p.id = :id" if point_id is not None else "")
    rows = conn.execute(text(sql), {"v": cal.version, "id": point_id}).all()
    if not rows:
        return 0
    dues: list[dt.date | None] = []
    problems: list[str | None] = []
    for r in rows:
        try:
            dues.append(next_due(conn, r.schedule, r.basis))
            problems.append(None)
        except CalendarUnknown as exc:
            dues.append(None)
            problems.append(exc.message)
    conn.execute(
        _SET_DUES,
        {"v": cal.version, "ids": [r.id for r in rows], "dues": dues, "problems": problems,
         "bases": [r.basis for r in rows], "schedules": [r.schedule for r in rows]},
    )  # fmt: skip
    return len(rows)


def _state(due: dt.date | None, today: dt.date) -> str:
    if due is None:
        return "unknown"
    if due < today:
        return "overdue"
    return "due" if due <= today + dt.timedelta(days=SOON_DAYS) else "ok"


# --------------------------------------------------------------------------- points


class Recheck(BaseModel):
    """A failed item whose case is open: the next inspection checks it again."""

    item: str
    label: str | None
    case_id: int
    case_no: str
    case_status: str
    found_at: dt.datetime


class PointPublic(BaseModel):
    """An inspection point with its schedule and due state."""

    id: int
    point_no: str
    name: str
    lon: float
    lat: float
    schedule: str
    template_code: str
    key_unit_id: int | None
    village_code: str | None
    grid_code: str | None
    last_inspected: dt.date | None
    next_due: dt.date | None
    due_problem: str | None
    due_state: str
    version: int
    etag: str
    recheck: list[Recheck] = Field(default_factory=list)


class PointCreate(BaseModel):
    point_no: str | None = Field(default=None, max_length=32, description="default: P + id")
    name: str = Field(min_length=1, max_length=100)
    lon: float
    lat: float
    key_unit_id: int | None = Field(default=None, ge=1, le=2**62)
    schedule: Schedule | None = Field(default=None, description="default: by risk level")
    template_code: str | None = Field(default=None, max_length=32)


class PointUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    schedule: Schedule | None = None
    template_code: str | None = Field(default=None, max_length=32)
    lon: float | None = None
    lat: float | None = None


_POINT = """
SELECT p.id, p.point_no, p.name, ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat, p.schedule,
       coalesce(p.template_code, 'general') AS template_code, p.key_unit_id, p.village_code,
       p.grid_code, p.last_inspected, p.next_due, p.due_problem, p.version
FROM inspection_points p
"""


def _point(r: Any, today: dt.date, recheck: list[Recheck] | None = None) -> PointPublic:
    return PointPublic(
        id=int(r.id), point_no=r.point_no, name=r.name, lon=float(r.lon), lat=float(r.lat),
        schedule=r.schedule, template_code=r.template_code, key_unit_id=r.key_unit_id,
        village_code=r.village_code, grid_code=r.grid_code, last_inspected=r.last_inspected,
        next_due=r.next_due, due_problem=r.due_problem, due_state=_state(r.next_due, today),
        version=int(r.version), etag=make_etag("inspection_point", int(r.id), int(r.version)),
        recheck=recheck or [],
    )  # fmt: skip


def _rechecks(conn: Connection, point_ids: list[int]) -> dict[int, list[Recheck]]:
    out: dict[int, list[Recheck]] = {i: [] for i in point_ids}
    if not point_ids:
        return out
    rows = conn.execute(
        text(
            """
            -- from the open links only (by index), each looked up by key: a join to cases
            -- let the planner scan all cases for a list with no open link at all
            SELECT l.point_id, l.item_code, l.case_id, l.created_at, c.case_no, c.status,
                   (SELECT i->>'label' FROM inspection_records r
                    JOIN inspection_templates t ON t.code = r.template_code,
                    jsonb_array_elements(t.items) i
                    WHERE r.id = l.record_id AND i->>'code' = l.item_code LIMIT 1) AS label
            FROM inspection_case_links l
            CROSS JOIN LATERAL (SELECT c.case_no, c.status FROM cases c WHERE c.id = l.case_id) c
            WHERE l.status = 'open' AND l.point_id = ANY(:ids) ORDER BY l.point_id, l.id
            """
        ),
        {"ids": point_ids},
    ).all()
    for r in rows:
        out[int(r.point_id)].append(
            Recheck(
                item=r.item_code,
                label=r.label,
                case_id=int(r.case_id),
                case_no=r.case_no,
                case_status=r.status,
                found_at=r.created_at,
            )
        )
    return out


def point_row(conn: Connection, principal: Principal, point_id: int, lock: bool = False) -> Any:
    """The row of a point in scope (:class:`NotFound` otherwise)."""
    return scoped_row(
        conn, _POINT, "p", point_id, principal.scope.prefix, what="inspection point", lock=lock
    )


def get_point(
    conn: Connection, *, principal: Principal, point_id: int, today: dt.date | None = None
) -> PointPublic:
    """One point in scope with its due state and the failed items to re-check."""
    refresh_points(conn, point_id)
    row = point_row(conn, principal, point_id)
    return _point(row, today or today_local(), _rechecks(conn, [point_id])[point_id])


def _listed(
    conn: Connection, principal: Principal, where: list[str], params: dict[str, Any],
    grid: str | None, limit: int, offset: int, order: str, today: dt.date,
) -> list[PointPublic]:  # fmt: skip
    check_page(limit, offset, MAX_LIMIT)
    refresh_points(conn)
    area = area_filter(grid)
    conds = [SCOPE, *where]
    if area is not None:
        conds.append("p.scope_key LIKE :area || '%'")
    rows = conn.execute(
        text(f"{_POINT} WHERE {' AND '.join(conds)} ORDER BY {order} LIMIT :lim OFFSET :off"),
        {**params, "scope_prefix": principal.scope.prefix, "area": area, "lim": limit,
         "off": offset, "today": today},
    ).all()  # fmt: skip
    checks = _rechecks(conn, [int(r.id) for r in rows])
    return [_point(r, today, checks[int(r.id)]) for r in rows]


def list_points(
    conn: Connection,
    *,
    principal: Principal,
    grid: str | None = None,
    state: str | None = None,
    today: dt.date | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[PointPublic]:
    """Points in scope (optionally of one area, or in one due state), by point number."""
    day = today or today_local()
    where: list[str] = []
    if state is not None:
        cond = {
            "overdue": "p.next_due < :today",
            "due": "p.next_due BETWEEN :today AND :today + :soon",
            "ok": "p.next_due > :today + :soon",
            "unknown": "p.next_due IS NULL",
        }.get(state)
        if cond is None:
            raise InvalidInput("state must be overdue, due, ok or unknown")
        where.append(cond)
    return _listed(conn, principal, where, {"soon": SOON_DAYS}, grid, limit, offset,
                   "p.point_no", day)  # fmt: skip


def due_points(
    conn: Connection,
    *,
    principal: Principal,
    grid: str | None = None,
    within_days: int = 7,
    today: dt.date | None = None,
    limit: int = 500,
) -> list[PointPublic]:
    """Points due within ``within_days`` (overdue ones included), soonest first, each with
    the failed items its next inspection must re-check (the field app's work list)."""
    if not 0 <= within_days <= 366:
        raise InvalidInput("within_days must be between 0 and 366")
    day = today or today_local()
    return _listed(conn, principal, ["p.next_due <= :today + :within"], {"within": within_days},
                   grid, limit, 0, "p.next_due, p.id", day)  # fmt: skip


def overdue_points(
    conn: Connection,
    *,
    principal: Principal,
    grid: str | None = None,
    today: dt.date | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[PointPublic]:
    """Points past their due date in scope, by grid then due date."""
    day = today or today_local()
    return _listed(conn, principal, ["p.next_due < :today"], {}, grid, limit, offset,
                   "p.scope_key, p.next_due, p.id", day)  # fmt: skip


def _template_code(conn: Connection, code: str | None) -> str | None:
    if code is None:
        return None
    if not conn.execute(
        text("SELECT 1 FROM inspection_templates WHERE code = :c AND active"), {"c": code}
    ).first():
        raise InvalidInput(f"unknown checklist template {code[:32]!r}: see GET .../templates")
    return code


def create_point(
    conn: Connection, *, principal: Principal, body: PointCreate, ip: str | None = None
) -> PointPublic:
    """Register an inspection point in scope (the caller checked ``unit.write``)."""
    name = body.name.strip()
    if not name or any(ord(c) < 32 for c in name):
        raise InvalidInput("name has 1–100 printable characters")
    if body.point_no is not None and not _POINT_NO.fullmatch(body.point_no):
        raise InvalidInput("point_no has 1–32 letters, digits, - or _")
    schedule: str | None = body.schedule
    template = _template_code(conn, body.template_code)
    if body.key_unit_id is not None:
        unit = conn.execute(
            text(
                "SELECT u.risk_level, u.unit_type FROM key_units u WHERE u.id = :u AND "
                "(:scope_prefix = '' OR u.scope_key LIKE :scope_prefix || '%')"
            ),
            {"u": body.key_unit_id, "scope_prefix": principal.scope.prefix},
        ).one_or_none()
        if unit is None:
            raise InvalidInput(f"no key unit {body.key_unit_id} in your scope")
        schedule = schedule or RISK_SCHEDULE[int(unit.risk_level)]
        if template is None:
            template = conn.execute(
                text(
                    "SELECT code FROM inspection_templates WHERE active AND :t = ANY(unit_types) "
                    "ORDER BY code LIMIT 1"
                ),
                {"t": unit.unit_type},
            ).scalar_one_or_none()
    x, y, village, grid = place(conn, principal, "unit.write", body.lon, body.lat)
    number = body.point_no or f"tmp-{uuid.uuid4().hex[:24]}"
    point_id = conn.execute(
        text(
            "INSERT INTO inspection_points (point_no, name, geom, schedule, key_unit_id, "
            "village_code, grid_code, template_code) VALUES (:no, :n, "
            "ST_SetSRID(ST_MakePoint(:x, :y), 4326), :s, :u, :v, :g, :t) "
            "ON CONFLICT (point_no) DO NOTHING RETURNING id"
        ),
        {"no": number, "n": name, "x": x, "y": y, "s": schedule or "monthly",
         "u": body.key_unit_id, "v": village, "g": grid, "t": template or "general"},
    ).scalar_one_or_none()  # fmt: skip
    if point_id is None:
        raise Conflict(f"point number {number} is taken")
    if body.point_no is None:
        conn.execute(
            text("UPDATE inspection_points SET point_no = 'P' || lpad(id::text, 6, '0') "
                 "WHERE id = :i"),
            {"i": point_id},
        )  # fmt: skip
    audit.record(
        conn, actor=principal, action="unit.write", target_type="inspection_point",
        target_ids=[str(point_id)], ip=ip, detail={"op": "create"},
    )  # fmt: skip
    return get_point(conn, principal=principal, point_id=int(point_id))


def update_point(
    conn: Connection,
    *,
    principal: Principal,
    point_id: int,
    expected_version: int,
    body: PointUpdate,
    ip: str | None = None,
) -> PointPublic:
    """Change a point's name, schedule, template or position based on
    ``expected_version`` (:class:`StaleVersion` with the current point otherwise)."""
    row = point_row(conn, principal, point_id, lock=True)
    if int(row.version) != expected_version:
        raise stale("inspection_point", point_id, expected_version,
                    get_point(conn, principal=principal, point_id=point_id))  # fmt: skip
    sets: dict[str, Any] = {}
    if body.name is not None:
        if not body.name.strip() or any(ord(c) < 32 for c in body.name):
            raise InvalidInput("name has 1–100 printable characters")
        sets["name"] = body.name.strip()
    if body.schedule is not None:
        sets["schedule"] = body.schedule
    if body.template_code is not None:
        sets["template_code"] = _template_code(conn, body.template_code)
    geo = ""
    if body.lon is not None or body.lat is not None:
        x, y, village, grid = place(
            conn, principal, "unit.write",
            body.lon if body.lon is not None else row.lon,
            body.lat if body.lat is not None else row.lat,
        )  # fmt: skip
        geo = ", geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326), village_code = :v, grid_code = :g"
        sets.update(x=x, y=y, v=village, g=grid)
    assign = "".join(f", {k} = :{k}" for k in ("name", "schedule", "template_code") if k in sets)
    conn.execute(
        text(
            f"UPDATE inspection_points SET version = version + 1, updated_at = now()"
            f"{assign}{geo} WHERE id = :id"
        ),
        {**sets, "id": point_id},
    )
    audit.record(
        conn, actor=principal, action="unit.write", target_type="inspection_point",
        target_ids=[str(point_id)], ip=ip, detail={"op": "update", "fields": sorted(sets)},
    )  # fmt: skip
    return get_point(conn, principal=principal, point_id=point_id)


def record_inspection(
    conn: Connection,
    *,
    principal: Principal,
    client_id: uuid.UUID | None,
    body: Any,
    ip: str | None = None,
) -> Any:
    """Record an inspection: :func:`geogrid.fieldwork.inspection_records.record_inspection`
    (here too, where the field app looks for it)."""
    from geogrid.fieldwork.inspection_records import record_inspection as record

    return record(conn, principal=principal, client_id=client_id, body=body, ip=ip)
