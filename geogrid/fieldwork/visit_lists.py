"""County-scale visit lists: coverage per worker, households never visited, households due.

The formulas are :mod:`geogrid.fieldwork.coverage`'s. A county holds ~150,000 households
and half a million visits, so none of these lists aggregates them per call: the figures
per area (households never visited at all, households due now per window end, each
worker's visits per area) are kept in ``visit_list_cache`` between calls
(:func:`geogrid.fieldwork.coverage_cache.cached_figures`: only areas whose visits,
households or rules changed are counted again), the total of a list is their exact sum,
and a page reads only the few areas (or window end and area groups) that hold it, each
household's visits looked up by index.
"""

from __future__ import annotations

import bisect
import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.fieldwork.coverage import (
    MAX_LIMIT,
    Period,
    _hash_joins,
    _plan_ctes,
    _ratio,
    _scope_area,
    _window_start,
    by_area,
)
from geogrid.fieldwork.coverage_cache import cached_figures
from geogrid.fieldwork.visits import check_page, today

__all__ = [
    "DueHousehold",
    "NeverVisited",
    "WorkerCoverage",
    "by_worker",
    "due_households",
    "never_visited",
]


class WorkerCoverage(BaseModel):
    """What one worker recorded, and the plan figures of the households in their scope."""

    worker_id: int | None
    worker_name: str
    scope: str
    visits: int
    households_visited: int
    households: int
    visited: int
    coverage: float | None
    due: int
    done: int
    plan_rate: float | None


class NeverVisited(BaseModel):
    """A household with no visit in the period (or none at all)."""

    household_id: int
    register_no: str
    house_no: str | None
    village_code: str
    area_code: str
    last_visited_on: dt.date | None


class DueHousehold(BaseModel):
    """A household whose current plan window has no visit yet."""

    household_id: int
    register_no: str
    house_no: str | None
    village_code: str
    area_code: str
    period_months: int
    due_by: dt.date
    last_visited_on: dt.date | None


def _worker_figures(
    conn: Connection, principal: Principal, prefix: str, period: Period
) -> dict[str, Any]:
    """Per area: ``{worker id or "": [visits, households visited, worker name]}`` of the
    period's visits to the area's households (kept between calls: only areas with new
    visits are counted again). Households belong to one area, so per-area figures sum."""

    def compute(only: list[str] | None) -> dict[str, Any]:
        rows = conn.execute(
            text(
                f"""
                SELECT h.scope_key AS area, v.worker_id, min(v.worker_name) AS name,
                       count(*)::int AS visits, count(DISTINCT v.household_id)::int AS hh
                FROM visits v JOIN households h ON h.id = v.household_id
                WHERE v.visited_on BETWEEN :d0 AND :d1 AND h.scope_key LIKE :prefix || '%'
                {"AND h.scope_key = ANY(:only)" if only is not None else ""}
                GROUP BY 1, 2
                """
            ),
            {"prefix": prefix, "d0": period.start, "d1": period.end, "only": only or []},
        ).all()
        out: dict[str, Any] = {}
        for r in rows:
            wid = "" if r.worker_id is None else str(r.worker_id)
            out.setdefault(r.area, {})[wid] = [r.visits, r.hh, r.name]
        return out

    return cached_figures(
        conn, name="workers", key=f"{period.start}/{period.end}", prefix=prefix,
        complete=principal.scope.kind == "all", special=False, compute=compute,
    )  # fmt: skip


def by_worker(
    conn: Connection, *, principal: Principal, period: Period, area: str | None = None
) -> list[WorkerCoverage]:
    """Coverage per worker (see the module's formulas), ordered by worker name."""
    prefix = _scope_area(principal, area)
    areas = by_area(conn, principal=principal, period=period, area=area)
    done: dict[str, list[Any]] = {}
    for figures in _worker_figures(conn, principal, prefix, period).values():
        for wid, (visits, hh, name) in figures.items():
            d = done.setdefault(wid, [0, 0, name])
            d[0] += visits
            d[1] += hh
            d[2] = min(d[2], name)
    ids = [int(w) for w in done if w]
    rows = conn.execute(
        text(
            """
            WITH done AS (
                SELECT d.worker_id, d.worker_name, d.visits, d.households_visited
                FROM unnest(CAST(:wid AS int[]), CAST(:wname AS text[]), CAST(:nv AS int[]),
                            CAST(:nh AS int[]))
                     AS d(worker_id, worker_name, visits, households_visited)
            ),
            staff AS (
                SELECT u.id, u.username, u.scope_kind, u.scope_code,
                       CASE u.scope_kind WHEN 'all' THEN '' WHEN 'town' THEN left(u.scope_code, 9)
                            ELSE u.scope_code END AS prefix
                FROM users u
                WHERE (NOT u.disabled AND u.role IN ('grid_worker', 'village_leader'))
                   OR u.id = ANY(CAST(:ids AS int[]))
            )
            SELECT coalesce(s.id, d.worker_id) AS worker_id,
                   coalesce(s.username, d.worker_name) AS worker_name,
                   coalesce(s.scope_code, '') AS scope, coalesce(s.prefix, '~') AS prefix,
                   coalesce(d.visits, 0) AS visits,
                   coalesce(d.households_visited, 0) AS households_visited
            FROM staff s FULL JOIN done d ON d.worker_id = s.id
            WHERE d.worker_id IS NOT NULL OR d.visits IS NOT NULL
               OR s.prefix LIKE :prefix || '%'
            ORDER BY 2, 1
            """
        ),
        {"prefix": prefix, "ids": ids,
         "wid": [int(w) if w else None for w in done], "wname": [d[2] for d in done.values()],
         "nv": [d[0] for d in done.values()], "nh": [d[1] for d in done.values()]},
    ).all()  # fmt: skip
    # the areas inside a worker's scope are a contiguous run of the areas sorted by code
    codes = [a.area_code for a in areas]
    order = sorted(range(len(codes)), key=codes.__getitem__)
    codes = [codes[i] for i in order]
    sums = [(0, 0, 0, 0)]
    for i in order:
        a, (h, v, du, dn) = areas[i], sums[-1]
        sums.append((h + a.households, v + a.visited, du + a.due, dn + a.done))
    out = []
    for r in rows:
        lo = bisect.bisect_left(codes, r.prefix)
        hi = bisect.bisect_left(codes, r.prefix + "\uffff")
        households, visited, due, done_ = (b - a for a, b in zip(sums[lo], sums[hi], strict=True))
        out.append(
            WorkerCoverage(
                worker_id=r.worker_id,
                worker_name=r.worker_name,
                scope=r.scope or "all",
                visits=r.visits,
                households_visited=r.households_visited,
                households=households,
                visited=visited,
                coverage=_ratio(visited, households),
                due=due,
                done=done_,
                plan_rate=_ratio(done_, due),
            )
        )
    return out


def _page_groups(groups: list[tuple[Any, int]], offset: int, limit: int) -> tuple[list[Any], int]:
    """The groups (in list order, with their row counts) that hold rows ``offset`` …
    ``offset + limit − 1`` of the list they make up, and the offset of the page's first
    row inside them.

    >>> _page_groups([("a", 5), ("b", 0), ("c", 4), ("d", 7), ("e", 3)], 6, 6)
    (['c', 'd'], 1)
    >>> _page_groups([("a", 5)], 9, 10)
    ([], 4)
    """
    skipped, held = 0, 0
    wanted: list[Any] = []
    for group, n in groups:
        if skipped + n <= offset and not wanted:
            skipped += n
        elif n and held < offset - skipped + limit:
            wanted.append(group)
            held += n
    return wanted, offset - skipped


def _never_figures(conn: Connection, principal: Principal, prefix: str) -> dict[str, Any]:
    """Per area: ``{"n": households, "never": households without any visit}`` (kept
    between calls)."""

    def compute(only: list[str] | None) -> dict[str, Any]:
        # every area: one anti-join; a few: a look-up by index per household
        never = (
            "NOT EXISTS (SELECT 1 FROM visits v WHERE v.household_id = h.id)"
            if only is None
            else "(SELECT v.id FROM visits v WHERE v.household_id = h.id LIMIT 1) IS NULL"
        )
        _hash_joins(conn, only is None)
        rows = conn.execute(
            text(
                f"""
                SELECT h.scope_key AS area, count(*)::int AS n,
                       count(*) FILTER (WHERE {never})::int AS never
                FROM households h WHERE h.scope_key LIKE :prefix || '%'
                {"AND h.scope_key = ANY(:only)" if only is not None else ""}
                GROUP BY 1
                """
            ),
            {"prefix": prefix, "only": only or []},
        ).all()
        _hash_joins(conn, False)
        return {r.area: {"n": r.n, "never": r.never} for r in rows}

    return cached_figures(
        conn, name="ever", key="", prefix=prefix, complete=principal.scope.kind == "all",
        special=False, compute=compute,
    )  # fmt: skip


def never_visited(
    conn: Connection,
    *,
    principal: Principal,
    period: Period | None,
    area: str | None = None,
    limit: int = 100,
    offset: int = 0,
    ip: str | None = None,
) -> tuple[list[NeverVisited], int]:
    """Households in scope with no visit in ``period`` (``None``: no visit ever), by area
    and register number, with the total; audited (register numbers identify households).

    The per-area counts (kept between calls) give the exact total and the few areas that
    hold the page; only those areas' households are read, by index."""
    check_page(limit, offset, MAX_LIMIT)
    prefix = _scope_area(principal, area)
    params: dict[str, Any] = {"prefix": prefix, "lim": limit}
    window = ""
    if period is not None:
        window = "AND v.visited_on BETWEEN :d0 AND :d1"
        params.update(d0=period.start, d1=period.end)
        counts = [
            (c.area_code, c.never_visited)
            for c in by_area(conn, principal=principal, period=period, area=area)
        ]
    else:
        figures = _never_figures(conn, principal, prefix)
        counts = [(a, int(figures[a]["never"])) for a in sorted(figures)]
    total = sum(n for _, n in counts)
    wanted, params["off"] = _page_groups(counts, offset, limit)
    params["areas"] = wanted
    rows = conn.execute(
        text(
            f"""
            SELECT h.id AS household_id, h.register_no, h.house_no, h.village_code,
                   h.scope_key AS area_code,
                   (SELECT max(v.visited_on) FROM visits v WHERE v.household_id = h.id)
                   AS last_visited_on
            FROM households h
            WHERE h.scope_key = ANY(:areas) AND h.scope_key LIKE :prefix || '%'
              AND (SELECT v.id FROM visits v WHERE v.household_id = h.id {window} LIMIT 1)
                  IS NULL
            ORDER BY h.scope_key, h.register_no, h.id LIMIT :lim OFFSET :off
            """
        ),
        params,
    ).all()
    items = [NeverVisited(**r._mapping) for r in rows]
    audit.record(
        conn, actor=principal, action="visit.read", target_type="household",
        target_ids=[str(i.household_id) for i in items], ip=ip,
        detail={"list": "never_visited", "ever": period is None, "total": int(total)},
    )  # fmt: skip
    return items, int(total)


def _due_sql(principal: Principal, only: bool) -> str:
    """``open``: households (of the areas bound as ``:only`` when ``only``) whose plan
    window holding month ``:m`` has no visit up to ``:day``, with the window's last day.

    Every area: the visits since the earliest window start aggregated once (hash joins).
    A few areas: each household's latest visit looked up by index — a correlated scalar
    sub-query stays a per-row index probe, where a join would have the planner (misled by
    row-level security's costs) read every visit of the window."""
    if only:
        latest = ""
        last = (
            "(SELECT max(v.visited_on) FROM visits v WHERE v.household_id = due.id "
            "AND v.visited_on BETWEEN :since AND :day)"
        )
        open_ = f"SELECT due.* FROM due WHERE coalesce({last} < due.starts, true)"
    else:
        latest = """
    latest AS (
        SELECT v.household_id, max(v.visited_on) AS last FROM visits v
        WHERE v.household_id IS NOT NULL AND v.visited_on BETWEEN :since AND :day
        GROUP BY v.household_id
    ),"""
        open_ = (
            "SELECT due.* FROM due LEFT JOIN latest ON latest.household_id = due.id "
            "WHERE latest.last IS NULL OR latest.last < due.starts"
        )
    return f"""
    WITH {_plan_ctes(principal, only)},
    cur AS (
        SELECT hh.id, hh.area, hh.k, (:m / hh.k) * hh.k AS m0 FROM hh
    ),
    due AS (
        SELECT cur.*, make_date(cur.m0 / 12, cur.m0 % 12 + 1, 1) AS starts,
               (make_date((cur.m0 + cur.k) / 12, (cur.m0 + cur.k) % 12 + 1, 1) - 1) AS due_by
        FROM cur
    ),{latest}
    open AS ({open_})
    """


def due_households(
    conn: Connection,
    *,
    principal: Principal,
    area: str | None = None,
    day: dt.date | None = None,
    limit: int = 100,
    offset: int = 0,
    ip: str | None = None,
) -> tuple[list[DueHousehold], int]:
    """Households whose plan window holding ``day`` (default today) has no visit yet,
    soonest ``due_by`` first; audited.

    The counts per area and window end (kept between calls, per day) give the exact total
    and the few (window end, area) groups that hold the page; only those are read."""
    check_page(limit, offset, MAX_LIMIT)
    prefix = _scope_area(principal, area)
    d = day or today()
    m = d.year * 12 + d.month - 1
    params = {"prefix": prefix, "m": m, "day": d, "since": _window_start(conn, m)}

    def compute(only: list[str] | None) -> dict[str, Any]:
        _hash_joins(conn, only is None)
        rows = conn.execute(
            text(
                f"{_due_sql(principal, only is not None)} SELECT area, due_by, count(*)::int "
                "AS n FROM open GROUP BY 1, 2"
            ),
            {**params, "only": only or []},
        ).all()
        _hash_joins(conn, False)
        out: dict[str, Any] = {}
        for r in rows:
            out.setdefault(r.area, {})[r.due_by.isoformat()] = r.n
        return out

    special = "special" in principal.permissions
    figures = cached_figures(
        conn, name="due", key=d.isoformat(), prefix=prefix,
        complete=principal.scope.kind == "all", special=special, compute=compute,
    )  # fmt: skip
    groups = sorted(((due_by, a), n) for a, f in figures.items() for due_by, n in f.items())
    total = sum(n for _, n in groups)
    wanted, off = _page_groups(groups, offset, limit)
    rows = conn.execute(
        text(
            f"""{_due_sql(principal, True)}
            SELECT o.id AS household_id, h.register_no, h.house_no, h.village_code,
                   o.area AS area_code, o.k AS period_months, o.due_by,
                   (SELECT max(v.visited_on) FROM visits v WHERE v.household_id = o.id)
                   AS last_visited_on
            FROM open o JOIN households h ON h.id = o.id
            WHERE (o.due_by, o.area) IN (SELECT g.due_by, g.area FROM unnest(
                CAST(:g_due AS date[]), CAST(:g_area AS text[])) AS g(due_by, area))
            ORDER BY o.due_by, o.area, h.register_no, o.id LIMIT :lim OFFSET :off
            """
        ),
        {**params, "only": sorted({a for _, a in wanted}), "lim": limit, "off": off,
         "g_due": [dt.date.fromisoformat(b) for b, _ in wanted],
         "g_area": [a for _, a in wanted]},
    ).all()  # fmt: skip
    items = [DueHousehold(**r._mapping) for r in rows]
    audit.record(
        conn, actor=principal, action="visit.read", target_type="household",
        target_ids=[str(i.household_id) for i in items], ip=ip,
        detail={"list": "due", "total": int(total)},
    )  # fmt: skip
    return items, int(total)
