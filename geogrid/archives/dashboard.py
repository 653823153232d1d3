"""The leader's dashboard data: case counts of an area in a period, computed in SQL.

For an area (town, village or grid code) and a period (``from``…``to``, local dates in
China Standard Time) with an optional category, :func:`dashboard` answers: the totals of
this period and of the previous one (same length, just before), cases by ISO week in the
period and by month over the twelve months to ``to``, by category (this period and the
previous one), by status, overdue now (open cases past their deadline, whatever the
period, suspended cases excluded), the area's children (a town's villages, a village's
grids) with their figures for the drill-down, and the workers who handled cases in the
period, ranked.

Every statement binds the area's code prefix: the caller has checked that the area lies
inside the user's scope. No personal data: counts, codes, area names, user names of staff.
This module imports no FastAPI.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import Connection, text

from geogrid.archives.data import STATUS_LABELS
from geogrid.errors import InvalidInput, NotFound

__all__ = ["CLOSED", "MAX_DAYS", "area_of", "dashboard", "period"]

TZ = "Asia/Shanghai"
CLOSED = ("closed", "archived")
#: statuses whose deadline no longer runs (ended, or suspended: 挂账): never overdue
ENDED = ("rejected", "voided", "closed", "archived", "merged", "suspended")
MAX_DAYS = 3 * 366
DEFAULT_DAYS = 90


def period(
    start: dt.date | None, end: dt.date | None, today: dt.date | None = None
) -> dict[str, dt.date]:
    """The period (default: the 90 days to today) and the previous one of the same length.

    >>> p = period(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    >>> p["prev_from"], p["prev_to"]
    (datetime.date(2026, 1, 29), datetime.date(2026, 2, 28))
    """
    end = end or today or dt.date.today()
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidInput("from must not be after to", detail={"field": "from"})
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise InvalidInput(f"a period has at most {MAX_DAYS} days", detail={"field": "from"})
    prev_to = start - dt.timedelta(days=1)
    return {"from": start, "to": end, "prev_from": prev_to - dt.timedelta(days=days - 1),
            "prev_to": prev_to}  # fmt: skip


def area_of(conn: Connection, code: str) -> dict[str, Any]:
    """The area ``code`` names: level, name, code prefix. :class:`NotFound` when unknown."""
    if not re.fullmatch(r"\d{12}|\d{15}", code or ""):
        raise InvalidInput("area must be a 12-digit town/village or 15-digit grid code",
                           detail={"field": "area"})  # fmt: skip
    if len(code) == 15:
        name = conn.execute(
            text("SELECT coalesce(g.name, g.code) FROM grids g JOIN plans p ON p.id = g.plan_id "
                 "AND p.status = 'active' WHERE g.code = :c AND g.level = 3 LIMIT 1"), {"c": code}
        ).scalar()  # fmt: skip
        level, prefix = "grid", code
    else:
        name = conn.execute(
            text("SELECT name FROM admin_areas WHERE code = :c"), {"c": code}
        ).scalar()
        level = "town" if code.endswith("000") else "village"
        prefix = code[:9] if level == "town" else code
    if name is None:
        raise NotFound(f"no area {code}", detail={"area": code})
    parent = None if level == "town" else (code[:12] if level == "grid" else code[:9] + "000")
    return {"code": code, "level": level, "name": name, "prefix": prefix, "parent": parent}


_FILTER = """coalesce(c.grid_code, c.village_code) LIKE :prefix || '%'
             AND (CAST(:category AS text) IS NULL OR c.category = :category)"""
_LOCAL = f"(c.reported_at AT TIME ZONE '{TZ}')"
_IN = f"{_LOCAL} >= :f AND {_LOCAL} < :t + 1"


def _rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    return list(conn.execute(text(sql), params).all())


def dashboard(
    conn: Connection,
    area: dict[str, Any],
    when: dict[str, dt.date],
    *,
    category: str | None = None,
) -> dict[str, Any]:
    """Every figure of the dashboard for ``area`` (:func:`area_of`) and ``when``
    (:func:`period`)."""
    p = {"prefix": area["prefix"], "category": category or None}
    cur = {**p, "f": when["from"], "t": when["to"]}
    prev = {**p, "f": when["prev_from"], "t": when["prev_to"]}
    closed = ", ".join(f"'{s}'" for s in CLOSED)
    ended = ", ".join(f"'{s}'" for s in ENDED)
    totals_sql = f"""
        SELECT count(*) AS cases, count(*) FILTER (WHERE c.status IN ({closed})) AS closed,
               count(*) FILTER (WHERE c.status = 'suspended') AS suspended
          FROM cases c WHERE {_FILTER} AND {_IN}"""
    totals = {
        key: dict(_rows(conn, totals_sql, params)[0]._mapping)
        for key, params in (("current", cur), ("previous", prev))
    }
    overdue = conn.execute(
        text(f"SELECT count(*) FROM cases c WHERE {_FILTER} AND c.status NOT IN ({ended}) "
             "AND c.due_at < now()"), p
    ).scalar_one()  # fmt: skip
    weeks = _rows(conn, f"""
        SELECT to_char(date_trunc('week', {_LOCAL}), 'IYYY-"W"IW') AS week,
               date_trunc('week', {_LOCAL})::date AS start, count(*) AS cases,
               count(*) FILTER (WHERE c.status IN ({closed})) AS closed
          FROM cases c WHERE {_FILTER} AND {_IN} GROUP BY 1, 2 ORDER BY 2""", cur)  # fmt: skip
    month_from = (when["to"].replace(day=1) - dt.timedelta(days=334)).replace(day=1)
    months = _rows(conn, f"""
        SELECT to_char(m, 'YYYY-MM') AS month, count(c.id) AS cases,
               count(c.id) FILTER (WHERE c.status IN ({closed})) AS closed
          FROM generate_series(CAST(:mf AS date), CAST(:t AS date), interval '1 month') m
          LEFT JOIN cases c ON date_trunc('month', {_LOCAL}) = m AND {_FILTER}
         GROUP BY m ORDER BY m""", {**cur, "mf": month_from})  # fmt: skip
    cats = _rows(conn, f"""
        SELECT c.category, coalesce(cc.name, c.category) AS name,
               count(*) FILTER (WHERE {_LOCAL} >= :f AND {_LOCAL} < :t + 1) AS cases,
               count(*) FILTER (WHERE {_LOCAL} >= :pf AND {_LOCAL} < :pt + 1) AS previous
          FROM cases c LEFT JOIN case_categories cc ON cc.code = c.category
         WHERE {_FILTER} AND {_LOCAL} >= :pf AND {_LOCAL} < :t + 1
         GROUP BY 1, 2 ORDER BY 3 DESC, 1""",
        {**cur, "pf": when["prev_from"], "pt": when["prev_to"]})  # fmt: skip
    statuses = _rows(conn, f"""
        SELECT c.status, count(*) AS cases FROM cases c WHERE {_FILTER} AND {_IN}
         GROUP BY 1 ORDER BY 2 DESC, 1""", cur)  # fmt: skip
    return {
        "area": area,
        "period": {k: v.isoformat() for k, v in when.items()},
        "category": category,
        "totals": {**totals, "overdue_now": int(overdue)},
        "by_week": [{"week": r.week, "start": r.start.isoformat(), "cases": r.cases,
                     "closed": r.closed} for r in weeks],
        "by_month": [{"month": r.month, "cases": r.cases, "closed": r.closed} for r in months],
        "by_category": [{"category": r.category, "name": r.name, "cases": r.cases,
                         "previous": r.previous} for r in cats if r.cases or r.previous],
        "by_status": [{"status": r.status, "label": STATUS_LABELS.get(r.status, r.status),
                       "cases": r.cases} for r in statuses],
        "children": _children(conn, area, cur, prev, closed, ended),
        "workers": _workers(conn, cur, closed),
    }  # fmt: skip


def _children(
    conn: Connection, area: dict[str, Any], cur: dict[str, Any], prev: dict[str, Any],
    closed: str, ended: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """A town's villages or a village's grids with this period's figures (a grid: none)."""
    if area["level"] == "grid":
        return []
    if area["level"] == "town":
        kids = "SELECT code, name FROM admin_areas WHERE level = 'village' AND parent_code = :area"
        key = "c.village_code"
    else:
        kids = ("SELECT DISTINCT g.code, coalesce(g.name, g.code) AS name FROM grids g "
                "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                "WHERE g.level = 3 AND g.village_code = :area")  # fmt: skip
        key = "c.grid_code"
    rows = _rows(conn, f"""
        WITH k AS ({kids}),
        cur AS (SELECT {key} AS code, count(*) AS cases,
                       count(*) FILTER (WHERE c.status IN ({closed})) AS closed
                  FROM cases c WHERE {_FILTER} AND {_IN} GROUP BY 1),
        prev AS (SELECT {key} AS code, count(*) AS cases FROM cases c
                  WHERE {_FILTER} AND {_LOCAL} >= :pf AND {_LOCAL} < :pt + 1 GROUP BY 1),
        od AS (SELECT {key} AS code, count(*) AS n FROM cases c
                WHERE {_FILTER} AND c.status NOT IN ({ended}) AND c.due_at < now() GROUP BY 1)
        SELECT k.code, k.name, coalesce(cur.cases, 0) AS cases, coalesce(cur.closed, 0) AS closed,
               coalesce(prev.cases, 0) AS previous, coalesce(od.n, 0) AS overdue
          FROM k LEFT JOIN cur USING (code) LEFT JOIN prev USING (code) LEFT JOIN od USING (code)
         ORDER BY cases DESC, k.code""",
        {**cur, "area": area["code"], "pf": prev["f"], "pt": prev["t"]})  # fmt: skip
    level = "village" if area["level"] == "town" else "grid"
    return [
        {"code": r.code, "name": r.name, "level": level, "cases": r.cases, "closed": r.closed,
         "previous": r.previous, "overdue": r.overdue,
         "closure_rate": round(r.closed / r.cases, 4) if r.cases else None}
        for r in rows
    ]  # fmt: skip


def _workers(conn: Connection, cur: dict[str, Any], closed: str) -> list[dict[str, Any]]:
    """Workers ranked by the cases of the period they handled (and how many are closed)."""
    rows = _rows(conn, f"""
        SELECT u.username AS name, count(*) AS handled,
               count(*) FILTER (WHERE c.status IN ({closed})) AS closed
          FROM cases c JOIN users u ON u.id = c.handled_by
         WHERE {_FILTER} AND {_IN}
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20""", cur)  # fmt: skip
    return [{"name": r.name, "handled": r.handled, "closed": r.closed} for r in rows]
