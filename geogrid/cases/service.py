"""The case service: report, read, and move cases through the machine — the only writer.

Every write is one event appended to ``case_events`` and the current-state row updated
to :func:`geogrid.cases.machine.apply` of it, in the caller's transaction (the caller
commits). The row is locked (``FOR UPDATE``) while an action is decided, so concurrent
calls serialise per case; a caller that read an older version gets :class:`StaleCase`.

Deadlines: each status has a step (:func:`geogrid.cases.machine.step_for`); entering a
new step starts its time limit (``case_time_limits``, a subclass falling back to its
class) counted on the working calendar (:func:`geogrid.cases.calendar.add_working_time`).
A deadline the calendar cannot count (a year it does not know) never blocks a report:
``due_at`` stays empty and ``deadline_problem`` says why.

Scope: staff see and move only cases whose historical grid (else village) lies in their
scope; a case out of scope is indistinguishable from a missing one (404). Residents
(``principal=None``) may only report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from geogrid import files, store
from geogrid.access import audit
from geogrid.access.policy import Principal, check
from geogrid.cases import machine, routing, workflow
from geogrid.cases.calendar import load_calendar
from geogrid.cases.queries import (
    DUPLICATE_SETTINGS_SQL,
    MAX_LIMIT,
    SUMMARY_SQL,
    due_cases,
    due_counts,
    find_duplicates,
    inbox,
    list_cases,
    list_categories,
    public_case,
    public_cases,
    resolve_category,
    summary,
)
from geogrid.cases.shapes import (
    Attachment,
    CaseDetail,
    CaseFilter,
    CaseMoved,
    Created,
    Event,
    Reporter,
    ReporterMasked,
)
from geogrid.errors import Forbidden, IllegalTransition, InvalidInput, NotFound
from geogrid.people.mask import mask_name, mask_phone
from geogrid.plans import StaleVersion

__all__ = [
    "MAX_LIMIT",
    "CaseFilter",
    "Created",
    "Reporter",
    "StaleCase",
    "allowed_actions",
    "create_case",
    "due_cases",
    "due_counts",
    "find_duplicates",
    "get_case",
    "inbox",
    "list_cases",
    "list_categories",
    "make_etag",
    "public_case",
    "public_cases",
    "transition",
    "transition_brief",
]

MAX_NOTE: Final = 2000
MAX_DESCRIPTION: Final = 2000
MAX_ATTACHMENTS: Final = 10
#: Types a case accepts as attachments.
ATTACHMENT_TYPES: Final = files.KNOWN_TYPES
LOCAL: Final = ZoneInfo("Asia/Shanghai")
_PHONE: Final = re.compile(r"\+?[0-9][0-9 -]{4,19}")


#: The caller acted on an older version of the case (If-Match mismatch): 412, code
#: ``StaleVersion`` as for plans (one message in the catalogue).
StaleCase = StaleVersion


def make_etag(case_id: int, version: int) -> str:
    """The entity tag of a case version.

    >>> make_etag(12, 4)
    '"case-12-v4"'
    """
    return f'"case-{case_id}-v{version}"'


def parse_etag(etag: str, case_id: int) -> int | None:
    """The version an ``If-Match`` value names for ``case_id`` (``None``: not ours).

    >>> parse_etag('W/"case-12-v4"', 12), parse_etag('"case-13-v4"', 12)
    (4, None)
    """
    m = re.fullmatch(rf'(?:W/)?"case-{case_id}-v(\d{{1,9}})"', etag.strip())
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- deadlines


def _note(note: str | None, required: bool) -> str:
    text_ = (note or "").strip()
    if required and not text_:
        raise InvalidInput("this action needs a note giving the reason (说明)")
    if len(text_) > MAX_NOTE:
        raise InvalidInput(f"a note has at most {MAX_NOTE} characters")
    return text_


def _attachments(conn: Connection, shas: Sequence[str]) -> list[str]:
    clean = list(dict.fromkeys(shas))
    if len(clean) > MAX_ATTACHMENTS:
        raise InvalidInput(f"at most {MAX_ATTACHMENTS} attachments per step")
    for sha in clean:
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise InvalidInput("an attachment is named by the sha256 its upload returned")
    if clean:
        known = set(
            conn.execute(
                text("SELECT sha256 FROM stored_files WHERE sha256 = ANY(:s)"), {"s": clean}
            ).scalars()
        )
        missing = [s for s in clean if s not in known]
        if missing:
            raise InvalidInput(
                f"no uploaded file {missing[0][:12]}…: upload it first (POST /api/cases/files)"
            )
    return clean


def _point(lon: Any, lat: Any) -> tuple[float, float]:
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise InvalidInput("lon and lat must be numbers (WGS84 degrees)") from None
    if not (math.isfinite(x) and math.isfinite(y)) or abs(x) > 180 or abs(y) > 90:
        raise InvalidInput("lon must be within ±180 and lat within ±90 (WGS84 degrees)")
    return x, y


def _reporter(reporter: Reporter | None) -> Reporter | None:
    if reporter is None or (not reporter.name and not reporter.phone and not reporter.user_id):
        return None
    name = (reporter.name or "").strip() or None
    phone = (reporter.phone or "").strip() or None
    if name is not None and (len(name) > 50 or any(ord(ch) < 32 for ch in name)):
        raise InvalidInput("the reporter's name has at most 50 printable characters")
    if phone is not None and not _PHONE.fullmatch(phone):
        raise InvalidInput("the reporter's phone must be 5–20 digits (spaces, - and + allowed)")
    return Reporter(name, phone, reporter.user_id)


# --------------------------------------------------------------------------- writes


#: the event and the row in one round trip (one statement, one snapshot), built once
_APPEND_SQL: Final = text(
    "WITH event AS (INSERT INTO case_events (case_id, seq, action, from_status, to_status, "
    "at, actor_id, actor, actor_role, note, public, attachments, data) VALUES (:id, :seq, "
    ":action, :frm, :to, :at, :uid, :actor, :role, :note, :public, :att, "
    "CAST(:data AS jsonb))) UPDATE cases SET "
    + ", ".join(
        f"{k} = CAST(:{k} AS jsonb)" if k == "pending_data" else f"{k} = :{k}"
        for k in machine.STATE_FIELDS
    )
    + ", updated_at = :at WHERE id = :id"
)


def _append(
    conn: Connection,
    row: Mapping[str, Any],
    *,
    action: str,
    to_status: str,
    principal: Principal | None,
    actor: str,
    note: str,
    public: bool,
    attachments: list[str],
    data: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """Append the event after ``row`` and bring the row in step; the new state."""
    seq = int(row["version"]) + 1
    state = machine.apply({k: row[k] for k in machine.STATE_FIELDS}, seq, to_status, data)
    params = {k: state[k] for k in machine.STATE_FIELDS}
    params["pending_data"] = _json(params["pending_data"]) if params["pending_data"] else None
    store.direct_rows(
        conn,
        _APPEND_DRIVER,
        {
            **params,
            "id": row["id"],
            "seq": seq,
            "action": action,
            "frm": row["status"],
            "to": to_status,
            "at": at,
            "uid": principal.user_id if principal and principal.user_id > 0 else None,
            "actor": actor,
            "role": str(principal.role) if principal else None,
            "note": note,
            "public": public,
            "att": attachments,
            "data": _json(data),
        },
    )
    if attachments:
        conn.execute(
            text(
                "INSERT INTO case_files (case_id, sha256, seq) VALUES (:c, :s, :q) "
                "ON CONFLICT DO NOTHING"
            ),
            [{"c": row["id"], "s": s, "q": seq} for s in attachments],
        )
    return state


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


#: A report's and an action's statements look rows up by key or by a point (the dictionary,
#: the place, the route, the event, the row, the calendar's version, nearby open cases):
#: their best plan does not depend on the values, so their transaction lets PostgreSQL
#: plan each once per connection (the generic plans of psycopg's prepared statements)
#: instead of every time, as the serving engine does by default
#: (``plan_cache_mode=force_custom_plan``, see :data:`geogrid.store.SERVING_OPTIONS`).
#: ``force_generic_plan``: with ``auto`` PostgreSQL kept choosing custom plans, planning
#: most of them per call (pg_stat_statements, cases bench at 50 clients: the case's detail
#: 2.1 ms of planning per call for 0.5 of running, the duplicate search 0.84 ms, the lock
#: 0.16 ms on three calls of four).
_PLAN_ONCE: Final = "set_config('plan_cache_mode', 'force_generic_plan', true)"


#: A report's row, numbered (E, the local day, seven digits of ``case_no_seq``), answering
#: what its first deadline and the duplicate search need: its category's step limits, the
#: working calendar's version and the duplicate settings (no queries of their own).
_INSERT_SQL: Final = text(
    "INSERT INTO cases AS c (case_no, category, category_code, status, reported_at, geom, "
    "village_code, grid_code, current_grid_code, description, source, priority, address, "
    "version) VALUES ('E' || to_char(CAST(:at AS timestamptz) AT TIME ZONE "
    f"'{LOCAL.key}', 'YYYYMMDD') || lpad((nextval('case_no_seq') % 10000000)::text, 7, '0'), "
    ":cat, :code, 'reported', :at, ST_SetSRID(ST_MakePoint(:x, :y), 4326), :v, :g, :g, :d, "
    f":src, :prio, :addr, 0) RETURNING c.id, {workflow.LIMITS_SQL} AS d_limits, "
    "(SELECT s.version FROM calendar_settings s WHERE s.id = 1) AS d_calendar, "
    f"{DUPLICATE_SETTINGS_SQL} AS d_settings"
)


def create_case(
    conn: Connection,
    *,
    principal: Principal | None,
    category: str,
    lon: float,
    lat: float,
    description: str,
    source: str,
    priority: int = 2,
    reporter: Reporter | None = None,
    attachments: Sequence[str] = (),
    reported_at: datetime | None = None,
    address: str | None = None,
    ip: str | None = None,
) -> Created:
    """Report a case: placed, routed, its first deadline started; see the module docs.

    ``principal=None`` is a resident (Open311, the complaint page): the source must be a
    resident source. Staff may report only within their scope.
    """
    if source not in machine.SOURCES or source == "import":
        raise InvalidInput(f"source must be one of {', '.join(machine.SOURCES[:-1])}")
    if principal is None and source not in machine.RESIDENT_SOURCES:
        raise InvalidInput("a report without an account comes from a resident (open311/hotline)")
    if priority not in machine.PRIORITIES:
        raise InvalidInput("priority must be 1 (紧急), 2 (一般) or 3 (较低)")
    desc = (description or "").strip()
    if not desc or len(desc) > MAX_DESCRIPTION:
        raise InvalidInput(f"a case needs a description of 1–{MAX_DESCRIPTION} characters")
    addr = (address or "").strip() or None
    if addr is not None and len(addr) > 200:
        raise InvalidInput("an address has at most 200 characters")
    x, y = _point(lon, lat)
    code, class_name = resolve_category(conn, category, first=_PLAN_ONCE)
    who = _reporter(reporter)
    shas = _attachments(conn, attachments)
    now = datetime.now(UTC)
    when = reported_at or now
    if when.tzinfo is None or when > now:
        raise InvalidInput("reported_at needs a time zone and must not be in the future")
    village, grid = routing.place_point(conn, x, y)
    village = routing.require_place(village)
    if principal is not None:
        check(principal, "case.report", grid or village)
    post = routing.route(conn, category_code=code, village_code=village, grid_code=grid)
    town = routing.town_of(village)
    made = conn.execute(
        _INSERT_SQL,
        {
            "cat": class_name,
            "code": code,
            "at": when,
            "x": x,
            "y": y,
            "v": village,
            "g": grid,
            "d": desc,
            "src": source,
            "prio": priority,
            "addr": addr,
        },
    ).one()
    case_id = made.id
    if made.d_calendar is not None:  # the snapshot the first deadline uses, no query
        load_calendar(conn, version=int(made.d_calendar))
    row = {**machine.STATE_FIELDS, "id": case_id, "status": None}
    data = {
        "set": {
            "route_kind": post.kind,
            "route_code": post.code,
            "assignee_kind": "centre",
            "assignee_code": town,
            **workflow.deadline(conn, code, "accept", when, made.d_limits or {}),
        },
        "report": {
            "category_code": code,
            "source": source,
            "priority": priority,
            "village_code": village,
            "grid_code": grid,
        },
    }
    actor = principal.username if principal else f"resident:{source}"
    _append(
        conn,
        row,
        action="report",
        to_status="reported",
        principal=principal,
        actor=actor,
        note="",
        public=True,
        attachments=shas,
        data=data,
        at=when,
    )
    if who is not None:
        conn.execute(
            text(
                "INSERT INTO case_reporters (case_id, name, phone, user_id) VALUES (:c, :n, :p, :u)"
            ),
            {"c": case_id, "n": who.name, "p": who.phone, "u": who.user_id},
        )
    duplicates = find_duplicates(
        conn, category=code, lon=x, lat=y, at=when, exclude=case_id, resolved=True,
        found=made.d_settings,
    )  # fmt: skip
    detail = _detail(conn, principal, case_id) if principal else _detail_unscoped(conn, case_id)
    return Created(detail, duplicates)


#: The case row locked, with its category's step limits and the working calendar's
#: version (the deadline it starts needs no query of its own; the plans set as above).
_LOCK_SQL: Final = text(
    f"SELECT {_PLAN_ONCE} AS d_plans, c.*, c.source AS src, "
    f"{workflow.LIMITS_SQL} AS d_limits, "
    "(SELECT s.version FROM calendar_settings s WHERE s.id = 1) AS d_calendar FROM cases c "
    "WHERE c.id = :id AND coalesce(c.grid_code, c.village_code) LIKE :p || '%' "
    "FOR UPDATE OF c"
)


#: the two statements of every action, as the driver runs them (store.direct_rows)
_LOCK_DRIVER: Final = store.driver_sql(_LOCK_SQL)
_APPEND_DRIVER: Final = store.driver_sql(_APPEND_SQL)


def _lock(conn: Connection, principal: Principal, case_id: int) -> dict[str, Any]:
    rows = store.direct_rows(conn, _LOCK_DRIVER, {"id": case_id, "p": principal.scope.prefix})
    if not rows:
        raise NotFound(f"no case {case_id} in your scope")
    out = rows[0]
    del out["d_plans"]
    version = out.pop("d_calendar")
    if version is not None:  # the snapshot this transaction's deadlines use, no query
        load_calendar(conn, version=int(version))
    return out


def transition(
    conn: Connection,
    *,
    principal: Principal,
    case_id: int,
    action: str,
    expected_version: int | None,
    note: str = "",
    attachments: Sequence[str] = (),
    public: bool = False,
    data: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> CaseDetail:
    """Take ``action`` on a case: one event, the row in step; the case as it is now
    (:func:`transition_brief` answers without reading it back).

    Raises
    ------
    NotFound
        No such case in the principal's scope.
    StaleCase
        ``expected_version`` is not the case's version (412).
    IllegalTransition
        The action is not possible from the case's status (409; ``detail`` lists the
        allowed actions, and ``merged_into`` for a merged case).
    Forbidden
        Possible, but not for this user (role or duty; ``detail`` lists the allowed ones).
    InvalidInput
        Unknown action, a missing or bad body field.
    """
    _take(
        conn,
        principal=principal,
        case_id=case_id,
        action=action,
        expected_version=expected_version,
        note=note,
        attachments=attachments,
        public=public,
        data=data,
    )
    return _detail(conn, principal, case_id)


def transition_brief(
    conn: Connection,
    *,
    principal: Principal,
    case_id: int,
    action: str,
    expected_version: int | None,
    note: str = "",
    attachments: Sequence[str] = (),
    public: bool = False,
    data: Mapping[str, Any] | None = None,
) -> CaseMoved:
    """:func:`transition`, answering the case's new state and the actions the user may
    take next, from the row it locked and the event it wrote (no second read)."""
    row, state, at = _take(
        conn,
        principal=principal,
        case_id=case_id,
        action=action,
        expected_version=expected_version,
        note=note,
        attachments=attachments,
        public=public,
        data=data,
    )
    now = {**row, **state}
    return CaseMoved(
        id=int(row["id"]),
        case_no=row["case_no"],
        status=state["status"],
        version=state["version"],
        pending=state["pending"],
        due_at=state["due_at"].astimezone(UTC) if state["due_at"] else None,  # as reads do
        deadline_problem=state["deadline_problem"],
        assignee_kind=state["assignee_kind"],
        assignee_code=state["assignee_code"],
        owner_id=state["owner_id"],
        merged_into=state["merged_into"],
        updated_at=at,
        allowed_actions=workflow.allowed(conn, principal, now),
        etag=make_etag(int(row["id"]), state["version"]),
    )


def _take(
    conn: Connection,
    *,
    principal: Principal,
    case_id: int,
    action: str,
    expected_version: int | None,
    note: str,
    attachments: Sequence[str],
    public: bool,
    data: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any], datetime]:
    """Decide and write ``action`` (see :func:`transition`): the locked row, the new state
    and the event's time."""
    rows = [t for t in machine.TRANSITIONS if t.action == action]
    if not rows:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(machine.ACTIONS)}")
    row = _lock(conn, principal, case_id)
    if expected_version is not None and expected_version != row["version"]:
        raise StaleCase(
            f"case {case_id} changed: you saw version {expected_version}, it is at "
            f"{row['version']}; reload it and try again",
            detail={"version": row["version"]},
        )

    def allowed() -> list[str]:  # for the refusals only
        return [a.action for a in workflow.allowed(conn, principal, row)]

    possible = [t for t in rows if workflow.applies(t, row)]
    if not possible:
        extra = {"merged_into": row["merged_into"]} if row["status"] == "merged" else {}
        raise IllegalTransition(
            f"{action} is not possible while the case is {row['status']}"
            + (f" (pending {row['pending']})" if row["pending"] else ""),
            detail={"status": row["status"], "allowed": allowed(), **extra},
        )
    mine = [t for t in possible if workflow.may(conn, principal, t, row)]
    if not mine:
        raise Forbidden(
            f"{action} on this case is not yours to take (role {principal.role})",
            detail={"status": row["status"], "allowed": allowed()},
        )
    t = mine[0]
    body = workflow.body(conn, principal, t, row, data or {})
    text_ = _note(note, "note" in t.fields)
    shas = _attachments(conn, attachments)
    now = datetime.now(UTC)
    target, event_data = workflow.effects(conn, principal, t, row, body, now)
    event_data.update({k: v for k, v in body.items() if k != "post"})
    if "post" in t.effects:
        event_data["post"] = {
            "kind": event_data["set"]["assignee_kind"],
            "code": event_data["set"]["assignee_code"],
        }
    state = _append(
        conn,
        row,
        action=action,
        to_status=target,
        principal=principal,
        actor=principal.username,
        note=text_,
        public=bool(public),
        attachments=shas,
        data=event_data,
        at=now,
    )
    if t.action == "merge":
        conn.execute(
            text(
                "INSERT INTO case_reporters (case_id, name, phone, user_id, merged_from) "
                "SELECT :into, name, phone, user_id, case_id FROM case_reporters "
                "WHERE case_id = :id AND merged_from IS NULL"
            ),
            {"into": body["into"], "id": case_id},
        )
    return row, state, now


# --------------------------------------------------------------------------- reads


#: the summary with the reporter (first, unmerged), files and events of the case as JSON:
#: a case's answer in one statement instead of four
DETAIL_SQL: Final = SUMMARY_SQL.replace(
    "\nFROM cases c\n",
    """,
       (SELECT json_build_array(r.name, r.phone) FROM case_reporters r
         WHERE r.case_id = c.id AND r.merged_from IS NULL ORDER BY r.id LIMIT 1) AS d_reporter,
       (SELECT json_agg(json_build_array(f.sha256, s.mime, s.size, s.width, s.height, f.seq)
                        ORDER BY f.seq, f.sha256)
          FROM case_files f JOIN stored_files s ON s.sha256 = f.sha256
         WHERE f.case_id = c.id) AS d_files,
       (SELECT json_agg(json_build_array(e.seq, e.action, e.from_status, e.to_status, e.at,
                                         e.actor, e.actor_role, e.note, e.public,
                                         e.attachments, e.data) ORDER BY e.seq)
          FROM case_events e WHERE e.case_id = c.id) AS d_events
FROM cases c
""",
)


def _events(rows: list[list[Any]] | None) -> list[Event]:
    return [
        Event(
            seq=int(seq),
            action=action,
            from_status=from_status,
            to_status=to_status,
            at=datetime.fromisoformat(at),
            actor=actor,
            actor_role=actor_role,
            note=note,
            public=bool(public),
            attachments=list(attachments or []),
            data=dict(data or {}),
        )
        for seq, action, from_status, to_status, at, actor, actor_role, note, public,
        attachments, data in rows or []
    ]  # fmt: skip


def _files(case_id: int, rows: list[list[Any]] | None) -> list[Attachment]:
    base = f"/api/cases/{case_id}/files"
    return [
        Attachment(
            sha256,
            mime,
            int(size),
            width,
            height,
            f"{base}/{sha256}",
            f"{base}/{sha256}?thumb=1" if mime in files.IMAGE_TYPES else None,
            int(seq),
        )
        for sha256, mime, size, width, height, seq in rows or []
    ]


def _assemble(conn: Connection, principal: Principal | None, row: Any) -> CaseDetail:
    """A :class:`CaseDetail` from a row of :data:`DETAIL_SQL`."""
    base = summary(row)
    m = row._mapping
    # the summary row holds every field the machine's checks read
    allowed = workflow.allowed(conn, principal, dict(m)) if principal else []
    who = m["d_reporter"]
    return CaseDetail(
        **base.__dict__,
        reporter=ReporterMasked(mask_name(who[0]), mask_phone(who[1])) if who else None,
        events=_events(m["d_events"]),
        allowed_actions=allowed,
        attachments=_files(base.id, m["d_files"]),
        etag=make_etag(base.id, base.version),
    )


#: one case in scope, and one case (built once: a long text parsed per call costs)
_DETAIL_SCOPED: Final = text(
    f"{DETAIL_SQL} WHERE c.id = :id AND coalesce(c.grid_code, c.village_code) LIKE :p || '%'"
)
_DETAIL_ONE: Final = text(f"{DETAIL_SQL} WHERE c.id = :id")


def _detail(conn: Connection, principal: Principal, case_id: int) -> CaseDetail:
    row = conn.execute(_DETAIL_SCOPED, {"id": case_id, "p": principal.scope.prefix}).first()
    if row is None:
        raise NotFound(f"no case {case_id} in your scope")
    return _assemble(conn, principal, row)


def _detail_unscoped(conn: Connection, case_id: int) -> CaseDetail:
    row = conn.execute(_DETAIL_ONE, {"id": case_id}).one()
    return _assemble(conn, None, row)


def get_case(conn: Connection, *, principal: Principal, case_id: int) -> CaseDetail:
    """One case in scope with its events, the actions the user may take, its files and
    its reporter (masked); :class:`NotFound` when absent or out of scope."""
    return _detail(conn, principal, case_id)


def allowed_actions(conn: Connection, *, principal: Principal, case_id: int) -> list[str]:
    """The actions ``principal`` may take on the case now."""
    return [a.action for a in _detail(conn, principal, case_id).allowed_actions]


def unmask_reporter(
    conn: Connection, *, principal: Principal, case_id: int, reason: str, ip: str | None = None
) -> list[Reporter]:
    """The reporters' full names and phones (the caller checked ``case.unmask``); audited
    with the reason."""
    why = (reason or "").strip()
    if len(why) < 2:
        raise InvalidInput("give the reason for seeing the reporter's full details (事由)")
    _detail(conn, principal, case_id)  # scope
    rows = conn.execute(
        text("SELECT name, phone, user_id FROM case_reporters WHERE case_id = :id ORDER BY id"),
        {"id": case_id},
    ).all()
    audit.record(
        conn,
        actor=principal,
        action="case.unmask",
        target_type="case",
        target_ids=[str(case_id)],
        ip=ip,
        detail={"reason": why[:500], "reporters": len(rows)},
    )
    return [Reporter(r.name, r.phone, r.user_id) for r in rows]


def upload_file(
    conn: Connection,
    *,
    principal: Principal | None,
    home: Path,
    data: bytes,
    filename: str,
    max_bytes: int,
) -> files.StoredFile:
    """Check and keep an upload in the store; it can then be attached by its sha256."""
    stored = files.store_file(
        home, data, filename=filename, allowed=ATTACHMENT_TYPES, max_bytes=max_bytes
    )
    conn.execute(
        text(
            "INSERT INTO stored_files (sha256, mime, size, width, height, uploaded_by) "
            "VALUES (:s, :m, :z, :w, :h, :u) ON CONFLICT (sha256) DO NOTHING"
        ),
        {
            "s": stored.sha256,
            "m": stored.mime,
            "z": stored.size,
            "w": stored.width,
            "h": stored.height,
            "u": principal.user_id if principal else None,
        },
    )
    return stored


def case_file(
    conn: Connection, *, principal: Principal, case_id: int, sha256: str
) -> files.StoredFile:
    """A file attached to a case in scope (NotFound otherwise)."""
    row = conn.execute(
        text(
            "SELECT s.sha256, s.mime, s.size, s.width, s.height FROM case_files f "
            "JOIN stored_files s ON s.sha256 = f.sha256 JOIN cases c ON c.id = f.case_id "
            "WHERE f.case_id = :id AND f.sha256 = :s AND "
            "coalesce(c.grid_code, c.village_code) LIKE :p || '%'"
        ),
        {"id": case_id, "s": sha256, "p": principal.scope.prefix},
    ).first()
    if row is None:
        raise NotFound(f"no file {sha256[:12]}… on case {case_id} in your scope")
    return files.StoredFile(row.sha256, row.mime, int(row.size), row.width, row.height)
