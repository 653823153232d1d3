"""Assessment (量化考核): indicators per town, village, grid and staff member, their
definitions (the one registry of formulas: :mod:`geogrid.assessment.indicators`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import ScopedConnDep, allow, require
from api.schemas import ErrorPublic
from geogrid.access.policy import Principal
from geogrid.assessment import indicators

router = APIRouter(prefix="/api/assessment", tags=["assessment"])

ReadDep = Annotated[Principal | None, Depends(allow("assessment.read"))]
Code = Annotated[
    str | None,
    Query(pattern=r"^(\d{12}|\d{15})$", description="a town, village or grid code in scope"),
]
LevelQ = Annotated[Literal["town", "village", "grid", "staff"], Query()]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorPublic}, 403: {"model": ErrorPublic}, 422: {"model": ErrorPublic},
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
    who = require(principal)
    period = default_period(date_from, date_to)
    prefix = indicators.effective_prefix(who, level, code)
    rows = indicators.compute(conn, prefix=prefix, level=level, period=period)
    conn.commit()
    return {
        "period": {"from": period.start, "to": period.end},
        "indicators": indicators.definitions(),
        "rows": rows,
    }
