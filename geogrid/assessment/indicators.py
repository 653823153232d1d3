"""Performance indicators (考核指标): the registry of formulas and their SQL, written once here.

Every indicator has a key, a Chinese name, a unit and its formula text in
:data:`INDICATORS`; the API serves that list (``/api/assessment/indicators/definitions``)
and ``docs/assessment.md`` renders it. The values are computed in the database.

**Period.** ``from``–``to`` are local days (Asia/Shanghai), both included: events with
``from 00:00 ≤ at < to+1 00:00``. Everything is computed *as of the period's end*: events after
it are ignored, so a past period's values do not move when cases move on.

**Cases** are counted in the grid (else village) they were *reported* in. Each completion
event (``accept``, ``register``, ``dispatch``, ``handle``, ``check_pass``, ``evaluate``,
``close``) is on time when its time is not after the step deadline in force just before it
(the last ``due_at`` an earlier event of the case set: the step's start, an approved
extension, a rework or a resumption). A suspended (挂账) case has no deadline while it
waits, so its suspension never makes it late; where a formula says *suspended excluded*,
cases in status ``suspended`` at the period's end are left out of numerator and
denominator. Reworked cases (a failed check sends the case back: 回退/返工) count every
pass: each handling is judged against its own deadline; a case closed counts once.
A rate whose denominator is 0 is ``null``, never 0.

**Levels.** ``town``, ``village`` and ``grid`` group by the case's (household's, key unit's,
inspection point's) area; ``staff`` groups case figures by the user who handled the case
last (处置人), visits by the visitor, inspections and filings by who recorded them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.assessment import facts
from geogrid.errors import Forbidden, InvalidInput

__all__ = [
    "INDICATORS",
    "KEYS",
    "LEVELS",
    "Indicator",
    "Level",
    "Period",
    "compute",
    "definitions",
    "markdown",
    "period_of",
]

Level = Literal["town", "village", "grid", "staff"]
LEVELS: Final = ("town", "village", "grid", "staff")
LOCAL: Final = dt.timezone(dt.timedelta(hours=8))
MAX_DAYS: Final = 366
COMPLETIONS: Final = ("accept", "register", "dispatch", "handle", "check_pass", "evaluate", "close")


@dataclass(frozen=True)
class Indicator:
    """One indicator: its key, Chinese name, unit, formula, and whether higher is better."""

    key: str
    name: str
    unit: Literal["%", "件", "户", "‰户"]
    formula: str
    higher_is_better: bool = True
    source: Literal["cases", "visits", "inspections", "filings"] = "cases"


_SUSP = "挂账案件除外"
#: The registry: the only place the formulas are written down.
INDICATORS: Final[tuple[Indicator, ...]] = (
    Indicator("reported", "上报数", "件", "期内上报的案件数"),
    Indicator("registered", "立案数", "件", "期内立案（register）的案件数"),
    Indicator("closed", "结案数", "件", "期内结案（close）的案件数（返工后结案只计一次）"),
    Indicator(
        "overdue_pending", "超期未办结数", "件",
        f"期末仍未办结且已超过当前环节时限的案件数（{_SUSP}）", higher_is_better=False,
    ),
    Indicator(
        "valid_report_rate", "有效上报率", "%",
        "期内上报的案件中期末前已立案的件数 ÷ 期内上报的案件数（不予受理、作废、合并的不计为有效）",
    ),
    Indicator(
        "ontime_accept_rate", "按时受理率", "%",
        "期内受理事件中未超过受理时限的件数 ÷ 期内有受理时限的受理事件数",
    ),
    Indicator("accurate_dispatch_rate", "准确派遣率", "%", "1 − 期内回退次数 ÷ 期内派遣次数"),
    Indicator(
        "ontime_dispatch_rate", "按时派遣率", "%",
        "期内派遣事件中未超过派遣时限的件数 ÷ 期内有派遣时限的派遣事件数",
    ),
    Indicator(
        "ontime_handle_rate", "按时处置率", "%",
        "期内处置事件中未超过处置时限（含批准的延期）的件数 ÷ 期内有处置时限的处置事件数；"
        "返工案件每次处置分别计；挂账期间不计时",
    ),
    Indicator(
        "rework_rate", "返工率", "%", "期内核查不通过（返工）次数 ÷ 期内处置次数",
        higher_is_better=False,
    ),
    Indicator(
        "extension_rate", "延期率", "%", "期内批准延期次数 ÷ 期内派遣次数", higher_is_better=False
    ),
    Indicator(
        "overdue_pending_rate", "超期未办结率", "%",
        f"期末未办结且超过当前环节时限的案件数 ÷ 期末未办结的案件数（{_SUSP}）",
        higher_is_better=False,
    ),
    Indicator(
        "ontime_close_rate", "按期结案率", "%",
        "期内结案的案件中各环节均未超时的件数 ÷ 期内结案的案件数",
    ),
    Indicator(
        "close_rate", "结案率", "%",
        f"期内立案的案件中期末前已结案（含归档）的件数 ÷ 期内立案的案件数（{_SUSP}）",
    ),
    Indicator(
        "satisfaction_rate", "群众满意率", "%",
        "期内评价的次数中“满意”与“基本满意”的次数 ÷ 期内评价次数；评价 = 评价环节的满意度"
        "（按评价时间）+ 居民回访评价（Open311、热线、走访回访，按评价时间，计入所评案件的网格；"
        "同一来源再次评价以最后一次为准）",
    ),
    Indicator(
        "reported_per_1000", "千户上报数", "‰户", "期内上报的案件数 ÷ 户数 × 1000（按网格规模比较）"
    ),
    Indicator(
        "overdue_per_1000", "千户超期未办结数", "‰户",
        f"期末超期未办结的案件数 ÷ 户数 × 1000（{_SUSP}）", higher_is_better=False,
    ),
    Indicator(
        "visit_coverage", "走访覆盖率", "%", "期内至少走访一次的户数 ÷ 户数", source="visits"
    ),
    Indicator(
        "inspection_completion", "巡查完成率", "%",
        "应检日期在期内且按时完成的消防巡查次数 ÷ 应检日期在期内的巡查次数（已检 + 已过期未检）",
        source="inspections",
    ),
    Indicator(
        "filing_punctuality", "重点单位备案及时率", "%",
        "应备案日期在期内且按时备案的件数 ÷ 应备案日期在期内的件数（已备案 + 已过期未备案）",
        source="filings",
    ),
)  # fmt: skip
KEYS: Final = tuple(i.key for i in INDICATORS)
RATES: Final = frozenset(i.key for i in INDICATORS if i.unit == "%")


def definitions() -> list[dict[str, Any]]:
    """The registry as JSON-ready dicts (what the API serves and the docs render)."""
    return [asdict(i) for i in INDICATORS]


def markdown() -> str:
    """The registry as a Markdown table (README.md holds it between its ``indicators``
    markers; a test keeps the two equal)."""
    lines = ["| key | 指标 | unit | formula |", "|---|---|---|---|"]
    for i in INDICATORS:
        lines.append(f"| `{i.key}` | {i.name} | {i.unit} | {i.formula} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Period:
    """Local days ``start``–``end`` (both included)."""

    start: dt.date
    end: dt.date

    @property
    def since(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), LOCAL)

    @property
    def until(self) -> dt.datetime:
        return dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), LOCAL)


def period_of(start: dt.date, end: dt.date) -> Period:
    """A checked period (at most a year, not ending before it starts)."""
    if end < start:
        raise InvalidInput("the period ends before it starts")
    if (end - start).days >= MAX_DAYS:
        raise InvalidInput(f"a period is at most {MAX_DAYS} days")
    return Period(start, end)


# --------------------------------------------------------------------------- SQL

#: the group key of each level: households (h), inspection points (p), key units (u); the
#: cases' keys are in :data:`geogrid.assessment.facts.GROUPS`
_KEYS: Final[dict[str, dict[str, str]]] = {
    "town": {
        "h": "left(h.village_code, 9) || '000'", "p": "left(p.village_code, 9) || '000'",
        "u": "left(u.village_code, 9) || '000'",
    },
    "village": {"h": "h.village_code", "p": "p.village_code", "u": "u.village_code"},
    "grid": {"h": "h.grid_code", "p": "p.grid_code", "u": "u.grid_code"},
    "staff": {"h": "NULL::text", "p": "r.by_user_id::text", "u": "f.by_user_id::text"},
}  # fmt: skip

_DONE: Final = ", ".join(f"'{a}'" for a in COMPLETIONS)

#: one pass over the events of the cases alive in the period (``source``, ``area``: all
#: cases, or those :mod:`geogrid.assessment.facts` cannot answer alone), in (case, seq) order: the
#: deadline in force before each event (the last ``due_at`` an earlier event set: one window
#: over the case's earlier events), then one row per case, then one per group
CASES_SQL: Final = f"""
WITH ev AS (
    SELECT e.case_id, e.seq, e.action, e.to_status, e.at, e.actor_id, e.data,
           {{key}} AS code, e.at >= :since AS inside,
           e.data -> 'set' ? 'due_at' AS sets_due, e.data -> 'set' ->> 'due_at' AS due_set,
           array_agg(e.data -> 'set' ->> 'due_at') FILTER (WHERE e.data -> 'set' ? 'due_at')
               OVER (PARTITION BY e.case_id ORDER BY e.seq
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS dues
    {{source}}
    WHERE e.at < :until AND c.reported_at < :until
      AND (c.updated_at >= :since OR c.status NOT IN
           ('rejected', 'voided', 'closed', 'archived', 'merged'))
      AND {{area}}
), timed AS (
    SELECT ev.*, CAST(ev.dues[cardinality(ev.dues)] AS timestamptz) AS due_before FROM ev
), f AS (
    SELECT t.case_id, min(t.code) AS code,
        bool_or(t.action = 'report' AND t.inside) AS reported,
        bool_or(t.action = 'register') AS registered_ever,
        bool_or(t.action = 'register' AND t.inside) AS registered,
        bool_or(t.action = 'close') AS closed_ever,
        bool_or(t.action = 'close' AND t.inside) AS closed,
        bool_or(t.action IN ({_DONE}) AND t.at > t.due_before) AS late_ever,
        count(*) FILTER (WHERE t.inside AND t.action = 'accept' AND t.due_before IS NOT NULL)
            AS accept_timed,
        count(*) FILTER (WHERE t.inside AND t.action = 'accept' AND t.at <= t.due_before)
            AS accept_ok,
        count(*) FILTER (WHERE t.inside AND t.action = 'dispatch') AS dispatches,
        count(*) FILTER (WHERE t.inside AND t.action = 'dispatch' AND t.due_before IS NOT NULL)
            AS dispatch_timed,
        count(*) FILTER (WHERE t.inside AND t.action = 'dispatch' AND t.at <= t.due_before)
            AS dispatch_ok,
        count(*) FILTER (WHERE t.inside AND t.action = 'return') AS returns,
        count(*) FILTER (WHERE t.inside AND t.action = 'handle') AS handles,
        count(*) FILTER (WHERE t.inside AND t.action = 'handle' AND t.due_before IS NOT NULL)
            AS handle_timed,
        count(*) FILTER (WHERE t.inside AND t.action = 'handle' AND t.at <= t.due_before)
            AS handle_ok,
        count(*) FILTER (WHERE t.inside AND t.action = 'check_fail') AS reworks,
        count(*) FILTER (WHERE t.inside AND t.action = 'approve_extension') AS extensions,
        count(*) FILTER (WHERE t.inside AND t.data ? 'rating') AS rated,
        count(*) FILTER (WHERE t.inside AND t.data ->> 'rating' IN ('satisfied', 'basic'))
            AS satisfied,
        (array_agg(t.to_status ORDER BY t.seq DESC))[1] AS status_end,
        CAST((array_agg(t.due_set ORDER BY t.seq DESC) FILTER (WHERE t.sets_due))[1]
             AS timestamptz) AS due_end,
        (array_agg(t.actor_id ORDER BY t.seq DESC) FILTER (WHERE t.action = 'handle'))[1]
            AS handler
    FROM timed t
    GROUP BY t.case_id
)
SELECT {{group}} AS code,
    count(*) FILTER (WHERE f.reported) AS reported,
    count(*) FILTER (WHERE f.reported AND f.registered_ever) AS reported_registered,
    count(*) FILTER (WHERE f.registered) AS registered,
    count(*) FILTER (WHERE f.registered AND f.status_end <> 'suspended') AS registered_active,
    count(*) FILTER (WHERE f.registered AND f.status_end <> 'suspended' AND f.closed_ever)
        AS registered_closed,
    count(*) FILTER (WHERE f.closed) AS closed,
    count(*) FILTER (WHERE f.closed AND NOT coalesce(f.late_ever, false)) AS closed_ok,
    sum(f.accept_timed) AS accept_timed, sum(f.accept_ok) AS accept_ok,
    sum(f.dispatches) AS dispatches, sum(f.dispatch_timed) AS dispatch_timed,
    sum(f.dispatch_ok) AS dispatch_ok, sum(f.returns) AS returns,
    sum(f.handles) AS handles, sum(f.handle_timed) AS handle_timed, sum(f.handle_ok) AS handle_ok,
    sum(f.reworks) AS reworks, sum(f.extensions) AS extensions,
    sum(f.rated) AS rated, sum(f.satisfied) AS satisfied,
    count(*) FILTER (WHERE f.status_end NOT IN
        ('rejected', 'voided', 'closed', 'archived', 'merged', 'suspended')) AS pending,
    count(*) FILTER (WHERE f.status_end NOT IN
        ('rejected', 'voided', 'closed', 'archived', 'merged', 'suspended')
        AND f.due_end < :until) AS overdue
FROM f
GROUP BY 1
"""

HOUSEHOLDS_SQL: Final = """
SELECT {key} AS code, count(*) AS households,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM visits v WHERE v.household_id = h.id
                                      AND v.visited_on BETWEEN :start AND :end)) AS visited
FROM households h
WHERE h.scope_key LIKE :prefix || '%'
GROUP BY 1
"""

#: staff: households a worker visited in the period (no household count: rate null)
VISITORS_SQL: Final = """
SELECT v.worker_id::text AS code, NULL::bigint AS households,
       count(DISTINCT v.household_id) AS visited
FROM visits v JOIN households h ON h.id = v.household_id
WHERE v.visited_on BETWEEN :start AND :end AND h.scope_key LIKE :prefix || '%'
  AND v.worker_id IS NOT NULL
GROUP BY 1
"""

#: due work (inspections, filings): done on time ÷ (done + overdue undone), by due date
DUES_SQL: Final = """
SELECT x.code, sum(x.ok) AS {name}_ok, sum(x.due) AS {name}_due FROM (
    SELECT {key} AS code, {done}.on_time::int AS ok, 1 AS due
    FROM {done_from}
    WHERE {done}.due_date BETWEEN :start AND :end AND {area}.scope_key LIKE :prefix || '%'
    UNION ALL
    SELECT {key_missed} AS code, 0, 1
    FROM {open_from}
    WHERE {open_due} BETWEEN :start AND :end AND {open_due} < :today
      AND {area}.scope_key LIKE :prefix || '%'
) x GROUP BY 1
"""
INSPECTIONS: Final = {
    "name": "insp", "done": "r", "area": "p", "open_due": "p.next_due",
    "done_from": "inspection_records r JOIN inspection_points p ON p.id = r.point_id",
    "open_from": "inspection_points p",
}  # fmt: skip
FILINGS: Final = {
    "name": "fil", "done": "f", "area": "u", "open_due": "d.due_date",
    "done_from": "key_unit_filings f JOIN key_units u ON u.id = f.unit_id",
    "open_from": "key_unit_dues d JOIN key_units u ON u.id = d.unit_id",
}  # fmt: skip

NAMES_SQL: Final[dict[str, str]] = {
    "town": "SELECT code, name FROM admin_areas WHERE code = ANY(:codes)",
    "village": "SELECT code, name FROM admin_areas WHERE code = ANY(:codes)",
    "grid": (
        "SELECT DISTINCT ON (g.code) g.code, coalesce(g.name, g.code) AS name FROM grids g "
        "JOIN plans p ON p.id = g.plan_id WHERE g.level = 3 AND g.code = ANY(:codes) "
        "ORDER BY g.code, p.status = 'active' DESC, p.id DESC"
    ),
    "staff": (
        "SELECT id::text AS code, coalesce(display_name, username) AS name FROM users "
        "WHERE id::text = ANY(:codes)"
    ),
}


def _ratio(num: Any, den: Any, scale: float = 1.0) -> float | None:
    """``num ÷ den`` rounded to 4 places, ``None`` when ``den`` is 0 or unknown."""
    if den is None or not den:
        return None
    return round(float(num or 0) * scale / float(den), 4)


def _values(r: dict[str, Any]) -> dict[str, float | int | None]:
    """The indicators of one group from its counts (see :data:`INDICATORS`)."""
    hh = r.get("households")
    returns_share = _ratio(r.get("returns"), r.get("dispatches"))
    return {
        "reported": int(r.get("reported") or 0),
        "registered": int(r.get("registered") or 0),
        "closed": int(r.get("closed") or 0),
        "overdue_pending": int(r.get("overdue") or 0),
        "valid_report_rate": _ratio(r.get("reported_registered"), r.get("reported")),
        "ontime_accept_rate": _ratio(r.get("accept_ok"), r.get("accept_timed")),
        "accurate_dispatch_rate": None if returns_share is None else round(1 - returns_share, 4),
        "ontime_dispatch_rate": _ratio(r.get("dispatch_ok"), r.get("dispatch_timed")),
        "ontime_handle_rate": _ratio(r.get("handle_ok"), r.get("handle_timed")),
        "rework_rate": _ratio(r.get("reworks"), r.get("handles")),
        "extension_rate": _ratio(r.get("extensions"), r.get("dispatches")),
        "overdue_pending_rate": _ratio(r.get("overdue"), r.get("pending")),
        "ontime_close_rate": _ratio(r.get("closed_ok"), r.get("closed")),
        "close_rate": _ratio(r.get("registered_closed"), r.get("registered_active")),
        "satisfaction_rate": _ratio(r.get("satisfied"), r.get("rated")),
        "reported_per_1000": _ratio(r.get("reported"), hh, 1000.0),
        "overdue_per_1000": _ratio(r.get("overdue"), hh, 1000.0),
        "visit_coverage": _ratio(r.get("visited"), hh),
        "inspection_completion": _ratio(r.get("insp_ok"), r.get("insp_due")),
        "filing_punctuality": _ratio(r.get("fil_ok"), r.get("fil_due")),
    }


def area_prefix(code: str | None) -> str:
    """The code prefix of an area: '' (all), a town (12 digits ending 000: its 9), a village
    (12) or a grid (15).

    >>> area_prefix("420117105000"), area_prefix("420117105201"), area_prefix(None)
    ('420117105', '420117105201', '')
    """
    if code is None or code == "":
        return ""
    if not code.isdigit() or len(code) not in (12, 15):
        raise InvalidInput("code must be a 12-digit town or village code or a 15-digit grid code")
    return code[:9] if len(code) == 12 and code.endswith("000") else code


_DEPTH: Final = {"all": 0, "town": 1, "village": 2, "grid": 3}
_LEVEL_DEPTH: Final = {"town": 1, "village": 2, "grid": 3, "staff": 3}


def effective_prefix(principal: Principal, level: str, code: str | None) -> str:
    """The area the caller may see at ``level``: ``code``'s prefix inside their scope.

    A level coarser than the caller's scope (a village leader asking for towns) and a code
    outside the scope are refused: a town row must never hold only part of the town.
    """
    if level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}")
    scope = principal.scope
    if level != "staff" and _LEVEL_DEPTH[level] < _DEPTH[scope.kind]:
        raise Forbidden(f"level {level} is wider than your scope ({scope.kind})")
    prefix = area_prefix(code)
    if not prefix:
        return scope.prefix
    if not prefix.startswith(scope.prefix):
        raise Forbidden("that area is outside your scope")
    return prefix


def compute(
    conn: Connection,
    *,
    prefix: str,
    level: str,
    period: Period,
    today: dt.date | None = None,
    sources: Literal["all", "cases"] = "all",
    exact: bool = False,
) -> list[dict[str, Any]]:
    """Every indicator per group of ``level`` inside area ``prefix`` ('' = all) in ``period``.

    Rows: ``level``, ``code``, ``name``, ``households`` and one key per indicator, ordered
    by code. The caller checks the scope (:func:`effective_prefix`); the queries bind it.
    ``sources="cases"`` reads the cases only (the field-work figures stay ``null``).
    The case figures come from the per-case facts (:func:`geogrid.assessment.facts.case_counts`);
    ``exact=True`` recounts them from every event instead (the reference, slow on a county).
    """
    if level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}")
    keys = _KEYS[level]
    day = today or dt.datetime.now(LOCAL).date()
    params = {
        "since": period.since, "until": period.until, "start": period.start, "end": period.end,
        "prefix": prefix, "today": day,
    }  # fmt: skip
    groups: dict[str, dict[str, Any]] = {}
    # JIT compiling the window plan costs more than it saves at these sizes
    conn.execute(text("SET LOCAL jit = off"))

    def merge(sql: str) -> None:
        for row in conn.execute(text(sql), params).mappings():
            if row["code"] is None:
                continue
            groups.setdefault(row["code"], {}).update({k: v for k, v in row.items() if k != "code"})

    count = facts.recount if exact else facts.case_counts
    groups.update(count(conn, level=level, event_pass=CASES_SQL, params=params))
    if sources == "all":
        merge(VISITORS_SQL if level == "staff" else HOUSEHOLDS_SQL.format(key=keys["h"]))
        for source, alias in ((INSPECTIONS, "p"), (FILINGS, "u")):
            missed = "NULL::text" if level == "staff" else keys[alias]
            merge(DUES_SQL.format(key=keys[alias], key_missed=missed, **source))
    names = {r.code: r.name for r in conn.execute(text(NAMES_SQL[level]), {"codes": list(groups)})}
    out = []
    for code in sorted(groups):
        r = groups[code]
        hh = r.get("households")
        out.append(
            {
                "level": level,
                "code": code,
                "name": names.get(code, code),
                "households": None if hh is None else int(hh),
                **_values(r),
            }
        )
    return out
