"""The visit plan and visit coverage: the formulas, written once here.

**Period.** A report covers the days ``from``–``to`` (inclusive): a month ``2026-07``, a
quarter ``2026-Q3``, a half-year ``2026-H2``, a year ``2026`` or any two dates.

**Plan.** ``visit_rules`` (admin-editable) give every household a plan period of ``k``
months (1, 2, 3, 4, 6 or 12): the ``household`` rule with the longest area prefix matching
the household's grid (or village); a household with a special-population member takes the
shorter of that and the matching ``special`` rule. Plan windows are aligned to the
calendar year: window ``w`` of a household is the months ``w·k … w·k+k−1`` counted from
January of year 0 (for ``k = 3``: the quarters). A household must be visited at least once
in every window. Who may not see special-population records (no ``special`` permission)
is shown every household on its ``household`` rule: a stricter period would tell them who
is special.

**Per grid** (``area`` = the household's current grid, or its village when no plan is
active), for households ``H`` of the area inside the caller's scope:

* ``households`` = \\|H\\|;
* ``visited`` = households of H with at least one visit dated in the period;
* ``coverage`` = ``visited ÷ households`` (``null`` when ``households`` is 0);
* ``never_visited`` = ``households − visited`` (not visited in the period);
* ``due`` = Σ over H of the plan windows whose *last day* falls in the period
  (a monthly household in a quarter: 3; a quarterly household in a quarter: 1; in one
  month of a quarter: 1 only in the quarter's last month, else 0);
* ``done`` = those of the due windows with at least one visit dated inside the window
  (the window may begin before the period: a visit in January makes the Q1 window of a
  March report done);
* ``plan_rate`` = ``done ÷ due`` (``null`` when ``due`` is 0).

**Per worker** (grid workers and village leaders whose scope lies in the caller's, and
anyone who recorded a visit in the period): ``visits`` and ``households_visited`` count
what the worker recorded in the period (inside the caller's scope); ``households``,
``visited``, ``due``, ``done`` and the two rates are the per-grid figures summed over the
areas inside the worker's own scope — the plan is per household, so a visit by anyone
counts for the households a worker is responsible for.

**Due now**: households whose current window (the one holding today) has no visit yet,
``due_by`` = the window's last day. **Never visited**: households with no visit in the
period, or with no visit at all (``ever``).
"""

from __future__ import annotations

import calendar as _calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.errors import Forbidden, InvalidInput, NotFound
from geogrid.fieldwork.coverage_cache import cached_rows
from geogrid.fieldwork.visits import area_prefix, today

__all__ = [
    "AreaCoverage",
    "Period",
    "Rule",
    "by_area",
    "delete_rule",
    "list_rules",
    "set_rule",
]

PERIODS = (1, 2, 3, 4, 6, 12)
KINDS = ("household", "special")
MAX_LIMIT = 500
#: Longest report period (a few years: the plan windows of a longer one are not useful).
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class Period:
    """Report days ``start``–``end`` (inclusive).

    >>> Period.parse("2026-Q3")
    Period(start=datetime.date(2026, 7, 1), end=datetime.date(2026, 9, 30))
    >>> Period.parse("2026-02").end, Period.parse("2024-H1").end, Period.parse("2025").start
    (datetime.date(2026, 2, 28), datetime.date(2024, 6, 30), datetime.date(2025, 1, 1))
    """

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInput("the period ends before it starts")
        if (self.end - self.start).days >= MAX_DAYS:
            raise InvalidInput(f"a period is at most {MAX_DAYS} days")

    @classmethod
    def parse(cls, text_: str) -> Period:
        """``YYYY``, ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY-Hn``."""
        s = text_.strip().upper()
        m = re.fullmatch(r"(\d{4})(?:-(?:(\d{2})|Q([1-4])|H([12])))?", s)
        if not m:
            raise InvalidInput(f"period {text_[:20]!r}: use 2026, 2026-07, 2026-Q3 or 2026-H2")
        year = int(m.group(1))
        if year < 2000:
            raise InvalidInput("a period starts in 2000 or later")
        if m.group(2):
            first = last = int(m.group(2))
            if not 1 <= first <= 12:
                raise InvalidInput(f"period {text_[:20]!r}: no such month")
        elif m.group(3):
            first = 3 * int(m.group(3)) - 2
            last = first + 2
        elif m.group(4):
            first = 6 * int(m.group(4)) - 5
            last = first + 5
        else:
            first, last = 1, 12
        end = dt.date(year, last, _calendar.monthrange(year, last)[1])
        return cls(dt.date(year, first, 1), end)

    @classmethod
    def current_quarter(cls, day: dt.date | None = None) -> Period:
        """The quarter holding ``day`` (default: today in Beijing)."""
        d = day or today()
        return cls.parse(f"{d.year}-Q{(d.month - 1) // 3 + 1}")

    @property
    def months(self) -> tuple[int, int]:
        """(first, last) month indices (``year·12 + month − 1``) whose windows may be due:
        a window is due when its last month lies in this range (the last month counts only
        when the period reaches its last day)."""
        mf = self.start.year * 12 + self.start.month - 1
        mt = self.end.year * 12 + self.end.month - 1
        if self.end.day != _calendar.monthrange(self.end.year, self.end.month)[1]:
            mt -= 1
        return mf, mt


class AreaCoverage(BaseModel):
    """Coverage of one grid (or village without a grid) in the period: numbers only."""

    area_code: str
    households: int
    visited: int
    never_visited: int
    coverage: float | None = Field(description="visited ÷ households")
    due: int = Field(description="plan windows ending in the period")
    done: int = Field(description="due windows with at least one visit")
    plan_rate: float | None = Field(description="done ÷ due")


class Rule(BaseModel):
    """One visit-plan rule."""

    id: int
    area_code: str = Field(description="'' everywhere, else a town, village or grid code")
    kind: Literal["household", "special"]
    period_months: int
    updated_by: str | None
    updated_at: dt.datetime


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _scope_area(principal: Principal, area: str | None) -> str:
    """The prefix to report on: ``area`` when inside the scope, else the scope's."""
    if not area:
        return principal.scope.prefix
    prefix = area_prefix(area)
    if not prefix.startswith(principal.scope.prefix):
        raise Forbidden(f"{area} is outside your scope ({principal.scope})")
    return prefix


def _special_sql(principal: Principal, only: bool = False) -> str:
    """Households with a special-population member, for callers who may know them (the
    members fetched by id in one index scan: a join made the planner scan every member).
    ``only``: just the households of the areas bound as ``:only``, each looked up by
    index (its members, then their special records)."""
    if "special" not in principal.permissions:
        return "SELECT NULL::bigint AS household_id WHERE false"
    if only:
        return (
            "SELECT h0.id AS household_id FROM households h0 WHERE h0.scope_key = ANY(:only) "
            "AND (SELECT s.id FROM special_population s WHERE s.member_id = ANY(ARRAY("
            "SELECT m.id FROM household_members m WHERE m.household_id = h0.id)) LIMIT 1) "
            "IS NOT NULL"
        )
    return (
        "SELECT DISTINCT m.household_id FROM household_members m "
        "WHERE m.id = ANY(ARRAY(SELECT s.member_id FROM special_population s))"
    )


def _plan_ctes(principal: Principal, only: bool = False) -> str:
    """``areas``: the areas in the prefix with their households ``n`` and plan periods
    (``k0`` for households, ``k1`` for households with a special-population member);
    ``special``: those households with their area; ``hh``: every household with its
    period ``k`` (computed only where a query uses it). ``only``: just the areas bound as
    ``:only``."""
    where = "h.scope_key LIKE :prefix || '%'" + (" AND h.scope_key = ANY(:only)" if only else "")
    return f"""
    areas AS MATERIALIZED (
        SELECT a.area, a.n, coalesce(r.kh, 3) AS k0,
               least(coalesce(r.kh, 3), coalesce(r.ks, r.kh, 3)) AS k1
        FROM (SELECT h.scope_key AS area, count(*) AS n FROM households h
              WHERE {where} GROUP BY 1) a
        CROSS JOIN LATERAL (SELECT
            (SELECT r.period_months FROM visit_rules r WHERE r.kind = 'household'
               AND a.area LIKE r.prefix || '%' ORDER BY length(r.prefix) DESC LIMIT 1) AS kh,
            (SELECT r.period_months FROM visit_rules r WHERE r.kind = 'special'
               AND a.area LIKE r.prefix || '%' ORDER BY length(r.prefix) DESC LIMIT 1) AS ks
        ) r
    ),
    special AS MATERIALIZED (
        SELECT sp.household_id, h.scope_key AS area
        FROM ({_special_sql(principal, only)}) sp JOIN households h ON h.id = sp.household_id
        WHERE {where}
    ),
    hh AS (
        SELECT h.id, h.scope_key AS area,
               CASE WHEN sp.household_id IS NULL THEN a.k0 ELSE a.k1 END AS k
        FROM households h JOIN areas a ON a.area = h.scope_key
        LEFT JOIN special sp ON sp.household_id = h.id
        WHERE {where}
    )"""


#: Month index of a visit (year·12 + month − 1).
_MONTH = "(extract(year FROM v.visited_on)::int * 12 + extract(month FROM v.visited_on)::int - 1)"


def _hash_joins(conn: Connection, on: bool) -> None:
    """Row-level security makes the planner expect a few rows where a county has many;
    its nested loops then re-run the policies per row. ``on``: hash joins only until
    ``_hash_joins(conn, False)`` (SET LOCAL: never beyond the transaction)."""
    conn.execute(text(f"SET LOCAL enable_nestloop = {'off' if on else 'on'}"))


def _window_start(conn: Connection, month: int) -> dt.date:
    """The first day of the earliest plan window (of any period in use) holding ``month``."""
    periods = conn.execute(text("SELECT DISTINCT period_months FROM visit_rules")).scalars()
    first = min([(month // int(k)) * int(k) for k in periods] + [month])
    return dt.date(first // 12, first % 12 + 1, 1)


def _lookback(conn: Connection, period: Period) -> dt.date:
    """The first day a visit can fall in a plan window that ends in ``period``: the start
    of the window holding the period's first month, for the longest-starting period in
    use."""
    return min(_window_start(conn, period.months[0]), period.start)


def _area_rows(
    conn: Connection,
    principal: Principal,
    prefix: str,
    period: Period,
    only: list[str] | None = None,
) -> list[Any]:
    """One row per area: households, visited, due, done (the module's formulas). Every
    step is a hash join or hash aggregate: households with their plan period (``hh``),
    their visits in the windows that may be due, grouped per household and window
    (``win``), then per household (``ph``) and per area. ``only``: just these areas."""
    mf, mt = period.months
    due = "greatest(0, (:mt + 1) / {k} - (:mf + {k}) / {k} + 1)"
    sql = f"""
    WITH {_plan_ctes(principal, only is not None)},
    win AS (
        SELECT v.household_id AS id, a.area, k.k, {_MONTH} / k.k AS w,
               bool_or(v.visited_on >= :d0) AS in_p
        FROM visits v JOIN households h ON h.id = v.household_id
        JOIN areas a ON a.area = h.scope_key
        LEFT JOIN special sp ON sp.household_id = v.household_id
        CROSS JOIN LATERAL (SELECT CASE WHEN sp.household_id IS NULL THEN a.k0
                                        ELSE a.k1 END AS k) k
        WHERE v.visited_on BETWEEN :lo AND :d1 {"AND h.scope_key = ANY(:only)" if only else ""}
        GROUP BY 1, 2, 3, 4
    ),
    ph AS (
        SELECT win.area, bool_or(win.in_p) AS visited,
               count(*) FILTER (WHERE (win.w + 1) * win.k - 1 BETWEEN :mf AND :mt) AS done
        FROM win GROUP BY win.id, win.area
    ),
    done AS (
        SELECT ph.area, count(*) FILTER (WHERE ph.visited) AS visited, sum(ph.done) AS done
        FROM ph GROUP BY ph.area
    ),
    ns AS (SELECT special.area, count(*) AS n FROM special GROUP BY 1)
    SELECT a.area, a.n::int AS households, coalesce(done.visited, 0)::int AS visited,
           ((a.n - coalesce(ns.n, 0)) * {due.format(k="a.k0")}
            + coalesce(ns.n, 0) * {due.format(k="a.k1")})::int AS due,
           coalesce(done.done, 0)::int AS done
    FROM areas a LEFT JOIN done ON done.area = a.area LEFT JOIN ns ON ns.area = a.area
    ORDER BY a.area
    """
    return list(
        conn.execute(
            text(sql),
            {"prefix": prefix, "d0": period.start, "d1": period.end,
             "lo": _lookback(conn, period), "mf": mf, "mt": mt, "only": only or []},
        ).all()
    )  # fmt: skip


def _area(row: Any) -> AreaCoverage:
    return AreaCoverage(
        area_code=row.area, households=row.households, visited=row.visited,
        never_visited=row.households - row.visited,
        coverage=_ratio(row.visited, row.households), due=row.due, done=row.done,
        plan_rate=_ratio(row.done, row.due),
    )  # fmt: skip


def by_area(
    conn: Connection, *, principal: Principal, period: Period, area: str | None = None
) -> list[AreaCoverage]:
    """Coverage per grid (or village without grid) inside the scope (and ``area``), by
    the formulas of this module. Numbers only: nothing personal, so not audited."""
    prefix = _scope_area(principal, area)
    rows = cached_rows(
        conn,
        prefix=prefix,
        complete=principal.scope.kind == "all",
        special="special" in principal.permissions,
        period=(period.start, period.end),
        compute=lambda only: _area_rows(conn, principal, prefix, period, only),
    )
    return [_area(r) for r in rows]


# --------------------------------------------------------------------------- rules


_RULE_COLUMNS = "SELECT id, prefix, kind, period_months, updated_by, updated_at FROM visit_rules"


def _rule(row: Any) -> Rule:
    code = row.prefix + "000" if len(row.prefix) == 9 else row.prefix
    return Rule(
        id=row.id, area_code=code, kind=row.kind, period_months=row.period_months,
        updated_by=row.updated_by, updated_at=row.updated_at,
    )  # fmt: skip


def list_rules(conn: Connection) -> list[Rule]:
    """Every visit-plan rule (general first)."""
    rows = conn.execute(text(f"{_RULE_COLUMNS} ORDER BY length(prefix), prefix, kind")).all()
    return [_rule(r) for r in rows]


def _check_rule_area(principal: Principal, area_code: str) -> str:
    prefix = area_prefix(area_code)
    if not prefix.startswith(principal.scope.prefix):
        raise Forbidden(f"{area_code or 'everywhere'} is outside your scope ({principal.scope})")
    return prefix


def set_rule(
    conn: Connection, *, principal: Principal, area_code: str, kind: str, period_months: int
) -> Rule:
    """Create or change the rule of ``kind`` for an area (``''``: everywhere) in scope.

    Raises
    ------
    InvalidInput
        An unknown kind, a period other than 1, 2, 3, 4, 6 or 12 months, a bad area code.
    Forbidden
        The area lies outside the caller's scope.
    """
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    if isinstance(period_months, bool) or period_months not in PERIODS:
        raise InvalidInput(f"period_months must be one of {', '.join(map(str, PERIODS))}")
    prefix = _check_rule_area(principal, area_code)
    row = conn.execute(
        text(
            "INSERT INTO visit_rules (prefix, kind, period_months, updated_by) "
            "VALUES (:p, :k, :m, :u) ON CONFLICT (prefix, kind) DO UPDATE SET "
            "period_months = EXCLUDED.period_months, updated_by = EXCLUDED.updated_by, "
            "updated_at = now() RETURNING id, prefix, kind, period_months, updated_by, updated_at"
        ),
        {"p": prefix, "k": kind, "m": period_months, "u": principal.username},
    ).one()
    return _rule(row)


def delete_rule(conn: Connection, *, principal: Principal, rule_id: int) -> None:
    """Remove an area's rule (its households fall back to a more general one); the general
    rules (everywhere) stay."""
    row = conn.execute(text(f"{_RULE_COLUMNS} WHERE id = :i"), {"i": rule_id}).one_or_none()
    if row is None:
        raise NotFound(f"no visit rule {rule_id}")
    if row.prefix == "":
        raise InvalidInput("the general rules (everywhere) can be changed, not removed")
    _check_rule_area(principal, _rule(row).area_code)
    conn.execute(text("DELETE FROM visit_rules WHERE id = :i"), {"i": rule_id})
