"""Reads of cases: lists with filters, inboxes, due lists and counts, duplicates, the
category dictionary, and the public (Open311) view.

Every staff read binds the principal's scope prefix into its SQL: a case is in scope
when ``coalesce(grid_code, village_code)`` (its historical grid, else its village)
starts with the prefix (index ``ix_cases_scope``). Nothing here returns personal data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.cases import machine, routing
from geogrid.cases.shapes import (
    CaseFilter,
    CaseSummary,
    Category,
    DuplicateHint,
    GridDue,
    Owner,
    PostInfo,
    PublicCase,
    PublicEvent,
)
from geogrid.errors import InvalidInput, NotFound

__all__ = [
    "MAX_LIMIT",
    "due_counts",
    "find_duplicates",
    "inbox",
    "list_cases",
    "list_categories",
    "public_case",
    "public_cases",
    "public_events",
    "resolve_category",
    "setting",
]

MAX_LIMIT: Final = 500
SCOPE: Final = "coalesce(c.grid_code, c.village_code) LIKE :scope_prefix || '%'"


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


OPEN_SQL: Final = f"c.status IN ({_in(sorted(machine.OPEN_STATUSES))})"
TIMED_SQL: Final = f"c.status IN ({_in(sorted(machine.TIMED_STATUSES))})"
OVERDUE_SQL: Final = f"({TIMED_SQL} AND c.due_at < now())"

SUMMARY_SQL: Final = f"""
SELECT c.id, c.case_no, c.category, c.category_code, k.name AS category_name, c.status,
       c.priority, c.source, c.reported_at, c.updated_at, ST_X(c.geom) AS lon,
       ST_Y(c.geom) AS lat, c.village_code, c.grid_code, c.current_grid_code, c.description,
       c.address, c.assignee_kind, c.assignee_code,
       CASE c.assignee_kind
         WHEN 'department' THEN (SELECT d.name FROM case_departments d
                                 WHERE d.code = c.assignee_code)
         WHEN 'grid' THEN (SELECT g.name FROM grids g JOIN plans p ON p.id = g.plan_id
                           WHERE g.code = c.assignee_code ORDER BY p.status = 'active' DESC,
                           p.id DESC LIMIT 1)
         ELSE (SELECT a.name FROM admin_areas a WHERE a.code = c.assignee_code) END
         AS assignee_name,
       c.owner_id, u.username AS owner_name, c.pending, c.due_at, c.deadline_problem,
       coalesce({OVERDUE_SQL}, false) AS overdue, c.rework_count, c.merged_into, c.version,
       c.pending_data, c.handled_by, c.resume_status, c.route_kind, c.route_code
FROM cases c
LEFT JOIN case_categories k ON k.code = c.category_code
LEFT JOIN users u ON u.id = c.owner_id
"""


def summary(row: Any) -> CaseSummary:
    """A :class:`CaseSummary` from a row of :data:`SUMMARY_SQL`."""
    m = row._mapping
    assignee = (
        PostInfo(m["assignee_kind"], m["assignee_code"], m["assignee_name"])
        if m["assignee_kind"]
        else None
    )
    owner = Owner(int(m["owner_id"]), m["owner_name"]) if m["owner_id"] is not None else None
    return CaseSummary(
        id=int(m["id"]),
        case_no=m["case_no"],
        category=m["category"],
        category_code=m["category_code"],
        category_name=m["category_name"],
        status=m["status"],
        priority=int(m["priority"]),
        source=m["source"],
        reported_at=m["reported_at"],
        updated_at=m["updated_at"],
        lon=float(m["lon"]),
        lat=float(m["lat"]),
        village_code=m["village_code"],
        grid_code=m["grid_code"],
        current_grid_code=m["current_grid_code"],
        description=m["description"],
        address=m["address"],
        assignee=assignee,
        owner=owner,
        pending=m["pending"],
        due_at=m["due_at"],
        deadline_problem=m["deadline_problem"],
        overdue=bool(m["overdue"]),
        rework_count=int(m["rework_count"]),
        merged_into=m["merged_into"],
        version=int(m["version"]),
    )


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")


def _scoped(principal: Principal) -> tuple[list[str], dict[str, Any]]:
    return [SCOPE], {"scope_prefix": principal.scope.prefix}


def _paged(
    conn: Connection,
    where: list[str],
    params: dict[str, Any],
    order: str,
    limit: int,
    offset: int,
    *,
    sorted_whole: bool = False,
) -> tuple[list[CaseSummary], int]:
    """A page of the cases ``where`` selects, in ``order``, and how many there are.

    ``sorted_whole``: the order sorts every matching row anyway (an inbox: overdue first,
    then by deadline), so the page's scan counts them too (``count(*) OVER ()``) instead of
    a second scan; a page past the end falls back to the count."""
    _page(limit, offset)
    cond = " AND ".join(where)
    count_sql = text(f"SELECT count(*) FROM cases c WHERE {cond}")
    total = None if sorted_whole else conn.execute(count_sql, params).scalar_one()
    counted = ", count(*) OVER () AS d_total" if sorted_whole else ""
    select = SUMMARY_SQL.replace(" c.route_code", " c.route_code, page.d_total", 1)
    # the page's ids first (a top-N sort), then the joins and names for those rows only,
    # sorted again (``order`` names the columns of ``c``, the same in both)
    rows = conn.execute(
        text(
            f"WITH page AS (SELECT c.id{counted} FROM cases c WHERE {cond} "
            f"ORDER BY {order} LIMIT :lim OFFSET :off) "
            f"{select if sorted_whole else SUMMARY_SQL} "
            f"JOIN page ON page.id = c.id ORDER BY {order}"
        ),
        {**params, "lim": limit, "off": offset},
    ).all()
    if total is None:
        total = (
            rows[0]._mapping["d_total"] if rows else conn.execute(count_sql, params).scalar_one()
        )
    return [summary(r) for r in rows], int(total)


def filter_sql(
    conn: Connection, principal: Principal, f: CaseFilter
) -> tuple[list[str], dict[str, Any]]:
    """WHERE conditions and parameters for ``f`` within the principal's scope."""
    where, params = _scoped(principal)
    if f.status:
        bad = set(f.status) - set(machine.STATUSES)
        if bad:
            raise InvalidInput(
                f"unknown status {sorted(bad)}; one of {', '.join(machine.STATUSES)}"
            )
        where.append("c.status = ANY(:statuses)")
        params["statuses"] = list(f.status)
    if f.category:
        if not f.category.isdigit() or len(f.category) not in (2, 4):
            raise InvalidInput("category must be a 2- or 4-digit category code")
        where.append("c.category_code LIKE :cat || '%'")
        params["cat"] = f.category
    if f.grid:
        where.append("c.grid_code = :grid")
        params["grid"] = f.grid
    if f.village:
        where.append("c.village_code = :village")
        params["village"] = f.village
    if f.since:
        where.append("c.reported_at >= :since")
        params["since"] = f.since
    if f.until:
        where.append("c.reported_at < :until")
        params["until"] = f.until
    if f.overdue is not None:
        where.append(OVERDUE_SQL if f.overdue else f"NOT coalesce({OVERDUE_SQL}, false)")
    if f.due_within_hours is not None:
        if not 0 < f.due_within_hours <= 24 * 365 or math.isnan(f.due_within_hours):
            raise InvalidInput("due_within_hours must be between 0 and 8760")
        where.append(f"{TIMED_SQL} AND c.due_at < now() + make_interval(secs => :within)")
        params["within"] = f.due_within_hours * 3600
    if f.assignee == "me":
        cond, extra = routing.post_sql(conn, principal)
        where.append(cond)
        params.update(extra)
    if f.source:
        if f.source not in machine.SOURCES:
            raise InvalidInput(f"source must be one of {', '.join(machine.SOURCES)}")
        where.append("c.source = :source")
        params["source"] = f.source
    return where, params


def list_cases(
    conn: Connection,
    *,
    principal: Principal,
    filters: CaseFilter | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CaseSummary], int]:
    """Cases in scope matching ``filters``, newest first; the page and the total."""
    where, params = filter_sql(conn, principal, filters or CaseFilter())
    return _paged(conn, where, params, "c.reported_at DESC, c.id DESC", limit, offset)


def inbox_sql(conn: Connection, principal: Principal) -> tuple[str, dict[str, Any]]:
    """SQL true for the cases waiting for ``principal``: a queued step (``queue`` rows of
    the machine) the user may take by role and duty, or a transfer naming the user."""
    parts: list[str] = []
    params: dict[str, Any] = {"inbox_uid": principal.user_id}
    post, post_params = routing.post_sql(conn, principal)
    params.update(post_params)
    for i, t in enumerate(r for r in machine.TRANSITIONS if r.queue):
        if principal.role not in t.roles or t.duty == "target":
            continue
        cond = [f"c.status IN ({_in(sorted(t.sources))})"]
        if t.pending == "none":
            cond.append("c.pending IS NULL")
        elif t.pending:
            cond.append(f"c.pending = '{t.pending}'")
        if t.when:
            word = "" if t.when == "resident" else "NOT "
            cond.append(f"c.source {word}IN ({_in(sorted(machine.RESIDENT_SOURCES))})")
        if t.duty == "post":
            cond.append(post)
        elif t.duty == "checker":
            cond.append("c.handled_by IS DISTINCT FROM :inbox_uid")
        parts.append("(" + " AND ".join(cond) + ")")
        del i
    parts.append("(c.pending = 'transfer' AND (c.pending_data ->> 'to_user')::int = :inbox_uid)")
    return "(" + " OR ".join(parts) + ")", params


def inbox(
    conn: Connection, *, principal: Principal, limit: int = 50, offset: int = 0
) -> tuple[list[CaseSummary], int]:
    """The cases waiting for ``principal``, overdue first, then by deadline."""
    where, params = _scoped(principal)
    cond, extra = inbox_sql(conn, principal)
    where += [OPEN_SQL, cond]
    params.update(extra)
    order = f"coalesce({OVERDUE_SQL}, false) DESC, c.due_at NULLS LAST, c.id"
    return _paged(conn, where, params, order, limit, offset, sorted_whole=True)


def due_cases(
    conn: Connection,
    *,
    principal: Principal,
    kind: str = "overdue",
    within_hours: float = 24,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CaseSummary], int]:
    """Overdue cases, or those due within ``within_hours`` (not yet overdue), by deadline."""
    if kind not in ("overdue", "soon"):
        raise InvalidInput("kind must be overdue or soon")
    f = (
        CaseFilter(overdue=True)
        if kind == "overdue"
        else CaseFilter(overdue=False, due_within_hours=within_hours)
    )
    where, params = filter_sql(conn, principal, f)
    return _paged(conn, where, params, "c.due_at, c.id", limit, offset)


def due_counts(
    conn: Connection, *, principal: Principal, within_hours: float = 24
) -> list[GridDue]:
    """Overdue and soon-due (within ``within_hours``, not yet overdue) open cases per grid."""
    if not 0 < within_hours <= 24 * 365:
        raise InvalidInput("within_hours must be between 0 and 8760")
    rows = conn.execute(
        text(
            f"""
            SELECT c.grid_code, c.village_code,
                   count(*) FILTER (WHERE c.due_at < now()) AS overdue,
                   count(*) FILTER (WHERE c.due_at >= now()) AS soon
            FROM cases c
            WHERE {SCOPE} AND {TIMED_SQL}
              AND c.due_at < now() + make_interval(secs => :within)
            GROUP BY c.grid_code, c.village_code ORDER BY 3 DESC, 4 DESC, 1
            """
        ),
        {"scope_prefix": principal.scope.prefix, "within": within_hours * 3600},
    ).all()
    return [GridDue(r.grid_code, r.village_code, int(r.overdue), int(r.soon)) for r in rows]


# --------------------------------------------------------------------------- duplicates


def setting(conn: Connection, key: str, default: float) -> float:
    return settings(conn, {key: default})[key]


#: The settings :func:`find_duplicates` reads, and a subquery giving them as one JSON
#: object (another statement reads them for it: :func:`geogrid.cases.service.create_case`).
DUPLICATE_DEFAULTS: Final = {"duplicate_radius_m": 50.0, "duplicate_window_hours": 72.0}
DUPLICATE_SETTINGS_SQL: Final = (
    "(SELECT coalesce(json_object_agg(s.key, s.value), '{}') FROM case_settings s "
    f"WHERE s.key IN ({', '.join(repr(k) for k in DUPLICATE_DEFAULTS)}))"
)


def settings(
    conn: Connection, defaults: Mapping[str, float], found: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """Numbers of ``case_settings`` (one query, none when ``found`` gives the rows read
    already), ``defaults`` where absent or not numbers."""
    if found is None:
        rows = conn.execute(
            text("SELECT key, value FROM case_settings WHERE key = ANY(:k)"),
            {"k": list(defaults)},
        ).all()
        found = {r.key: r.value for r in rows}
    return {
        k: float(found[k]) if isinstance(found.get(k), int | float) else d
        for k, d in defaults.items()
    }


def find_duplicates(
    conn: Connection,
    *,
    category: str,
    lon: float,
    lat: float,
    at: datetime | None = None,
    exclude: int | None = None,
    limit: int = 5,
    resolved: bool = False,
    found: Mapping[str, Any] | None = None,
) -> list[DuplicateHint]:
    """Open cases of the same category class within the configured radius and time window
    (``case_settings``: ``duplicate_radius_m``, ``duplicate_window_hours``), nearest first;
    ``resolved``: ``category`` is a code already resolved (no dictionary query); ``found``:
    those settings as read in this transaction (:data:`DUPLICATE_SETTINGS_SQL`, no query)."""
    code = category if resolved else resolve_category(conn, category)[0]
    tune = settings(conn, DUPLICATE_DEFAULTS, found)
    radius, window = tune["duplicate_radius_m"], tune["duplicate_window_hours"]
    rows = conn.execute(
        text(
            f"""
            WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g),
            -- the open cases around the point first (ix_cases_open_geom): left to itself the
            -- planner also intersects the window's recent cases (reported_at), tens of
            -- thousands in a busy week, to drop a few dozen
            near AS MATERIALIZED (
              SELECT c.id, c.case_no, c.status, c.category, c.category_code, c.reported_at,
                     c.description, c.geom
              FROM cases c, pt WHERE {OPEN_SQL} AND ST_DWithin(c.geom, pt.g, :deg))
            SELECT c.id, c.case_no, c.status, c.category, c.reported_at, c.description,
                   ST_Distance(c.geom::geography, pt.g::geography) AS d
            FROM near c, pt
            WHERE c.category_code LIKE :cls || '%'
              AND ST_DWithin(c.geom::geography, pt.g::geography, :radius)
              AND c.reported_at >= coalesce(CAST(:at AS timestamptz), now())
                                   - make_interval(secs => :window)
              AND c.id IS DISTINCT FROM :exclude
            ORDER BY d, c.reported_at DESC, c.id DESC LIMIT :lim
            """
        ),
        {
            "lon": lon,
            "lat": lat,
            "cls": code[:2],
            "deg": radius / 100_000.0 * 1.5,
            "radius": radius,
            "at": at,
            "window": window * 3600,
            "exclude": exclude,
            "lim": limit,
        },
    ).all()
    return [
        DuplicateHint(
            int(r.id),
            r.case_no,
            r.status,
            r.category,
            round(float(r.d), 1),
            r.reported_at,
            r.description,
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- dictionary


def resolve_category(conn: Connection, value: str, *, first: str = "") -> tuple[str, str]:
    """(code, class name) of a category given by code, name or alias (active entries).

    ``first``: an SQL expression evaluated with the lookup (a ``set_config`` the
    statements after it need, saving its own round trip).
    """
    v = (value or "").strip()
    if not v:
        raise InvalidInput("a case needs a category (事件类别)")
    row = conn.execute(
        text(
            f"""
            SELECT {first + " AS d_first, " if first else ""}k.code,
                   coalesce(p.name, k.name) AS class_name FROM case_categories k
            LEFT JOIN case_categories p ON p.code = k.parent_code
            WHERE k.active AND (k.code = CAST(:v AS text) OR k.name = CAST(:v AS text)
                                OR CAST(:v AS text) = ANY (k.aliases))
            ORDER BY k.code <> CAST(:v AS text), length(k.code), k.code LIMIT 1
            """
        ),
        {"v": v},
    ).first()
    if row is None:
        raise InvalidInput(f"unknown category {v!r}: see GET /api/cases/categories")
    return str(row.code), str(row.class_name)


def list_categories(conn: Connection, *, include_inactive: bool = False) -> list[Category]:
    """The dictionary with each entry's step limits (a subclass shows its class's where it
    has none of its own)."""
    rows = conn.execute(
        text(
            """
            SELECT k.code, k.name, k.name_en, k.parent_code, k.active, k.aliases,
                   coalesce((SELECT jsonb_object_agg(s.step, jsonb_build_object(
                                'amount', s.amount, 'unit', s.unit))
                             FROM (SELECT DISTINCT ON (l.step) l.step, l.amount, l.unit
                                   FROM case_time_limits l
                                   WHERE l.category_code IN (k.code, left(k.code, 2))
                                   ORDER BY l.step, length(l.category_code) DESC) s),
                            '{}'::jsonb) AS limits
            FROM case_categories k
            WHERE k.active OR :all ORDER BY k.sort, k.code
            """
        ),
        {"all": include_inactive},
    ).all()
    return [
        Category(
            r.code, r.name, r.name_en, r.parent_code, r.active, list(r.aliases), dict(r.limits)
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- public view

_PUBLIC_SQL: Final = """
SELECT c.id, c.case_no, c.category_code, c.category, c.status, c.description,
       ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat, c.reported_at, c.updated_at, c.due_at,
       c.address, c.merged_into, c.source,
       (SELECT e.note FROM case_events e WHERE e.case_id = c.id AND e.public AND e.note <> ''
        AND e.at >= c.reported_at ORDER BY e.seq DESC LIMIT 1) AS last_public_note,
       coalesce((SELECT array_agg(f.sha256 ORDER BY f.seq, f.sha256) FROM case_files f
                 JOIN stored_files s ON s.sha256 = f.sha256
                 JOIN case_events e ON e.case_id = f.case_id AND e.seq = f.seq
                      AND e.at >= c.reported_at  -- events follow the report: months pruned
                 WHERE f.case_id = c.id AND s.mime LIKE 'image/%'
                   AND (e.public OR e.seq = 1)), '{}') AS media,
       CASE c.assignee_kind
         WHEN 'department' THEN (SELECT d.name FROM case_departments d
                                 WHERE d.code = c.assignee_code)
         WHEN 'grid' THEN (SELECT g.name FROM grids g JOIN plans p ON p.id = g.plan_id
                           WHERE g.code = c.assignee_code ORDER BY p.status = 'active' DESC,
                           p.id DESC LIMIT 1)
         ELSE (SELECT a.name FROM admin_areas a WHERE a.code = c.assignee_code) END AS agency
FROM cases c
"""


def _public(row: Any, events: list[PublicEvent] | None = None) -> PublicCase:
    m = dict(row._mapping)
    m["media"] = list(m["media"])
    m["lon"], m["lat"] = float(m["lon"]), float(m["lat"])
    return PublicCase(**m, public_events=events or [])


def public_events(conn: Connection, case_id: int) -> list[PublicEvent]:
    """The steps of a case residents may see (the report and events marked public)."""
    rows = conn.execute(
        text(
            "SELECT at, to_status, note FROM case_events WHERE case_id = :id "
            "AND (public OR seq = 1) "
            # events follow the report: the months before it are not read (partitions)
            "AND at >= (SELECT reported_at FROM cases WHERE id = :id) ORDER BY seq"
        ),
        {"id": case_id},
    ).all()
    return [PublicEvent(r.at, r.to_status, r.note) for r in rows]


def public_case(conn: Connection, *, case_id: int) -> PublicCase:
    """One case as the public sees it, with its public steps; a merged duplicate answers
    with its original."""
    for _ in range(10):  # merged chains are short; the bound guards against a cycle
        row = conn.execute(text(f"{_PUBLIC_SQL} WHERE c.id = :id"), {"id": case_id}).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        if row.merged_into is None:
            return _public(row, public_events(conn, case_id))
        case_id = int(row.merged_into)
    raise NotFound(f"no case {case_id}")


def public_cases(
    conn: Connection,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    statuses: Sequence[str] = (),
    category_codes: Sequence[str] = (),
    sources: Sequence[str] = (),
    case_ids: Sequence[int] = (),
    limit: int = 1000,
    offset: int = 0,
) -> list[PublicCase]:
    """Cases reported in [start, end) of the given statuses, categories (code prefixes) and
    sources, newest first, merged duplicates left out; ``case_ids`` picks cases by id (the
    other filters except ``sources`` then ignored). ``public_events`` is left empty here."""
    bad = set(statuses) - set(machine.STATUSES)
    if bad:
        raise InvalidInput(f"unknown status {sorted(bad)}")
    if set(sources) - set(machine.SOURCES):
        raise InvalidInput(f"source must be one of {', '.join(machine.SOURCES)}")
    if not 1 <= limit <= 10_000:
        raise InvalidInput("limit must be between 1 and 10000")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    where = ["c.status <> 'merged'"]
    params: dict[str, Any] = {"lim": limit, "off": offset}
    if sources:
        where.append("c.source = ANY(:sources)")
        params["sources"] = list(sources)
    if case_ids:
        where.append("c.id = ANY(:ids)")
        params["ids"] = [int(i) for i in case_ids]
    else:
        if start:
            where.append("c.reported_at >= :start")
            params["start"] = start
        if end:
            where.append("c.reported_at < :end")
            params["end"] = end
        if statuses:
            where.append("c.status = ANY(:st)")
            params["st"] = list(statuses)
        if category_codes:
            where.append("c.category_code LIKE ANY(:cats)")
            params["cats"] = [f"{c}%" for c in category_codes]
    rows = conn.execute(
        text(
            f"{_PUBLIC_SQL} WHERE {' AND '.join(where)} ORDER BY c.reported_at DESC, c.id DESC "
            "LIMIT :lim OFFSET :off"
        ),
        params,
    ).all()
    return [_public(r) for r in rows]
