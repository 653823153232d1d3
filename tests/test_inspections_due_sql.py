"""Inspection points are due (or overdue) from the moment they are imported (0025).

``geogrid_inspection_due(schedule, basis)`` (SQL) must agree with
:func:`geogrid.fieldwork.inspections.next_due` (Python) on every day of the calendar's
awkward stretches (Spring Festival 2026 with its worked Saturday, National Day 2025 with its
worked Sunday and Saturday, month ends clipped, the last days of the last known year), and
give ``NULL`` where Python refuses an undeclared year. A trigger fills ``next_due`` on insert
and when the schedule or the last inspection changes, so the points an import loads show a
due state on the map and in the OGC API before any inspections call.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Connection, text

from geogrid import overlays, store
from geogrid.cases.calendar import CalendarUnknown
from geogrid.fieldwork import inspections
from geogrid.fieldwork.inspections import SCHEDULES

D = dt.date


def _days(first: D, n: int) -> list[D]:
    return [first + dt.timedelta(days=i) for i in range(n)]


BASES = (
    _days(D(2025, 8, 25), 50)  # National Day 2025 (make-up days 28 Sep, 11 Oct)
    + _days(D(2025, 11, 10), 20)  # three and six months on: Spring Festival 2026
    + _days(D(2026, 1, 25), 35)  # Spring Festival 2026 itself
    + _days(D(2025, 5, 28), 6)  # a year on: the weekend of 30–31 May 2026
    + _days(D(2026, 12, 20), 12)  # rolling into 2027, which the calendar does not know
)


def _python(conn: Connection, schedule: str, basis: D) -> D | None:
    try:
        return inspections.next_due(conn, schedule, basis)
    except CalendarUnknown:
        return None


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_sql_due_day_agrees_with_python(db_conn, schedule: str) -> None:  # type: ignore[no-untyped-def]
    got = dict(
        db_conn.execute(
            text("SELECT b, geogrid_inspection_due(:s, b) FROM unnest(CAST(:bs AS date[])) b"),
            {"s": schedule, "bs": list(BASES)},
        ).all()
    )
    expected = {b: _python(db_conn, schedule, b) for b in BASES}
    assert got == expected
    assert any(v is None for v in expected.values())  # the undeclared year is covered
    assert db_conn.execute(text("SELECT geogrid_inspection_due('weekly', NULL)")).scalar() is None


def test_the_trigger_fills_and_follows_the_due_day(db_conn) -> None:  # type: ignore[no-untyped-def]
    db_conn.execute(
        text(
            "INSERT INTO inspection_points (point_no, name, geom, schedule, registered_on) "
            "VALUES ('T-1', '检查点', ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326), 'weekly', "
            "'2026-02-09')"
        )
    )

    def row() -> tuple[D | None, str | None]:
        r = db_conn.execute(
            text("SELECT next_due, due_problem FROM inspection_points WHERE point_no = 'T-1'")
        ).one()
        return r.next_due, r.due_problem

    assert row() == (D(2026, 2, 24), None)  # 16 Feb is Spring Festival → 24 Feb
    # Python's refresh finds nothing left to do: the trigger stamped the calendar version
    assert inspections.refresh_points(db_conn) == 0
    db_conn.execute(
        text("UPDATE inspection_points SET last_inspected = '2025-09-01', schedule = 'monthly'")
    )
    assert row() == (D(2025, 10, 9), None)  # National Day holiday → 9 Oct
    db_conn.execute(text("UPDATE inspection_points SET last_inspected = '2026-12-10'"))
    assert row() == (None, None)  # 2027 is not declared: unknown, and refresh says why
    assert inspections.refresh_points(db_conn) == 1
    assert row()[0] is None and "2027" in (row()[1] or "")
    db_conn.execute(text("UPDATE inspection_points SET name = '改名'"))  # other columns: kept
    assert row()[0] is None and "2027" in (row()[1] or "")


def test_imported_points_are_due_at_once(town_url: str, sample_town) -> None:  # type: ignore[no-untyped-def]
    engine = store.make_engine(town_url)
    try:
        overlays.import_overlay(engine, sample_town.key_units, "key_units")
        report = overlays.import_overlay(engine, sample_town.inspection_points, "inspection_points")
        assert report.inserted > 0
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT schedule, coalesce(last_inspected, registered_on) AS basis, next_due "
                    "FROM inspection_points"
                )
            ).all()
            assert len(rows) == report.inserted
            assert [r.next_due for r in rows] == [_python(conn, r.schedule, r.basis) for r in rows]
            # the sample's dates all fall in declared years: every point has its due day
            assert all(r.next_due is not None for r in rows)
    finally:
        engine.dispose()
