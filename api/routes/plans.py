"""Routes: grid plans, their grids, diffs, edits, activation, background creation, staff.

Route bodies only translate between HTTP and :mod:`geogrid.plans`: they read headers and
parameters, call one service function and shape the answer. Domain errors become status
codes through :mod:`api.errors`; the only statuses set here are HTTP-protocol ones
(202 Accepted, 304 Not Modified, 428 Precondition Required).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from api.auth import allow, client_ip, require
from api.deps import ConnDep, EngineDep
from api.schemas import (
    DbId,
    ErrorPublic,
    GridFeatureCollection,
    JobPublic,
    MoveCreate,
    MovePublic,
    PlanCreate,
    PlanDiffPublic,
    PlanPublic,
    StaffAssign,
    StaffPostPublic,
)
from geogrid import plans
from geogrid.access import audit
from geogrid.access.policy import Principal, check
from geogrid.plans import PlanJob, PlanJobs

router = APIRouter(prefix="/api", tags=["plans"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorPublic, "description": "Bad input; the body says what and where."},
    404: {"model": ErrorPublic, "description": "Unknown plan, grid or job."},
}
_lock = threading.Lock()

PlanReader = Annotated[Principal | None, Depends(allow("plan.read"))]
PlanWriter = Annotated[Principal | None, Depends(allow("plan.write"))]
StaffAssigner = Annotated[Principal | None, Depends(allow("staff.assign"))]
Public = Annotated[Principal | None, Depends(allow("public.read"))]

PlanId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Plan id.")]


def get_plan_jobs(request: Request) -> PlanJobs:
    """The app's background plan runner (``app.state.plan_jobs``; created on first use)."""
    state = request.app.state
    with _lock:
        jobs: PlanJobs | None = getattr(state, "plan_jobs", None)
        if jobs is None:
            jobs = state.plan_jobs = PlanJobs(state.engine)
    return jobs


PlanJobsDep = Annotated[PlanJobs, Depends(get_plan_jobs)]


def _plan_public(info: plans.PlanInfo) -> PlanPublic:
    return PlanPublic.model_validate({**asdict(info), "etag": info.etag})


def _job_public(job: PlanJob) -> JobPublic:
    return JobPublic.model_validate(
        {
            **asdict(job),
            "progress": {"done": job.done, "total": job.total, "village_code": job.village_code},
            "href": f"/api/jobs/{job.id}",
            "problem": (
                {"code": job.error_type or "Error", "description": job.error or ""}
                if job.status == "failed"
                else None
            ),
        }
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


# --------------------------------------------------------------------------- plans


@router.get("/plans", response_model=list[PlanPublic], responses=_ERRORS)
def list_plans(
    conn: ConnDep,
    principal: PlanReader,
    town: Annotated[str | None, Query(pattern=r"^\d{12}$", description="Town code.")] = None,
) -> list[PlanPublic]:
    """Plans, newest first (``unassigned`` and ``edits`` lists left out of metrics).

    Users scoped below a town see their own town's plans.
    """
    p = require(principal)
    if p.scope.kind != "all":
        own = p.scope.code[:9] + "000"
        if town is not None:
            check(p, "plan.read", town)
        town = own
    return [_plan_public(info) for info in plans.list_plans(conn, town_code=town)]


@router.post(
    "/plans",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ERRORS,
)
def create_plan(
    request: Request,
    body: PlanCreate,
    conn: ConnDep,
    jobs: PlanJobsDep,
    response: Response,
    principal: PlanWriter,
) -> JobPublic:
    """Partition a town into a new draft plan in the background; poll the returned job."""
    p = require(principal)
    check(p, "plan.write", body.town)
    params = plans.params_from_options(
        target=body.target, lo=body.lo, hi=body.hi, seed=body.seed, split_large=body.split_large
    )
    plans.check_create(conn, town_code=body.town, cadres=body.cadres, redraw_from=body.redraw_from)
    job = jobs.submit(
        body.town,
        params=params,
        cadres=body.cadres,
        name=body.name,
        author=body.author or p.username,
        redraw_from=body.redraw_from,
        locked=body.locked,
    )
    _audit(request, p, "plan.create", body.town, {"job": job.id})
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return _job_public(job)


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=_ERRORS)
def get_job(
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    jobs: PlanJobsDep,
    principal: PlanReader,
) -> JobPublic:
    """Status of a background plan creation: progress, plan id when done, error if failed."""
    job = jobs.get(job_id)
    check(principal, "plan.read", job.town_code)
    return _job_public(job)


@router.get(
    "/plans/{plan_id}",
    response_model=PlanPublic,
    responses={**_ERRORS, 304: {"description": "Not modified (If-None-Match)."}},
)
def get_plan(
    plan_id: PlanId,
    conn: ConnDep,
    response: Response,
    principal: PlanReader,
    if_none_match: Annotated[str | None, Header()] = None,
) -> PlanPublic | Response:
    """One plan with its parameters and quality metrics; ``ETag`` names its version."""
    info = plans.get_plan(conn, plan_id)
    check(principal, "plan.read", info.town_code)
    if _matches(if_none_match, info.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": info.etag})
    response.headers["ETag"] = info.etag
    return _plan_public(info)


@router.get(
    "/plans/{plan_id}/grids",
    response_model=GridFeatureCollection,
    responses={**_ERRORS, 304: {"description": "Not modified (If-None-Match)."}},
)
def plan_grids(
    plan_id: PlanId,
    conn: ConnDep,
    response: Response,
    principal: PlanReader,
    level: Annotated[int, Query(ge=1, le=3, description="1 town, 2 village, 3 basic.")] = 3,
    if_none_match: Annotated[str | None, Header()] = None,
) -> GridFeatureCollection | Response:
    """A plan's grids as GeoJSON with metrics; ``ETag`` is the plan version."""
    _check_plan(conn, principal, "plan.read", plan_id)
    etag = plans.make_etag(plan_id, plans.plan_version(conn, plan_id))
    if _matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    collection = plans.plan_grids(conn, plan_id, level=level)
    response.headers["ETag"] = plans.make_etag(plan_id, collection["version"])
    response.headers["Cache-Control"] = "no-cache"
    return GridFeatureCollection.model_validate(collection)


@router.get("/plans/{a}/diff/{b}", response_model=PlanDiffPublic, responses=_ERRORS)
def diff_plans(
    a: Annotated[int, Path(ge=1, le=2**31 - 1)],
    b: Annotated[int, Path(ge=1, le=2**31 - 1)],
    conn: ConnDep,
    principal: PlanReader,
) -> PlanDiffPublic:
    """Which groups changed grid from plan ``a`` to ``b``, and households moved."""
    _check_plan(conn, principal, "plan.read", a)
    _check_plan(conn, principal, "plan.read", b)
    return PlanDiffPublic.model_validate(plans.diff_plans(conn, a, b), from_attributes=True)


@router.post(
    "/plans/{plan_id}/moves",
    response_model=MovePublic,
    responses={
        **_ERRORS,
        409: {"model": ErrorPublic, "description": "The plan is not a draft."},
        412: {"model": ErrorPublic, "description": "If-Match names an older version."},
        428: {"model": ErrorPublic, "description": "If-Match is missing."},
    },
)
def move_group(
    plan_id: PlanId,
    body: MoveCreate,
    engine: EngineDep,
    conn: ConnDep,
    request: Request,
    response: Response,
    principal: PlanWriter,
    if_match: Annotated[str | None, Header()] = None,
) -> MovePublic | JSONResponse:
    """Move a villager group of a draft to an adjacent grid (``If-Match`` required).

    A move that leaves a grid outside the plan's band is refused (409, ``reason``
    ``out_of_band`` with the ``warnings``) unless ``confirm`` is true; check it first with
    ``POST /api/plans/{plan_id}/moves/preview``.
    """
    town = _check_plan(conn, principal, "plan.write", plan_id)
    if not if_match:
        return JSONResponse(
            status_code=status.HTTP_428_PRECONDITION_REQUIRED,
            content={
                "code": "PreconditionRequired",
                "description": f"send If-Match with the ETag of GET /api/plans/{plan_id} "
                "so concurrent edits are not lost.",
            },
        )
    result = plans.move_group_in_plan(
        engine,
        plan_id,
        group=body.group,
        to_grid_code=body.to,
        expected_version=plans.version_from_if_match(if_match, plan_id),
        author=body.author or require(principal).username,
        confirm=body.confirm,
    )
    _audit(request, principal, "plan.move", town,
           {"plan": plan_id, "group": body.group, "to": body.to})  # fmt: skip
    response.headers["ETag"] = result.etag
    return MovePublic.model_validate({**asdict(result), "etag": result.etag})


@router.post(
    "/plans/{plan_id}/activate",
    response_model=PlanPublic,
    responses={**_ERRORS, 409: {"model": ErrorPublic, "description": "Not a draft."}},
)
def activate_plan(
    plan_id: PlanId, engine: EngineDep, conn: ConnDep, request: Request, principal: PlanWriter
) -> PlanPublic:
    """Activate a draft; the town's previous active plan is archived in the same transaction."""
    town = _check_plan(conn, principal, "plan.write", plan_id)
    conn.rollback()  # no snapshot held across the activation
    info = plans.activate_plan(engine, plan_id)
    _audit(request, principal, "plan.activate", town, {"plan": plan_id})
    return _plan_public(info)


def _check_plan(conn: ConnDep, principal: Principal | None, action: str, plan_id: int) -> str:
    """The plan's town, after checking ``action`` on it (NotFound for an unknown plan)."""
    town = plans.get_plan(conn, plan_id).town_code
    check(principal, action, town)
    return town


def _audit(
    request: Request, principal: Principal | None, action: str, town: str, detail: dict
) -> None:
    with request.app.state.engine.begin() as c:
        audit.record(c, actor=principal, action=action, target_type="town", target_ids=[town],
                     ip=client_ip(request), detail=detail)  # fmt: skip


# --------------------------------------------------------------------------- staff


GridCodePath = Annotated[
    str, Path(pattern=r"^(\d{12}|\d{15})$", description="Grid code (12 or 15 digits).")
]
PlanQuery = Annotated[
    DbId | None, Query(description="Plan holding the grid; default: the active plan.")
]


@router.get("/grids/{code}/staff", response_model=list[StaffPostPublic], responses=_ERRORS)
def grid_staff(
    code: GridCodePath, conn: ConnDep, _: Public, plan: PlanQuery = None
) -> list[StaffPostPublic]:
    """Staff at a grid's posts: name, role, A/B post, duty phone, photo, duties."""
    return [
        StaffPostPublic.model_validate(s, from_attributes=True)
        for s in plans.grid_staff(conn, grid_code=code, plan_id=plan)
    ]


@router.put("/grids/{code}/staff", response_model=list[StaffPostPublic], responses=_ERRORS)
def assign_staff(
    code: GridCodePath,
    body: StaffAssign,
    engine: EngineDep,
    conn: ConnDep,
    request: Request,
    principal: StaffAssigner,
    plan: PlanQuery = None,
) -> list[StaffPostPublic]:
    """Put a staff member at a post (role + A/B) of a grid; returns the grid's staff."""
    check(principal, "staff.assign", code)
    post = plans.assign_staff(engine, grid_code=code, plan_id=plan, **body.model_dump())
    _audit(request, principal, "staff.assign", code, {"plan": post.plan_id, "role": body.role})
    return [
        StaffPostPublic.model_validate(s, from_attributes=True)
        for s in plans.grid_staff(conn, grid_code=code, plan_id=post.plan_id)
    ]


# The planner's edits, exports and staff photos (api/routes/planner.py, which uses this
# module's helpers) are served as routes of this router: no change to the app's wiring.
from api.routes import planner as _planner  # noqa: E402

router.routes.extend(_planner.router.routes)
