"""Cases (事件): lists, inbox, due lists, one case with its events, report, transitions with
If-Match, attachments, the reporter's full details, the dictionary and the routing table.

Thin: every route declares one policy action and calls :mod:`geogrid.cases.service` on a
connection whose transaction carries the user's scope (row-level security); the service
filters by scope in SQL and the case machine decides each action by role and duty.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, File, Header, Path, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy import Connection

from api.auth import ScopedConnDep, allow, client_ip, require
from api.deps import SettingsDep
from api.schemas import ErrorPublic
from geogrid import files
from geogrid.access.policy import Principal, check
from geogrid.cases import dictionary, machine, routing, service
from geogrid.cases.queries import due_cases
from geogrid.cases.shapes import (
    CaseDetail,
    CaseFilter,
    CaseMoved,
    CaseSummary,
    Category,
    DuplicateHint,
    GridDue,
    Reporter,
)
from geogrid.errors import Forbidden, InvalidInput, NotFound

router = APIRouter(prefix="/api/cases", tags=["cases"])

ReadDep = Annotated[Principal | None, Depends(allow("case.read"))]
ReportDep = Annotated[Principal | None, Depends(allow("case.report"))]
WorkDep = Annotated[Principal | None, Depends(allow("case.work"))]
UnmaskDep = Annotated[Principal | None, Depends(allow("case.unmask"))]
AdminDep = Annotated[Principal | None, Depends(allow("case.admin"))]
CaseId = Annotated[int, Path(ge=1, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]

_PRECONDITION: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "Not possible now; `allowed` lists what is."},
    412: {"model": ErrorPublic, "description": "If-Match names an older version of the case."},
    428: {"model": ErrorPublic, "description": "If-Match is missing."},
}


class CasePage(BaseModel):
    """A page of cases."""

    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


class ReporterIn(BaseModel):
    name: str | None = Field(default=None, max_length=50)
    phone: str | None = Field(default=None, max_length=20)


class CaseCreate(BaseModel):
    """A new case (事件上报)."""

    category: str = Field(min_length=1, max_length=40, description="code (0401) or name")
    lon: float = Field(ge=-180, le=180, description="WGS84 longitude")
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude")
    description: str = Field(min_length=1, max_length=service.MAX_DESCRIPTION)
    source: Literal["grid_worker", "open311", "hotline", "inspection"] = "grid_worker"
    priority: int = Field(default=2, ge=1, le=3)
    address: str | None = Field(default=None, max_length=200)
    attachments: list[str] = Field(default_factory=list, max_length=service.MAX_ATTACHMENTS)
    reporter: ReporterIn | None = None


class CreatedPublic(BaseModel):
    case: CaseDetail
    duplicates: list[DuplicateHint]


class PostIn(BaseModel):
    kind: Literal["centre", "grid", "village", "department"]
    code: str = Field(min_length=1, max_length=20)


class TransitionCreate(BaseModel):
    """One action on a case, with the fields it needs (see GET /api/cases/machine)."""

    action: str = Field(min_length=1, max_length=30)
    note: str = Field(default="", max_length=service.MAX_NOTE)
    attachments: list[str] = Field(default_factory=list, max_length=service.MAX_ATTACHMENTS)
    public: bool = Field(default=False, description="shown to the reporter (Open311 notes)")
    post: PostIn | None = None
    amount: int | None = Field(default=None, ge=1, le=1000)
    unit: Literal["hours", "days"] | None = None
    rating: Literal["satisfied", "basic", "unsatisfied"] | None = None
    to_user: int | None = Field(default=None, ge=1, le=2**31 - 1)
    into: int | None = Field(default=None, ge=1, le=2**62)


class StoredFilePublic(BaseModel):
    sha256: str
    mime: str
    size: int
    width: int | None
    height: int | None


class UnmaskRequest(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="事由: why the full data")


class ReporterPublic(BaseModel):
    name: str | None
    phone: str | None


class MachinePublic(BaseModel):
    statuses: list[str]
    open: list[str]
    transitions: list[dict[str, Any]]


class CategoryUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=40)
    name_en: str | None = Field(default=None, max_length=80)
    active: bool | None = None
    aliases: list[str] | None = Field(default=None, max_length=20)
    limits: dict[str, dict[str, Any]] | None = None


class RouteIn(BaseModel):
    category_code: str | None = Field(default=None, pattern=r"^\d{2}(\d{2})?$")
    post_kind: Literal["centre", "grid", "village", "department"]
    post_code: str | None = Field(default=None, max_length=20)


class RoutesPut(BaseModel):
    area_code: str = Field(pattern=r"^(\d{12}|\d{15})?$")
    rows: list[RouteIn] = Field(max_length=200)


def _when(value: str | None, *, end: bool) -> dt.datetime | None:
    """A date (local; ``end``: the next midnight) or an ISO time with an offset."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value) + dt.timedelta(days=1 if end else 0)
            return dt.datetime.combine(day, dt.time(), service.LOCAL)
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date (2026-11-30) or ISO time") from None
    if t.tzinfo is None:
        raise InvalidInput(f"{value!r} needs a time zone (e.g. +08:00)")
    return t


def _commit_etag(conn: Any, response: Response, detail: CaseDetail) -> CaseDetail:
    conn.commit()
    response.headers["ETag"] = detail.etag
    return detail


@router.get("", response_model=CasePage)
def list_cases(
    principal: ReadDep,
    conn: ScopedConnDep,
    status: Annotated[str | None, Query(max_length=300, description="comma list")] = None,
    category: Annotated[str | None, Query(pattern=r"^\d{2}(\d{2})?$")] = None,
    grid: Annotated[str | None, Query(pattern=r"^\d{15}$")] = None,
    village: Annotated[str | None, Query(pattern=r"^\d{12}$")] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    overdue: bool | None = None,
    due_within_hours: Annotated[float | None, Query(gt=0, le=8760)] = None,
    assignee: Literal["me"] | None = None,
    source: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CasePage:
    """Cases in your scope, newest first, filtered by status, category (code prefix),
    reported-in grid or village, period, overdue, due soon, your post, source."""
    f = CaseFilter(
        status=tuple(s for s in (status or "").split(",") if s),
        category=category,
        grid=grid,
        village=village,
        since=_when(from_, end=False),
        until=_when(to, end=True),
        overdue=overdue,
        due_within_hours=due_within_hours,
        assignee=assignee,
        source=source,
    )
    items, total = service.list_cases(
        conn, principal=require(principal), filters=f, limit=limit, offset=offset
    )
    return CasePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/inbox", response_model=CasePage)
def inbox(
    principal: ReadDep, conn: ScopedConnDep, limit: Limit = 50, offset: Offset = 0
) -> CasePage:
    """The cases waiting for you (your steps, your post, transfers to you), overdue first."""
    items, total = service.inbox(conn, principal=require(principal), limit=limit, offset=offset)
    return CasePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/due", response_model=CasePage)
def due(
    principal: ReadDep,
    conn: ScopedConnDep,
    kind: Literal["overdue", "soon"] = "overdue",
    within_hours: Annotated[float, Query(gt=0, le=8760)] = 24,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CasePage:
    """Overdue cases, or cases due within ``within_hours``, earliest deadline first."""
    items, total = due_cases(
        conn,
        principal=require(principal),
        kind=kind,
        within_hours=within_hours,
        limit=limit,
        offset=offset,
    )
    return CasePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/due/counts", response_model=list[GridDue])
def due_counts(
    principal: ReadDep,
    conn: ScopedConnDep,
    within_hours: Annotated[float, Query(gt=0, le=8760)] = 24,
) -> list[GridDue]:
    """Overdue and soon-due cases counted per (reported-in) grid."""
    return service.due_counts(conn, principal=require(principal), within_hours=within_hours)


@router.get("/machine", response_model=MachinePublic)
def the_machine(principal: ReadDep) -> MachinePublic:
    """The workflow as data: statuses and every transition (from, to, roles, duty, fields)."""
    return MachinePublic(
        statuses=list(machine.STATUSES),
        open=sorted(machine.OPEN_STATUSES),
        transitions=[t.as_dict() for t in machine.TRANSITIONS],
    )


@router.get("/categories", response_model=list[Category])
def categories(
    principal: ReadDep, conn: ScopedConnDep, include_inactive: bool = False
) -> list[Category]:
    """The category dictionary with each entry's step time limits."""
    return service.list_categories(conn, include_inactive=include_inactive)


@router.put("/categories/{code}", response_model=Category)
def update_category(
    request: Request,
    code: Annotated[str, Path(pattern=r"^\d{2}(\d{2})?$")],
    body: CategoryUpdate,
    principal: AdminDep,
    conn: ScopedConnDep,
) -> Category:
    """Add or change a dictionary entry and its time limits (system administrator)."""
    who = require(principal)
    if who.scope.kind != "all":
        raise Forbidden(
            "the category dictionary is shared by every town: a system administrator edits it"
        )
    made = dictionary.update_category(
        conn,
        principal=who,
        code=code,
        changes=body.model_dump(exclude_none=True),
        ip=client_ip(request),
    )
    conn.commit()
    return made


@router.get("/routing", response_model=list[routing.Route])
def get_routing(principal: AdminDep, conn: ScopedConnDep) -> list[routing.Route]:
    """The routing rows within your scope."""
    return routing.get_routes(conn, area_prefix=require(principal).scope.prefix)


@router.put("/routing", response_model=list[routing.Route])
def put_routing(
    request: Request, body: RoutesPut, principal: AdminDep, conn: ScopedConnDep
) -> list[routing.Route]:
    """Replace the routing rows of one area (town, village or grid in your scope)."""
    who = require(principal)
    if body.area_code:
        check(who, "case.admin", body.area_code)
    elif who.scope.kind != "all":
        raise Forbidden("only a system administrator sets the routes for everywhere")
    rows = dictionary.set_routes_audited(
        conn,
        principal=who,
        area_code=body.area_code,
        rows=[r.model_dump() for r in body.rows],
        ip=client_ip(request),
    )
    conn.commit()
    return rows


@router.post("", response_model=CreatedPublic, status_code=201)
def create_case(
    body: CaseCreate, response: Response, principal: ReportDep, conn: ScopedConnDep
) -> CreatedPublic:
    """Report a case: placed in its grid, routed, its first deadline started; the answer
    lists open cases it may duplicate."""
    reporter = Reporter(body.reporter.name, body.reporter.phone) if body.reporter else None
    made = service.create_case(
        conn,
        principal=require(principal),
        category=body.category,
        lon=body.lon,
        lat=body.lat,
        description=body.description,
        source=body.source,
        priority=body.priority,
        reporter=reporter,
        attachments=body.attachments,
        address=body.address,
    )
    _commit_etag(conn, response, made.case)
    return CreatedPublic(case=made.case, duplicates=made.duplicates)


@router.post("/files", response_model=StoredFilePublic, status_code=201)
def upload(
    settings: SettingsDep,
    principal: ReportDep,
    conn: ScopedConnDep,
    file: Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, GIF) or a PDF.")],
) -> StoredFilePublic:
    """Upload a photo or file; attach it by its ``sha256`` when reporting or acting."""
    data = file.file.read(settings.max_upload_bytes + 1)
    stored = service.upload_file(
        conn,
        principal=require(principal),
        home=settings.home,
        data=data,
        filename=file.filename or "",
        max_bytes=settings.max_upload_bytes,
    )
    conn.commit()
    return StoredFilePublic(
        sha256=stored.sha256,
        mime=stored.mime,
        size=stored.size,
        width=stored.width,
        height=stored.height,
    )


#: the longest ``Prefer`` header a transition takes
PREFER_MAX: Final = 200
#: a case's full answer, serialised as FastAPI does the routes' response model
_DETAIL: Final = TypeAdapter(CaseDetail)
#: the brief answer to a transition, serialised without FastAPI's response checks
_MOVED: Final = TypeAdapter(CaseMoved)


@router.get("/{case_id}", response_model=CaseDetail, responses={304: {"description": "Same"}})
def get_case(
    case_id: CaseId,
    principal: ReadDep,
    conn: ScopedConnDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """One case with its events, the actions you may take, files and masked reporter;
    ``ETag`` names its version."""
    # a bearer token's request takes the lane (api.routes.cases_lane): the same answer; a
    # dependency added here must be added to the lane too
    return case_answer(conn, require(principal), case_id, if_none_match)


def case_answer(
    conn: Connection, principal: Principal, case_id: int, if_none_match: str | None
) -> Response:
    """The answer to a read of one case (for the route and for its lane)."""
    detail = service.get_case(conn, principal=principal, case_id=case_id)
    if if_none_match and detail.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": detail.etag})
    return Response(
        _DETAIL.dump_json(detail), media_type="application/json", headers={"ETag": detail.etag}
    )


@router.get("/{case_id}/duplicates", response_model=list[DuplicateHint])
def duplicates(case_id: CaseId, principal: ReadDep, conn: ScopedConnDep) -> list[DuplicateHint]:
    """Open cases of the same category near this one, within the duplicate window."""
    c = service.get_case(conn, principal=require(principal), case_id=case_id)
    return service.find_duplicates(
        conn,
        category=c.category_code or c.category,
        lon=c.lon,
        lat=c.lat,
        at=c.reported_at,
        exclude=c.id,
    )


def _minimal(prefer: str | None) -> bool:
    """Does a ``Prefer`` header (RFC 7240) ask for ``return=minimal``?

    >>> _minimal("return=minimal"), _minimal("respond-async, Return = Minimal"), _minimal(None)
    (True, True, False)
    """
    return prefer is not None and any(
        p.replace(" ", "").lower() == "return=minimal" for p in prefer.split(",")
    )


@router.post(
    "/{case_id}/transitions", response_model=CaseDetail | CaseMoved, responses=_PRECONDITION
)
def transition(
    request: Request,
    case_id: CaseId,
    body: TransitionCreate,
    principal: WorkDep,
    conn: ScopedConnDep,
    if_match: Annotated[str | None, Header()] = None,
    prefer: Annotated[
        str | None,
        Header(max_length=PREFER_MAX, description="return=minimal: answer the brief CaseMoved"),
    ] = None,
) -> Response:
    """Take an action (If-Match with the case's ETag required). The answer is the case
    as GET shows it, or with ``Prefer: return=minimal`` its new state, ETag and the actions
    you may take next (no events, files or reporter)."""
    # a bearer token's request takes the lane (api.routes.cases_lane): the same answer; a
    # dependency added here must be added to the lane too
    return transition_answer(
        conn, require(principal), case_id, body, if_match, prefer, client_ip(request)
    )


def transition_answer(
    conn: Connection,
    principal: Principal,
    case_id: int,
    body: TransitionCreate,
    if_match: str | None,
    prefer: str | None,
    ip: str | None,
) -> Response:
    """Take the action of a transition request on ``conn`` (the principal's scope) and
    commit: the route's answer (for the route and for its lane)."""
    if not if_match:
        return JSONResponse(
            status_code=428,
            content={
                "code": "PreconditionRequired",
                "description": f"send If-Match with the ETag of GET /api/cases/{case_id}",
            },
        )
    version = service.parse_etag(if_match, case_id)
    if version is None:
        raise service.StaleCase(
            f"If-Match {if_match[:40]!r} is not an ETag of case {case_id}; reload it",
            detail={"version": None},
        )
    data = body.model_dump(
        include={"amount", "unit", "rating", "to_user", "into"}, exclude_none=True
    )
    if body.post is not None:
        data["post"] = body.post.model_dump()
    if _minimal(prefer):
        moved = service.transition_brief(
            conn,
            principal=principal,
            case_id=case_id,
            action=body.action,
            expected_version=version,
            note=body.note,
            attachments=body.attachments,
            public=body.public,
            data=data,
        )
        conn.commit()
        return Response(
            _MOVED.dump_json(moved),
            media_type="application/json",
            headers={"ETag": moved.etag, "Preference-Applied": "return=minimal"},
        )
    detail = service.transition(
        conn,
        principal=principal,
        case_id=case_id,
        action=body.action,
        expected_version=version,
        note=body.note,
        attachments=body.attachments,
        public=body.public,
        data=data,
        ip=ip,
    )
    conn.commit()
    return Response(
        _DETAIL.dump_json(detail), media_type="application/json", headers={"ETag": detail.etag}
    )


@router.get("/{case_id}/files/{sha256}", response_class=FileResponse)
def get_file(
    case_id: CaseId,
    sha256: Sha,
    settings: SettingsDep,
    principal: ReadDep,
    conn: ScopedConnDep,
    thumb: bool = False,
) -> FileResponse:
    """A file attached to the case (``thumb=1``: the JPEG thumbnail of an image)."""
    stored = service.case_file(conn, principal=require(principal), case_id=case_id, sha256=sha256)
    if thumb and not stored.has_thumbnail:
        raise InvalidInput("only images have thumbnails")
    path = files.file_path(settings.home, sha256, thumb=thumb)
    if not path.is_file():
        raise NotFound("the file is missing from the store (GEOGRID_HOME/files)")
    return FileResponse(
        path,
        media_type="image/jpeg" if thumb else stored.mime,
        headers={
            "Cache-Control": "private, max-age=86400",
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/{case_id}/reporter/unmask", response_model=list[ReporterPublic])
def unmask_reporter(
    request: Request,
    case_id: CaseId,
    body: UnmaskRequest,
    principal: UnmaskDep,
    conn: ScopedConnDep,
) -> list[ReporterPublic]:
    """The reporters' full names and phones: needs the ``unmask`` permission; audited."""
    people = service.unmask_reporter(
        conn,
        principal=require(principal),
        case_id=case_id,
        reason=body.reason,
        ip=client_ip(request),
    )
    conn.commit()
    return [ReporterPublic(name=p.name, phone=p.phone) for p in people]
