"""The working calendar: deadline arithmetic on the seeded database calendar, checked
against ``chinesecalendar``'s own answers, its edits, its cache and its guards."""

from __future__ import annotations

import time as clock
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar as cc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from geogrid.cases import calendar
from geogrid.cases.calendar import (
    CalendarUnknown,
    DayEntry,
    add_working_time,
    declare_year,
    working_time_between,
)
from geogrid.errors import Conflict, InvalidInput, NotFound

CST = ZoneInfo("Asia/Shanghai")
LAST = max(cc.holidays).year  # the last year the installed package knows


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CST)


def close(day: date) -> datetime:
    return datetime.combine(day, time(17, 30), tzinfo=CST)


def package_deadline(start: date, n: int) -> date:
    """The n-th working day after ``start`` by chinesecalendar's is_workday."""
    day = start
    while n:
        day += timedelta(days=1)
        n -= cc.is_workday(day)
    return day


# --------------------------------------------------------------------------- seeded data


def test_seeded_years_and_sources(db_conn: Connection) -> None:
    rows = db_conn.execute(text("SELECT year, source FROM calendar_years")).all()
    years = {r.year: r.source for r in rows}
    first = min(cc.holidays).year
    assert set(years) == set(range(first, LAST + 1))
    assert set(years.values()) == {calendar.package_source()}
    assert calendar.package_source().startswith("chinesecalendar ")
    assert calendar.seed(db_conn) == []  # nothing new: idempotent
    spring = db_conn.execute(
        text("SELECT name FROM calendar_days WHERE day = '2026-02-17'")
    ).scalar_one()
    assert spring == "春节"


def test_every_known_day_agrees_with_the_package(db_conn: Connection) -> None:
    cal = calendar.load_calendar(db_conn)
    day, end = date(min(cc.holidays).year, 1, 1), date(LAST, 12, 31)
    disagree = []
    while day <= end:
        if cal.is_workday(day) != cc.is_workday(day):
            disagree.append(day)
        day += timedelta(days=1)
    assert disagree == []


# --------------------------------------------------------------------------- days


def test_working_days_skip_weekends(db_conn: Connection) -> None:
    friday = at(2025, 11, 28, 16)
    assert add_working_time(db_conn, friday, 1, "days") == close(date(2025, 12, 1))
    assert add_working_time(db_conn, friday, 3, "days") == close(date(2025, 12, 3))
    saturday = at(2025, 11, 29)
    assert add_working_time(db_conn, saturday, 1, "days") == close(date(2025, 12, 1))
    # 0 days: within the day, or within the next working day
    assert add_working_time(db_conn, friday, 0, "days") == close(date(2025, 11, 28))
    evening = at(2025, 11, 28, 18)
    assert add_working_time(db_conn, evening, 0, "days") == close(date(2025, 12, 1))
    assert add_working_time(db_conn, saturday, 0, "days") == close(date(2025, 12, 1))


@pytest.mark.parametrize(
    ("first", "last", "makeup"),
    [
        (date(2025, 1, 15), date(2025, 2, 20), [date(2025, 1, 26), date(2025, 2, 8)]),
        (date(2026, 2, 5), date(2026, 3, 5), [date(2026, 2, 14), date(2026, 2, 28)]),
    ],
    ids=["spring-2025", "spring-2026"],
)
def test_spring_festival_and_its_makeup_days(
    db_conn: Connection, first: date, last: date, makeup: list[date]
) -> None:
    for day in makeup:  # the make-up Saturdays/Sundays count
        assert day.weekday() >= 5 and calendar.is_working_day(db_conn, day)
    wrong = []
    day = first
    while day <= last:
        for n in (1, 2, 3, 5, 8, 10, 15):
            got = add_working_time(db_conn, at(day.year, day.month, day.day, 9), n, "days")
            if got != close(package_deadline(day, n)):
                wrong.append((day, n, got))
        day += timedelta(days=1)
    assert wrong == []
    # the eve of the holiday: one working day later is after the whole festival
    assert add_working_time(db_conn, at(2026, 2, 13), 1, "days") == close(date(2026, 2, 14))
    assert add_working_time(db_conn, at(2026, 2, 14), 1, "days") == close(date(2026, 2, 24))


def test_across_the_year_boundary(db_conn: Connection) -> None:
    # 12-31 (1), 01-01..03 New Year, 01-04 a make-up Sunday (2), 01-05 (3), 06 (4), 07 (5)
    assert add_working_time(db_conn, at(2025, 12, 30), 5, "days") == close(date(2026, 1, 7))
    assert working_time_between(db_conn, at(2025, 12, 30), at(2026, 1, 7), "days") == 5


# --------------------------------------------------------------------------- hours


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (at(2025, 12, 1, 9), 0, at(2025, 12, 1, 9)),
        (at(2025, 12, 1, 9), 3, at(2025, 12, 1, 12)),  # the earliest instant, not 14:00
        (at(2025, 12, 1, 11), 2, at(2025, 12, 1, 15)),  # across lunch
        (at(2025, 12, 1, 12, 30), 1, at(2025, 12, 1, 15)),  # starting in lunch
        (at(2025, 12, 1, 17), 2, at(2025, 12, 2, 10)),  # across the evening
        (at(2025, 12, 1, 20), 1, at(2025, 12, 2, 9, 30)),  # starting in the evening
        (at(2025, 12, 1, 7), 1, at(2025, 12, 1, 9, 30)),  # starting before the office opens
        (at(2025, 11, 28, 17), 1, at(2025, 12, 1, 9)),  # across a weekend
        (at(2025, 12, 1, 8, 30), 7, at(2025, 12, 1, 17, 30)),  # one whole office day
        (at(2025, 12, 1, 8, 30), 24, at(2025, 12, 4, 11, 30)),  # 7 + 7 + 7 + 3
        (at(2026, 2, 13, 16), 4, at(2026, 2, 14, 11)),  # into the make-up Saturday
        (at(2026, 2, 14, 17), 1, at(2026, 2, 24, 9)),  # over the whole Spring Festival
    ],
)
def test_working_hours(db_conn: Connection, start: datetime, n: int, expected: datetime) -> None:
    got = add_working_time(db_conn, start, n, "hours")
    assert got == expected and got.tzinfo is not None
    assert working_time_between(db_conn, start, got, "hours") == n


def test_other_time_zones_are_converted(db_conn: Connection) -> None:
    utc = datetime(2025, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    got = add_working_time(db_conn, utc, 3, "hours")
    assert got == at(2025, 12, 1, 12) and got.utcoffset() == timedelta(hours=8)
    # Friday 20:00 UTC is the make-up Saturday 04:00 in Shanghai
    assert calendar.is_working_day(db_conn, datetime(2026, 2, 13, 20, tzinfo=UTC))


def test_working_time_between(db_conn: Connection) -> None:
    a, b = at(2025, 12, 1, 9), at(2025, 12, 2, 9)
    assert working_time_between(db_conn, a, b, "hours") == 7
    assert working_time_between(db_conn, b, a, "hours") == -7
    assert working_time_between(db_conn, a, a, "days") == 0
    # Saturday to Sunday: nothing; Friday evening to Monday morning: half an hour
    assert working_time_between(db_conn, at(2025, 11, 29), at(2025, 11, 30), "hours") == 0
    assert working_time_between(db_conn, at(2025, 11, 28, 20), at(2025, 12, 1, 9), "hours") == 0.5


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.datetimes(datetime(2005, 1, 1), datetime(2025, 6, 30), timezones=st.just(CST)),
    n=st.integers(0, 120),
    unit=st.sampled_from(["hours", "days"]),
)
def test_between_inverts_add(db_conn: Connection, start: datetime, n: int, unit: str) -> None:
    end = add_working_time(db_conn, start, n, unit)  # type: ignore[arg-type]
    assert end >= start
    if unit == "hours" or n > 0:
        assert working_time_between(db_conn, start, end, unit) == n  # type: ignore[arg-type]
    if unit == "days":
        assert cc.is_workday(end) and end.time() == time(17, 30)
        if n:
            assert end.date() == package_deadline(start.date(), n)


# --------------------------------------------------------------------------- unknown years


def test_past_the_last_known_year_is_refused(db_conn: Connection) -> None:
    late = at(LAST, 12, 24)
    assert add_working_time(db_conn, late, 1, "days").year == LAST
    cases: list[Callable[[], object]] = [
        lambda: add_working_time(db_conn, late, 30, "days"),
        lambda: add_working_time(db_conn, at(LAST, 12, 31, 16), 8, "hours"),
        lambda: add_working_time(db_conn, at(LAST + 1, 1, 5), 1, "days"),
        lambda: working_time_between(db_conn, late, at(LAST + 1, 1, 5), "days"),
    ]
    for call in cases:
        with pytest.raises(CalendarUnknown) as caught:
            call()
        assert caught.value.year == LAST + 1 and caught.value.detail == {"year": LAST + 1}
        message = str(caught.value)
        assert str(LAST + 1) in message and "declare" in message and "administrator" in message
        assert isinstance(caught.value, InvalidInput)
    with pytest.raises(CalendarUnknown, match="2003"):
        add_working_time(db_conn, at(2003, 12, 30), 1, "days")


def test_a_declared_year_then_works(db_conn: Connection) -> None:
    nxt = LAST + 1
    jan1 = date(nxt, 1, 1)
    declare_year(db_conn, nxt, [DayEntry(jan1, "holiday", "元旦")])
    assert not calendar.is_working_day(db_conn, jan1)
    got = add_working_time(db_conn, at(LAST, 12, 24), 30, "days")
    assert got.year == nxt
    # the first working day of the new year skips the declared holiday
    first_working = jan1 + timedelta(days=1)
    while first_working.weekday() >= 5:
        first_working += timedelta(days=1)
    assert add_working_time(db_conn, at(LAST, 12, 31), 1, "days") == close(first_working)
    source = db_conn.execute(
        text("SELECT source FROM calendar_years WHERE year = :y"), {"y": nxt}
    ).scalar_one()
    assert source == "admin"
    # a gap year is refused by name even when a later year is known
    declare_year(db_conn, nxt + 2, [DayEntry(date(nxt + 2, 1, 1), "holiday", "元旦")])
    with pytest.raises(CalendarUnknown, match=str(nxt + 1)):
        add_working_time(db_conn, at(nxt, 12, 20), 30, "days")


# --------------------------------------------------------------------------- edits and cache


def test_edits_invalidate_the_cache(db_conn: Connection) -> None:
    monday = at(2025, 12, 1)
    assert add_working_time(db_conn, monday, 1, "days") == close(date(2025, 12, 2))
    before = calendar.load_calendar(db_conn).version
    calendar.set_day(db_conn, DayEntry(date(2025, 12, 2), "holiday", "测试假日"))
    assert calendar.load_calendar(db_conn).version != before
    assert add_working_time(db_conn, monday, 1, "days") == close(date(2025, 12, 3))
    calendar.set_day(db_conn, DayEntry(date(2025, 12, 6), "workday", "测试调休"))
    assert add_working_time(db_conn, monday, 2, "days") == close(date(2025, 12, 4))
    assert add_working_time(db_conn, at(2025, 12, 5), 1, "days") == close(date(2025, 12, 6))
    calendar.remove_day(db_conn, date(2025, 12, 2))
    assert add_working_time(db_conn, monday, 1, "days") == close(date(2025, 12, 2))
    calendar.set_office_hours(db_conn, [(time(9), time(12)), (time(13), time(18))])
    assert add_working_time(db_conn, at(2025, 12, 1, 11), 2, "hours") == at(2025, 12, 1, 14)
    assert add_working_time(db_conn, monday, 1, "days") == datetime(2025, 12, 2, 18, tzinfo=CST)


def test_an_edit_from_another_connection_is_seen_in_the_next_transaction(engine: Engine) -> None:
    with engine.connect() as reader, engine.connect() as writer:
        assert add_working_time(reader, at(2025, 12, 1), 1, "days") == close(date(2025, 12, 2))
        reader.commit()
        writer.execute(  # plain SQL, not the service: the trigger bumps the version
            text(
                "INSERT INTO calendar_days (day, year, kind, name, source) "
                "VALUES ('2025-12-02', 2025, 'holiday', 'x', 'admin')"
            )
        )
        writer.commit()
        assert add_working_time(reader, at(2025, 12, 1), 1, "days") == close(date(2025, 12, 3))


def test_fast_after_warm_up(db_conn: Connection) -> None:
    add_working_time(db_conn, at(2025, 3, 3), 5, "days")
    runs = 2000
    t0 = clock.perf_counter()
    for i in range(runs):
        add_working_time(db_conn, at(2025, 3, 3) + timedelta(hours=i), 5 + i % 20, "days")
        add_working_time(db_conn, at(2025, 3, 3) + timedelta(hours=i), 4 + i % 40, "hours")
    per_call = (clock.perf_counter() - t0) / (2 * runs)
    assert per_call < 0.001, f"{per_call * 1e6:.0f} µs per call"


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    ("start", "amount", "unit", "why"),
    [
        (datetime(2025, 12, 1, 9), 1, "days", "time zone"),
        ("2025-12-01", 1, "days", "must be a datetime"),
        (at(2025, 12, 1), 1, "weeks", "unit must be"),
        (at(2025, 12, 1), -1, "days", "between 0 and"),
        (at(2025, 12, 1), 1_000_000, "hours", "between 0 and"),
        (at(2025, 12, 1), 1.5, "days", "whole number"),
        (at(2025, 12, 1), True, "days", "whole number"),
    ],
)
def test_bad_arguments_are_refused(
    db_conn: Connection, start: object, amount: object, unit: str, why: str
) -> None:
    with pytest.raises(InvalidInput, match=why):
        add_working_time(db_conn, start, amount, unit)  # type: ignore[arg-type]


MON, Y99 = date(2025, 12, 8), date(2099, 1, 1)
set_day, remove_day, hours = calendar.set_day, calendar.remove_day, calendar.set_office_hours


def hol(day: date, name: str | None = "x") -> DayEntry:
    return DayEntry(day, "holiday", name)


@pytest.mark.parametrize(
    ("call", "error", "why"),
    [
        (lambda c: set_day(c, hol(MON, None)), InvalidInput, "name"),
        (lambda c: set_day(c, hol(MON, "  ")), InvalidInput, "name"),
        (lambda c: set_day(c, hol(MON, "长" * 41)), InvalidInput, "longer"),
        (lambda c: set_day(c, DayEntry(MON, "workday", "x")), InvalidInput, "Saturday"),
        (lambda c: set_day(c, DayEntry(MON, "leave", "x")), InvalidInput, "kind"),  # type: ignore[arg-type]
        (lambda c: set_day(c, hol(Y99)), NotFound, "declare"),
        (lambda c: remove_day(c, MON), NotFound, "neither"),
        (lambda c: remove_day(c, Y99), NotFound, "not in the working"),
        (lambda c: declare_year(c, 1900, [hol(date(1900, 1, 1))]), InvalidInput, "year must"),
        (lambda c: declare_year(c, 2099, []), InvalidInput, "no public holiday"),
        (lambda c: declare_year(c, 2099, [hol(date(2098, 12, 31))]), InvalidInput, "not in 2099"),
        (lambda c: declare_year(c, 2099, [hol(Y99)] * 2), InvalidInput, "twice"),
        (lambda c: declare_year(c, 2025, [hol(date(2025, 1, 1))]), Conflict, "known already"),
        (lambda c: hours(c, []), InvalidInput, "between 1 and"),
        (lambda c: hours(c, [(time(12), time(9))]), InvalidInput, "end after"),
        (lambda c: hours(c, [(time(9), time(12)), (time(11), time(13))]), InvalidInput, "overlap"),
        (lambda c: hours(c, [(time(9), time(12))], "Mars/Base"), InvalidInput, "time zone"),
        (lambda c: hours(c, [(time(h), time(h, 30)) for h in range(7)]), InvalidInput, "between"),
        (lambda c: calendar.year_view(c, 10_000), InvalidInput, "year must"),
    ],
)
def test_admin_edits_refuse_bad_input(
    db_conn: Connection, call: Callable[[Connection], object], error: type[Exception], why: str
) -> None:
    with pytest.raises(error, match=why):
        call(db_conn)


def test_declare_replaces_only_when_asked(db_conn: Connection) -> None:
    days = [DayEntry(date(2025, 1, 1), "holiday", "元旦"), DayEntry(date(2025, 1, 4), "workday")]
    info = declare_year(db_conn, 2025, days, replace=True, declared_by="tester")
    assert (info.year, info.source, info.declared_by) == (2025, "admin", "tester")
    view = calendar.year_view(db_conn, 2025)
    assert view.known and view.source == "admin"
    assert [(d.day, d.kind) for d in view.days] == [(date(2025, 1, 1), "holiday"),
                                                    (date(2025, 1, 4), "workday")]  # fmt: skip
    assert not calendar.year_view(db_conn, 2099).known


def test_the_database_repeats_the_rules(db_conn: Connection) -> None:
    for sql in (
        "INSERT INTO calendar_days VALUES ('2025-12-08', 2025, 'workday', NULL, 'admin')",
        "INSERT INTO calendar_days VALUES ('2025-12-08', 2025, 'holiday', NULL, 'admin')",
        "INSERT INTO calendar_days VALUES ('2099-12-08', 2099, 'holiday', 'x', 'admin')",
        "INSERT INTO calendar_days VALUES ('2025-12-08', 2024, 'holiday', 'x', 'admin')",
        "INSERT INTO calendar_settings (id) VALUES (2)",
        "INSERT INTO calendar_office_hours VALUES (9, '12:00', '09:00')",
    ):
        nested = db_conn.begin_nested()
        with pytest.raises(Exception, match="calendar_"):
            db_conn.execute(text(sql))
        nested.rollback()
