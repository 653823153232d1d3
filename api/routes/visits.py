"""Visit logs (民情日志), the visit plan and coverage, special-population follow-ups.

``/api/visits``: record (idempotent on ``client_id``), list, read (``ETag``) and edit
(``If-Match``: 428 without, 412 with ``detail.current`` when stale) visits; the need-tag
dictionary; the plan's rules; coverage per grid and per worker, households never visited
and households due now (formulas: :mod:`geogrid.fieldwork.coverage`); the coverage layer
(numbers per grid, no personal data).

``/api/followups``: special-population follow-ups on the working calendar (needs the
``special`` permission): record one (idempotent), the due and overdue list, one record's
schedule and history, the intervals per risk level.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from api.auth import CredentialsDep, ScopedConnDep, allow, check_layer, client_ip, require
from api.schemas import ErrorPublic
from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.errors import InvalidInput
from geogrid.fieldwork import coverage, followups, visit_lists, visits
from geogrid.people import service as people
from geogrid.plans import StaleVersion

T = TypeVar("T")
router = APIRouter(prefix="/api/visits", tags=["visits"])
followups_router = APIRouter(prefix="/api/followups", tags=["followups"])

ReadDep = Annotated[Principal | None, Depends(allow("visit.read"))]
WriteDep = Annotated[Principal | None, Depends(allow("visit.write"))]
AdminDep = Annotated[Principal | None, Depends(allow("visit.admin"))]
SpecialReadDep = Annotated[Principal | None, Depends(allow("special.read"))]
SpecialWriteDep = Annotated[Principal | None, Depends(allow("special.write"))]
Limit = Annotated[int, Query(ge=1, le=visits.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
RowId = Annotated[int, Path(ge=1, le=2**62)]
Area = Annotated[
    str | None,
    Query(pattern=r"^(\d{12}|\d{15})$", description="a town, village or grid code in scope"),
]
PeriodQ = Annotated[
    str | None,
    Query(max_length=10, description="2026, 2026-07, 2026-Q3 or 2026-H2 (default: this quarter)"),
]

_PRECONDITION: dict[int | str, dict[str, Any]] = {
    412: {"model": ErrorPublic, "description": "If-Match names an older version; "
          "detail.current is the visit as it is now."},
    428: {"model": ErrorPublic, "description": "If-Match is missing."},
}  # fmt: skip


class VisitCreateRequest(visits.VisitCreate):
    """A new visit; ``client_id`` (a UUID made by the client) makes sending it twice safe."""

    client_id: uuid.UUID | None = None


class Page(BaseModel, Generic[T]):
    """One page of a list, with the total count."""

    items: list[T]
    total: int
    limit: int
    offset: int


class CoverageReport(BaseModel):
    """Coverage per grid for a period (formulas in the operation's description)."""

    period_from: dt.date
    period_to: dt.date
    items: list[coverage.AreaCoverage]


class WorkerReport(BaseModel):
    period_from: dt.date
    period_to: dt.date
    items: list[visit_lists.WorkerCoverage]


class Tag(BaseModel):
    code: str
    name_en: str


class RuleSet(BaseModel):
    area_code: str = Field(
        default="",
        pattern=r"^(|\d{12}|\d{15})$",
        description="'' everywhere, else a town, village or grid code",
    )
    kind: Literal["household", "special"]
    period_months: int = Field(ge=1, le=12)


class FollowupRequest(followups.FollowupCreate):
    """A follow-up; ``client_id`` makes sending it twice safe."""

    client_id: uuid.UUID | None = None


class RecordSchedule(BaseModel):
    """One record's schedule and its follow-ups, newest first."""

    schedule: followups.DueRecord
    followups: list[people.Followup]


class IntervalSet(BaseModel):
    working_days: int = Field(ge=1, le=followups.MAX_DAYS)


def _period(
    period: str | None, date_from: dt.date | None, date_to: dt.date | None
) -> coverage.Period:
    if period and (date_from or date_to):
        raise InvalidInput("give a period or from/to, not both")
    if date_from or date_to:
        if not (date_from and date_to):
            raise InvalidInput("give both from and to")
        return coverage.Period(date_from, date_to)
    return coverage.Period.parse(period) if period else coverage.Period.current_quarter()


def _with_etag(conn: Connection, response: Response, visit: visits.Visit) -> visits.Visit:
    conn.commit()
    response.headers["ETag"] = visit.etag
    return visit


# --------------------------------------------------------------------------- visits


@router.post("", response_model=visits.Visit, status_code=201,
             responses={200: {"model": visits.Visit, "description": "Sent before: the visit "
                              "that client_id created"}})  # fmt: skip
def create_visit(
    request: Request,
    body: VisitCreateRequest,
    response: Response,
    principal: WriteDep,
    conn: ScopedConnDep,
) -> visits.Visit:
    """Record a visit to a household or key unit in your scope (you are the worker).
    201 when created; 200 with the same visit when ``client_id`` was sent before."""
    made = visits.record_visit(
        conn, principal=require(principal), client_id=body.client_id,
        body=visits.VisitCreate(**body.model_dump(exclude={"client_id"})), ip=client_ip(request),
    )  # fmt: skip
    if not made.created:
        response.status_code = 200
    return _with_etag(conn, response, made)


@router.get("", response_model=Page[visits.Visit])
def list_visits(
    request: Request,
    principal: ReadDep,
    conn: ScopedConnDep,
    household_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    key_unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    area: Area = None,
    worker_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    follow_up: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[visits.Visit]:
    """Visits in your scope, newest first (people met masked)."""
    items, total = visits.list_visits(
        conn, principal=require(principal), household_id=household_id, key_unit_id=key_unit_id,
        area=area, worker_id=worker_id, date_from=date_from, date_to=date_to,
        follow_up=follow_up, limit=limit, offset=offset, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return Page[visits.Visit](items=items, total=total, limit=limit, offset=offset)


@router.get("/tags", response_model=list[Tag])
def list_tags(principal: ReadDep, conn: ScopedConnDep) -> list[dict[str, Any]]:
    """The need-tag dictionary (低保, 残疾, 就业, 医疗, 矛盾 …)."""
    return visits.tags(conn)


@router.get("/rules", response_model=list[coverage.Rule])
def list_rules(principal: ReadDep, conn: ScopedConnDep) -> list[coverage.Rule]:
    """The visit plan: one visit at least every ``period_months`` months, per area and kind
    (the longest matching area wins; special-population households take the shorter)."""
    return coverage.list_rules(conn)


@router.put("/rules", response_model=coverage.Rule)
def set_rule(body: RuleSet, principal: AdminDep, conn: ScopedConnDep) -> coverage.Rule:
    """Create or change the rule of an area in your scope ('' everywhere: all-area admins)."""
    rule = coverage.set_rule(
        conn, principal=require(principal), area_code=body.area_code, kind=body.kind,
        period_months=body.period_months,
    )  # fmt: skip
    conn.commit()
    return rule


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: RowId, principal: AdminDep, conn: ScopedConnDep) -> Response:
    """Remove an area's rule (the general rules stay)."""
    coverage.delete_rule(conn, principal=require(principal), rule_id=rule_id)
    conn.commit()
    return Response(status_code=204)


_FORMULAS = (coverage.__doc__ or "").split("**Per grid**", 1)[-1]


@router.get("/coverage", response_model=CoverageReport, description=(
    "Coverage per grid (or village without an active plan) in your scope for a period.\n\n"
    "**Per grid**" + _FORMULAS
))  # fmt: skip
def coverage_by_area(
    principal: ReadDep,
    conn: ScopedConnDep,
    period: PeriodQ = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    area: Area = None,
) -> CoverageReport:
    p = _period(period, date_from, date_to)
    items = coverage.by_area(conn, principal=require(principal), period=p, area=area)
    conn.commit()  # the figures computed afresh are kept for the next call
    return CoverageReport(period_from=p.start, period_to=p.end, items=items)


@router.get("/coverage/workers", response_model=WorkerReport)
def coverage_by_worker(
    principal: ReadDep,
    conn: ScopedConnDep,
    period: PeriodQ = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    area: Area = None,
) -> WorkerReport:
    """Coverage per worker: what each recorded, and the plan figures of the households in
    their scope (see GET /api/visits/coverage for the formulas)."""
    p = _period(period, date_from, date_to)
    items = visit_lists.by_worker(conn, principal=require(principal), period=p, area=area)
    conn.commit()  # the figures computed afresh are kept for the next call
    return WorkerReport(period_from=p.start, period_to=p.end, items=items)


@router.get("/coverage/never", response_model=Page[visit_lists.NeverVisited])
def never_visited(
    request: Request,
    principal: ReadDep,
    conn: ScopedConnDep,
    ever: bool = False,
    period: PeriodQ = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    area: Area = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[visit_lists.NeverVisited]:
    """Households in your scope never visited in the period (``ever=true``: never at all)."""
    p = None if ever else _period(period, date_from, date_to)
    items, total = visit_lists.never_visited(
        conn, principal=require(principal), period=p, area=area, limit=limit, offset=offset,
        ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return Page[visit_lists.NeverVisited](items=items, total=total, limit=limit, offset=offset)


@router.get("/coverage/due", response_model=Page[visit_lists.DueHousehold])
def due_now(
    request: Request,
    principal: ReadDep,
    conn: ScopedConnDep,
    area: Area = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[visit_lists.DueHousehold]:
    """Households whose current plan window has no visit yet, soonest due first."""
    items, total = visit_lists.due_households(
        conn, principal=require(principal), area=area, limit=limit, offset=offset,
        ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return Page[visit_lists.DueHousehold](items=items, total=total, limit=limit, offset=offset)


#: Colour classes of the coverage layer (lower bound of coverage, colour, meaning).
CLASSES = (
    (0.9, "#1a9850", "≥ 90%"),
    (0.6, "#91cf60", "60–90%"),
    (0.3, "#fee08b", "30–60%"),
    (0.0, "#d73027", "< 30%"),
)


@router.get(
    "/coverage/layer",
    dependencies=[Depends(allow("layer.read"))],
    response_class=Response,
    responses={200: {"description": "GeoJSON", "content": {"application/geo+json": {}}}},
)
def coverage_layer(
    request: Request,
    creds: CredentialsDep,
    period: PeriodQ = None,
    area: Area = None,
) -> Response:
    """Visit coverage per basic grid of the active plans as GeoJSON: numbers only (no
    household, name or visit), coloured by class (``legend`` says what each colour
    means). Anonymous users only when the ``visit_coverage`` layer is public."""
    check_layer(request, creds, "visit_coverage")
    p = _period(period, None, None)
    with request.app.state.engine.connect() as conn:
        rls.apply(conn, LAYER_PRINCIPAL)  # counts over every area; nothing personal leaves
        body = _layer(conn, p, area)
        conn.commit()
    return JSONResponse(body, media_type="application/geo+json")


def _layer(conn: Connection, p: coverage.Period, area: str | None) -> dict[str, Any]:
    rows = {
        a.area_code: a
        for a in coverage.by_area(conn, principal=LAYER_PRINCIPAL, period=p, area=area)
    }
    prefix = visits.area_prefix(area) if area else ""
    grids = conn.execute(
        text(
            "SELECT g.code, g.name, ST_AsGeoJSON(g.geom, 6) AS geom FROM grids g "
            "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
            "WHERE g.level = 3 AND g.geom IS NOT NULL AND g.code LIKE :p || '%' ORDER BY g.code"
        ),
        {"p": prefix},
    ).all()
    features = []
    for g in grids:
        a = rows.get(g.code)
        share = a.coverage if a else None
        colour = next((c for lo, c, _ in CLASSES if share is not None and share >= lo), "#bdbdbd")
        props = {
            "code": g.code, "name": g.name, "households": a.households if a else 0,
            "visited": a.visited if a else 0, "coverage": share,
            "due": a.due if a else 0, "done": a.done if a else 0,
            "plan_rate": a.plan_rate if a else None, "colour": colour,
        }  # fmt: skip
        features.append({"type": "Feature", "geometry": json.loads(g.geom), "properties": props})
    return {
        "type": "FeatureCollection",
        "period": {"from": p.start.isoformat(), "to": p.end.isoformat()},
        "legend": [{"colour": c, "label": f"走访覆盖率 {label}"} for _, c, label in CLASSES]
        + [{"colour": "#bdbdbd", "label": "无住户"}],
        "features": features,
    }


#: Who the coverage layer counts as: every area, no extra permission (numbers only, so
#: special-population households count on the household rule).
LAYER_PRINCIPAL = Principal(0, "coverage-layer", Role.viewer, Scope("all"))


@router.get("/{visit_id}", response_model=visits.Visit, responses={304: {"description": "Same"}})
def get_visit(
    request: Request,
    visit_id: RowId,
    response: Response,
    principal: ReadDep,
    conn: ScopedConnDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> visits.Visit | Response:
    """One visit in your scope; ``ETag`` names its version."""
    visit = visits.get_visit(
        conn, principal=require(principal), visit_id=visit_id, ip=client_ip(request)
    )
    conn.commit()
    if if_none_match and visit.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": visit.etag})
    response.headers["ETag"] = visit.etag
    return visit


@router.patch("/{visit_id}", response_model=visits.Visit, responses=_PRECONDITION)
def edit_visit(
    request: Request,
    visit_id: RowId,
    body: visits.VisitUpdate,
    response: Response,
    principal: WriteDep,
    conn: ScopedConnDep,
    if_match: Annotated[str | None, Header()] = None,
) -> visits.Visit | JSONResponse:
    """Change a visit you wrote (``If-Match`` with its ETag required)."""
    if not if_match:
        return JSONResponse(
            status_code=428,
            content={
                "code": "PreconditionRequired",
                "description": f"send If-Match with the ETag of GET /api/visits/{visit_id}",
            },
        )
    version = visits.parse_etag(if_match, visit_id)
    if version is None:
        raise StaleVersion(
            f"If-Match {if_match[:40]!r} is not an ETag of visit {visit_id}; reload it",
            detail={"detail": {"current": None}},
        )
    visit = visits.update_visit(
        conn, principal=require(principal), visit_id=visit_id, expected_version=version,
        body=body, ip=client_ip(request),
    )  # fmt: skip
    return _with_etag(conn, response, visit)


# --------------------------------------------------------------------------- follow-ups


@followups_router.post("", response_model=followups.FollowupSaved, status_code=201)
def record_followup(
    request: Request,
    body: FollowupRequest,
    response: Response,
    principal: SpecialWriteDep,
    conn: ScopedConnDep,
) -> followups.FollowupSaved:
    """Record a follow-up of a special-population record in your scope; the next due day
    follows the record's risk level on the working calendar. 200 when ``client_id`` was
    sent before (the same follow-up)."""
    made = followups.record_followup(
        conn, principal=require(principal), client_id=body.client_id,
        body=followups.FollowupCreate(**body.model_dump(exclude={"client_id"})),
        ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    if not made.created:
        response.status_code = 200
    return made


@followups_router.get("/due", response_model=Page[followups.DueRecord])
def due_followups(
    request: Request,
    principal: SpecialReadDep,
    conn: ScopedConnDep,
    area: Area = None,
    within_days: Annotated[int, Query(ge=0, le=366)] = 0,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[followups.DueRecord]:
    """Records due within ``within_days`` (0: due today or overdue), never followed first."""
    items, total = followups.due_records(
        conn, principal=require(principal), area=area, within_days=within_days, limit=limit,
        offset=offset, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return Page[followups.DueRecord](items=items, total=total, limit=limit, offset=offset)


@followups_router.get("/records/{record_id}", response_model=RecordSchedule)
def record_schedule(
    request: Request, record_id: RowId, principal: SpecialReadDep, conn: ScopedConnDep
) -> RecordSchedule:
    """One record's schedule (risk level, interval, next due) and follow-ups."""
    who = require(principal)
    history = people.list_followups(conn, principal=who, record_id=record_id, ip=client_ip(request))
    items, _ = followups.due_records(
        conn, principal=who, record_id=record_id, within_days=None, limit=1,
        ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return RecordSchedule(schedule=items[0], followups=history)


@followups_router.get("/rules", response_model=list[followups.FollowupRule])
def followup_rules(principal: SpecialReadDep, conn: ScopedConnDep) -> list[followups.FollowupRule]:
    """The follow-up interval per risk level, in working days."""
    return followups.list_rules(conn)


@followups_router.put("/rules/{risk_level}", response_model=followups.FollowupRule)
def set_followup_rule(
    risk_level: Annotated[str, Path(pattern="^(低|中|高)$")],
    body: IntervalSet,
    principal: AdminDep,
    conn: ScopedConnDep,
) -> followups.FollowupRule:
    """Change the interval of a risk level (administrators of every area)."""
    rule = followups.set_rule(
        conn, principal=require(principal), risk_level=risk_level,
        working_days=body.working_days,
    )  # fmt: skip
    conn.commit()
    return rule
