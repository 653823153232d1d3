"""Assessment facts: one row per case that the indicators sum over (issue 14 speed).

* ``assessment_case_facts`` — per case: its area (the grid, else village, it was reported
  in), the time of its first and last event, and its whole history folded into the counts
  and flags the case indicators need (every completion judged on time against the deadline
  in force just before it, returns, reworks, extensions, ratings, whether it was ever
  registered / closed / late) and its state after the last event (status, deadline,
  handler). A case whose events all fall inside a period contributes these numbers as they
  are; the few cases with events on both sides of a period bound are recounted from their
  events (:mod:`geogrid.assessment.facts`).
* ``assessment_case_rollup`` — the facts summed per area and (local day of the first event,
  of the last event or report): a period of whole days sums the buckets inside it instead
  of the cases. Append-only (a change appends the old contribution negated and the new
  one), folded together by :func:`geogrid.assessment.facts.compact`.
* ``geogrid_case_facts_refresh(ids)`` recomputes the rows of the given cases from their
  events (one pass over each case's events, ordered by ``seq``); a statement trigger on
  ``case_events`` (``AFTER INSERT``, transition table) calls it for the cases a statement
  gave events — a transition, a bulk import, a status change in bulk alike.
* The existing history is folded in here, set-based, in ranges of case ids.

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
CHUNK = 100_000
_DONE = "'accept', 'register', 'dispatch', 'handle', 'check_pass', 'evaluate', 'close'"
#: statuses after which a case is no longer pending (suspended ones are excluded too)
OPEN = "status NOT IN ('rejected', 'voided', 'closed', 'archived', 'merged', 'suspended')"

#: an event no indicator reads: archiving a closed case (closed and archived count alike
#: everywhere) that sets no deadline and carries no rating; ``last_at`` ignores it, so a
#: case archived days after it closed does not straddle the period it closed in
INERT = (
    "(e.action = 'archive' AND e.from_status = 'closed' AND NOT e.data ? 'rating' "
    "AND NOT coalesce(e.data -> 'set' ? 'due_at', false))"
)

COLUMNS = (
    "case_id, code, village_code, grid_code, reported_at, first_at, last_at, events, last_seq, "
    "reported, "
    "registered, closed, late, accept_timed, accept_ok, dispatches, dispatch_timed, "
    "dispatch_ok, returns, handles, handle_timed, handle_ok, reworks, extensions, rated, "
    "satisfied, status, due_at, handler"
)

#: the facts of the cases ``{where}`` selects (over ``case_events e``), as the indicators'
#: event pass reads them: the deadline in force before an event is the last ``due_at`` an
#: earlier event (by ``seq``) set — possibly cleared (null)
FACTS_SQL = f"""
INSERT INTO assessment_case_facts AS f ({COLUMNS})
SELECT t.case_id, min(coalesce(c.grid_code, c.village_code)), min(c.village_code),
    min(c.grid_code), min(c.reported_at), min(t.at),
    coalesce(max(t.at) FILTER (WHERE NOT t.inert), min(t.at)), count(*), max(t.seq),
    bool_or(t.action = 'report'), bool_or(t.action = 'register'), bool_or(t.action = 'close'),
    coalesce(bool_or(t.action IN ({_DONE}) AND t.at > t.due_before), false),
    count(*) FILTER (WHERE t.action = 'accept' AND t.due_before IS NOT NULL),
    count(*) FILTER (WHERE t.action = 'accept' AND t.at <= t.due_before),
    count(*) FILTER (WHERE t.action = 'dispatch'),
    count(*) FILTER (WHERE t.action = 'dispatch' AND t.due_before IS NOT NULL),
    count(*) FILTER (WHERE t.action = 'dispatch' AND t.at <= t.due_before),
    count(*) FILTER (WHERE t.action = 'return'),
    count(*) FILTER (WHERE t.action = 'handle'),
    count(*) FILTER (WHERE t.action = 'handle' AND t.due_before IS NOT NULL),
    count(*) FILTER (WHERE t.action = 'handle' AND t.at <= t.due_before),
    count(*) FILTER (WHERE t.action = 'check_fail'),
    count(*) FILTER (WHERE t.action = 'approve_extension'),
    count(*) FILTER (WHERE t.rated),
    count(*) FILTER (WHERE t.rating IN ('satisfied', 'basic')),
    (array_agg(t.to_status ORDER BY t.seq DESC))[1],
    CAST((array_agg(t.due_set ORDER BY t.seq DESC) FILTER (WHERE t.sets_due))[1]
         AS timestamptz),
    (array_agg(t.actor_id ORDER BY t.seq DESC) FILTER (WHERE t.action = 'handle'))[1]
FROM (
    SELECT w.*, CAST(w.dues[cardinality(w.dues)] AS timestamptz) AS due_before FROM (
        SELECT e.case_id, e.seq, e.action, e.to_status, e.at, e.actor_id,
               e.data ? 'rating' AS rated, e.data ->> 'rating' AS rating,
               {INERT} AS inert,
               e.data -> 'set' ? 'due_at' AS sets_due, e.data -> 'set' ->> 'due_at' AS due_set,
               array_agg(e.data -> 'set' ->> 'due_at') FILTER (WHERE e.data -> 'set' ? 'due_at')
                   OVER (PARTITION BY e.case_id ORDER BY e.seq
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS dues
        FROM case_events e WHERE {{where}}
    ) w
) t JOIN cases c ON c.id = t.case_id AND c.village_code IS NOT NULL  -- no area: no facts
GROUP BY t.case_id
ON CONFLICT (case_id) DO UPDATE SET ({COLUMNS}) = ROW(EXCLUDED.*)
"""

#: the day buckets: what one case adds to (its area, local day of its first event, local day
#: of its last event or of its report if later) — a period of whole local days contains the
#: case exactly when first_day >= start and end_day <= end. Append-only: a change appends
#: the case's old contribution negated and its new one (no row shared between cases is
#: updated, so concurrent transitions never wait on each other); :func:`compact` folds them
_KEY_TERMS = (
    "x.code", "x.village_code", "coalesce(x.grid_code, '')",
    "CAST(x.first_at AT TIME ZONE 'Asia/Shanghai' AS date)",
    "CAST(greatest(x.last_at, x.reported_at) AT TIME ZONE 'Asia/Shanghai' AS date)",
)  # fmt: skip
_KEY_NAMES = ("code", "village_code", "grid_code", "first_day", "end_day")
ROLLUP_SUMS = {
    "cases": "1",
    "reported": "x.reported::int",
    "reported_registered": "(x.reported AND x.registered)::int",
    "registered": "x.registered::int",
    "registered_active": "(x.registered AND x.status <> 'suspended')::int",
    "registered_closed": "(x.registered AND x.status <> 'suspended' AND x.closed)::int",
    "closed": "x.closed::int",
    "closed_ok": "(x.closed AND NOT x.late)::int",
    **{k: f"x.{k}" for k in (
        "accept_timed", "accept_ok", "dispatches", "dispatch_timed", "dispatch_ok", "returns",
        "handles", "handle_timed", "handle_ok", "reworks", "extensions", "rated", "satisfied",
    )},
}  # fmt: skip
ROLLUP_COLS = ", ".join((*_KEY_NAMES, *ROLLUP_SUMS))


def bucket(sign: str) -> str:
    """A facts row ``x`` as its bucket's key and its contribution times ``sign``."""
    key = ", ".join(f"{t} AS {n}" for t, n in zip(_KEY_TERMS, _KEY_NAMES, strict=True))
    return f"{key}, " + ", ".join(f"{sign}({v}) AS {k}" for k, v in ROLLUP_SUMS.items())


#: the summed contributions of rows ``d`` (with :func:`bucket`'s columns), per bucket,
#: appended when not all zero
ROLLUP_APPEND = f"""
INSERT INTO assessment_case_rollup ({ROLLUP_COLS})
SELECT {", ".join(_KEY_NAMES)}, {", ".join(f"sum({k})" for k in ROLLUP_SUMS)}
FROM {{rows}} d
GROUP BY {", ".join(_KEY_NAMES)}
HAVING {" OR ".join(f"sum({k}) <> 0" for k in ROLLUP_SUMS)}
"""


def _facts_of(sign: str, where: str) -> str:
    return f"(SELECT {bucket(sign)} FROM assessment_case_facts x WHERE {where})"


#: the cases' facts recomputed from their events, their buckets moved with them
REFRESH_FUNCTION = f"""
CREATE FUNCTION geogrid_case_facts_refresh(ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
    {ROLLUP_APPEND.format(rows=_facts_of("-", "x.case_id = ANY(ids)"))};
    {FACTS_SQL.format(where="e.case_id = ANY(ids)")};
    {ROLLUP_APPEND.format(rows=_facts_of("+", "x.case_id = ANY(ids)"))};
END $$
"""

#: one new event (by ``seq`` after the case's last) folded into the case's row: the deadline
#: in force before it is the row's ``due_at`` (the last one set); other cases (several events
#: of a case in one statement, an event inserted out of order, a case without a row yet) are
#: recomputed from their events
TRIGGER_FUNCTION = f"""
CREATE FUNCTION geogrid_case_facts_on_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    folded bigint[];
    rest bigint[];
BEGIN
    -- the case's own row (reached through the case, whose row the transition locks); its
    -- buckets' change appended (a new row: nothing shared is locked)
    WITH single AS (
        SELECT m.* FROM (SELECT n.*, count(*) OVER (PARTITION BY n.case_id) AS k
                         FROM new_events n) m
        JOIN assessment_case_facts f ON f.case_id = m.case_id
        WHERE m.k = 1 AND m.seq > f.last_seq
    ), gone AS (
        SELECT {bucket("-")} FROM assessment_case_facts x JOIN single s ON s.case_id = x.case_id
    ), upd AS (
        UPDATE assessment_case_facts f SET
            first_at = least(f.first_at, e.at),
            last_at = CASE WHEN {INERT} THEN f.last_at ELSE greatest(f.last_at, e.at) END,
            events = f.events + 1, last_seq = e.seq,
            reported = f.reported OR e.action = 'report',
            registered = f.registered OR e.action = 'register',
            closed = f.closed OR e.action = 'close',
            late = f.late OR coalesce(e.action IN ({_DONE}) AND e.at > f.due_at, false),
            accept_timed = f.accept_timed + (e.action = 'accept' AND f.due_at IS NOT NULL)::int,
            accept_ok = f.accept_ok + coalesce(e.action = 'accept' AND e.at <= f.due_at,
                                               false)::int,
            dispatches = f.dispatches + (e.action = 'dispatch')::int,
            dispatch_timed = f.dispatch_timed
                + (e.action = 'dispatch' AND f.due_at IS NOT NULL)::int,
            dispatch_ok = f.dispatch_ok + coalesce(e.action = 'dispatch' AND e.at <= f.due_at,
                                                   false)::int,
            returns = f.returns + (e.action = 'return')::int,
            handles = f.handles + (e.action = 'handle')::int,
            handle_timed = f.handle_timed + (e.action = 'handle' AND f.due_at IS NOT NULL)::int,
            handle_ok = f.handle_ok + coalesce(e.action = 'handle' AND e.at <= f.due_at,
                                               false)::int,
            reworks = f.reworks + (e.action = 'check_fail')::int,
            extensions = f.extensions + (e.action = 'approve_extension')::int,
            rated = f.rated + (e.data ? 'rating')::int,
            satisfied = f.satisfied + coalesce(e.data ->> 'rating' IN ('satisfied', 'basic'),
                                               false)::int,
            status = e.to_status,
            due_at = CASE WHEN e.data -> 'set' ? 'due_at'
                          THEN CAST(e.data -> 'set' ->> 'due_at' AS timestamptz)
                          ELSE f.due_at END,
            handler = CASE WHEN e.action = 'handle' THEN e.actor_id ELSE f.handler END
        FROM single e
        WHERE f.case_id = e.case_id
        RETURNING f.*
    ), came AS (
        SELECT {bucket("+")} FROM upd x
    ), moved AS ({ROLLUP_APPEND.format(rows="(SELECT * FROM gone UNION ALL SELECT * FROM came)")})
    SELECT array_agg(case_id) INTO folded FROM upd;
    rest := ARRAY(SELECT DISTINCT case_id FROM new_events
                  WHERE folded IS NULL OR case_id <> ALL (folded));
    IF cardinality(rest) > 0 THEN
        PERFORM geogrid_case_facts_refresh(rest);
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE assessment_case_facts (
            case_id bigint NOT NULL,
            code text COLLATE "C" NOT NULL,
            village_code varchar(12) NOT NULL,
            grid_code varchar(15),
            reported_at timestamptz NOT NULL,
            first_at timestamptz NOT NULL,
            last_at timestamptz NOT NULL,
            events integer NOT NULL,
            last_seq integer NOT NULL,
            reported boolean NOT NULL,
            registered boolean NOT NULL,
            closed boolean NOT NULL,
            late boolean NOT NULL,
            accept_timed integer NOT NULL,
            accept_ok integer NOT NULL,
            dispatches integer NOT NULL,
            dispatch_timed integer NOT NULL,
            dispatch_ok integer NOT NULL,
            returns integer NOT NULL,
            handles integer NOT NULL,
            handle_timed integer NOT NULL,
            handle_ok integer NOT NULL,
            reworks integer NOT NULL,
            extensions integer NOT NULL,
            rated integer NOT NULL,
            satisfied integer NOT NULL,
            status varchar(12) NOT NULL,
            due_at timestamptz,
            handler integer,
            CONSTRAINT pk_assessment_case_facts PRIMARY KEY (case_id),
            CONSTRAINT fk_assessment_case_facts_case_id_cases FOREIGN KEY (case_id)
                REFERENCES cases (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE assessment_case_facts IS 'derived from case_events by a trigger: "
        "one row per case, what the indicators sum'"
    )
    # backfill before the indexes and the trigger: set-based, a range of case ids at a time
    lo, hi = op.get_bind().exec_driver_sql("SELECT min(id), max(id) FROM cases").one()
    if lo is not None:
        op.execute("SET LOCAL work_mem = '256MB'")
        op.execute("SET LOCAL jit = off")
        for start in range(int(lo), int(hi) + 1, CHUNK):
            op.execute(FACTS_SQL.format(where=f"e.case_id BETWEEN {start} AND {start + CHUNK - 1}"))
    op.execute(
        "CREATE INDEX ix_assessment_case_facts_code_last_at ON assessment_case_facts "
        "(code, last_at)"
    )
    # the cases of an area whose events straddle a period bound: (first, last] contains it
    # (btree_gist: the area's code and the span in one index; a trusted extension)
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        "CREATE INDEX ix_assessment_case_facts_span ON assessment_case_facts USING gist "
        "(code, tstzrange(first_at, last_at, '(]'))"
    )
    op.execute(
        f"CREATE INDEX ix_assessment_case_facts_open ON assessment_case_facts (code) WHERE {OPEN}"
    )
    op.execute("ANALYZE assessment_case_facts")
    sums = ", ".join(f"{k} integer NOT NULL" for k in ROLLUP_SUMS)
    op.execute(
        f"""
        CREATE TABLE assessment_case_rollup (
            id bigint GENERATED BY DEFAULT AS IDENTITY,
            code text COLLATE "C" NOT NULL,
            village_code varchar(12) NOT NULL,
            grid_code varchar(15) NOT NULL,
            first_day date NOT NULL,
            end_day date NOT NULL,
            {sums},
            CONSTRAINT pk_assessment_case_rollup PRIMARY KEY (id)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE assessment_case_rollup IS 'derived from assessment_case_facts: "
        "contributions per area and (first, last) local day, appended'"
    )
    op.execute(ROLLUP_APPEND.format(rows=_facts_of("+", "true")))
    op.execute(
        "CREATE INDEX ix_assessment_case_rollup_code_first_day ON assessment_case_rollup "
        "(code, first_day)"
    )
    op.execute("ANALYZE assessment_case_rollup")
    op.execute(f"GRANT SELECT ON assessment_case_facts, assessment_case_rollup TO {WEB_ROLE}")
    op.execute(REFRESH_FUNCTION)
    op.execute(TRIGGER_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION geogrid_case_facts_refresh(bigint[]) FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER case_events_assessment_facts AFTER INSERT ON case_events "
        "REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT "
        "EXECUTE FUNCTION geogrid_case_facts_on_events()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS case_events_assessment_facts ON case_events")
    op.execute("DROP FUNCTION IF EXISTS geogrid_case_facts_on_events()")
    op.execute("DROP FUNCTION IF EXISTS geogrid_case_facts_refresh(bigint[])")
    op.execute("DROP TABLE IF EXISTS assessment_case_rollup")
    op.execute("DROP TABLE IF EXISTS assessment_case_facts")
