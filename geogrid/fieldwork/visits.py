"""Visit logs (民情日志): a grid worker's visit to a household or a key unit.

A visit names exactly one target (a household or a key unit), the day, the worker (the
signed-in user), the people met and notes (personal data), need tags from the dictionary
(``visit_tags``: 低保, 残疾, 就业, 医疗, 矛盾 …), whether a follow-up is wanted (and by
when) and photos by SHA-256 from the file store. Creates take an optional ``client_id``
(the field app's idempotency key, :func:`geogrid.fieldwork.idempotency.once`); edits carry
the version they were based on and a stale one raises :class:`StaleVersion` whose
``detail.current`` is the record as it is now.

Scope: a visit is in scope when its household's (or key unit's) *current*
``coalesce(grid_code, village_code)`` starts with the principal's prefix — in every query
(the first wall) and in row-level security (migration 0018, the second). People met are
answered masked (张*明); every read is audited with the ids returned, every write too.
Only the worker who wrote a visit may edit it: a log entry is signed by its writer.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.errors import Forbidden, InvalidInput, NotFound
from geogrid.fieldwork.idempotency import once
from geogrid.people.mask import mask_name
from geogrid.plans import StaleVersion

__all__ = [
    "MAX_LIMIT",
    "Visit",
    "VisitCreate",
    "VisitSaved",
    "VisitUpdate",
    "check_page",
    "get_visit",
    "list_visits",
    "make_etag",
    "parse_etag",
    "record_visit",
    "tags",
    "update_visit",
]

MAX_LIMIT = 500
MAX_PEOPLE = 20
MAX_NAME = 40
MAX_NOTES = 4000
MAX_PHOTOS = 10
MAX_TAGS = 20
#: The oldest day a visit may be logged for (older logs are history, not field work).
EARLIEST = dt.date(2000, 1, 1)
LOCAL = ZoneInfo("Asia/Shanghai")
_SHA = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: A visit row (``v``) with its target (``h`` household, ``k`` key unit), in scope.
AREA = "coalesce(h.scope_key, k.grid_code, k.village_code, '')"
FROM = (
    "FROM visits v LEFT JOIN households h ON h.id = v.household_id "
    "LEFT JOIN key_units k ON k.id = v.key_unit_id"
)
SCOPE = f"{AREA} LIKE :scope_prefix || '%'"
COLUMNS = f"""
    SELECT v.id, v.household_id, h.register_no, v.key_unit_id, k.name AS key_unit_name,
           coalesce(h.village_code, k.village_code, v.village_code) AS village_code,
           nullif({AREA}, '') AS area_code, v.visited_on, v.worker_id, v.worker_name,
           v.people_met, v.notes, v.tags, v.follow_up, v.follow_up_due, v.version,
           v.created_at, v.updated_at,
           ARRAY(SELECT p.sha256 FROM visit_photos p WHERE p.visit_id = v.id
                 ORDER BY p.position, p.sha256) AS photos
"""


class VisitCreate(BaseModel):
    """A new visit (the worker is the signed-in user)."""

    model_config = ConfigDict(extra="forbid")

    household_id: int | None = Field(default=None, ge=1, le=2**62)
    key_unit_id: int | None = Field(default=None, ge=1, le=2**62)
    visited_on: dt.date | None = Field(default=None, description="default: today (Beijing)")
    people_met: list[str] = Field(default_factory=list, max_length=MAX_PEOPLE)
    notes: str = Field(default="", max_length=MAX_NOTES, description="情况记录")
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    follow_up: bool = False
    follow_up_due: dt.date | None = None
    photos: list[str] = Field(default_factory=list, max_length=MAX_PHOTOS)


class VisitUpdate(BaseModel):
    """Fields to change (absent: unchanged); the target and the worker never change."""

    model_config = ConfigDict(extra="forbid")

    visited_on: dt.date | None = None
    people_met: list[str] | None = Field(default=None, max_length=MAX_PEOPLE)
    notes: str | None = Field(default=None, max_length=MAX_NOTES)
    tags: list[str] | None = Field(default=None, max_length=MAX_TAGS)
    follow_up: bool | None = None
    follow_up_due: dt.date | None = None
    photos: list[str] | None = Field(default=None, max_length=MAX_PHOTOS)


class Visit(BaseModel):
    """A visit as every answer shows it: people met masked."""

    id: int
    household_id: int | None
    register_no: str | None
    key_unit_id: int | None
    key_unit_name: str | None
    village_code: str | None
    area_code: str | None = Field(description="the target's current grid (or village)")
    visited_on: dt.date
    worker_id: int | None
    worker_name: str
    people_met: list[str]
    notes: str
    tags: list[str]
    follow_up: bool
    follow_up_due: dt.date | None
    photos: list[str]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    etag: str


class VisitSaved(Visit):
    """What :func:`record_visit` returns: the visit, and whether this call created it."""

    created: bool = Field(description="false: the client_id was sent before (nothing new)")


def make_etag(visit_id: int, version: int) -> str:
    """The entity tag of a visit version.

    >>> make_etag(12, 3)
    'W/"visit-12-3"'
    """
    return f'W/"visit-{visit_id}-{version}"'


def parse_etag(etag: str, visit_id: int) -> int | None:
    """The version an ``If-Match`` value names for ``visit_id`` (``None``: not ours).

    >>> parse_etag('W/"visit-12-3"', 12), parse_etag('"visit-12-3"', 12), parse_etag('"x"', 12)
    (3, 3, None)
    """
    m = re.fullmatch(rf'(?:W/)?"visit-{visit_id}-(\d{{1,9}})"', etag.strip())
    return int(m.group(1)) if m else None


def check_page(limit: int, offset: int, most: int = MAX_LIMIT) -> None:
    """Refuse a page size outside 1…``most`` or a negative offset."""
    if not 1 <= limit <= most:
        raise InvalidInput(f"limit must be between 1 and {most}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")


def _visit(row: Any) -> Visit:
    data = dict(row._mapping)
    data["people_met"] = [mask_name(p) or "" for p in data["people_met"]]
    data["photos"] = list(data["photos"])
    data["tags"] = list(data["tags"])
    return Visit(**data, etag=make_etag(int(row.id), int(row.version)))


def today() -> dt.date:
    """Today in Beijing time (the day a visit defaults to)."""
    return dt.datetime.now(LOCAL).date()


def tags(conn: Connection) -> list[dict[str, Any]]:
    """The need-tag dictionary (active tags, in display order)."""
    rows = conn.execute(
        text("SELECT code, name_en FROM visit_tags WHERE active ORDER BY sort, code")
    ).all()
    return [{"code": r.code, "name_en": r.name_en} for r in rows]


# --------------------------------------------------------------------------- validation


def _people(people: list[str]) -> list[str]:
    out = []
    for p in people:
        name = p.strip()
        if not name:
            raise InvalidInput("a name of the people met is empty (见面人员姓名为空)")
        if len(name) > MAX_NAME:
            raise InvalidInput(f"a name of the people met is longer than {MAX_NAME} characters")
        if _CONTROL.search(name):
            raise InvalidInput("a name of the people met holds control characters")
        out.append(name)
    if len(out) > MAX_PEOPLE:
        raise InvalidInput(f"at most {MAX_PEOPLE} people met per visit")
    return out


def _tags(conn: Connection, given: list[str]) -> list[str]:
    clean = list(dict.fromkeys(t.strip() for t in given))
    if len(clean) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} need tags per visit")
    if clean:
        known = set(
            conn.execute(
                text("SELECT code FROM visit_tags WHERE active AND code = ANY(:c)"), {"c": clean}
            ).scalars()
        )
        unknown = [t for t in clean if t not in known]
        if unknown:
            raise InvalidInput(
                f"unknown need tag(s) {', '.join(unknown)[:80]}: see GET /api/visits/tags",
                detail={"unknown_tags": unknown[:20]},
            )
    return clean


def _photos(conn: Connection, given: list[str]) -> list[str]:
    clean = list(dict.fromkeys(s.strip().lower() for s in given))
    if len(clean) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos per visit")
    bad = [s for s in clean if not _SHA.fullmatch(s)]
    if bad:
        raise InvalidInput("photos are named by the SHA-256 (64 hex digits) of an upload")
    if clean:
        stored = set(
            conn.execute(
                text("SELECT sha256 FROM stored_files WHERE sha256 = ANY(:s)"), {"s": clean}
            ).scalars()
        )
        missing = [s for s in clean if s not in stored]
        if missing:
            raise InvalidInput(
                "upload the photos first (POST /api/cases/files): unknown "
                + ", ".join(m[:12] for m in missing[:5])
            )
    return clean


def _day(visited_on: dt.date | None) -> dt.date:
    day = visited_on or today()
    if day > today():
        raise InvalidInput("visited_on is in the future (走访日期不能晚于今天)")
    if day < EARLIEST:
        raise InvalidInput(f"visited_on is before {EARLIEST}")
    return day


def _notes(notes: str) -> str:
    clean = notes.strip()
    if not clean:
        raise InvalidInput("a visit needs notes (走访情况)")
    if len(clean) > MAX_NOTES:
        raise InvalidInput(f"notes are longer than {MAX_NOTES} characters")
    if "\x00" in clean:
        raise InvalidInput("notes hold a NUL character")
    return clean


def _follow(follow_up: bool, due: dt.date | None, day: dt.date) -> None:
    if due is not None and not follow_up:
        raise InvalidInput("follow_up_due needs follow_up: true")
    if due is not None and due < day:
        raise InvalidInput("follow_up_due is before the visit")


# --------------------------------------------------------------------------- reads


def _refuse(
    conn: Connection, principal: Principal, action: str, target_type: str, target: int,
    ip: str | None,
) -> NotFound:  # fmt: skip
    audit.record(
        conn, actor=principal, action=action, outcome="refused", target_type=target_type,
        target_ids=[str(target)], ip=ip, detail={"why": "not found in scope"},
    )  # fmt: skip
    conn.commit()
    return NotFound(f"no {target_type.replace('_', ' ')} {target} in your scope")


def _fetch(conn: Connection, principal: Principal, visit_id: int, lock: bool = False) -> Any:
    return conn.execute(
        text(
            f"{COLUMNS} {FROM} WHERE v.id = :id AND {SCOPE}" + (" FOR UPDATE OF v" if lock else "")
        ),
        {"id": visit_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()


def get_visit(
    conn: Connection, *, principal: Principal, visit_id: int, ip: str | None = None
) -> Visit:
    """One visit in scope (people met masked); audited. :class:`NotFound` when absent or
    out of scope (audited as refused, indistinguishable on purpose)."""
    row = _fetch(conn, principal, visit_id)
    if row is None:
        raise _refuse(conn, principal, "visit.read", "visit", visit_id, ip)
    audit.record(
        conn, actor=principal, action="visit.read", target_type="visit",
        target_ids=[str(visit_id)], ip=ip,
    )  # fmt: skip
    return _visit(row)


def list_visits(
    conn: Connection,
    *,
    principal: Principal,
    household_id: int | None = None,
    key_unit_id: int | None = None,
    area: str | None = None,
    worker_id: int | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    follow_up: bool | None = None,
    limit: int = 50,
    offset: int = 0,
    ip: str | None = None,
) -> tuple[list[Visit], int]:
    """Visits in scope, newest first, with the total count; audited with the ids returned.

    ``area`` narrows to a grid, village or town prefix inside the scope.
    """
    check_page(limit, offset)
    if date_from and date_to and date_to < date_from:
        raise InvalidInput("to is before from")
    where = [SCOPE]
    params: dict[str, Any] = {"scope_prefix": principal.scope.prefix}
    for cond, key, value in (
        ("v.household_id = :hh", "hh", household_id),
        ("v.key_unit_id = :ku", "ku", key_unit_id),
        ("v.worker_id = :wk", "wk", worker_id),
        ("v.visited_on >= :d0", "d0", date_from),
        ("v.visited_on <= :d1", "d1", date_to),
        ("v.follow_up = :fu", "fu", follow_up),
        (f"{AREA} LIKE :area || '%'", "area", area_prefix(area) if area else None),
    ):
        if value is not None:
            where.append(cond)
            params[key] = value
    cond = " AND ".join(where)
    total = conn.execute(text(f"SELECT count(*) {FROM} WHERE {cond}"), params).scalar_one()
    rows = conn.execute(
        text(
            f"{COLUMNS} {FROM} WHERE {cond} ORDER BY v.visited_on DESC, v.id DESC "
            "LIMIT :lim OFFSET :off"
        ),
        {**params, "lim": limit, "off": offset},
    ).all()
    visits = [_visit(r) for r in rows]
    audit.record(
        conn, actor=principal, action="visit.read", target_type="visit",
        target_ids=[str(v.id) for v in visits], ip=ip,
        detail={"returned": len(visits), "total": int(total)},
    )  # fmt: skip
    return visits, int(total)


def area_prefix(code: str) -> str:
    """The code prefix of a town (12 digits ending 000 → 9), village (12) or grid (15).

    >>> area_prefix("420117105000"), area_prefix("420117105201"), area_prefix("")
    ('420117105', '420117105201', '')
    """
    c = code.strip()
    if c in ("", "all"):
        return ""
    if re.fullmatch(r"\d{9}000", c):
        return c[:9]
    if re.fullmatch(r"\d{12}|\d{15}", c):
        return c
    raise InvalidInput(f"{c[:20]!r} is not a town, village or grid code")


# --------------------------------------------------------------------------- writes


def _target(conn: Connection, principal: Principal, body: VisitCreate) -> tuple[str, int, Any]:
    """(kind, id, village code) of the visit's target in scope, else refused."""
    if (body.household_id is None) == (body.key_unit_id is None):
        raise InvalidInput("a visit names exactly one of household_id and key_unit_id")
    if body.household_id is not None:
        kind, target = "household", body.household_id
        sql = "SELECT h.village_code FROM households h WHERE h.id = :id AND h.scope_key LIKE :p"
    else:
        kind, target = "key_unit", int(body.key_unit_id or 0)
        sql = (
            "SELECT k.village_code FROM key_units k WHERE k.id = :id "
            "AND coalesce(k.grid_code, k.village_code, '') LIKE :p"
        )
    row = conn.execute(text(sql), {"id": target, "p": principal.scope.prefix + "%"}).one_or_none()
    if row is None:
        raise NotFound(f"no {kind.replace('_', ' ')} {target} in your scope")
    return kind, target, row.village_code


def _set_photos(conn: Connection, visit_id: int, photos: list[str]) -> None:
    conn.execute(text("DELETE FROM visit_photos WHERE visit_id = :v"), {"v": visit_id})
    if photos:
        conn.execute(
            text("INSERT INTO visit_photos (visit_id, sha256, position) VALUES (:v, :s, :i)"),
            [{"v": visit_id, "s": s, "i": i} for i, s in enumerate(photos)],
        )


def record_visit(
    conn: Connection,
    *,
    principal: Principal,
    client_id: uuid.UUID | None,
    body: VisitCreate | dict[str, Any],
    ip: str | None = None,
) -> VisitSaved:
    """Record a visit by the signed-in worker; idempotent on ``client_id``.

    Returns
    -------
    VisitSaved
        The visit and ``created``: whether it was created now (``False``: ``client_id``
        was sent before and the visit it made is returned, unchanged).

    Raises
    ------
    InvalidInput
        One rule at a time: not exactly one target, a day in the future or before 2000,
        empty notes, a bad name of the people met, an unknown need tag, ``follow_up_due``
        without ``follow_up`` or before the visit, a photo that is not an uploaded file.
    NotFound
        The household or key unit does not exist or lies outside the scope.
    """
    data = body if isinstance(body, VisitCreate) else VisitCreate.model_validate(body)

    def create() -> int:
        kind, target, village = _target(conn, principal, data)
        day = _day(data.visited_on)
        notes = _notes(data.notes)
        people = _people(data.people_met)
        tag_list = _tags(conn, data.tags)
        _follow(data.follow_up, data.follow_up_due, day)
        photos = _photos(conn, data.photos)
        new_id = conn.execute(
            text(
                "INSERT INTO visits (household_id, key_unit_id, village_code, visited_on, "
                "worker_id, worker_name, people_met, notes, tags, follow_up, follow_up_due) "
                "VALUES (:hh, :ku, :vc, :day, :wid, :wname, :people, :notes, :tags, :fu, :due) "
                "RETURNING id"
            ),
            {
                "hh": target if kind == "household" else None,
                "ku": target if kind == "key_unit" else None,
                "vc": village, "day": day,
                "wid": principal.user_id if principal.user_id > 0 else None,
                "wname": principal.username, "people": people, "notes": notes,
                "tags": tag_list, "fu": data.follow_up, "due": data.follow_up_due,
            },
        ).scalar_one()  # fmt: skip
        _set_photos(conn, int(new_id), photos)
        audit.record(
            conn, actor=principal, action="visit.write", target_type="visit",
            target_ids=[str(new_id)], ip=ip, detail={"created": True, "target": kind},
        )  # fmt: skip
        return int(new_id)

    visit_id, created = once(
        conn, principal=principal, client_id=client_id, kind="visit", create=create
    )
    row = _fetch(conn, principal, visit_id)
    if row is None:  # the key's visit moved out of the sender's scope since
        raise NotFound(f"no visit {visit_id} in your scope")
    return VisitSaved(**_visit(row).model_dump(), created=created)


def update_visit(
    conn: Connection,
    *,
    principal: Principal,
    visit_id: int,
    expected_version: int,
    body: VisitUpdate | dict[str, Any],
    ip: str | None = None,
) -> Visit:
    """Change a visit the principal wrote, based on version ``expected_version``.

    Raises
    ------
    StaleVersion
        The visit changed since (412); ``detail.current`` is the visit as it is now.
    Forbidden
        Somebody else wrote the visit.
    NotFound
        No such visit in scope.
    InvalidInput
        The same rules as :func:`record_visit`.
    """
    data = body if isinstance(body, VisitUpdate) else VisitUpdate.model_validate(body)
    row = _fetch(conn, principal, visit_id, lock=True)
    if row is None:
        raise _refuse(conn, principal, "visit.write", "visit", visit_id, ip)
    current = _visit(row)
    if expected_version != current.version:
        raise StaleVersion(
            f"visit {visit_id} changed: you saw version {expected_version}, it is at "
            f"{current.version}; reload it and try again (记录已被修改)",
            detail={"detail": {"current": current.model_dump(mode="json")}},
        )
    if row.worker_id is None or row.worker_id != principal.user_id:
        raise Forbidden("only the worker who wrote a visit may change it (只能修改本人的走访记录)")
    fields = data.model_fields_set
    day = _day(data.visited_on) if "visited_on" in fields else row.visited_on
    follow = (
        bool(data.follow_up) if "follow_up" in fields and data.follow_up is not None
        else row.follow_up
    )  # fmt: skip
    due = data.follow_up_due if "follow_up_due" in fields else row.follow_up_due
    if not follow and "follow_up_due" not in fields:
        due = None  # switching the follow-up off drops its due date
    _follow(follow, due, day)
    values: dict[str, Any] = {
        "id": visit_id, "day": day, "fu": follow, "due": due,
        "people": _people(data.people_met) if data.people_met is not None else row.people_met,
        "notes": _notes(data.notes) if data.notes is not None else row.notes,
        "tags": _tags(conn, data.tags) if data.tags is not None else row.tags,
    }  # fmt: skip
    photos = _photos(conn, data.photos) if data.photos is not None else None
    conn.execute(
        text(
            "UPDATE visits SET visited_on = :day, people_met = :people, notes = :notes, "
            "tags = :tags, follow_up = :fu, follow_up_due = :due, version = version + 1, "
            "updated_at = now() WHERE id = :id"
        ),
        values,
    )
    if photos is not None:
        _set_photos(conn, visit_id, photos)
    audit.record(
        conn, actor=principal, action="visit.write", target_type="visit",
        target_ids=[str(visit_id)], ip=ip,
        detail={"changed": sorted(fields), "version": current.version + 1},
    )  # fmt: skip
    fresh = _fetch(conn, principal, visit_id)
    return _visit(fresh)
