"""Key units are due (or overdue) from the moment they are registered or imported (0030).

A statement trigger on ``key_units`` gives every new unit its two recurring dues
(maintenance every 6 months, self-assessment every 3) with 0025's SQL due-day function; the
days must equal :func:`geogrid.fieldwork.filings.due_date` (Python) over the calendar's
awkward stretches, and a year the calendar does not know must stay empty for
:func:`~geogrid.fieldwork.filings.refresh_dues` to name — never guessed.
"""

from __future__ import annotations

import datetime as dt
import importlib

from sqlalchemy import Connection, text

from geogrid import overlays, store
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.cases.calendar import CalendarUnknown
from geogrid.fieldwork import filings, units

D = dt.date
RECURRING = ("maintenance", "self_assessment")


def _days(first: D, n: int) -> list[D]:
    return [first + dt.timedelta(days=i) for i in range(n)]


BASES = (
    _days(D(2025, 3, 25), 45)  # six months on: National Day 2025 and its make-up days
    + _days(D(2025, 7, 20), 20)  # six months on: Spring Festival 2026
    + _days(D(2025, 11, 10), 25)  # three months on: Spring Festival 2026; month ends clipped
    + _days(D(2026, 8, 25), 10)  # six months on: 2027, which the calendar does not know
)


def _python(conn: Connection, kind: str, basis: D) -> D | None:
    try:
        return filings.due_date(conn, kind, basis)
    except CalendarUnknown:
        return None


def _insert_units(conn: Connection, days: list[D]) -> None:
    conn.execute(
        text(
            "INSERT INTO key_units (unit_no, name, unit_type, risk_level, geom, registered_on) "
            "SELECT 'DUE-' || i, '单位' || i, '九小场所', 2, "
            "ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326), d "
            "FROM unnest(CAST(:days AS date[])) WITH ORDINALITY AS t(d, i)"
        ),
        {"days": days},
    )


def _dues(conn: Connection) -> dict[tuple[D, str], tuple[D | None, int | None]]:
    rows = conn.execute(
        text(
            "SELECT u.registered_on, d.kind, d.due_date, d.due_cal FROM key_unit_dues d "
            "JOIN key_units u ON u.id = d.unit_id WHERE u.unit_no LIKE 'DUE-%'"
        )
    ).all()
    return {(r.registered_on, r.kind): (r.due_date, r.due_cal) for r in rows}


def test_registered_units_get_their_dues_from_the_database(db_conn) -> None:  # type: ignore[no-untyped-def]
    _insert_units(db_conn, list(BASES))
    dues = _dues(db_conn)
    assert set(dues) == {(b, k) for b in BASES for k in RECURRING}  # one per unit and kind
    expected = {(b, k): _python(db_conn, k, b) for b in BASES for k in RECURRING}
    assert {key: due for key, (due, _) in dues.items()} == expected
    assert any(v is None for v in expected.values())  # the undeclared year is covered
    # a computed due carries the calendar's version; an unknown one carries none
    assert all((cal is None) == (due is None) for due, cal in dues.values())
    # Python's refresh has only the unknown years left, and names the year
    unknown = sum(1 for v in expected.values() if v is None)
    assert filings.refresh_dues(db_conn) == unknown
    problems = db_conn.execute(
        text(
            "SELECT DISTINCT d.due_problem FROM key_unit_dues d JOIN key_units u "
            "ON u.id = d.unit_id WHERE u.unit_no LIKE 'DUE-%' AND d.due_date IS NULL"
        )
    ).scalars()
    assert all("2027" in (p or "") for p in problems)


def test_a_filing_already_due_is_not_overwritten(db_conn) -> None:  # type: ignore[no-untyped-def]
    # the service computes a unit's dues itself when it registers it (start_dues); a unit
    # inserted again with the trigger firing must keep what is there (ON CONFLICT DO NOTHING)
    _insert_units(db_conn, [D(2025, 11, 30)])
    unit = db_conn.execute(text("SELECT id FROM key_units WHERE unit_no = 'DUE-1'")).scalar_one()
    db_conn.execute(
        text("UPDATE key_unit_dues SET due_date = '2030-01-01' WHERE unit_id = :u"), {"u": unit}
    )
    db_conn.execute(text("INSERT INTO key_unit_dues (unit_id, kind) SELECT :u, 'staff_change'"),
                    {"u": unit})  # fmt: skip
    dues = {k: d for (_, k), (d, _) in _dues(db_conn).items()}
    assert dues == {"maintenance": D(2030, 1, 1), "self_assessment": D(2030, 1, 1),
                    "staff_change": None}  # fmt: skip


def test_imported_units_are_due_at_once(town_url: str, sample_town) -> None:  # type: ignore[no-untyped-def]
    engine = store.make_engine(town_url)
    try:
        report = overlays.import_overlay(engine, sample_town.key_units, "key_units")
        assert report.inserted > 0
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT u.registered_on, d.kind, d.due_date FROM key_units u "
                    "LEFT JOIN key_unit_dues d ON d.unit_id = u.id"
                )
            ).all()
            # every imported unit has both recurring dues, with no key-unit call made
            assert len(rows) == 2 * report.inserted
            assert all(r.kind in RECURRING for r in rows)
            expected = [_python(conn, r.kind, r.registered_on) for r in rows]
            assert [r.due_date for r in rows] == expected
            # nothing left for the first call to do, except naming a year the calendar lacks
            # (units registered today are due in three months: maybe an undeclared year)
            assert filings.refresh_dues(conn) == expected.count(None)
    finally:
        engine.dispose()


BACKFILL = importlib.import_module("geogrid.migrations.versions.0031_fieldwork_dues_backfill")
ALL = Principal(0, "admin", Role.sysadmin, Scope("all"))


def _insert_pre_0030_units(conn: Connection, days: list[D]) -> None:
    """Units as they were before 0030: inserted with no trigger to give them dues."""
    conn.execute(text("ALTER TABLE key_units DISABLE TRIGGER trg_key_units_dues"))
    _insert_units(conn, days)
    conn.execute(text("ALTER TABLE key_units ENABLE TRIGGER trg_key_units_dues"))


def test_units_registered_before_0030_get_their_dues_from_0031(db_conn) -> None:  # type: ignore[no-untyped-def]
    _insert_pre_0030_units(db_conn, list(BASES))
    assert _dues(db_conn) == {}
    # a unit filed on by SQL before it had dues counts from its last filing of that kind
    filed = db_conn.execute(text("SELECT id FROM key_units WHERE unit_no = 'DUE-1'")).scalar_one()
    last = D(2025, 9, 15)
    db_conn.execute(
        text(
            "INSERT INTO key_unit_filings (unit_id, kind, event_date, by_name) "
            "VALUES (:u, 'maintenance', :d - 40, '张三'), (:u, 'maintenance', :d, '张三')"
        ),
        {"u": filed, "d": last},
    )
    db_conn.execute(text(BACKFILL.BACKFILL))
    dues = _dues(db_conn)
    assert set(dues) == {(b, k) for b in BASES for k in RECURRING}
    expected = {(b, k): _python(db_conn, k, b) for b in BASES for k in RECURRING}
    expected[(BASES[0], "maintenance")] = _python(db_conn, "maintenance", last)
    assert expected[(BASES[0], "maintenance")] != _python(db_conn, "maintenance", BASES[0])
    assert {key: due for key, (due, _) in dues.items()} == expected
    assert any(v is None for v in expected.values())  # the undeclared year stays empty
    assert all((cal is None) == (due is None) for due, cal in dues.values())
    # run again (a second upgrade after a downgrade): nothing added, nothing changed
    before = db_conn.execute(text("SELECT count(*), sum(xmin::text::bigint) FROM key_unit_dues"))
    db_conn.execute(text(BACKFILL.BACKFILL))
    after = db_conn.execute(text("SELECT count(*), sum(xmin::text::bigint) FROM key_unit_dues"))
    assert before.one() == after.one()


def test_key_unit_lists_write_no_dues(db_conn) -> None:  # type: ignore[no-untyped-def]
    known = [b for b in BASES if _python(db_conn, "maintenance", b) is not None
             and _python(db_conn, "self_assessment", b) is not None][:5]  # fmt: skip
    _insert_units(db_conn, [*known, D(2025, 4, 1)])
    orphan = db_conn.execute(
        text("SELECT max(id) FROM key_units WHERE unit_no LIKE 'DUE-%'")
    ).scalar_one()
    # a unit left without dues (as if 0031 had not run): the lists must not make them
    db_conn.execute(text("DELETE FROM key_unit_dues WHERE unit_id = :u"), {"u": orphan})

    def state() -> list[tuple[int, str, D | None, str]]:
        rows = db_conn.execute(
            text(
                "SELECT unit_id, kind, due_date, xmin::text AS x FROM key_unit_dues "
                "ORDER BY unit_id, kind"
            )
        ).all()
        return [tuple(r) for r in rows]

    before = state()
    for _ in range(2):
        listed = units.list_units(db_conn, principal=ALL, limit=500)
        assert filings.refresh_dues(db_conn) == 0
    assert state() == before  # the same rows, not rewritten (same xmin)
    by_id = {u.id: u for u in listed}
    assert by_id[orphan].dues == []  # the read path no longer inserts missing dues
    for u in listed:
        if u.unit_no.startswith("DUE-") and u.id != orphan:
            assert {d.kind: d.due_date for d in u.dues} == {
                k: _python(db_conn, k, u.registered_on) for k in RECURRING
            }
