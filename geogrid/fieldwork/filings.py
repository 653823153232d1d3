"""The key-unit file (户籍化档案): filings and their due dates on the working calendar.

Three kinds of filing, each with one due date per unit in ``key_unit_dues``:

``staff_change`` (人员变更备案)
    when the responsible person or safety manager is replaced, the change must be filed
    within **5 working days**: due = :func:`geogrid.cases.calendar.add_working_time`
    (change date, 5, ``days``) — the change day is not counted, make-up working days (调休)
    count, holidays do not. Filing it closes the due.
``maintenance`` (消防设施维护保养检测)
    every **6 months**; ``self_assessment`` (消防安全自我评估) every **3 months** (quarterly).
    Due = the last filed date (or the unit's registration) plus the period, same day of
    the month (clipped to the month's end), moved forward to the next working day when
    that is a weekend or holiday.

A due date the calendar cannot count (a year it does not know) is never guessed:
``due_date`` stays empty and ``due_problem`` holds the calendar's message; once the year is
declared (the calendar's version moves), :func:`refresh_dues` computes it. A filing is
*overdue* on day ``d`` when its due date is before ``d``.
"""

from __future__ import annotations

import calendar as _cal
import datetime as dt
import uuid
from typing import Any, Final, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.cases.calendar import Calendar, CalendarUnknown, load_calendar
from geogrid.errors import InvalidInput, NotFound
from geogrid.fieldwork import idempotency
from geogrid.fieldwork.common import (
    LOCAL,
    area_filter,
    check_files,
    check_note,
    check_page,
    make_etag,
    stale,
    today_local,
)

__all__ = [
    "KINDS",
    "FilingCreate",
    "FilingPublic",
    "FilingUpdate",
    "GridFilings",
    "OverdueFiling",
    "add_months",
    "due_date",
    "list_filings",
    "overdue_counts",
    "overdue_filings",
    "record_filing",
    "refresh_dues",
    "update_filing",
]

Kind = Literal["staff_change", "maintenance", "self_assessment"]
KINDS: Final[tuple[str, ...]] = ("staff_change", "maintenance", "self_assessment")
#: Recurring filings: months between two.
PERIOD_MONTHS: Final[dict[str, int]] = {"maintenance": 6, "self_assessment": 3}
#: Working days to file a change of managers.
STAFF_CHANGE_DAYS: Final = 5
MAX_LIMIT: Final = 1000
SCOPE: Final = "(:scope_prefix = '' OR u.scope_key LIKE :scope_prefix || '%')"


# --------------------------------------------------------------------------- due dates


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later, clipped to the end of a shorter month.

    >>> add_months(dt.date(2025, 8, 31), 6), add_months(dt.date(2025, 11, 30), 3)
    (datetime.date(2026, 2, 28), datetime.date(2026, 2, 28))
    """
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, _cal.monthrange(year, month)[1]))


def roll_forward(cal: Calendar, day: dt.date) -> dt.date:
    """``day`` if it is a working day, else the next one (:class:`CalendarUnknown` when a
    year on the way is unknown)."""
    while not cal.is_workday(day):
        day += dt.timedelta(days=1)
    return day


def due_date(conn: Connection, kind: str, basis: dt.date) -> dt.date:
    """The due date of a ``kind`` filing counted from ``basis`` (the change date, or the
    last filing's date); see the module docs.

    Raises
    ------
    CalendarUnknown
        The count reaches a year the working calendar does not know.
    InvalidInput
        An unknown kind.
    """
    cal = load_calendar(conn)
    if kind == "staff_change":
        start = dt.datetime.combine(basis, dt.time(12), tzinfo=cal.zone)
        return cal.add(start, STAFF_CHANGE_DAYS, "days").date()
    if kind not in PERIOD_MONTHS:
        raise InvalidInput(f"unknown filing kind {kind!r}; one of {', '.join(KINDS)}")
    return roll_forward(cal, add_months(basis, PERIOD_MONTHS[kind]))


def _due(conn: Connection, kind: str, basis: dt.date) -> tuple[dt.date | None, str | None]:
    try:
        return due_date(conn, kind, basis), None
    except CalendarUnknown as exc:
        return None, exc.message


_UPSERT = text(
    "INSERT INTO key_unit_dues (unit_id, kind, basis, due_date, due_problem, due_cal) "
    "VALUES (:u, :k, :b, :d, :p, :v) ON CONFLICT (unit_id, kind) DO UPDATE SET "
    "basis = EXCLUDED.basis, due_date = EXCLUDED.due_date, due_problem = EXCLUDED.due_problem, "
    "due_cal = EXCLUDED.due_cal"
)


#: One statement for every recomputed due (one layer-version bump, not one per row).
_SET_MANY = text(
    """
    UPDATE key_unit_dues d SET due_date = v.due, due_problem = v.problem, due_cal = :v
    FROM unnest(CAST(:units AS bigint[]), CAST(:kinds AS text[]), CAST(:dues AS date[]),
                CAST(:problems AS text[])) AS v(unit_id, kind, due, problem)
    WHERE d.unit_id = v.unit_id AND d.kind = v.kind
    """
)


def _set_due(conn: Connection, unit_id: int, kind: str, basis: dt.date) -> None:
    due, problem = _due(conn, kind, basis)
    conn.execute(
        _UPSERT,
        {"u": unit_id, "k": kind, "b": basis, "d": due, "p": problem,
         "v": load_calendar(conn).version},
    )  # fmt: skip


def start_dues(conn: Connection, unit_id: int, registered_on: dt.date) -> None:
    """The recurring dues of a newly registered unit."""
    for kind in PERIOD_MONTHS:
        _set_due(conn, unit_id, kind, registered_on)


def start_staff_change(conn: Connection, unit_id: int, changed_on: dt.date) -> None:
    """A manager was replaced on ``changed_on``: the change must be filed."""
    _set_due(conn, unit_id, "staff_change", changed_on)


def refresh_dues(conn: Connection) -> int:
    """Recompute the dues computed with another version of the calendar (or never: a year
    it did not know). Returns how many changed.

    Writes nothing while the calendar is unchanged: every unit gets its recurring dues when
    it is inserted (0030's trigger; 0031 gave them to the units registered before).
    """
    cal = load_calendar(conn)
    rows = conn.execute(
        text(
            "SELECT unit_id, kind, basis FROM key_unit_dues WHERE due_cal IS DISTINCT FROM :v "
            "AND basis IS NOT NULL"
        ),
        {"v": cal.version},
    ).all()
    if rows:
        dues: list[dt.date | None] = []
        problems: list[str | None] = []
        for r in rows:
            due, problem = _due(conn, r.kind, r.basis)
            dues.append(due)
            problems.append(problem)
        conn.execute(
            _SET_MANY,
            {"v": cal.version, "units": [r.unit_id for r in rows], "kinds": [r.kind for r in rows],
             "dues": dues, "problems": problems},
        )  # fmt: skip
    return len(rows)


# --------------------------------------------------------------------------- shapes


class FilingCreate(BaseModel):
    """A filing as the client sends it."""

    kind: Kind
    event_date: dt.date = Field(description="the change, maintenance or assessment date")
    note: str | None = Field(default=None, max_length=2000)
    photos: list[str] = Field(default_factory=list, max_length=10, description="sha256 each")


class FilingUpdate(BaseModel):
    """Changes to a filing (absent fields stay)."""

    event_date: dt.date | None = None
    note: str | None = Field(default=None, max_length=2000)
    photos: list[str] | None = Field(default=None, max_length=10)


class FilingPublic(BaseModel):
    """A filing of a key unit's file."""

    id: int
    unit_id: int
    kind: str
    event_date: dt.date
    filed_at: dt.datetime
    note: str | None
    photos: list[str]
    by_name: str
    due_date: dt.date | None
    on_time: bool | None
    version: int
    etag: str


class OverdueFiling(BaseModel):
    """A filing past its due date (no personal data)."""

    unit_id: int
    unit_no: str
    name: str
    unit_type: str
    risk_level: int
    village_code: str | None
    grid_code: str | None
    kind: str
    due_date: dt.date
    days_overdue: int


class GridFilings(BaseModel):
    """Key units and overdue filings of one grid (or of a village, for unplaced units)."""

    village_code: str | None
    grid_code: str | None
    units: int
    overdue_units: int
    overdue_filings: int


# --------------------------------------------------------------------------- filings

_FILING = (
    "SELECT f.id, f.unit_id, f.kind, f.event_date, f.filed_at, f.note, f.photos, f.by_name, "
    "f.due_date, f.on_time, f.version FROM key_unit_filings f JOIN key_units u ON u.id = f.unit_id"
)


def _filing(r: Any) -> FilingPublic:
    return FilingPublic(
        id=int(r.id), unit_id=int(r.unit_id), kind=r.kind, event_date=r.event_date,
        filed_at=r.filed_at, note=r.note, photos=list(r.photos), by_name=r.by_name,
        due_date=r.due_date, on_time=r.on_time, version=int(r.version),
        etag=make_etag("filing", int(r.id), int(r.version)),
    )  # fmt: skip


def _unit_in_scope(conn: Connection, principal: Principal, unit_id: int) -> Any:
    row = conn.execute(
        text(f"SELECT u.id, u.registered_on FROM key_units u WHERE u.id = :id AND {SCOPE}"),
        {"id": unit_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no key unit {unit_id} in your scope")
    return row


def _get(conn: Connection, principal: Principal, filing_id: int, lock: bool = False) -> Any:
    row = conn.execute(
        text(f"{_FILING} WHERE f.id = :id AND {SCOPE}{' FOR UPDATE OF f' if lock else ''}"),
        {"id": filing_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no filing {filing_id} in your scope")
    return row


def _event_date(day: dt.date) -> dt.date:
    if day > today_local():
        raise InvalidInput("event_date is in the future")
    if day < dt.date(2000, 1, 1):
        raise InvalidInput("event_date is before 2000")
    return day


def record_filing(
    conn: Connection,
    *,
    principal: Principal,
    unit_id: int,
    client_id: uuid.UUID | None,
    body: FilingCreate,
    ip: str | None = None,
) -> tuple[FilingPublic, bool]:
    """File a staff change, maintenance report or self-assessment for a unit in scope.

    ``client_id`` makes the call idempotent (:func:`geogrid.fieldwork.idempotency.once`):
    sending it again answers the filing made the first time and ``False``.
    Returns the filing and whether it was created now.
    """
    if body.kind not in KINDS:
        raise InvalidInput(f"unknown filing kind; one of {', '.join(KINDS)}")
    event = _event_date(body.event_date)
    note = check_note(body.note)
    photos = check_files(conn, body.photos)
    unit = _unit_in_scope(conn, principal, unit_id)

    def create() -> int:
        conn.execute(
            text("SELECT 1 FROM key_units WHERE id = :u FOR UPDATE"), {"u": unit_id}
        )  # one filing at a time per unit: dues stay consistent
        refresh_dues(conn)
        due = conn.execute(
            text("SELECT basis, due_date FROM key_unit_dues WHERE unit_id = :u AND kind = :k"),
            {"u": unit_id, "k": body.kind},
        ).one_or_none()
        due_day = due.due_date if due is not None else None
        filed = dt.datetime.now(LOCAL).date()
        on_time = None if due_day is None else filed <= due_day
        new_id = conn.execute(
            text(
                "INSERT INTO key_unit_filings (unit_id, kind, event_date, note, photos, "
                "by_user_id, by_name, due_date, on_time) VALUES (:u, :k, :e, :n, :p, :uid, "
                ":by, :d, :ot) RETURNING id"
            ),
            {"u": unit_id, "k": body.kind, "e": event, "n": note, "p": photos,
             "uid": principal.user_id if principal.user_id > 0 else None,
             "by": principal.username, "d": due_day, "ot": on_time},
        ).scalar_one()  # fmt: skip
        if body.kind == "staff_change":
            if due is not None and due.basis is not None and event >= due.basis:
                conn.execute(
                    text("DELETE FROM key_unit_dues WHERE unit_id = :u AND kind = 'staff_change'"),
                    {"u": unit_id},
                )
        else:
            basis = max(event, due.basis) if due is not None and due.basis else event
            _set_due(conn, unit_id, body.kind, max(basis, unit.registered_on))
        audit.record(
            conn, actor=principal, action="unit.write", target_type="key_unit",
            target_ids=[str(unit_id)], ip=ip, detail={"filing": int(new_id), "kind": body.kind},
        )  # fmt: skip
        return int(new_id)

    filing_id, created = idempotency.once(
        conn, principal=principal, client_id=client_id, kind="key_unit_filing", create=create
    )
    return _filing(_get(conn, principal, filing_id)), created


def get_filing(conn: Connection, *, principal: Principal, filing_id: int) -> FilingPublic:
    """One filing of a unit in scope."""
    return _filing(_get(conn, principal, filing_id))


def update_filing(
    conn: Connection,
    *,
    principal: Principal,
    filing_id: int,
    expected_version: int,
    body: FilingUpdate,
    ip: str | None = None,
) -> FilingPublic:
    """Correct a filing based on ``expected_version`` (:class:`StaleVersion` with the
    current filing when it moved on); a changed date recomputes the unit's due date."""
    row = _get(conn, principal, filing_id, lock=True)
    if int(row.version) != expected_version:
        raise stale("filing", filing_id, expected_version, _filing(row))
    event = _event_date(body.event_date) if body.event_date is not None else row.event_date
    note = check_note(body.note) if "note" in body.model_fields_set else row.note
    photos = check_files(conn, body.photos) if body.photos is not None else list(row.photos)
    conn.execute(
        text(
            "UPDATE key_unit_filings SET event_date = :e, note = :n, photos = :p, "
            "version = version + 1, updated_at = now() WHERE id = :id"
        ),
        {"e": event, "n": note, "p": photos, "id": filing_id},
    )
    if event != row.event_date and row.kind in PERIOD_MONTHS:
        basis = conn.execute(
            text(
                "SELECT greatest(max(f.event_date), u.registered_on) FROM key_units u "
                "LEFT JOIN key_unit_filings f ON f.unit_id = u.id AND f.kind = :k "
                "WHERE u.id = :u GROUP BY u.registered_on"
            ),
            {"u": row.unit_id, "k": row.kind},
        ).scalar_one()
        _set_due(conn, int(row.unit_id), row.kind, basis)
    audit.record(
        conn, actor=principal, action="unit.write", target_type="key_unit",
        target_ids=[str(row.unit_id)], ip=ip, detail={"filing": filing_id, "op": "update"},
    )  # fmt: skip
    return _filing(_get(conn, principal, filing_id))


def list_filings(
    conn: Connection, *, principal: Principal, unit_id: int, kind: str | None = None
) -> list[FilingPublic]:
    """The filings of one unit in scope, newest first."""
    _unit_in_scope(conn, principal, unit_id)
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"unknown filing kind; one of {', '.join(KINDS)}")
    rows = conn.execute(
        text(
            f"{_FILING} WHERE f.unit_id = :u AND (CAST(:k AS text) IS NULL OR f.kind = :k) "
            "ORDER BY f.event_date DESC, f.id DESC"
        ),
        {"u": unit_id, "k": kind},
    ).all()
    return [_filing(r) for r in rows]


# --------------------------------------------------------------------------- overdue


def overdue_filings(
    conn: Connection,
    *,
    principal: Principal,
    grid: str | None = None,
    today: dt.date | None = None,
    limit: int = 200,
    offset: int = 0,
) -> tuple[list[OverdueFiling], int]:
    """Filings past their due date in scope (optionally in one town, village or grid),
    by grid then due date; and their total."""
    check_page(limit, offset, MAX_LIMIT)
    day = today or today_local()
    refresh_dues(conn)
    where = ["d.due_date < :today", SCOPE]
    params: dict[str, Any] = {"today": day, "scope_prefix": principal.scope.prefix,
                              "lim": limit, "off": offset}  # fmt: skip
    area = area_filter(grid)
    if area is not None:
        where.append("u.scope_key LIKE :area || '%'")
        params["area"] = area
    cond = " AND ".join(where)
    rows = conn.execute(
        text(
            "SELECT u.id AS unit_id, u.unit_no, u.name, u.unit_type, u.risk_level, "
            "u.village_code, u.grid_code, d.kind, d.due_date, (:today - d.due_date) AS late, "
            "count(*) OVER () AS total "
            f"FROM key_unit_dues d JOIN key_units u ON u.id = d.unit_id WHERE {cond} "
            "ORDER BY u.scope_key, d.due_date, u.id, d.kind LIMIT :lim OFFSET :off"
        ),
        params,
    ).all()
    total = int(rows[0].total) if rows else 0
    if not rows and offset:
        total = int(
            conn.execute(
                text(
                    "SELECT count(*) FROM key_unit_dues d JOIN key_units u ON u.id = d.unit_id "
                    f"WHERE {cond}"
                ),
                params,
            ).scalar_one()
        )
    items = [
        OverdueFiling(
            unit_id=int(r.unit_id), unit_no=r.unit_no, name=r.name, unit_type=r.unit_type,
            risk_level=int(r.risk_level), village_code=r.village_code, grid_code=r.grid_code,
            kind=r.kind, due_date=r.due_date, days_overdue=int(r.late),
        )
        for r in rows
    ]  # fmt: skip
    return items, total


def overdue_counts(
    conn: Connection,
    *,
    principal: Principal,
    grid: str | None = None,
    today: dt.date | None = None,
) -> list[GridFilings]:
    """Per grid in scope: key units, units with an overdue filing, overdue filings."""
    day = today or today_local()
    refresh_dues(conn)
    params: dict[str, Any] = {"today": day, "scope_prefix": principal.scope.prefix}
    extra = ""
    area = area_filter(grid)
    if area is not None:
        extra = " AND u.scope_key LIKE :area || '%'"
        params["area"] = area
    rows = conn.execute(
        text(
            """
            SELECT u.village_code, u.grid_code, count(DISTINCT u.id) AS units,
                   count(DISTINCT d.unit_id) AS overdue_units,
                   count(d.unit_id) AS overdue_filings
            FROM key_units u
            LEFT JOIN key_unit_dues d ON d.unit_id = u.id AND d.due_date < :today
            """
            f"WHERE {SCOPE}{extra} GROUP BY u.village_code, u.grid_code "
            "ORDER BY u.village_code, u.grid_code"
        ),
        params,
    ).all()
    return [
        GridFilings(
            village_code=r.village_code, grid_code=r.grid_code, units=int(r.units),
            overdue_units=int(r.overdue_units), overdue_filings=int(r.overdue_filings),
        )
        for r in rows
    ]  # fmt: skip
