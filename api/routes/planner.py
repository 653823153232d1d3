"""Routes: the planner's edits of a draft (history, undo/redo, move preview, rename, lock,
village re-run), plan exports and staff photos.

Mounted by :mod:`api.routes.plans` (same ``/api`` prefix, same helpers). Every edit needs
``If-Match`` with the plan's ETag (428 without, 412 when stale) and answers with the new
``ETag``; bodies of refused edits carry ``reason``, a code the pages translate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, EngineDep
from api.routes.plans import (
    _ERRORS,
    PlanId,
    PlanReader,
    PlanWriter,
    Public,
    StaffAssigner,
    _audit,
    _check_plan,
)
from api.schemas import DbId, ErrorPublic, GridCode
from geogrid import plans
from geogrid.access.policy import check
from geogrid.planner import edits, exports, history, photos

router: APIRouter = APIRouter(prefix="/api", tags=["planner"])

_EDIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorPublic, "description": "The plan is not a draft."},
    412: {"model": ErrorPublic, "description": "If-Match names an older version."},
    428: {"model": ErrorPublic, "description": "If-Match is missing."},
}
VillageCode = Annotated[str, Path(pattern=r"^\d{12}$", description="Village code.")]
GridCodePath = Annotated[str, Path(pattern=r"^\d{15}$", description="Basic grid code.")]
IfMatch = Annotated[str | None, Header()]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EditPublic(BaseModel):
    """An edit, undo or redo made: the plan's new version and the log entry."""

    plan_id: int
    version: int
    etag: str
    seq: int
    kind: str
    village_code: str | None
    payload: dict[str, Any]


class EditEntryPublic(BaseModel):
    seq: int
    kind: Literal["move", "rename", "lock", "unlock", "rerun", "undo", "redo"]
    village_code: str | None
    payload: dict[str, Any]
    target_seq: int | None = Field(description="The edit an undo or redo applies to.")
    version: int = Field(description="The plan version this entry made.")
    author: str | None
    created_at: datetime
    undone: bool = Field(description="An edit currently undone (it can be redone).")


class HistoryPublic(BaseModel):
    plan_id: int
    version: int
    etag: str
    entries: list[EditEntryPublic]
    can_undo: bool
    can_redo: bool
    undo_seq: int | None
    redo_seq: int | None


class PreviewCreate(_In):
    group: str = Field(pattern=r"^\d{12}/[0-9][0-9.@]*$", examples=["420117105201/3"])
    to: GridCode


class BandWarning(BaseModel):
    grid: str
    before: int
    after: int
    min: int
    max: int
    reason: Literal["below_band", "above_band"]


class PreviewPublic(BaseModel):
    """What a move would do: refused with a reason, or allowed with band warnings."""

    allowed: bool
    reason: str | None = Field(description="Why a move is refused (a code).")
    message: str | None
    needs_confirmation: bool
    village_code: str | None
    unit: str | None
    from_grid: str | None
    to_grid: str | None
    households: int | None
    before: dict[str, int]
    after: dict[str, int]
    warnings: list[BandWarning]


class RenameCreate(_In):
    name: str = Field(min_length=1, max_length=200)


class LockCreate(_In):
    locked: bool


class RerunCreate(_In):
    grids: int | None = Field(default=None, ge=1, le=999, description="Grids; none: free.")


class PhotoPublic(BaseModel):
    staff_id: int
    sha256: str
    mime: str
    width: int | None
    height: int | None
    url: str


@dataclass
class DraftEdit:
    """An edit request on a draft, checked: the plan's town, the version the caller edited
    (``If-Match``) and what :meth:`done` needs to audit it and answer with the new ETag."""

    plan_id: int
    town: str
    expected: int | None
    engine: Any
    request: Request
    response: Response
    principal: Any

    @property
    def author(self) -> str | None:
        return getattr(self.principal, "username", None)

    def done(self, result: history.EditResult, detail: dict[str, Any]) -> EditPublic:
        _audit(self.request, self.principal, f"plan.{result.kind}", self.town,
               {"plan": self.plan_id, **detail})  # fmt: skip
        self.response.headers["ETag"] = result.etag
        return EditPublic.model_validate({**asdict(result), "etag": result.etag})


def draft_edit(
    plan_id: PlanId,
    engine: EngineDep,
    conn: ConnDep,
    request: Request,
    response: Response,
    principal: PlanWriter,
    if_match: IfMatch = None,
) -> DraftEdit:
    """The dependency of every edit route: ``plan.write`` on the plan's town, ``If-Match``
    required (428 without; 412 from the service when stale)."""
    town = _check_plan(conn, principal, "plan.write", plan_id)
    if not if_match:
        exc = HTTPException(
            status_code=428,
            detail=f"send If-Match with the ETag of GET /api/plans/{plan_id} "
            "so concurrent edits are not lost.",
        )
        exc.code = "PreconditionRequired"  # type: ignore[attr-defined]
        raise exc
    expected = plans.version_from_if_match(if_match, plan_id)
    conn.rollback()  # no snapshot held across the edit
    return DraftEdit(plan_id, town, expected, engine, request, response, principal)


EditDep = Annotated[DraftEdit, Depends(draft_edit)]


# --------------------------------------------------------------------------- history


@router.get("/plans/{plan_id}/history", response_model=HistoryPublic, responses=_ERRORS)
def plan_history(plan_id: PlanId, conn: ConnDep, principal: PlanReader) -> HistoryPublic:
    """The edit log of a plan, newest last, with what undo and redo would do next."""
    _check_plan(conn, principal, "plan.read", plan_id)
    h = history.history(conn, plan_id)
    return HistoryPublic.model_validate(
        {
            **asdict(h),
            "etag": plans.make_etag(plan_id, h.version),
            "can_undo": h.can_undo,
            "can_redo": h.can_redo,
        }
    )


@router.post("/plans/{plan_id}/undo", response_model=EditPublic, responses=_EDIT_ERRORS)
def undo(edit: EditDep) -> EditPublic:
    """Undo the last edit of a draft still in effect (a new version of the plan)."""
    result = history.undo(edit.engine, edit.plan_id, expected_version=edit.expected,
                          author=edit.author)  # fmt: skip
    return edit.done(result, {"of": result.payload["of"]})


@router.post("/plans/{plan_id}/redo", response_model=EditPublic, responses=_EDIT_ERRORS)
def redo(edit: EditDep) -> EditPublic:
    """Redo the edit undone last (a new version of the plan)."""
    result = history.redo(edit.engine, edit.plan_id, expected_version=edit.expected,
                          author=edit.author)  # fmt: skip
    return edit.done(result, {"of": result.payload["of"]})


# --------------------------------------------------------------------------- edits


@router.post("/plans/{plan_id}/moves/preview", response_model=PreviewPublic, responses=_ERRORS)
def preview_move(
    plan_id: PlanId,
    body: PreviewCreate,
    conn: ConnDep,
    principal: PlanReader,
    if_match: IfMatch = None,
) -> PreviewPublic:
    """Dry run of a move: refused (with a reason code) or allowed, with the grids it would
    leave outside the band (such a move needs ``confirm: true``). Nothing is stored.

    With ``If-Match``, a plan edited since that version is a refusal too (reason
    ``stale_version``): the caller should reload before moving.
    """
    _check_plan(conn, principal, "plan.read", plan_id)
    try:
        expected = plans.version_from_if_match(if_match, plan_id) if if_match else None
    except plans.StaleVersion:
        expected = 0  # an entity tag of no version of this plan: stale, like an old one
    p = edits.preview_move(
        conn, plan_id, group=body.group, to_grid_code=body.to, expected_version=expected
    )
    return PreviewPublic.model_validate({**asdict(p), "needs_confirmation": p.needs_confirmation})


@router.put("/plans/{plan_id}/grids/{code}/name", response_model=EditPublic, responses=_EDIT_ERRORS)
def rename_grid(code: GridCodePath, body: RenameCreate, edit: EditDep) -> EditPublic:
    """Rename a basic grid of a draft (``If-Match`` required)."""
    result = edits.rename_grid(edit.engine, edit.plan_id, code, body.name,
                               expected_version=edit.expected, author=edit.author)  # fmt: skip
    return edit.done(result, {"grid": code})


@router.put("/plans/{plan_id}/grids/{code}/lock", response_model=EditPublic, responses=_EDIT_ERRORS)
def lock_grid(code: GridCodePath, body: LockCreate, edit: EditDep) -> EditPublic:
    """Lock a basic grid (redraws and village re-runs keep it as it is) or unlock it."""
    result = edits.set_lock(edit.engine, edit.plan_id, code, body.locked,
                            expected_version=edit.expected, author=edit.author)  # fmt: skip
    return edit.done(result, {"grid": code})


@router.post(
    "/plans/{plan_id}/villages/{village_code}/rerun",
    response_model=EditPublic,
    responses=_EDIT_ERRORS,
)
def rerun_village(village_code: VillageCode, body: RerunCreate, edit: EditDep) -> EditPublic:
    """Partition one village of a draft again into ``grids`` grids; other villages and the
    village's locked grids are kept."""
    result = edits.rerun_village(edit.engine, edit.plan_id, village_code, grids=body.grids,
                                 expected_version=edit.expected, author=edit.author)  # fmt: skip
    return edit.done(result, {"village": village_code, "grids": body.grids})


# --------------------------------------------------------------------------- exports

_MEDIA = {
    "gpkg": "application/geopackage+sqlite3",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@router.get(
    "/plans/{plan_id}/export.{fmt}",
    responses={
        **_ERRORS,
        200: {
            "content": {m.split(";")[0]: {} for m in _MEDIA.values()},
            "description": "The export file.",
        },
    },
    response_class=Response,
)
def export_plan(
    plan_id: PlanId,
    fmt: Annotated[Literal["gpkg", "csv", "xlsx"], Path(description="File format.")],
    conn: ConnDep,
    principal: PlanReader,
    lang: Annotated[Literal["zh", "en"], Query(description="Language of the texts.")] = "zh",
) -> Response:
    """The plan's basic grids with names, counts, band, lock, groups, staff and flags in
    words: GeoPackage (layer ``grids``), CSV (UTF-8 with BOM) or Excel."""
    from geogrid.i18n import messages

    _check_plan(conn, principal, "plan.read", plan_id)
    msgs = messages(lang)
    frame, header = exports.export_frame(conn, plan_id, msgs)
    if fmt == "gpkg":
        body = exports.to_gpkg(frame, header)
    elif fmt == "csv":
        body = exports.to_csv(frame, msgs)
    else:
        body = exports.to_xlsx(frame, header, msgs)
    name = f"plan-{plan_id}.{fmt}"
    return Response(
        body,
        media_type=_MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


# --------------------------------------------------------------------------- staff photos


@router.put("/staff/{staff_id}/photo", response_model=PhotoPublic, responses=_ERRORS)
async def upload_photo(
    staff_id: Annotated[DbId, Path()],
    file: Annotated[UploadFile, File(description="A JPEG, PNG, WebP or GIF photo.")],
    engine: EngineDep,
    request: Request,
    principal: StaffAssigner,
) -> PhotoPublic:
    """Upload a staff member's photo (checked from its bytes, at most 5 MB)."""
    with engine.connect() as c:
        town = photos.staff_town(c, staff_id)
    check(principal, "staff.assign", town)
    data = await file.read(photos.MAX_PHOTO_BYTES + 1)
    home = request.app.state.settings.home
    stored = photos.set_staff_photo(engine, home, staff_id, data,
                                    filename=file.filename or "photo")  # fmt: skip
    _audit(request, principal, "staff.photo", town or "", {"staff": staff_id})
    return PhotoPublic(
        staff_id=staff_id, sha256=stored.sha256, mime=stored.mime, width=stored.width,
        height=stored.height, url=f"/api/staff/{staff_id}/photo",
    )  # fmt: skip


@router.get(
    "/staff/{staff_id}/photo",
    responses={**_ERRORS, 200: {"content": {"image/jpeg": {}}, "description": "The photo."}},
    response_class=FileResponse,
)
def staff_photo(
    staff_id: Annotated[DbId, Path()],
    conn: ConnDep,
    request: Request,
    _: Public,
    thumb: Annotated[bool, Query(description="The small JPEG thumbnail.")] = False,
) -> FileResponse:
    """A staff member's uploaded photo (public duty contact), or 404 when none is stored."""
    from geogrid.errors import NotFound

    path = photos.staff_photo_file(conn, request.app.state.settings.home, staff_id, thumb=thumb)
    if path is None:
        raise NotFound(f"staff member {staff_id} has no uploaded photo.")
    return FileResponse(path, media_type=photos.photo_type(path),
                        headers={"Cache-Control": "public, max-age=3600"})  # fmt: skip
