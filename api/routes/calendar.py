"""Routes: the working calendar (工作日历). Every signed-in user may read it and preview a
deadline; the system administrator edits it (days, office hours, a whole year from the
State Council's notice), each edit audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import allow, audited
from api.deps import ConnDep, EngineDep
from api.schemas import ErrorPublic
from geogrid.access.policy import Principal
from geogrid.cases import calendar as cal

router = APIRouter(prefix="/api/calendar", tags=["calendar"])

ReadDep = Annotated[Principal | None, Depends(allow("calendar.read"))]
ManageDep = Annotated[Principal | None, Depends(allow("calendar.manage"))]
Year = Annotated[int, Query(ge=cal.MIN_YEAR, le=cal.MAX_YEAR, description="default: this year")]
Day = Annotated[dt.date, Path(description="YYYY-MM-DD")]
Name = Annotated[str | None, Field(default=None, max_length=cal.MAX_NAME)]

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorPublic, "description": "Bad input, or a year the calendar lacks."},
    401: {"model": ErrorPublic, "description": "Not signed in."},
    403: {"model": ErrorPublic, "description": "Not this role's job."},
    404: {"model": ErrorPublic, "description": "No such day, or the year is not declared."},
    409: {"model": ErrorPublic, "description": "The year is declared already."},
}


class DayPublic(BaseModel):
    date: dt.date
    kind: Literal["holiday", "workday"] = Field(description="holiday 放假 / workday 调休上班")
    name: str | None = None
    source: str = "admin"


#: A local time of day, HH:MM (JSON Schema's ``format: time`` would demand a zone offset).
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class PeriodPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = Field(pattern=HHMM, description="local time, HH:MM, e.g. 08:30")
    end: str = Field(pattern=HHMM, description="local time, HH:MM, e.g. 12:00")

    @classmethod
    def of(cls, start: dt.time, end: dt.time) -> PeriodPublic:
        return cls(start=start.strftime("%H:%M"), end=end.strftime("%H:%M"))

    def times(self) -> tuple[dt.time, dt.time]:
        return dt.time.fromisoformat(self.start), dt.time.fromisoformat(self.end)


class YearPublic(BaseModel):
    year: int
    source: str
    declared_at: dt.datetime | None
    declared_by: str | None


class CalendarPublic(BaseModel):
    """One year: its special days, the office hours and every known year."""

    year: int
    known: bool = Field(description="false: deadlines reaching this year are refused")
    source: str | None
    timezone: str
    office_hours: list[PeriodPublic]
    days: list[DayPublic]
    years: list[YearPublic]
    version: int


class DayUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["holiday", "workday"]
    name: Name


class DayDeclared(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date: dt.date
    kind: Literal["holiday", "workday"]
    name: Name


class YearDeclare(BaseModel):
    """A year's holidays and make-up working days, as the State Council publishes them."""

    model_config = ConfigDict(extra="forbid")
    year: int = Field(ge=cal.MIN_YEAR, le=cal.MAX_YEAR)
    days: list[DayDeclared] = Field(max_length=366)
    replace: bool = Field(default=False, description="replace a year known already")


class OfficeHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    periods: list[PeriodPublic] = Field(min_length=1, max_length=cal.MAX_PERIODS)
    timezone: str | None = Field(default=None, max_length=64, description="e.g. Asia/Shanghai")


class Deadline(BaseModel):
    start: dt.datetime
    amount: int
    unit: Literal["hours", "days"]
    deadline: dt.datetime


def _public(view: cal.YearView) -> CalendarPublic:
    return CalendarPublic(
        year=view.year, known=view.known, source=view.source, timezone=view.timezone,
        office_hours=[PeriodPublic.of(s, e) for s, e in view.office_hours],
        days=[DayPublic(date=d.day, kind=d.kind, name=d.name, source=d.source)
              for d in view.days],
        years=[YearPublic(**vars(y)) for y in view.years], version=view.version,
    )  # fmt: skip


@router.get("", response_model=CalendarPublic, responses=_ERRORS)
def get_calendar(_: ReadDep, conn: ConnDep, year: Year | None = None) -> CalendarPublic:
    """A year of the working calendar: holidays, make-up working days, office hours."""
    zone = cal.load_calendar(conn).zone
    return _public(cal.year_view(conn, year or dt.datetime.now(zone).year))


@router.get("/deadline", response_model=Deadline, responses=_ERRORS)
def preview_deadline(
    _: ReadDep,
    conn: ConnDep,
    start: Annotated[dt.datetime, Query(description="with a time zone, e.g. +08:00")],
    amount: Annotated[int, Query(ge=0, le=max(cal.MAX_AMOUNT.values()))],
    unit: Annotated[Literal["hours", "days"], Query()],
) -> Deadline:
    """The deadline ``amount`` working hours or days after ``start`` (400 with the year
    named when the calendar does not know it)."""
    end = cal.add_working_time(conn, start, amount, unit)
    return Deadline(start=start, amount=amount, unit=unit, deadline=end)


@router.put("/days/{day}", response_model=DayPublic, responses=_ERRORS)
def put_day(
    request: Request, day: Day, body: DayUpdate, principal: ManageDep, engine: EngineDep
) -> DayPublic:
    """Make ``day`` a public holiday (named) or a make-up working day (a Saturday or
    Sunday) of a known year."""
    with engine.begin() as conn:
        entry = cal.set_day(conn, cal.DayEntry(day, body.kind, body.name))
        audited(request, conn, principal, action="calendar.day.set", target_type="calendar",
                target_ids=[day.isoformat()],
                detail={"kind": entry.kind, "name": entry.name})  # fmt: skip
    return DayPublic(date=entry.day, kind=entry.kind, name=entry.name, source=entry.source)


@router.delete("/days/{day}", status_code=204, responses=_ERRORS)
def delete_day(request: Request, day: Day, principal: ManageDep, engine: EngineDep) -> None:
    """Make ``day`` an ordinary day of the week again."""
    with engine.begin() as conn:
        cal.remove_day(conn, day)
        audited(request, conn, principal, action="calendar.day.remove", target_type="calendar",
                target_ids=[day.isoformat()])  # fmt: skip


@router.post("/years", response_model=CalendarPublic, status_code=201, responses=_ERRORS)
def declare_year(
    request: Request, body: YearDeclare, principal: ManageDep, engine: EngineDep
) -> CalendarPublic:
    """Declare a whole year (every holiday and make-up working day of the State Council's
    notice): deadlines may then reach it."""
    days = [cal.DayEntry(d.date, d.kind, d.name) for d in body.days]
    with engine.begin() as conn:
        cal.declare_year(conn, body.year, days, replace=body.replace,
                         declared_by=principal.username if principal else None)  # fmt: skip
        audited(request, conn, principal, action="calendar.year.declare", target_type="calendar",
                target_ids=[str(body.year)],
                detail={"days": len(days), "replace": body.replace})  # fmt: skip
        return _public(cal.year_view(conn, body.year))


@router.put("/office-hours", response_model=CalendarPublic, responses=_ERRORS)
def put_office_hours(
    request: Request, body: OfficeHours, principal: ManageDep, engine: EngineDep
) -> CalendarPublic:
    """Replace the office hours (and optionally the time zone) working hours count in."""
    with engine.begin() as conn:
        cal.set_office_hours(conn, [p.times() for p in body.periods], body.timezone)
        audited(request, conn, principal, action="calendar.hours.set", target_type="calendar",
                detail={"periods": [f"{p.start}-{p.end}" for p in body.periods],
                        "timezone": body.timezone})  # fmt: skip
        return _public(cal.year_view(conn, dt.datetime.now(cal.load_calendar(conn).zone).year))
