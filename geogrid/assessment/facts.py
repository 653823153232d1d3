"""The case indicators from the per-case facts the database keeps (migration 0029).

``assessment_case_facts`` holds one row per case, maintained by a statement trigger on
``case_events``: the case's area, the times of its first and last event, its history folded
into the counts the case indicators add up, and its state after the last event. For a
period ``[since, until)`` every case falls in exactly one of four sets:

* **inside** — all its events inside the period (``since ≤ first``, ``last < until``): its
  facts are exactly its figures for the period (every event is in it, the state at the
  period's end is the state after its last event); summed per area from the day buckets
  (``assessment_case_rollup``: per area and local day of the first and of the last event,
  a period of whole days contains a bucket or not), per staff member from the facts; their
  pending / overdue from the open cases' facts. ``last`` ignores archiving a closed case
  (nothing any indicator reads changes), so a case archived after the period does not
  straddle it.
* **straddling** — events on both sides of ``since`` or of ``until`` (the range
  ``(first, last]`` contains a bound; a GiST index on area and span finds them):
  recounted from their events by the indicators' event pass
  (:data:`geogrid.assessment.indicators.CASES_SQL`) — the cases open at a bound, few next
  to the period's.
* **stale open** — every event before the period, still pending after the last one: only
  pending / overdue at the period's end (a partial index holds the open cases).
* every other case has no event before the period's end, or ended before it began: nothing.

:func:`case_counts` adds the three parts up per group; :func:`recount` is the event pass
over all the cases (what the facts must equal; the tests compare the two).
Resident feedback (``case_feedback``, Open311 and follow-up calls) adds to the ratings of
the satisfaction indicator by the time of the rating (:data:`FEEDBACK_SQL`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import Connection, text

__all__ = ["FACTS_SQL", "FEEDBACK_SQL", "case_counts", "compact", "recount", "refresh"]

#: the end states in which a case is no longer pending (suspended ones do not count either)
_NOT_PENDING: Final = "('rejected', 'voided', 'closed', 'archived', 'merged', 'suspended')"

#: the group key of each level over the facts (x) and over the cases (c)
GROUPS: Final[dict[str, dict[str, str]]] = {
    "town": {"x": "left(x.village_code, 9) || '000'", "c": "left(c.village_code, 9) || '000'"},
    "village": {"x": "x.village_code", "c": "c.village_code"},
    "grid": {"x": "x.grid_code", "c": "c.grid_code"},
    "staff": {"x": "x.handler::text", "c": "NULL::text"},
}

_AREA_X: Final = "x.code >= :prefix AND x.code < :prefix_hi"
_AREA_C: Final = "coalesce(c.grid_code, c.village_code) LIKE :prefix || '%'"
#: the straddling cases of the period and their events (for the event pass)
STRADDLING: Final = (
    "FROM assessment_case_facts x JOIN cases c ON c.id = x.case_id "
    "JOIN case_events e ON e.case_id = x.case_id AND (tstzrange(x.first_at, x.last_at, '(]') "
    "@> CAST(:since AS timestamptz) OR tstzrange(x.first_at, x.last_at, '(]') "
    "@> CAST(:until AS timestamptz))"
)
ALL_CASES: Final = "FROM cases c JOIN case_events e ON e.case_id = c.id"

#: the event counts, per case in the facts and per bucket in the roll-up
_EVENT_SUMS: Final = ", ".join(
    f"sum(x.{k}) AS {k}"
    for k in (
        "accept_timed", "accept_ok", "dispatches", "dispatch_timed", "dispatch_ok", "returns",
        "handles", "handle_timed", "handle_ok", "reworks", "extensions", "rated", "satisfied",
    )
)  # fmt: skip

#: the cases whose events all fall inside the period: their facts summed per group
FACTS_SQL: Final = f"""
SELECT {{group}} AS code,
    count(*) FILTER (WHERE x.reported) AS reported,
    count(*) FILTER (WHERE x.reported AND x.registered) AS reported_registered,
    count(*) FILTER (WHERE x.registered) AS registered,
    count(*) FILTER (WHERE x.registered AND x.status <> 'suspended') AS registered_active,
    count(*) FILTER (WHERE x.registered AND x.status <> 'suspended' AND x.closed)
        AS registered_closed,
    count(*) FILTER (WHERE x.closed) AS closed,
    count(*) FILTER (WHERE x.closed AND NOT x.late) AS closed_ok,
    {_EVENT_SUMS}
FROM assessment_case_facts x
WHERE {_AREA_X} AND x.first_at >= :since AND x.last_at < :until AND x.reported_at < :until
GROUP BY 1
"""

#: the same per area from the day buckets (``assessment_case_rollup``) inside the period
ROLLUP_SQL: Final = f"""
SELECT {{group}} AS code,
    sum(x.reported) AS reported, sum(x.reported_registered) AS reported_registered,
    sum(x.registered) AS registered, sum(x.registered_active) AS registered_active,
    sum(x.registered_closed) AS registered_closed, sum(x.closed) AS closed,
    sum(x.closed_ok) AS closed_ok,
    {_EVENT_SUMS}
FROM assessment_case_rollup x
WHERE x.code >= :prefix AND x.code < :prefix_hi AND x.first_day >= :start AND x.end_day <= :end
GROUP BY 1
"""

#: pending at the period's end, of the cases that do not straddle it: the inside ones and
#: those whose last event came before the period (a partial index holds the open cases)
OPEN_SQL: Final = f"""
SELECT {{group}} AS code, count(*) AS pending,
    count(*) FILTER (WHERE x.due_at < :until) AS overdue
FROM assessment_case_facts x
WHERE {_AREA_X} AND x.status NOT IN {_NOT_PENDING} AND x.last_at < :until
  AND x.reported_at < :until AND (x.last_at < :since OR x.first_at >= :since)
GROUP BY 1
"""

#: residents' ratings (Open311, follow-up calls, visits) made in the period, counted in the
#: area of the case rated (its grid, else village), for staff by the case's last handler
FEEDBACK_SQL: Final = """
SELECT {group} AS code, count(*) AS rated,
    count(*) FILTER (WHERE fb.rating IN ('satisfied', 'basic')) AS satisfied
FROM case_feedback fb JOIN cases c ON c.id = fb.case_id
WHERE fb.at >= :since AND fb.at < :until AND {area}
GROUP BY 1
"""
_LAST_HANDLER: Final = (
    "(SELECT e.actor_id FROM case_events e WHERE e.case_id = c.id AND e.action = 'handle' "
    "ORDER BY e.seq DESC LIMIT 1)::text"
)

#: the figures a group's case counts are made of (summed over the parts)
FIELDS: Final = (
    "reported", "reported_registered", "registered", "registered_active", "registered_closed",
    "closed", "closed_ok", "accept_timed", "accept_ok", "dispatches", "dispatch_timed",
    "dispatch_ok", "returns", "handles", "handle_timed", "handle_ok", "reworks", "extensions",
    "rated", "satisfied", "pending", "overdue",
)  # fmt: skip

Counts = dict[str, dict[str, int]]


def _add(into: Counts, conn: Connection, sql: str, params: Mapping[str, Any]) -> None:
    """Run ``sql`` and add its rows' counts to their groups in ``into``."""
    for row in conn.execute(text(sql), dict(params)).mappings():
        code = row["code"]
        if code is None:
            continue
        acc = into.setdefault(code, dict.fromkeys(FIELDS, 0))
        for key, value in row.items():
            if key != "code" and value is not None:
                acc[key] += int(value)


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    # every code is digits: '~' sorts after them byte-wise (the facts' code is COLLATE "C")
    return {**params, "prefix_hi": f"{params['prefix']}~"}


def _feedback(conn: Connection, level: str, params: Mapping[str, Any], into: Counts) -> None:
    group = _LAST_HANDLER if level == "staff" else GROUPS[level]["c"]
    _add(into, conn, FEEDBACK_SQL.format(group=group, area=_AREA_C), params)


def _counts(
    conn: Connection, level: str, event_pass: str, params: Mapping[str, Any], *, exact: bool
) -> Counts:
    p = _params(params)
    out: Counts = {}
    if not exact:
        group = GROUPS[level]["x"]
        if level == "staff":  # by the case's last handler: the cases' own rows
            _add(out, conn, FACTS_SQL.format(group=group), p)
        else:
            rolled = "nullif(x.grid_code, '')" if level == "grid" else group
            _add(out, conn, ROLLUP_SQL.format(group=rolled), p)
        _add(out, conn, OPEN_SQL.format(group=group), p)
    # the event pass: over the straddling cases' events only, or over every case's
    sql = event_pass.format(
        source=ALL_CASES if exact else STRADDLING, area=_AREA_C if exact else _AREA_X,
        key=GROUPS["grid" if level == "staff" else level]["c"],
        group="f.handler::text" if level == "staff" else "f.code",
    )  # fmt: skip
    _add(out, conn, sql, p)
    _feedback(conn, level, p, out)
    return out


def case_counts(
    conn: Connection, *, level: str, event_pass: str, params: Mapping[str, Any]
) -> Counts:
    """Per group of ``level``: the counts the case indicators are made of, from the facts.

    ``event_pass`` is the indicators' event-pass SQL (with ``{source}``, ``{area}``,
    ``{key}`` and ``{group}`` to fill); ``params`` binds ``since``, ``until`` and ``prefix``.
    """
    return _counts(conn, level, event_pass, params, exact=False)


def recount(conn: Connection, *, level: str, event_pass: str, params: Mapping[str, Any]) -> Counts:
    """:func:`case_counts` recounted from every event of the period's cases (no facts): slow
    on a county, the reference the facts are tested against."""
    return _counts(conn, level, event_pass, params, exact=True)


def refresh(conn: Connection, case_ids: Iterable[int] | None = None) -> int:
    """Recompute the facts of ``case_ids`` (all cases when ``None``) from their events, as the
    trigger does; returns the number of cases given. For repairs (e.g. after events were
    restored into a detached month): the trigger keeps them current otherwise."""
    ids = (
        [int(i) for i in case_ids]
        if case_ids is not None
        else list(conn.execute(text("SELECT id FROM cases ORDER BY id")).scalars())
    )
    for start in range(0, len(ids), 50_000):
        conn.execute(
            text("SELECT geogrid_case_facts_refresh(CAST(:ids AS bigint[]))"),
            {"ids": ids[start : start + 50_000]},
        )
    return len(ids)


#: the appended bucket rows folded into one row per bucket (empty ones dropped); rows
#: appended meanwhile (a higher id) are left alone, so transitions never wait for it
COMPACT_SQL: Final = """
WITH d AS (DELETE FROM assessment_case_rollup WHERE id <= :upto RETURNING *)
INSERT INTO assessment_case_rollup ({cols})
SELECT {keys}, {sums} FROM d GROUP BY {keys}
HAVING {nonzero}
"""


def compact(conn: Connection) -> tuple[int, int]:
    """Fold the day buckets' appended rows into one row per bucket (a nightly chore: every
    change of a case appends two rows; the sums stay equal). Returns the rows before and
    after. One compaction at a time (an advisory lock); the caller commits."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('assessment_case_rollup'))"))
    before, upto = conn.execute(text("SELECT count(*), max(id) FROM assessment_case_rollup")).one()
    if not before:
        return 0, 0
    # the columns after id: the bucket's key (5), then its sums
    cols = list(conn.execute(text("SELECT * FROM assessment_case_rollup LIMIT 0")).keys())[1:]
    keys, sums = cols[:5], cols[5:]
    sql = COMPACT_SQL.format(
        cols=", ".join(cols), keys=", ".join(keys),
        sums=", ".join(f"sum({c})" for c in sums),
        nonzero=" OR ".join(f"sum({c}) <> 0" for c in sums),
    )  # fmt: skip
    conn.execute(text(sql), {"upto": upto})
    after = conn.execute(text("SELECT count(*) FROM assessment_case_rollup")).scalar_one()
    return int(before), int(after)
