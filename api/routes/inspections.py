"""Fire inspections: points and schedules, due and overdue lists, checklist templates,
records (idempotent by ``client_id``; a failed item opens a fire-hazard case), completion
rates per grid. Services: :mod:`geogrid.fieldwork.inspections` and its companions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import Connection

from api.auth import ScopedConnDep, allow, client_ip, require
from api.routes.units import (
    CONFLICT,
    PRECONDITION,
    AsOf,
    IfMatch,
    expected_version,
    precondition_required,
)
from api.schemas import ErrorPublic
from geogrid.access.policy import Principal
from geogrid.errors import Forbidden
from geogrid.fieldwork import checklists, inspection_records, inspections

router = APIRouter(prefix="/api/inspections", tags=["fire inspections"])

ReadDep = Annotated[Principal | None, Depends(allow("inspection.read"))]
RecordDep = Annotated[Principal | None, Depends(allow("inspection.record"))]
AdminDep = Annotated[Principal | None, Depends(allow("inspection.admin"))]
WriteDep = Annotated[Principal | None, Depends(allow("unit.write"))]
PointId = Annotated[int, Path(ge=1, le=2**62)]
Area = Annotated[str | None, Query(pattern=r"^(\d{12}|\d{15})$", description="town/village/grid")]
Limit = Annotated[int, Query(ge=1, le=inspections.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


class InspectionSend(inspection_records.InspectionCreate):
    """An inspection with the client-made id that makes sending it twice harmless."""

    client_id: uuid.UUID | None = Field(default=None, description="outbox id (idempotency key)")


def _point(
    conn: Connection, response: Response, point: inspections.PointPublic
) -> inspections.PointPublic:
    conn.commit()
    response.headers["ETag"] = point.etag
    return point


@router.get("/points", response_model=list[inspections.PointPublic])
def list_points(
    principal: ReadDep,
    conn: ScopedConnDep,
    grid: Area = None,
    state: Annotated[str | None, Query(pattern="^(overdue|due|ok|unknown)$")] = None,
    as_of: AsOf = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[inspections.PointPublic]:
    """Inspection points in your scope with their schedule and due state."""
    found = inspections.list_points(
        conn, principal=require(principal), grid=grid, state=state, today=as_of, limit=limit,
        offset=offset,
    )  # fmt: skip
    conn.commit()
    return found


@router.post("/points", response_model=inspections.PointPublic, status_code=201, responses=CONFLICT)
def create_point(
    request: Request, body: inspections.PointCreate, response: Response, principal: WriteDep,
    conn: ScopedConnDep,
) -> inspections.PointPublic:  # fmt: skip
    """Register an inspection point (schedule by the key unit's risk level unless given)."""
    made = inspections.create_point(
        conn, principal=require(principal), body=body, ip=client_ip(request)
    )
    return _point(conn, response, made)


@router.get("/points/{point_id}", response_model=inspections.PointPublic)
def get_point(
    point_id: PointId, response: Response, principal: ReadDep, conn: ScopedConnDep,
    as_of: AsOf = None,
) -> inspections.PointPublic:  # fmt: skip
    """One point with its due state and the failed items its next inspection re-checks."""
    point = inspections.get_point(
        conn, principal=require(principal), point_id=point_id, today=as_of
    )
    return _point(conn, response, point)


@router.patch("/points/{point_id}", response_model=inspections.PointPublic, responses=PRECONDITION)
def update_point(
    request: Request, point_id: PointId, body: inspections.PointUpdate, response: Response,
    principal: WriteDep, conn: ScopedConnDep, if_match: IfMatch = None,
) -> inspections.PointPublic | JSONResponse:  # fmt: skip
    """Change a point's name, schedule, checklist or position (If-Match required)."""
    if not if_match:
        return precondition_required(f"GET /api/inspections/points/{point_id}")
    made = inspections.update_point(
        conn, principal=require(principal), point_id=point_id, body=body, ip=client_ip(request),
        expected_version=expected_version(if_match, "inspection_point", point_id),
    )  # fmt: skip
    return _point(conn, response, made)


@router.get("/points/{point_id}/records", response_model=list[inspection_records.RecordPublic])
def point_records(
    point_id: PointId,
    principal: ReadDep,
    conn: ScopedConnDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[inspection_records.RecordPublic]:
    """A point's inspections, newest first."""
    return inspection_records.list_records(
        conn, principal=require(principal), point_id=point_id, limit=limit
    )


@router.get("/due", response_model=list[inspections.PointPublic])
def due(
    principal: ReadDep,
    conn: ScopedConnDep,
    grid: Area = None,
    within_days: Annotated[int, Query(ge=0, le=366)] = 7,
    as_of: AsOf = None,
) -> list[inspections.PointPublic]:
    """Points due within ``within_days`` (overdue included), soonest first, with re-checks."""
    found = inspections.due_points(
        conn, principal=require(principal), grid=grid, within_days=within_days, today=as_of
    )
    conn.commit()
    return found


@router.get("/overdue", response_model=list[inspections.PointPublic])
def overdue(
    principal: ReadDep,
    conn: ScopedConnDep,
    grid: Area = None,
    as_of: AsOf = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[inspections.PointPublic]:
    """Points past their due date in your scope, by grid then due date."""
    found = inspections.overdue_points(
        conn, principal=require(principal), grid=grid, today=as_of, limit=limit, offset=offset
    )
    conn.commit()
    return found


@router.get("/completion", response_model=list[inspection_records.GridCompletion])
def completion(
    principal: ReadDep,
    conn: ScopedConnDep,
    date_from: Annotated[dt.date, Query(alias="from")],
    date_to: Annotated[dt.date, Query(alias="to")],
    grid: Area = None,
    as_of: AsOf = None,
) -> list[inspection_records.GridCompletion]:
    """Per grid: inspections due in the period, on time, late, missed, and the rate."""
    rates = inspection_records.completion(
        conn, principal=require(principal), date_from=date_from, date_to=date_to, grid=grid,
        today=as_of,
    )  # fmt: skip
    conn.commit()
    return rates


@router.get("/templates", response_model=list[checklists.TemplatePublic])
def list_templates(principal: ReadDep, conn: ScopedConnDep) -> list[checklists.TemplatePublic]:
    """The checklist templates."""
    return checklists.templates(conn)


@router.put("/templates/{code}", response_model=checklists.TemplatePublic)
def save_template(
    request: Request,
    code: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$")],
    body: checklists.TemplateIn,
    principal: AdminDep,
    conn: ScopedConnDep,
) -> checklists.TemplatePublic:
    """Create or replace a checklist template (templates are shared by every town: scope
    ``all`` only)."""
    who = require(principal)
    if who.scope.kind != "all":
        raise Forbidden("checklist templates are shared by every town: needs scope all")
    saved = checklists.save_template(
        conn, principal=who, code=code, body=body, ip=client_ip(request)
    )
    conn.commit()
    return saved


@router.post(
    "/records",
    response_model=inspection_records.RecordPublic,
    status_code=201,
    responses={
        **CONFLICT,
        200: {"model": inspection_records.RecordPublic, "description": "A repeated client_id."},
        404: {"model": ErrorPublic, "description": "No such inspection point in your scope."},
    },
)
def record(
    request: Request, body: InspectionSend, response: Response, principal: RecordDep,
    conn: ScopedConnDep,
) -> inspection_records.RecordPublic:  # fmt: skip
    """Record an inspection (201; a repeated ``client_id`` answers 200 with the first
    record and opens nothing). Each failed item opens a fire-hazard case."""
    made = inspection_records.record_inspection(
        conn, principal=require(principal), client_id=body.client_id, body=body,
        ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    response.status_code = 201 if made.created else 200
    return made


@router.get("/records/{record_id}", response_model=inspection_records.RecordPublic)
def get_record(
    record_id: Annotated[int, Path(ge=1, le=2**62)], principal: ReadDep, conn: ScopedConnDep
) -> inspection_records.RecordPublic:
    """One inspection record with the cases it opened and resolved."""
    return inspection_records.get_record(conn, principal=require(principal), record_id=record_id)
