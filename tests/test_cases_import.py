"""Imported cases get event histories consistent with their status (replayable rows,
queues, overdue cases, rework); plan activation keeps the grid a case was reported in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.cases import machine
from geogrid.cases.history import IMPORTABLE, templates
from geogrid.overlays import import_overlay
from geogrid.plans import activate_plan, create_plan


@pytest.fixture(scope="module")
def imported(pg, _town_template: str, sample_town) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    engine = store.make_engine(pg.url(name))
    plan = create_plan(engine, sample_town.town_code, name="first", jobs=1)
    activate_plan(engine, plan)
    import_overlay(engine, sample_town.cases, "cases")
    try:
        yield engine
    finally:
        engine.dispose()
        pg.drop_database(name)


def test_every_path_is_a_walk_through_the_machine() -> None:
    rows = pd.DataFrame(templates())
    assert set(rows["to"][rows["n"] == rows["last"]]) == set(IMPORTABLE)
    for _, path in rows.groupby("key"):
        path = path.sort_values("n")
        assert list(path["n"]) == list(range(1, len(path) + 1))
        assert path["cum"].is_monotonic_increasing
        status = None
        for action, frm, to in zip(
            path["action"], path["frm"].replace({float("nan"): None}), path["to"], strict=True
        ):
            assert frm == status
            if action != "report":
                assert any(t.action == action and frm in t.sources for t in machine.TRANSITIONS)
            status = to


def test_histories_replay_to_the_rows(imported: Engine, sample_town) -> None:  # type: ignore[no-untyped-def]
    stated = pd.read_csv(sample_town.cases, dtype=str).set_index("case_id")["status"]
    with imported.connect() as conn:
        rows = conn.execute(text("SELECT * FROM cases ORDER BY id")).mappings().all()
        events = (
            conn.execute(
                text(
                    "SELECT case_id, seq, action, from_status, to_status, at, data "
                    "FROM case_events ORDER BY case_id, seq"
                )
            )
            .mappings()
            .all()
        )
    by_case: dict[int, list] = {}
    for e in events:
        by_case.setdefault(e["case_id"], []).append(e)
    assert len(rows) == len(stated)
    for row in rows:
        history = by_case[row["id"]]
        assert row["status"] == stated[row["case_no"]]
        assert machine.replay(history) == {k: row[k] for k in machine.STATE_FIELDS}
        times = [e["at"] for e in history]
        assert times == sorted(times) and times[0] == row["reported_at"]
        assert history[0]["action"] == "report"


def test_imported_history_lands_in_its_months_partitions(imported: Engine) -> None:
    # the history's months get partitions of their own at import: nothing is left in the
    # DEFAULT partition, where no query would prune it (and `db check` would warn)
    with imported.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM case_events_default")).scalar_one()
        months = conn.execute(
            text(
                "SELECT count(DISTINCT date_trunc('month', at AT TIME ZONE 'Asia/Shanghai')) "
                "FROM case_events"
            )
        ).scalar_one()
        parts = conn.execute(
            text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'case_events'::regclass "
                "AND inhrelid::regclass::text ~ '^case_events_[0-9]{6}$'"
            )
        ).scalar_one()
    assert left == 0 and months > 3 and parts >= months


def test_a_year_shows_queues_overdue_cases_and_rework(imported: Engine) -> None:
    with imported.connect() as conn:
        by_status = dict(conn.execute(text("SELECT status, count(*) FROM cases GROUP BY 1")).all())
        overdue = conn.execute(
            text(
                "SELECT count(*) FROM cases WHERE due_at < now() AND status IN "
                "('dispatched', 'in_progress', 'handled')"
            )
        ).scalar_one()
        reworked = conn.execute(
            text("SELECT count(*) FROM cases WHERE rework_count > 0")
        ).scalar_one()
        fails = conn.execute(
            text("SELECT count(*) FROM case_events WHERE action = 'check_fail'")
        ).scalar_one()
        sums = conn.execute(text("SELECT sum(rework_count) FROM cases")).scalar_one()
        problems = conn.execute(
            text(
                "SELECT count(*) FROM cases WHERE status IN ('dispatched', 'in_progress') "
                "AND due_at IS NULL AND deadline_problem IS NULL"
            )
        ).scalar_one()
    queues = {"reported", "registered", "dispatched", "in_progress", "handled", "suspended"}
    assert queues <= set(by_status)
    assert by_status["archived"] > sum(by_status.get(s, 0) for s in queues)
    assert overdue > 0 and reworked > 0 and fails == sums
    assert problems == 0, "an open case has a deadline or the reason it has none"


def test_reimport_changes_nothing_and_a_new_status_is_one_event(
    imported: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with imported.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM case_events")).scalar_one()
    again = import_overlay(imported, sample_town.cases, "cases", rejects_path=tmp_path / "r")
    assert (again.inserted, again.updated) == (0, 0)
    df = pd.read_csv(sample_town.cases, dtype=str)
    target = df.index[df["status"] == "dispatched"][0]
    df.loc[target, "status"] = "已结案"
    changed = tmp_path / "changed.csv"
    df.to_csv(changed, index=False)
    rep = import_overlay(imported, changed, "cases", rejects_path=tmp_path / "r2")
    assert (rep.inserted, rep.updated) == (0, 1)
    with imported.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM case_events")).scalar_one()
        row = (
            conn.execute(
                text("SELECT * FROM cases WHERE case_no = :n"), {"n": df.loc[target, "case_id"]}
            )
            .mappings()
            .one()
        )
        history = (
            conn.execute(
                text(
                    "SELECT seq, to_status, data, action FROM case_events WHERE case_id = :i "
                    "ORDER BY seq"
                ),
                {"i": row["id"]},
            )
            .mappings()
            .all()
        )
    assert after == before + 1
    assert history[-1]["action"] == "import" and row["status"] == "closed"
    assert machine.replay(history) == {k: row[k] for k in machine.STATE_FIELDS}


def test_activation_keeps_the_grid_a_case_was_reported_in(imported: Engine, sample_town) -> None:  # type: ignore[no-untyped-def]
    with imported.connect() as conn:
        before = dict(conn.execute(text("SELECT id, grid_code FROM cases")).all())
    assert sum(g is not None for g in before.values()) > 0.9 * len(before)
    plan = create_plan(imported, sample_town.town_code, name="second", jobs=1)
    with imported.begin() as conn:  # a plan with other grid codes
        conn.execute(
            text(
                "UPDATE grids SET code = left(code, 12) || lpad((right(code, 3)::int + 500)::text, "
                "3, '0') WHERE plan_id = :p AND level = 3"
            ),
            {"p": plan},
        )
    activate_plan(imported, plan)
    with imported.connect() as conn:
        after = dict(conn.execute(text("SELECT id, grid_code FROM cases")).all())
        current = Counter(
            r[0][-3:] >= "500"
            for r in conn.execute(
                text("SELECT current_grid_code FROM cases WHERE current_grid_code IS NOT NULL")
            ).all()
        )
    assert after == before, "activating a plan does not rewrite where cases were reported"
    assert current == Counter({True: sum(current.values())}), "the current grid follows the plan"


def test_migration_gives_existing_cases_a_history(pg) -> None:  # type: ignore[no-untyped-def]
    name = f"geogrid_m14_{id(pg) % 10_000}"
    with pg.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url(name)
    try:
        store.upgrade(url, "0013")
        engine = store.make_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO admin_areas (code, level, name) VALUES "
                    "('420117105000', 'town', '镇'), ('420117105201', 'village', '村')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO cases (case_no, category, status, reported_at, geom, "
                    "village_code) "
                    "SELECT 'M' || i, (ARRAY['安全隐患', '环境卫生', '火星'])[1 + i % 3], s, "
                    "now() - i * interval '1 day', ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326), "
                    "'420117105201' FROM unnest(ARRAY['reported', 'dispatched', 'handled', "
                    "'verified', 'evaluated', 'closed']) WITH ORDINALITY AS u(s, i)"
                )
            )
        engine.dispose()
        store.upgrade(url)
        engine = store.make_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM cases ORDER BY case_no")).mappings().all()
            for row in rows:
                history = (
                    conn.execute(
                        text(
                            "SELECT seq, to_status, data FROM case_events WHERE case_id = :i "
                            "ORDER BY seq"
                        ),
                        {"i": row["id"]},
                    )
                    .mappings()
                    .all()
                )
                assert machine.replay(history) == {k: row[k] for k in machine.STATE_FIELDS}
        assert [r["status"] for r in rows] == [
            "reported",
            "dispatched",
            "handled",
            "checked",
            "evaluated",
            "closed",
        ]
        assert [r["category_code"] for r in rows] == ["04", "09", "02", "04", "09", "02"]
        assert rows[5]["closed_at"] is not None and rows[1]["assignee_kind"] == "village"
        engine.dispose()
        store.downgrade(url, "0013")
        engine = store.make_engine(url)
        with engine.connect() as conn:
            back = conn.execute(text("SELECT status FROM cases ORDER BY case_no")).scalars().all()
        engine.dispose()
        assert back == ["reported", "dispatched", "handled", "verified", "evaluated", "closed"]
    finally:
        pg.drop_database(name)
