"""Assessment (量化考核): indicators per town, village, grid and staff member, their
definitions (the one registry of formulas: :mod:`geogrid.assessment.indicators`), schemes
with weights and grade thresholds, rounds (draft → published, frozen), manual scores
(自查、互查、抽查), rankings with the change since the previous round, Excel and PDF exports.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from api.auth import ScopedConnDep, allow, audited, require
from api.deps import ConnDep
from api.reads import read
from api.schemas import ErrorPublic
from geogrid.access.policy import Principal
from geogrid.assessment import exports, indicators, public, rounds, scheme

router = APIRouter(prefix="/api/assessment", tags=["assessment"])

ReadDep = Annotated[Principal | None, Depends(allow("assessment.read"))]
PublicDep = Annotated[Principal | None, Depends(allow("public.read"))]
ManageDep = Annotated[Principal | None, Depends(allow("assessment.manage"))]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Code = Annotated[
    str | None,
    Query(pattern=r"^(\d{12}|\d{15})$", description="a town, village or grid code in scope"),
]
LevelQ = Annotated[Literal["town", "village", "grid", "staff"], Query()]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorPublic}, 403: {"model": ErrorPublic}, 404: {"model": ErrorPublic},
    409: {"model": ErrorPublic}, 422: {"model": ErrorPublic},
}  # fmt: skip


class IndicatorDef(BaseModel):
    """One indicator of the registry."""

    key: str
    name: str
    unit: str
    formula: str
    higher_is_better: bool
    source: str


class PeriodOut(BaseModel):
    from_: dt.date = Field(alias="from", serialization_alias="from")
    to: dt.date

    model_config = {"populate_by_name": True}


class IndicatorTable(BaseModel):
    """Indicators of every group of a level in a period."""

    period: PeriodOut
    indicators: list[IndicatorDef]
    rows: list[dict[str, float | int | str | None]] = Field(
        description="level, code, name, households and one value per indicator key (null: "
        "the denominator is 0)"
    )


def _done(
    request: Request,
    conn: Connection,
    who: Principal,
    kind: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    """Audit a successful change and commit it."""
    audited(request, conn, who, action="assessment.manage", target_type=kind,
            target_ids=[target], detail=detail)  # fmt: skip
    conn.commit()


def default_period(start: dt.date | None, end: dt.date | None) -> indicators.Period:
    """``from``/``to`` checked; missing: this month up to today (local)."""
    today = dt.datetime.now(indicators.LOCAL).date()
    end = end or today
    start = start or end.replace(day=1)
    return indicators.period_of(start, end)


@router.get("/indicators/definitions", response_model=list[IndicatorDef])
def definitions(principal: ReadDep) -> list[dict[str, Any]]:
    """Every indicator with its key, Chinese name, unit and formula."""
    return indicators.definitions()


@router.get(
    "/indicators", response_model=IndicatorTable, response_model_by_alias=True, responses=ERRORS
)
def indicator_table(
    principal: ReadDep,
    conn: ScopedConnDep,
    level: LevelQ = "grid",
    code: Code = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """Every indicator per ``level`` group inside ``code`` (default: your scope) for the
    period ``from``–``to`` (local days, both included; default: this month)."""
    return _table(conn, require(principal), level, code, date_from, date_to)


def _table(
    conn: Connection,
    who: Principal,
    level: str,
    code: str | None,
    date_from: dt.date | None,
    date_to: dt.date | None,
) -> dict[str, Any]:
    period = default_period(date_from, date_to)
    prefix = indicators.effective_prefix(who, level, code)
    rows = indicators.compute(conn, prefix=prefix, level=level, period=period)
    conn.commit()
    return {
        "period": {"from": period.start, "to": period.end},
        "indicators": indicators.definitions(),
        "rows": rows,
    }


MIME: dict[str, str] = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {m: {} for m in MIME.values()}, "description": "the file"},
    **ERRORS,
}


def _file(data: bytes, fmt: str, name: str) -> Response:
    return Response(
        data,
        media_type=MIME[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@router.get("/indicators/export", response_class=Response, responses=FILE_RESPONSES)
def export_indicators(
    principal: ReadDep,
    conn: ScopedConnDep,
    fmt: Annotated[Literal["xlsx", "pdf"], Query(alias="format")] = "xlsx",
    level: LevelQ = "grid",
    code: Code = None,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
) -> Response:
    """The indicator table as Excel or as a printable PDF (Chinese font embedded)."""
    who = require(principal)
    table = _table(conn, who, level, code, date_from, date_to)
    p = table["period"]
    name = f"indicators-{level}-{code or who.scope.code or 'all'}-{p['from']}-{p['to']}"
    if fmt == "xlsx":
        return _file(exports.indicators_xlsx(table, level), fmt, name)
    return _file(exports.indicators_pdf(table, level, code or who.scope.code), fmt, name)


# --------------------------------------------------------------------------- schemes


@router.get("/schemes", response_model=list[scheme.Scheme])
def list_schemes(principal: ReadDep, conn: ScopedConnDep) -> list[scheme.Scheme]:
    """Assessment schemes whose area overlaps your scope."""
    found = scheme.list_schemes(conn, principal=require(principal))
    conn.commit()
    return found


@router.post("/schemes", response_model=scheme.Scheme, status_code=201, responses=ERRORS)
def create_scheme(
    request: Request, body: scheme.SchemeIn, principal: ManageDep, conn: ScopedConnDep
) -> scheme.Scheme:
    """A new scheme: weighted items (indicators and manual items) summing to 100, thresholds."""
    who = require(principal)
    out = scheme.create_scheme(conn, principal=who, scheme=body)
    _done(request, conn, who, "assessment_scheme", str(out.id), {"op": "create"})
    return out


@router.get("/schemes/{scheme_id}", response_model=scheme.Scheme, responses=ERRORS)
def get_scheme(scheme_id: RowId, principal: ReadDep, conn: ScopedConnDep) -> scheme.Scheme:
    """One scheme."""
    out = scheme.get_scheme(conn, principal=require(principal), scheme_id=scheme_id)
    conn.commit()
    return out


@router.put("/schemes/{scheme_id}", response_model=scheme.Scheme, responses=ERRORS)
def update_scheme(
    request: Request,
    scheme_id: RowId,
    body: scheme.SchemeIn,
    principal: ManageDep,
    conn: ScopedConnDep,
    version: Annotated[int, Query(ge=1, le=2**31 - 1, description="the version you saw")],
) -> scheme.Scheme:
    """Replace a scheme (published rounds keep the copy they were published with)."""
    who = require(principal)
    out = scheme.update_scheme(
        conn, principal=who, scheme_id=scheme_id, scheme=body, version=version
    )
    _done(request, conn, who, "assessment_scheme", str(scheme_id), {"op": "update"})
    return out


@router.delete("/schemes/{scheme_id}", status_code=204, responses=ERRORS)
def delete_scheme(
    request: Request, scheme_id: RowId, principal: ManageDep, conn: ScopedConnDep
) -> Response:
    """Delete a scheme no round uses."""
    who = require(principal)
    scheme.delete_scheme(conn, principal=who, scheme_id=scheme_id)
    _done(request, conn, who, "assessment_scheme", str(scheme_id), {"op": "delete"})
    return Response(status_code=204)


# --------------------------------------------------------------------------- rounds


class RoundOut(BaseModel):
    """A round (without its results)."""

    id: int
    scheme_id: int
    scheme_name: str
    level: str
    kind: str
    area_code: str
    label: str
    period_start: dt.date
    period_end: dt.date
    status: str
    published_at: dt.datetime | None
    published_by: str | None


class RoundResults(BaseModel):
    """A round, the scheme it applies (the frozen copy once published) and its results."""

    round: RoundOut
    scheme: dict[str, Any]
    results: list[dict[str, Any]]
    previous: dict[str, Any] | None = None


@router.get("/rounds", response_model=list[RoundOut])
def list_rounds(
    principal: ReadDep,
    conn: ScopedConnDep,
    scheme_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> list[dict[str, Any]]:
    """Rounds whose area overlaps your scope, newest first."""
    out = rounds.list_rounds(conn, principal=require(principal), scheme_id=scheme_id)
    conn.commit()
    return out


@router.post("/rounds", response_model=RoundOut, status_code=201, responses=ERRORS)
def create_round(
    request: Request, body: rounds.RoundIn, principal: ManageDep, conn: ScopedConnDep
) -> dict[str, Any]:
    """A draft round of a scheme for a month (2026-06), quarter (2026-Q2) or year (2026)."""
    who = require(principal)
    out = rounds.create_round(conn, principal=who, body=body)
    detail = {"op": "create", "label": body.label}
    _done(request, conn, who, "assessment_round", str(out["id"]), detail)
    return out


@router.get("/rounds/{round_id}", response_model=RoundResults, responses=ERRORS)
def get_round(round_id: RowId, principal: ReadDep, conn: ScopedConnDep) -> dict[str, Any]:
    """A round with its results in your scope (frozen once published; a preview before)."""
    out = rounds.results(conn, principal=require(principal), round_id=round_id)
    conn.commit()
    return out


@router.post("/rounds/{round_id}/publish", response_model=RoundOut, responses=ERRORS)
def publish_round(
    request: Request, round_id: RowId, principal: ManageDep, conn: ScopedConnDep
) -> dict[str, Any]:
    """Publish a draft round: its results are written once and never change again."""
    who = require(principal)
    out = rounds.publish(conn, principal=who, round_id=round_id)
    _done(request, conn, who, "assessment_round", str(round_id), {"op": "publish"})
    return out


@router.put("/rounds/{round_id}/scores", response_model=rounds.ManualScoreIn, responses=ERRORS)
def set_manual_score(
    request: Request,
    round_id: RowId,
    body: rounds.ManualScoreIn,
    principal: ManageDep,
    conn: ScopedConnDep,
) -> dict[str, Any]:
    """Enter a manual item's score (自查、互查、抽查) with its checker and notes."""
    who = require(principal)
    out = rounds.set_manual_score(conn, principal=who, round_id=round_id, body=body)
    detail = {"op": "score", "item": body.item_key, "target": body.target_code}
    _done(request, conn, who, "assessment_round", str(round_id), detail)
    return out


@router.get("/rounds/{round_id}/ranking", response_model=RoundResults, responses=ERRORS)
def round_ranking(round_id: RowId, principal: ReadDep, conn: ScopedConnDep) -> dict[str, Any]:
    """The round's ranking with each group's change since the previous round."""
    out = rounds.ranking(conn, principal=require(principal), round_id=round_id)
    conn.commit()
    return out


@router.get("/rounds/{round_id}/export", response_class=Response, responses=FILE_RESPONSES)
def export_round(
    round_id: RowId,
    principal: ReadDep,
    conn: ScopedConnDep,
    fmt: Annotated[Literal["xlsx", "pdf"], Query(alias="format")] = "xlsx",
) -> Response:
    """A round's results and ranking as Excel or as a printable PDF."""
    res = rounds.ranking(conn, principal=require(principal), round_id=round_id)
    conn.commit()
    name = f"assessment-round-{round_id}"
    if fmt == "xlsx":
        return _file(exports.round_xlsx(res), fmt, name)
    return _file(exports.round_pdf(res), fmt, name)


# --------------------------------------------------------------------------- public


class PublicFigures(BaseModel):
    """A grid's published closure and satisfaction figures (no personal data)."""

    code: str
    published: dict[str, Any] | None = Field(
        description="the latest published round holding the grid: label, kind, period, "
        "published_at, close_rate, satisfaction_rate (fractions; null: nothing to measure); "
        "null when no round is published yet"
    )


@router.get("/public/grids/{code}", response_model=PublicFigures, responses=ERRORS)
def public_figures(
    code: Annotated[str, Path(pattern=r"^\d{15}$")], principal: PublicDep, conn: ConnDep,
    request: Request,
) -> dict[str, Any]:  # fmt: skip
    """工作绩效公示: the grid's closure rate and resident satisfaction of the last published
    round, for the public grid map (from a read replica when configured: api.reads)."""
    return read(request, conn, lambda c: public.published_figures(c, code))
