"""Inspection records: the checklist answered, failed items → cases, re-checks, and the
completion rate per grid (rules: :mod:`geogrid.fieldwork.inspections`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.cases.service import create_case
from geogrid.errors import InvalidInput, NotFound
from geogrid.fieldwork import idempotency
from geogrid.fieldwork.checklists import MAX_ITEMS, TemplatePublic, dumps, get_template
from geogrid.fieldwork.common import (
    LOCAL,
    area_filter,
    check_files,
    check_note,
    check_page,
    today_local,
)
from geogrid.fieldwork.inspections import MAX_LIMIT, SCOPE, point_row, refresh_points

__all__ = [
    "GridCompletion",
    "InspectionCreate",
    "RecordPublic",
    "completion",
    "get_record",
    "list_records",
    "record_inspection",
]


class ItemResult(BaseModel):
    item: str = Field(min_length=1, max_length=32)
    result: Literal["pass", "fail", "na"]
    note: str | None = Field(default=None, max_length=500)


class InspectionCreate(BaseModel):
    """An inspection as the field app sends it."""

    point_id: int = Field(ge=1, le=2**62)
    inspected_at: dt.datetime | None = Field(default=None, description="default: now")
    results: list[ItemResult] = Field(min_length=1, max_length=MAX_ITEMS)
    photos: list[str] = Field(default_factory=list, max_length=10, description="sha256 each")
    signature: str | None = Field(default=None, description="sha256 of the signature image")
    note: str | None = Field(default=None, max_length=2000)


class OpenedCase(BaseModel):
    item: str
    case_id: int
    case_no: str


class RecordPublic(BaseModel):
    """An inspection record with the cases its failed items opened."""

    id: int
    point_id: int
    inspected_at: dt.datetime
    by_name: str
    template_code: str
    template_version: int
    results: list[ItemResult]
    photos: list[str]
    signature: str | None
    note: str | None
    due_date: dt.date | None
    on_time: bool | None
    cases: list[OpenedCase]
    resolved: list[OpenedCase]
    created: bool = Field(default=False, description="made by this request (not a repeat)")


_RECORD = """
SELECT r.id, r.point_id, r.inspected_at, r.by_name, r.template_code, r.template_version,
       r.results, r.photos, r.signature, r.note, r.due_date, r.on_time
FROM inspection_records r JOIN inspection_points p ON p.id = r.point_id
"""


def _record(conn: Connection, r: Any) -> RecordPublic:
    links = conn.execute(
        text(
            "SELECT l.item_code, l.case_id, c.case_no, l.record_id = :r AS opened "
            "FROM inspection_case_links l JOIN cases c ON c.id = l.case_id "
            "WHERE l.record_id = :r OR l.resolved_record_id = :r ORDER BY l.id"
        ),
        {"r": r.id},
    ).all()
    return RecordPublic(
        id=int(r.id), point_id=int(r.point_id), inspected_at=r.inspected_at, by_name=r.by_name,
        template_code=r.template_code, template_version=int(r.template_version),
        results=[ItemResult(**x) for x in r.results], photos=list(r.photos),
        signature=r.signature, note=r.note, due_date=r.due_date, on_time=r.on_time,
        cases=[OpenedCase(item=x.item_code, case_id=x.case_id, case_no=x.case_no)
               for x in links if x.opened],
        resolved=[OpenedCase(item=x.item_code, case_id=x.case_id, case_no=x.case_no)
                  for x in links if not x.opened],
    )  # fmt: skip


def get_record(conn: Connection, *, principal: Principal, record_id: int) -> RecordPublic:
    """One inspection record of a point in scope."""
    row = conn.execute(
        text(f"{_RECORD} WHERE r.id = :id AND {SCOPE}"),
        {"id": record_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no inspection record {record_id} in your scope")
    return _record(conn, row)


def list_records(
    conn: Connection, *, principal: Principal, point_id: int, limit: int = 50
) -> list[RecordPublic]:
    """A point's inspection records, newest first."""
    check_page(limit, 0, MAX_LIMIT)
    point_row(conn, principal, point_id)
    rows = conn.execute(
        text(f"{_RECORD} WHERE r.point_id = :p ORDER BY r.inspected_at DESC, r.id DESC LIMIT :l"),
        {"p": point_id, "l": limit},
    ).all()
    return [_record(conn, r) for r in rows]


def _check_results(template: TemplatePublic, results: list[ItemResult]) -> dict[str, ItemResult]:
    codes = [i.code for i in template.items]
    answered: dict[str, ItemResult] = {}
    for r in results:
        if r.item not in codes:
            raise InvalidInput(f"item {r.item[:32]!r} is not on the checklist {template.code!r}")
        if r.item in answered:
            raise InvalidInput(f"item {r.item!r} is answered twice")
        answered[r.item] = r
    missing = [c for c in codes if c not in answered]
    if missing:
        raise InvalidInput(f"the checklist is incomplete: {', '.join(missing)} not answered")
    return answered


def _when(value: dt.datetime | None) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    if value is None:
        return now
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("inspected_at needs a time zone (e.g. +08:00)")
    if value > now + dt.timedelta(minutes=5):
        raise InvalidInput("inspected_at is in the future")
    if value < now - dt.timedelta(days=366):
        raise InvalidInput("inspected_at is more than a year ago")
    return value


def record_inspection(
    conn: Connection,
    *,
    principal: Principal,
    client_id: uuid.UUID | None,
    body: InspectionCreate,
    ip: str | None = None,
) -> RecordPublic:
    """Record an inspection of a point in scope (the caller checked ``inspection.record``).

    Idempotent by ``client_id``: a repeat answers the first record and creates nothing.
    Each failed item opens one case (unless its previous failure's case is still open); a
    passed item resolves an open link. The point's last inspection and due date move on.
    The answer's ``created`` says whether it was made now (``False``: a repeat).
    """
    when = _when(body.inspected_at)
    note = check_note(body.note)
    photos = check_files(conn, body.photos)
    signature = check_files(conn, [body.signature], what="signature") if body.signature else []
    point = point_row(conn, principal, body.point_id)
    template = get_template(conn, point.template_code)
    answers = _check_results(template, body.results)

    def create() -> int:
        point_row(conn, principal, body.point_id, lock=True)  # one inspection at a time per point
        refresh_points(conn, body.point_id)
        current = point_row(conn, principal, body.point_id)
        day = when.astimezone(LOCAL).date()
        due = current.next_due
        record_id = conn.execute(
            text(
                "INSERT INTO inspection_records (point_id, inspected_at, by_user_id, by_name, "
                "template_code, template_version, results, photos, signature, note, due_date, "
                "on_time) VALUES (:p, :t, :uid, :by, :tc, :tv, CAST(:res AS jsonb), :ph, :sig, "
                ":n, :d, :ot) RETURNING id"
            ),
            {"p": body.point_id, "t": when,
             "uid": principal.user_id if principal.user_id > 0 else None,
             "by": principal.username, "tc": template.code, "tv": template.version,
             "res": dumps([answers[i.code].model_dump() for i in template.items]),
             "ph": photos, "sig": signature[0] if signature else None, "n": note, "d": due,
             "ot": None if due is None else day <= due},
        ).scalar_one()  # fmt: skip
        conn.execute(
            text(
                "UPDATE inspection_points SET last_inspected = greatest(last_inspected, :d), "
                "updated_at = now() WHERE id = :p"
            ),
            {"d": day, "p": body.point_id},
        )
        refresh_points(conn, body.point_id)
        _follow_up(conn, principal, int(record_id), current, template, answers, photos, ip)
        audit.record(
            conn, actor=principal, action="inspection.record", target_type="inspection_point",
            target_ids=[str(body.point_id)], ip=ip, detail={"record": int(record_id)},
        )  # fmt: skip
        return int(record_id)

    record_id, created = idempotency.once(
        conn, principal=principal, client_id=client_id, kind="inspection", create=create
    )
    made = get_record(conn, principal=principal, record_id=record_id)
    return made.model_copy(update={"created": created})


def _follow_up(
    conn: Connection, principal: Principal, record_id: int, point: Any,
    template: TemplatePublic, answers: dict[str, ItemResult], photos: list[str],
    ip: str | None,
) -> None:  # fmt: skip
    """Open a case for each newly failed item; resolve links whose item passed."""
    open_links: dict[str, int] = dict(
        conn.execute(
            text(
                "SELECT item_code, id FROM inspection_case_links "
                "WHERE point_id = :p AND status = 'open'"
            ),
            {"p": point.id},
        ).all()
    )
    labels = {i.code: i for i in template.items}
    for code, answer in answers.items():
        if answer.result == "pass" and code in open_links:
            conn.execute(
                text(
                    "UPDATE inspection_case_links SET status = 'resolved', "
                    "resolved_record_id = :r, resolved_at = now() WHERE id = :id"
                ),
                {"r": record_id, "id": open_links[code]},
            )
        elif answer.result == "fail" and code not in open_links:
            item = labels[code]
            detail = f"；{answer.note.strip()}" if answer.note and answer.note.strip() else ""
            made = create_case(
                conn, principal=principal, category=item.case_category, lon=float(point.lon),
                lat=float(point.lat), source="inspection", attachments=photos, ip=ip,
                description=f"消防检查不合格：{item.label}（{point.name}）{detail}"[:2000],
            )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO inspection_case_links (record_id, point_id, item_code, case_id) "
                    "VALUES (:r, :p, :i, :c)"
                ),
                {"r": record_id, "p": point.id, "i": code, "c": made.case.id},
            )


# --------------------------------------------------------------------------- completion


class GridCompletion(BaseModel):
    """Inspections due in a period and done on time, in one grid."""

    village_code: str | None
    grid_code: str | None
    due: int
    on_time: int
    late: int
    missed: int
    rate: float | None


def completion(
    conn: Connection,
    *,
    principal: Principal,
    date_from: dt.date,
    date_to: dt.date,
    grid: str | None = None,
    today: dt.date | None = None,
) -> list[GridCompletion]:
    """Completion rate per grid in scope for due dates in ``[date_from, date_to]``: see
    the module docs (``rate`` is ``None`` when nothing was due)."""
    if date_to < date_from:
        raise InvalidInput("the period ends before it starts")
    if (date_to - date_from).days > 366:
        raise InvalidInput("a period is at most a year")
    day = today or today_local()
    refresh_points(conn)
    area = area_filter(grid)
    params = {"f": date_from, "t": date_to, "today": day, "scope_prefix": principal.scope.prefix,
              "area": area}  # fmt: skip
    extra = " AND p.scope_key LIKE :area || '%'" if area is not None else ""
    rows = conn.execute(
        text(
            f"""
            SELECT x.village_code, x.grid_code, sum(x.on_time) AS on_time,
                   sum(x.late) AS late, sum(x.missed) AS missed
            FROM (
                SELECT p.village_code, p.grid_code, r.on_time::int AS on_time,
                       (NOT r.on_time)::int AS late, 0 AS missed
                FROM inspection_records r JOIN inspection_points p ON p.id = r.point_id
                WHERE r.due_date BETWEEN :f AND :t AND {SCOPE}{extra}
                UNION ALL
                SELECT p.village_code, p.grid_code, 0, 0, 1
                FROM inspection_points p
                WHERE p.next_due BETWEEN :f AND :t AND p.next_due < :today AND {SCOPE}{extra}
            ) x
            GROUP BY x.village_code, x.grid_code
            ORDER BY 1, 2
            """
        ),
        params,
    ).all()
    out = []
    for r in rows:
        due = int(r.on_time) + int(r.late) + int(r.missed)
        out.append(
            GridCompletion(
                village_code=r.village_code,
                grid_code=r.grid_code,
                due=due,
                on_time=int(r.on_time),
                late=int(r.late),
                missed=int(r.missed),
                rate=round(int(r.on_time) / due, 4) if due else None,
            )
        )
    return out
