"""Special-population follow-up schedules (特殊人群定期走访), built on :mod:`geogrid.people`.

Each special-population record is contacted periodically; the interval depends on its risk
level (``followup_rules``, admin-editable: 高 every 5, 中 every 20, 低 every 60 working
days). A follow-up recorded at time ``t`` makes the record next due on the day of
``add_working_time(t, n, "days")`` — the ``n``-th working day after ``t``'s local date on
the working calendar (holidays skipped, make-up working days counted); a date beyond the
calendar's last known year is refused (:class:`~geogrid.cases.calendar.CalendarUnknown`),
never guessed. An explicit ``next_due`` given with the follow-up wins. A record never
followed up is due at once (its first contact is owed). *Overdue*: the next due day is
before today (Beijing), or the record was never followed up.

Everything here needs the ``special`` permission on top of the scope (the routes check the
``special.read``/``special.write`` policy; the functions check the permission again), is
filtered by scope in SQL (and row-level security), answers names and ID numbers masked and
is audited. Creates are idempotent on ``client_id`` (the field app's outbox).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.cases.calendar import add_working_time
from geogrid.errors import Forbidden, InvalidInput, NotFound
from geogrid.fieldwork.idempotency import once
from geogrid.fieldwork.visits import area_prefix, check_page, today
from geogrid.people import service as people
from geogrid.people.mask import mask_name
from geogrid.people.models import RISK_LEVELS

__all__ = [
    "DueRecord",
    "FollowupCreate",
    "FollowupRule",
    "FollowupSaved",
    "due_records",
    "list_rules",
    "next_due",
    "record_followup",
    "set_rule",
]

MAX_LIMIT = 500
MAX_DAYS = 250
#: Records with their members and households. The members are fetched by their ids (one
#: index scan): a plain join made the planner scan every member of the county.
_FROM = (
    "FROM special_population s JOIN household_members m ON m.id = s.member_id "
    "AND m.id = ANY(ARRAY(SELECT s2.member_id FROM special_population s2)) "
    "JOIN households h ON h.id = m.household_id"
)
#: The latest follow-up of every record, read in one pass (a per-record sub-query made
#: row-level security rebuild its look-up for each record: 30 s for a county).
_LAST = (
    "LEFT JOIN (SELECT DISTINCT ON (f.record_id) f.record_id, f.followed_at, f.next_due "
    "FROM special_followups f ORDER BY f.record_id, f.followed_at DESC, f.id DESC) lf "
    "ON lf.record_id = s.id"
)


class FollowupCreate(BaseModel):
    """A follow-up of one special-population record."""

    model_config = ConfigDict(extra="forbid")

    record_id: int = Field(ge=1, le=2**62)
    note: str = Field(min_length=1, max_length=4000, description="情况记录")
    followed_at: dt.datetime | None = Field(default=None, description="default: now")
    next_due: dt.date | None = Field(default=None, description="default: by the risk level")


class FollowupSaved(BaseModel):
    """A recorded follow-up and whether this call created it."""

    id: int
    record_id: int
    followed_at: dt.datetime
    by_name: str
    note: str
    next_due: dt.date | None
    created: bool


class FollowupRule(BaseModel):
    """The follow-up interval of one risk level, in working days."""

    risk_level: str
    working_days: int
    updated_by: str | None
    updated_at: dt.datetime


class DueRecord(BaseModel):
    """A special-population record with its schedule (name and ID number masked)."""

    record_id: int
    member_id: int
    name: str
    id_number: str
    village_code: str
    area_code: str
    category: str
    risk_level: str
    working_days: int | None
    last_followed_at: dt.datetime | None
    next_due: dt.date | None = Field(description="null: never followed up (due at once)")
    overdue: bool
    never_followed: bool


def _need_special(principal: Principal) -> None:
    if "special" not in principal.permissions:
        raise Forbidden("this needs the 'special' permission (特殊人群档案权限)")


def list_rules(conn: Connection) -> list[FollowupRule]:
    """The interval per risk level (高, 中, 低)."""
    rows = conn.execute(
        text(
            "SELECT risk_level, working_days, updated_by, updated_at FROM followup_rules "
            "ORDER BY array_position(ARRAY['高', '中', '低']::text[], risk_level::text)"
        )
    ).all()
    return [FollowupRule(**r._mapping) for r in rows]


def set_rule(
    conn: Connection, *, principal: Principal, risk_level: str, working_days: int
) -> FollowupRule:
    """Change the interval of a risk level (an administrator of every area only)."""
    if principal.scope.kind != "all":
        raise Forbidden("only an administrator of every area may change the follow-up intervals")
    if risk_level not in RISK_LEVELS:
        raise InvalidInput(f"risk_level must be one of {'、'.join(RISK_LEVELS)}")
    if isinstance(working_days, bool) or not 1 <= working_days <= MAX_DAYS:
        raise InvalidInput(f"working_days must be between 1 and {MAX_DAYS}")
    row = conn.execute(
        text(
            "UPDATE followup_rules SET working_days = :d, updated_by = :u, updated_at = now() "
            "WHERE risk_level = :r RETURNING risk_level, working_days, updated_by, updated_at"
        ),
        {"d": working_days, "u": principal.username, "r": risk_level},
    ).one()
    return FollowupRule(**row._mapping)


def next_due(conn: Connection, *, risk_level: str, after: dt.datetime) -> dt.date:
    """The day a record of ``risk_level`` followed up at ``after`` is next due.

    Raises
    ------
    CalendarUnknown
        The day would fall in a year the working calendar does not know.
    """
    days = conn.execute(
        text("SELECT working_days FROM followup_rules WHERE risk_level = :r"), {"r": risk_level}
    ).scalar_one_or_none()
    if days is None:
        raise InvalidInput(f"no follow-up interval for risk level {risk_level!r}")
    return add_working_time(conn, after, int(days), "days").date()


def record_followup(
    conn: Connection,
    *,
    principal: Principal,
    client_id: uuid.UUID | None,
    body: FollowupCreate | dict[str, Any],
    ip: str | None = None,
) -> FollowupSaved:
    """Record a follow-up of a record in scope; its next due day comes from the record's
    risk level on the working calendar unless ``next_due`` is given. Idempotent on
    ``client_id``.

    Raises
    ------
    Forbidden
        No ``special`` permission.
    NotFound
        No such record in scope (audited as refused).
    InvalidInput
        An empty note, a ``followed_at`` without time zone or in the future, a
        ``next_due`` before the follow-up, a due day beyond the calendar's known years.
    """
    _need_special(principal)
    data = body if isinstance(body, FollowupCreate) else FollowupCreate.model_validate(body)

    def create() -> int:
        made = people.add_followup(
            conn, principal=principal, record_id=data.record_id, note=data.note,
            followed_at=data.followed_at, next_due=data.next_due, ip=ip,
        )  # fmt: skip
        if data.next_due is None:
            risk = conn.execute(
                text("SELECT risk_level FROM special_population WHERE id = :r"),
                {"r": data.record_id},
            ).scalar_one()
            due = next_due(conn, risk_level=risk, after=made.followed_at)
            conn.execute(
                text("UPDATE special_followups SET next_due = :d WHERE id = :i"),
                {"d": due, "i": made.id},
            )
        return made.id

    followup_id, created = once(
        conn, principal=principal, client_id=client_id, kind="special_followup", create=create
    )
    row = conn.execute(
        text(
            "SELECT f.id, f.record_id, f.followed_at, f.by_name, f.note, f.next_due "
            f"FROM special_followups f JOIN special_population s ON s.id = f.record_id "
            f"JOIN household_members m ON m.id = s.member_id "
            f"JOIN households h ON h.id = m.household_id "
            f"WHERE f.id = :i AND {people.SCOPE}"
        ),
        {"i": followup_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no follow-up {followup_id} in your scope")
    return FollowupSaved(**row._mapping, created=created)


def due_records(
    conn: Connection,
    *,
    principal: Principal,
    area: str | None = None,
    record_id: int | None = None,
    within_days: int | None = 0,
    limit: int = 100,
    offset: int = 0,
    ip: str | None = None,
) -> tuple[list[DueRecord], int]:
    """Records in scope with their schedule, soonest due first (never followed first).

    ``within_days``: only records due within that many days from today (``0``: due today
    or overdue); ``None``: every record (the schedule of each). ``record_id``: one record.
    Audited (``special.read``) with the ids returned.
    """
    _need_special(principal)
    check_page(limit, offset, MAX_LIMIT)
    if within_days is not None and not 0 <= within_days <= 366:
        raise InvalidInput("within_days must be between 0 and 366")
    prefix = principal.scope.prefix
    if area:
        prefix = area_prefix(area)
        if not prefix.startswith(principal.scope.prefix):
            raise Forbidden(f"{area} is outside your scope ({principal.scope})")
    now = today()
    where = [people.SCOPE.replace(":scope_prefix", ":prefix")]
    params: dict[str, Any] = {"prefix": prefix, "today": now}
    if within_days is not None:
        where.append("(lf.next_due IS NULL OR lf.next_due <= :until)")
        params["until"] = now + dt.timedelta(days=within_days)
    if record_id is not None:
        where.append("s.id = :rid")
        params["rid"] = record_id
    cond = " AND ".join(where)
    # Row-level security makes the planner expect a few dozen records where a county has
    # thousands; its nested loops then re-run the policies per row. Hash joins only, for
    # this statement (SET LOCAL, restored below).
    conn.execute(text("SET LOCAL enable_nestloop = off"))
    rows = conn.execute(
        text(
            f"""
            SELECT s.id AS record_id, s.member_id, m.name, m.id_masked, s.village_code,
                   h.scope_key AS area_code, s.category, s.risk_level, r.working_days,
                   lf.followed_at AS last_followed_at, lf.next_due, count(*) OVER () AS total
            {_FROM} {_LAST} LEFT JOIN followup_rules r ON r.risk_level = s.risk_level
            WHERE {cond}
            ORDER BY lf.next_due NULLS FIRST, s.id LIMIT :lim OFFSET :off
            """
        ),
        {**params, "lim": limit, "off": offset},
    ).all()
    total = rows[0].total if rows else 0
    if not rows and offset:
        total = conn.execute(text(f"SELECT count(*) {_FROM} {_LAST} WHERE {cond}"), params).scalar()
    conn.execute(text("SET LOCAL enable_nestloop = on"))
    items = [
        DueRecord(
            record_id=r.record_id,
            member_id=r.member_id,
            name=mask_name(r.name) or "",
            id_number=r.id_masked,
            village_code=r.village_code,
            area_code=r.area_code,
            category=r.category,
            risk_level=r.risk_level,
            working_days=r.working_days,
            last_followed_at=r.last_followed_at,
            next_due=r.next_due,
            overdue=r.next_due is None or r.next_due < now,
            never_followed=r.last_followed_at is None,
        )
        for r in rows
    ]
    audit.record(
        conn, actor=principal, action="special.read", target_type="special_population",
        target_ids=[str(i.record_id) for i in items], ip=ip,
        detail={"list": "followups_due", "within_days": within_days, "total": int(total or 0)},
    )  # fmt: skip
    return items, int(total or 0)
