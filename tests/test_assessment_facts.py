"""The per-case facts (migration 0029) equal a recount from the events: after arbitrary
transitions (returns, reworks, extensions, suspensions, reopenings, cleared deadlines), after
an import of historical cases, and after the migration's backfill; resident feedback in
the satisfaction indicator, counted by hand."""

from __future__ import annotations

import datetime as dt
import importlib
import random
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from geogrid import store
from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.assessment import facts, indicators
from tests.assessment_support import CLEAR, G1, G2, JUNE, TODAY, V1, V2, add_case, build, lt

MIGRATION = importlib.import_module("geogrid.migrations.versions.0029_assessment_facts")
ALL = Principal(0, "admin", Role.sysadmin, Scope("all"))
DONE = {"accept", "register", "dispatch", "handle", "check_pass", "evaluate", "close"}
ACTIONS = [
    ("report", "reported"), ("accept", "accepted"), ("register", "registered"),
    ("dispatch", "dispatched"), ("return", "registered"), ("start", "in_progress"),
    ("handle", "handled"), ("check_fail", "in_progress"), ("approve_extension", "in_progress"),
    ("approve_suspension", "suspended"), ("resume", "in_progress"), ("check_pass", "checked"),
    ("evaluate", "evaluated"), ("close", "closed"), ("reopen", "in_progress"),
    ("reject", "rejected"), ("archive", "archived"), ("close", "closed"), ("archive", "archived"),
]  # fmt: skip
FIELDS = (
    "first_at", "last_at", "events", "last_seq", "reported", "registered", "closed", "late",
    "accept_timed", "accept_ok", "dispatches", "dispatch_timed", "dispatch_ok", "returns",
    "handles", "handle_timed", "handle_ok", "reworks", "extensions", "rated", "satisfied",
    "status", "due_at", "handler",
)  # fmt: skip


def fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The facts of one case worked out in Python from its events (an independent count)."""
    out: dict[str, Any] = dict.fromkeys(FIELDS[8:21], 0)
    due: dt.datetime | None = None
    late = False
    handler = None
    for e in sorted(events, key=lambda e: e["seq"]):
        a, at, before = e["action"], e["at"], due
        if a in DONE and before is not None and at > before:
            late = True
        for step in ("accept", "dispatch", "handle"):
            if a == step and before is not None:
                out[f"{step}_timed"] += 1
                out[f"{step}_ok"] += at <= before
        out["dispatches"] += a == "dispatch"
        out["returns"] += a == "return"
        out["handles"] += a == "handle"
        out["reworks"] += a == "check_fail"
        out["extensions"] += a == "approve_extension"
        rating = e["data"].get("rating")
        out["rated"] += "rating" in e["data"]
        out["satisfied"] += rating in ("satisfied", "basic")
        if a == "handle":
            handler = e["actor_id"]
        if "due_at" in e["data"].get("set", {}):
            raw = e["data"]["set"]["due_at"]
            due = None if raw is None else dt.datetime.fromisoformat(raw)
    acts = {e["action"] for e in events}
    last = max(events, key=lambda e: e["seq"])
    # archiving a closed case changes nothing any indicator reads: last_at ignores it
    settled = [
        e["at"] for e in events
        if not (e["action"] == "archive" and e["from_status"] == "closed"
                and "rating" not in e["data"] and "due_at" not in e["data"].get("set", {}))
    ]  # fmt: skip
    return {
        **out,
        "first_at": min(e["at"] for e in events),
        "last_at": max(settled or [min(e["at"] for e in events)]),
        "events": len(events), "last_seq": last["seq"], "reported": "report" in acts,
        "registered": "register" in acts,
        "closed": "close" in acts, "late": late, "status": last["to_status"], "due_at": due,
        "handler": handler,
    }  # fmt: skip


def random_history(rng: random.Random, users: list[int]) -> list[tuple[Any, ...]]:
    """An arbitrary history in June–July 2026: a report, then random transitions, times
    moving forward by 1–60 hours, deadlines set, cleared or left alone."""
    at = dt.datetime(2026, 6, 1, 8, tzinfo=indicators.LOCAL) + dt.timedelta(
        hours=rng.randrange(0, 24 * 45)
    )
    events: list[tuple[Any, ...]] = []
    for i in range(rng.randrange(1, 14)):
        action, status = ACTIONS[0] if i == 0 else rng.choice(ACTIONS[1:])
        roll = rng.random()
        due: Any = (
            at + dt.timedelta(hours=rng.randrange(-5, 72)) if roll < 0.6
            else CLEAR if roll < 0.7 else None
        )  # fmt: skip
        rating = rng.choice(["satisfied", "basic", "unsatisfied"]) if action == "evaluate" else None
        events.append((action, status, at, due, rng.choice([*users, None]), rating))
        at += dt.timedelta(hours=rng.randrange(1, 60))
    if rng.random() < 0.3:  # closed, then archived days later
        events.append(("close", "closed", at, CLEAR, None, None))
        events.append(("archive", "archived", at + dt.timedelta(days=5), None, None, None))
    return events


def _facts(conn: Connection) -> dict[int, dict[str, Any]]:
    rows = conn.execute(text(f"SELECT case_id, {', '.join(FIELDS)} FROM assessment_case_facts"))
    return {r.case_id: {k: getattr(r, k) for k in FIELDS} for r in rows}


def _buckets(conn: Connection, afresh: bool = False) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """The day buckets' sums as the triggers appended them, or as the migration's fill sums
    the facts now (other code: the fill, not the per-case folding)."""
    rows = MIGRATION._facts_of("+", "true") if afresh else "assessment_case_rollup"
    sums = ", ".join(f"sum({k})::int" for k in MIGRATION.ROLLUP_SUMS)
    sql = f"SELECT {', '.join(MIGRATION._KEY_NAMES)}, {sums} FROM {rows} d GROUP BY 1, 2, 3, 4, 5"
    out = {tuple(r[:5]): tuple(r[5:]) for r in conn.execute(text(sql))}
    return {k: v for k, v in out.items() if any(v)}


def _events(conn: Connection) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    sql = "SELECT case_id, seq, action, from_status, to_status, at, actor_id, data FROM case_events"
    for r in conn.execute(text(sql)).mappings():
        out.setdefault(r["case_id"], []).append(dict(r))
    return out


def _compare_periods(conn: Connection, periods: list[tuple[dt.date, dt.date]]) -> int:
    """compute() from the facts equals the recount from the events, every level and area."""
    compared = 0
    for start, end in periods:
        period = indicators.period_of(start, end)
        for level, prefix in (("town", ""), ("village", ""), ("grid", ""), ("staff", ""),
                              ("grid", G1), ("village", V2)):  # fmt: skip
            kw: dict[str, Any] = {"prefix": prefix, "level": level, "period": period}
            fast = indicators.compute(conn, **kw, today=TODAY, sources="cases")
            slow = indicators.compute(conn, **kw, today=TODAY, sources="cases", exact=True)
            assert fast == slow, (start, end, level, prefix)
            compared += sum(1 for r in fast if r["reported"] or r["overdue_pending"])
    return compared


@pytest.fixture
def township(engine: Engine) -> Engine:
    with engine.begin() as conn:
        build(conn)
    return engine


def test_facts_equal_a_recount_after_arbitrary_transitions(township: Engine) -> None:
    rng = random.Random(14)
    with township.begin() as conn:
        rls.apply(conn, ALL)
        users = list(conn.execute(text("SELECT id FROM users")).scalars())
        for n in range(60):
            grid, village = rng.choice([(G1, V1), (G2, V1), (None, V2)])
            add_case(conn, f"R{n}", grid, village, random_history(rng, users))
        kept, events = _facts(conn), _events(conn)
        assert set(kept) == set(events) and len(kept) == 68
        for case_id, evs in events.items():
            assert kept[case_id] == fold(evs), case_id
        # the appended day buckets sum to the facts' buckets; compacting keeps the sums
        buckets = _buckets(conn)
        assert buckets == _buckets(conn, afresh=True)
        before, after = facts.compact(conn)
        assert before > after == len(buckets)
        assert _buckets(conn) == buckets
        # some cases were archived after they closed: their last_at ignores it
        assert any(kept[c]["last_at"] < max(e["at"] for e in evs) for c, evs in events.items())
        # the kinds of history the brief names all occur
        acts = {e["action"] for evs in events.values() for e in evs}
        assert {"return", "check_fail", "approve_extension", "approve_suspension",
                "reopen"} <= acts  # fmt: skip
        # periods whose bounds cut through histories, and the hand-made June
        periods = [JUNE, (dt.date(2026, 6, 10), dt.date(2026, 6, 17)),
                   (dt.date(2026, 6, 20), dt.date(2026, 7, 31)), (dt.date(2026, 7, 3),
                   dt.date(2026, 7, 3)), (dt.date(2026, 5, 1), dt.date(2026, 8, 31))]  # fmt: skip
        assert _compare_periods(conn, periods) > 20


def test_a_transition_updates_only_its_case(township: Engine) -> None:
    with township.begin() as conn:
        before = _facts(conn)
        c4 = conn.execute(text("SELECT id FROM cases WHERE case_no = 'C4'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, seq, action, from_status, to_status, at, "
                "actor_id, actor, data) VALUES (:c, 5, 'handle', 'dispatched', 'handled', :at, "
                "NULL, 't', '{}')"
            ),
            {"c": c4, "at": lt(22, 9)},
        )
        after = _facts(conn)
    assert {k for k in after if after[k] != before[k]} == {c4}
    # handled 22 June before its 23 June 12:00 dispatch deadline; still no new deadline
    assert (after[c4]["handles"], after[c4]["handle_ok"], after[c4]["status"]) == (1, 1, "handled")
    assert after[c4]["last_at"] == lt(22, 9) and after[c4]["events"] == 5


def test_imported_history_has_facts(town_url: str, sample_town, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from geogrid.overlays import import_overlay

    engine = store.make_engine(town_url)
    try:
        src = tmp_path / "c.csv"
        df = pd.read_csv(sample_town.cases, dtype=str).head(400)
        df.rename(columns={"case_id": "case_no"}).to_csv(src, index=False)
        report = import_overlay(engine, src, "cases")
        assert report.inserted > 0
        with engine.begin() as conn:
            kept, events = _facts(conn), _events(conn)
            assert set(kept) == set(events) and len(kept) >= report.inserted
            for case_id, evs in events.items():
                assert kept[case_id] == fold(evs), case_id
            first, last = conn.execute(
                text("SELECT min(first_at), max(last_at) FROM assessment_case_facts")
            ).one()
            mid = first + (last - first) / 2
            local = [d.astimezone(indicators.LOCAL).date() for d in (first, mid, last)]
            periods = [(local[0], local[1]), (local[1], local[2])]
            periods = [(a, min(b, a + dt.timedelta(days=365))) for a, b in periods]
            for start, end in periods:
                period = indicators.period_of(start, end)
                for level in ("town", "village"):
                    kw: dict[str, Any] = {"prefix": "", "level": level, "period": period}
                    fast = indicators.compute(conn, **kw, sources="cases")
                    assert fast == indicators.compute(conn, **kw, sources="cases", exact=True)
                    assert sum(r["reported"] for r in fast) > 0
    finally:
        engine.dispose()


def test_migration_backfills_existing_history(township: Engine, db_url: str) -> None:
    with township.begin() as conn:
        kept = _facts(conn)
    assert len(kept) == 8
    store.downgrade(db_url, "0028")
    with township.connect() as conn:
        gone = conn.execute(text("SELECT to_regclass('assessment_case_facts')")).scalar()
    assert gone is None
    store.upgrade(db_url)
    with township.begin() as conn:
        assert _facts(conn) == kept
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = 'case_events_assessment_facts'"
                )
            ).scalar_one()
            == 1
        )


def test_resident_feedback_counts_in_satisfaction(township: Engine) -> None:
    """G1 in June: the evaluation step rated 1 satisfied and 2 unsatisfied (0.5). Residents
    rate case 1 'basic' on 20 June (counts), case 2 'satisfied' by the hotline on 25 June
    (counts), case 3 'unsatisfied' on 2 July (after the period: not counted); case 4 (G2)
    'unsatisfied' on 21 June counts in G2 only: G1 3 of 4, G2 0 of 1, the village 3 of 5."""
    with township.begin() as conn:
        ids = {r.case_no: r.id for r in conn.execute(text("SELECT case_no, id FROM cases"))}
        for no, source, rating, at in (("C1", "open311", "basic", lt(20, 9)),
                                       ("C2", "hotline", "satisfied", lt(25, 9)),
                                       ("C3", "open311", "unsatisfied", lt(2, 9, 7)),
                                       ("C4", "visit", "unsatisfied", lt(21, 9))):  # fmt: skip
            conn.execute(
                text("INSERT INTO case_feedback (case_id, source, rating, at) "
                     "VALUES (:c, :s, :r, :at)"),
                {"c": ids[no], "s": source, "r": rating, "at": at},
            )  # fmt: skip
        rls.apply(conn, ALL)
        period = indicators.period_of(*JUNE)
        grids = {r["code"]: r for r in indicators.compute(
            conn, prefix="", level="grid", period=period, today=TODAY)}  # fmt: skip
        village = indicators.compute(conn, prefix=V1, level="village", period=period, today=TODAY)
        exact = indicators.compute(
            conn, prefix="", level="grid", period=period, today=TODAY, exact=True
        )
    assert grids[G1]["satisfaction_rate"] == 0.75
    assert grids[G2]["satisfaction_rate"] == 0.0
    assert village[0]["satisfaction_rate"] == 0.6
    assert [r["satisfaction_rate"] for r in exact] == [r["satisfaction_rate"]
                                                       for r in grids.values()]  # fmt: skip


def test_refresh_repairs_a_damaged_row(township: Engine) -> None:
    with township.begin() as conn:
        kept = _facts(conn)
        conn.execute(text("UPDATE assessment_case_facts SET handles = 99, status = 'closed'"))
        assert facts.refresh(conn) == 8
        assert _facts(conn) == kept


def test_a_case_in_no_village_has_no_facts_and_is_not_refused(db_conn) -> None:  # type: ignore[no-untyped-def]
    # a case placed in no village (imported history outside the township, a point no
    # village holds) belongs to no area: its events are kept, it simply has no facts
    case = db_conn.execute(
        text(
            "INSERT INTO cases (case_no, category, reported_at, geom) VALUES ('T-nowhere', "
            "'环境卫生', now(), ST_SetSRID(ST_MakePoint(100.0, 20.0), 4326)) RETURNING id"
        )
    ).scalar_one()
    db_conn.execute(
        text(
            "INSERT INTO case_events (case_id, seq, action, to_status, at, actor) "
            "VALUES (:c, 1, 'report', 'reported', now(), 'test')"
        ),
        {"c": case},
    )
    assert (
        db_conn.execute(
            text("SELECT count(*) FROM case_events WHERE case_id = :c"), {"c": case}
        ).scalar_one()
        == 1
    )
    assert (
        db_conn.execute(
            text("SELECT count(*) FROM assessment_case_facts WHERE case_id = :c"), {"c": case}
        ).scalar_one()
        == 0
    )
