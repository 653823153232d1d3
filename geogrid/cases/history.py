"""Event histories for imported cases: every case gets the events that lead to its status.

A file of cases says only where each one stands (上报 … 归档). :func:`synthesise` writes,
set-based, the path the machine would have taken to get there — report, accept, (verify,
for residents' reports), register, dispatch, start, handle, a rework loop for some cases
(check_fail, handle), check_pass, evaluate, close, archive; rejected, voided and suspended
cases their own paths — with times drawn deterministically from the case id (a per-case
pace times the usual duration of each step, never after ``as_of``), and the current step's
deadline counted on the working calendar. The current-state row is then set to what a replay
of those events gives, so imported cases show realistic queues, overdue cases and rework.

Everything runs in SQL over a template table of paths (a handful of rows per status), so a
million cases cost one ``INSERT … SELECT`` of their events; only the open cases' deadlines
(one calendar computation each) pass through Python.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, text

from geogrid.cases import machine
from geogrid.cases.calendar import CalendarUnknown, add_working_time

__all__ = ["IMPORTABLE", "append_status_change", "synthesise", "templates"]

log = logging.getLogger(__name__)

#: Statuses an import may set (merged cases need their original: not importable).
IMPORTABLE: Final = tuple(s for s in machine.STATUSES if s != "merged")

#: Usual hours each action takes after the one before (the per-case pace scales them).
_GAP: Final[dict[str, float]] = {
    "report": 0,
    "accept": 1,
    "verify": 12,
    "register": 3,
    "dispatch": 2,
    "start": 6,
    "handle": 40,
    "check_fail": 10,
    "check_pass": 12,
    "evaluate": 20,
    "close": 24,
    "archive": 72,
    "reject": 2,
    "void": 8,
    "request_suspension": 30,
    "approve_suspension": 6,
}
#: Share of handled cases checked and failed once / twice (rework).
REWORK_ONCE: Final = 0.08
REWORK_TWICE: Final = 0.02

Step = tuple[str, str | None, str, str]  # action, from, to, what it sets


def _path(status: str, resident: bool, rework: int) -> list[Step]:
    """The actions leading to ``status`` (see the module docs)."""
    head: list[Step] = [("report", None, "reported", "report")]
    if status == "reported":
        return head
    if status == "rejected":
        return [*head, ("reject", "reported", "rejected", "")]
    head.append(("accept", "reported", "accepted", ""))
    last = "accepted"
    if resident:
        if status == "accepted":
            return head
        head.append(("verify", "accepted", "verified", ""))
        last = "verified"
    if status in ("accepted", "verified"):
        return head
    if status == "voided":
        return [*head, ("void", last, "voided", "")]
    head.append(("register", last, "registered", ""))
    if status == "registered":
        return head
    head.append(("dispatch", "registered", "dispatched", "dispatch"))
    if status == "dispatched":
        return head
    head.append(("start", "dispatched", "in_progress", ""))
    if status == "suspended":
        return [
            *head,
            ("request_suspension", "in_progress", "in_progress", "request"),
            ("approve_suspension", "in_progress", "suspended", "suspend"),
        ]
    for k in range(1, rework + 1):
        head.append(("handle", "in_progress", "handled", ""))
        head.append(("check_fail", "handled", "in_progress", f"rework:{k}"))
    if status == "in_progress":
        return head
    head.append(("handle", "in_progress", "handled", ""))
    order = ["handled", "checked", "evaluated", "closed", "archived"]
    tail: list[Step] = [
        ("check_pass", "handled", "checked", ""),
        ("evaluate", "checked", "evaluated", ""),
        ("close", "evaluated", "closed", "close"),
        ("archive", "closed", "archived", ""),
    ]
    return head + tail[: order.index(status)]


def _key(status: str, resident: bool, rework: int) -> str:
    return f"{status}:{int(resident)}:{rework}"


def templates() -> list[dict[str, Any]]:
    """Rows of the path table: key, position, action, statuses, cumulative hours, what the
    event sets, and the step whose deadline starts there (the open cases' current step)."""
    rows = []
    for status in IMPORTABLE:
        # only residents' reports are verified: a case said to be verified was one
        for resident in (True,) if status == "verified" else (False, True):
            for rework in (0, 1, 2):
                path = _path(status, resident, rework)
                step = machine.step_for(status, "open311" if resident else "grid_worker")
                starts = _step_start(path, status) if step else None
                cum = 0.0
                for n, (action, frm, to, sets) in enumerate(path, start=1):
                    cum += _GAP[action]
                    rows.append(
                        {
                            "key": _key(status, resident, rework),
                            "n": n,
                            "action": action,
                            "frm": frm,
                            "to": to,
                            "cum": cum,
                            "sets": sets,
                            "last": len(path),
                            "due_step": step if n == starts else None,
                        }
                    )
    return rows


def _step_start(path: list[Step], status: str) -> int:
    """Position of the event that entered the current step (dispatch for work in progress,
    the last failed check for rework)."""
    if status == "in_progress":
        marks = [i for i, s in enumerate(path, 1) if s[0] in ("dispatch", "check_fail")]
        return marks[-1]
    return len(path)


#: A uniform number in [0, 1) from the case id and a salt (deterministic).
_U: Final = "(('x' || substr(md5(c.id::text || '{salt}'), 1, 8))::bit(32)::bigint / 4294967296.0)"


def _at(cum: str = "t.cum") -> str:
    """The time of a path step (``cum`` hours at the case's pace, never after ``as_of``)."""
    return (
        f"least(h.reported_at + make_interval(secs => {cum} * 3600 * h.pace), "
        "greatest(CAST(:as_of AS timestamptz), h.reported_at))"
    )


def synthesise(
    conn: Connection,
    ids_sql: str,
    params: dict[str, Any] | None = None,
    *,
    as_of: datetime | None = None,
) -> int:
    """Write the event history of the cases ``ids_sql`` selects (a query returning ``id``;
    cases that already have events are skipped) and set their rows to its replay.

    Returns the number of cases given a history.
    """
    p = {**(params or {}), "as_of": as_of or datetime.now().astimezone()}
    resident = ", ".join(f"'{s}'" for s in sorted(machine.RESIDENT_SOURCES))
    conn.execute(
        text(
            "DROP TABLE IF EXISTS pg_temp.hist_cases, pg_temp.hist_paths, pg_temp.hist_due, "
            "pg_temp.hist_meta"
        )
    )
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE hist_cases ON COMMIT DROP AS
            SELECT c.id, c.reported_at, coalesce(c.category_code, '09') AS category_code,
                   c.status || ':' || (c.source IN ({resident}) OR c.status = 'verified')::int
                   || ':' ||
                   CASE WHEN c.status IN ('reported', 'accepted', 'verified', 'registered',
                                          'dispatched', 'rejected', 'voided', 'suspended')
                        THEN 0
                        WHEN {_U.format(salt="rework")} < {REWORK_TWICE} THEN 2
                        WHEN {_U.format(salt="rework")} < {REWORK_ONCE + REWORK_TWICE} THEN 1
                        ELSE 0 END AS key,
                   0.4 + 1.2 * {_U.format(salt="pace")} AS pace,
                   CASE WHEN c.grid_code IS NULL THEN 'village' ELSE 'grid' END AS route_kind,
                   coalesce(c.grid_code, c.village_code) AS route_code,
                   left(c.village_code, 9) || '000' AS town
            FROM cases c
            WHERE c.id IN ({ids_sql}) AND c.version = 0 AND c.status <> 'merged'
            """
        ),
        p,
    )
    n = int(conn.execute(text("SELECT count(*) FROM hist_cases")).scalar_one())
    if not n:
        return 0
    conn.execute(text("ALTER TABLE hist_cases ADD PRIMARY KEY (id)"))
    conn.execute(
        text(
            "CREATE TEMP TABLE hist_paths (key text, n int, action text, frm text, "
            '"to" text, cum float8, sets text, last int, due_step text) ON COMMIT DROP'
        )
    )
    conn.execute(
        text(
            "INSERT INTO hist_paths VALUES (:key, :n, :action, :frm, :to, :cum, :sets, :last, "
            ":due_step)"
        ),
        templates(),
    )
    conn.execute(
        text(
            """
            CREATE TEMP TABLE hist_meta ON COMMIT DROP AS
            SELECT key, max(last) AS last,
                   max(cum) FILTER (WHERE sets = 'close') AS close_cum,
                   coalesce(max(split_part(sets, ':', 2)::int)
                            FILTER (WHERE sets LIKE 'rework:%'), 0) AS rework,
                   bool_or(sets = 'dispatch') AS dispatched
            FROM hist_paths GROUP BY key
            """
        )
    )
    for table in ("hist_cases", "hist_paths", "hist_meta"):
        conn.execute(text(f"ANALYZE {table}"))
    t0 = time.perf_counter()
    _deadlines(conn, p)
    t1 = time.perf_counter()
    conn.execute(
        text(
            f"""
            INSERT INTO case_events (case_id, seq, action, from_status, to_status, at, actor,
                                     data)
            SELECT h.id, t.n, t.action, t.frm, t."to", {_at()}, 'import',
                   jsonb_build_object('imported', true, 'set', CASE
                     WHEN t.sets = 'report' THEN jsonb_build_object(
                        'route_kind', h.route_kind, 'route_code', h.route_code,
                        'assignee_kind', 'centre', 'assignee_code', h.town)
                     WHEN t.sets = 'dispatch' THEN jsonb_build_object(
                        'assignee_kind', h.route_kind, 'assignee_code', h.route_code)
                     WHEN t.sets LIKE 'rework:%' THEN jsonb_build_object(
                        'rework_count', split_part(t.sets, ':', 2)::int)
                     WHEN t.sets = 'request' THEN jsonb_build_object(
                        'pending', 'suspension', 'pending_data', jsonb_build_object('by', null))
                     WHEN t.sets = 'suspend' THEN jsonb_build_object(
                        'resume_status', 'in_progress', 'pending', null, 'pending_data', null,
                        'due_at', null, 'due_step', null, 'deadline_problem', null)
                     WHEN t.sets = 'close' THEN jsonb_build_object('closed_at', {_at()})
                     ELSE '{{}}'::jsonb END
                   || CASE WHEN t.due_step IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object(
                        'due_at', d.due_at, 'due_step', t.due_step,
                        'deadline_problem', d.problem) END)
            FROM hist_cases h JOIN hist_paths t ON t.key = h.key
            LEFT JOIN hist_due d ON d.id = h.id AND t.due_step IS NOT NULL
            """
        ),
        p,
    )
    t2 = time.perf_counter()
    conn.execute(
        text(
            f"""
            UPDATE cases c SET
                version = m.last, rework_count = m.rework,
                route_kind = h.route_kind, route_code = h.route_code,
                assignee_kind = CASE WHEN m.dispatched THEN h.route_kind ELSE 'centre' END,
                assignee_code = CASE WHEN m.dispatched THEN h.route_code ELSE h.town END,
                owner_id = NULL, handled_by = NULL, pending = NULL, pending_data = NULL,
                merged_into = NULL,
                resume_status = CASE WHEN c.status = 'suspended' THEN 'in_progress' END,
                due_at = d.due_at, due_step = d.step, deadline_problem = d.problem,
                closed_at = CASE WHEN m.close_cum IS NOT NULL THEN {_at(cum="m.close_cum")} END,
                category_code = h.category_code
            FROM hist_cases h
            JOIN hist_meta m ON m.key = h.key
            LEFT JOIN hist_due d ON d.id = h.id
            WHERE c.id = h.id
            """
        ),
        p,
    )
    log.info("histories of %d cases: deadlines %.1f s, events %.1f s, rows %.1f s",
             n, t1 - t0, t2 - t1, time.perf_counter() - t2)  # fmt: skip
    return n


def _deadlines(conn: Connection, params: dict[str, Any]) -> None:
    """``hist_due``: the current step's deadline of every open case of ``hist_cases``."""
    rows = conn.execute(
        text(
            f"""
            SELECT h.id, h.category_code, t.due_step, {_at()} AS start
            FROM hist_cases h JOIN hist_paths t ON t.key = h.key AND t.due_step IS NOT NULL
            """
        ),
        params,
    ).all()
    limits = {
        (r.category_code, r.step): (int(r.amount), r.unit)
        for r in conn.execute(
            text("SELECT category_code, step, amount, unit FROM case_time_limits")
        ).all()
    }
    out = io.StringIO()
    null = r"\N"
    for case_id, code, step, start in rows:
        limit = limits.get((code, step)) or limits.get((code[:2], step))
        due, problem = None, None
        if limit is not None:
            try:
                due = add_working_time(conn, start, limit[0], limit[1]).isoformat()
            except CalendarUnknown as exc:
                problem = exc.message
        out.write(f"{case_id}\t{due or null}\t{step}\t{_tsv(problem)}\n")
    conn.execute(
        text(
            "CREATE TEMP TABLE hist_due (id bigint PRIMARY KEY, due_at timestamptz, "
            "step text, problem text) ON COMMIT DROP"
        )
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy("COPY hist_due FROM STDIN") as cp:
        cp.write(out.getvalue())
    conn.execute(text("ANALYZE hist_due"))


def _tsv(value: str | None) -> str:
    if value is None:
        return r"\N"
    return value.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def append_status_change(conn: Connection, changes: Sequence[tuple[int, str, str]]) -> int:
    """For cases a re-import moved to another status (id, old, new; the row already holds
    the new status): one ``import`` event each (deadline and requests cleared for closed
    and suspended statuses)."""
    done = 0
    for case_id, old_status, new_status in changes:
        row = (
            conn.execute(text("SELECT * FROM cases WHERE id = :i FOR UPDATE"), {"i": case_id})
            .mappings()
            .one()
        )
        if row["version"] == 0:
            continue
        sets: dict[str, Any] = {}
        if new_status in machine.CLOSED_STATUSES or new_status == "suspended":
            sets.update(
                due_at=None, due_step=None, deadline_problem=None, pending=None, pending_data=None
            )
        seq = int(row["version"]) + 1
        import json

        conn.execute(
            text(
                "INSERT INTO case_events (case_id, seq, action, from_status, to_status, at, "
                "actor, data) VALUES (:i, :s, 'import', :f, :t, now(), 'import', "
                "CAST(:d AS jsonb))"
            ),
            {
                "i": case_id,
                "s": seq,
                "f": old_status,
                "t": new_status,
                "d": json.dumps({"imported": True, "set": sets}),
            },
        )
        assignments = "".join(f", {k} = NULL" for k in sets)
        conn.execute(
            text(f"UPDATE cases SET version = :s{assignments} WHERE id = :i"),
            {"s": seq, "i": case_id},
        )
        done += 1
    return done
