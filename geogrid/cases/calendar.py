"""The working calendar and deadline arithmetic (限时办结).

The calendar lives in the database (migration 0015):

``calendar_years``
    the years the calendar knows, each with its source (``chinesecalendar 1.11.0`` when
    seeded from the package, ``admin`` when an administrator declared it from the State
    Council's notice, published each November);
``calendar_days``
    the days that differ from the default week: public holidays (``holiday``, with a name)
    and make-up working days (``workday``, 调休: a Saturday or Sunday worked);
``calendar_office_hours``, ``calendar_settings``
    the office hours (default 08:30–12:00 and 14:00–17:30), their time zone (default
    Asia/Shanghai) and a version number that triggers take from a sequence on every
    change (never reused, even after a rollback).

Counting rules, written once here:

* **days**: the start day is not counted (民法典 第二百零一条); ``n`` working days after a
  start end at the close of office hours of the ``n``-th working day after the start's
  local date. ``0`` days: the close of the start day if it is a working day not yet
  closed, else of the next working day.
* **hours**: only office hours of working days count; the result is the earliest instant
  by which ``n`` office hours have passed since the start.
* A computation that needs a year the calendar does not know raises
  :class:`CalendarUnknown`; nothing is guessed.

The calendar is read in one query and kept in the process, keyed by the database and the
calendar's version (:func:`load_calendar`): every connection of a server worker shares one
snapshot; within one transaction no query at all, in a new transaction one small query for
the version (none when the caller read it already, e.g. with the case row it locks), a
reload only after an edit (every edit, through these functions or plain SQL, takes a new
version from a sequence: triggers of migration 0015).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from threading import Lock
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, text

from geogrid.errors import Conflict, InvalidInput, NotFound

Unit = Literal["hours", "days"]
DayKind = Literal["holiday", "workday"]
UNITS: tuple[Unit, ...] = ("hours", "days")
KINDS: tuple[DayKind, ...] = ("holiday", "workday")

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_OFFICE_HOURS: tuple[tuple[time, time], ...] = (
    (time(8, 30), time(12, 0)),
    (time(14, 0), time(17, 30)),
)
#: Years a declaration may name (a sanity bound, not a guess about the future).
MIN_YEAR, MAX_YEAR = 1990, 2200
#: Largest amounts accepted (about ten years).
MAX_AMOUNT: dict[Unit, int] = {"days": 2_500, "hours": 20_000}
MAX_PERIODS = 6
MAX_NAME = 40

_US = 1_000_000  # microseconds per second
_CACHE_KEY = "geogrid.calendar"


class CalendarUnknown(InvalidInput):
    """A deadline would need a year the working calendar does not know."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"the working calendar does not know {year}: a system administrator must declare "
            f"{year}'s public holidays and make-up working days from the State Council's "
            f"notice (`geogrid calendar declare {year} FILE` or POST /api/calendar/years); "
            "deadlines are never guessed (工作日历缺少该年度, 请管理员录入国务院放假安排)",
            detail={"year": year},
        )
        self.year = year


@dataclass(frozen=True)
class Calendar:
    """An immutable snapshot of the working calendar, indexed for fast arithmetic.

    ``cum[i]`` is the number of working days among the ``i`` days from ``first``; days of
    years the calendar does not know count as not working (and any result that crosses
    such a year is refused).
    """

    version: int
    zone: ZoneInfo
    periods: tuple[tuple[int, int], ...]  # office periods, microseconds since midnight
    years: frozenset[int]
    holidays: frozenset[date]
    workdays: frozenset[date]
    first: int  # ordinal of 1 January of the first known year
    cum: tuple[int, ...]

    @property
    def day_us(self) -> int:
        """Office microseconds in one working day."""
        return sum(e - s for s, e in self.periods)

    def is_workday(self, day: date) -> bool:
        """Working day? Raises :class:`CalendarUnknown` for a year the calendar lacks."""
        if isinstance(day, datetime):
            day = self.local(day, "day").date()
        if day.year not in self.years:
            raise CalendarUnknown(day.year)
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    # -- indices ----------------------------------------------------------------------

    def _index(self, day: date) -> int:
        if day.year not in self.years:
            raise CalendarUnknown(day.year)
        return day.toordinal() - self.first

    def _day(self, index: int) -> date:
        return date.fromordinal(self.first + index)

    def _require(self, y0: int, y1: int) -> None:
        for year in range(y0, y1 + 1):
            if year not in self.years:
                raise CalendarUnknown(year)

    def _working_on(self, index: int) -> bool:
        return self.cum[index + 1] > self.cum[index]

    def _nth_after(self, index: int, n: int) -> int:
        """Index of the ``n``-th working day after day ``index``."""
        target = self.cum[index + 1] + n
        start_year = self._day(index).year
        if target > self.cum[-1]:
            self._require(start_year, max(self.years) + 1)
        found = bisect_left(self.cum, target) - 1
        self._require(start_year, self._day(found).year)
        return found

    # -- arithmetic -------------------------------------------------------------------

    def local(self, moment: datetime, what: str = "start") -> datetime:
        """``moment`` in the calendar's time zone (naive datetimes are refused)."""
        if not isinstance(moment, datetime):
            raise InvalidInput(f"{what} must be a datetime, not {type(moment).__name__}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidInput(f"{what} must carry a time zone (e.g. +08:00): {moment}")
        return moment.astimezone(self.zone)

    def at(self, day: date, us: int) -> datetime:
        """The instant ``us`` microseconds after midnight of ``day``, local time."""
        return datetime.combine(day, time(0), tzinfo=self.zone) + timedelta(microseconds=us)

    def office_between(self, x: int, y: int) -> int:
        """Office microseconds between two times of one working day."""
        return sum(max(0, min(e, y) - max(s, x)) for s, e in self.periods)

    def _instant(self, tod: int, amount: int) -> int:
        """Time of day once ``amount`` office microseconds have passed after ``tod``."""
        for s, e in self.periods:
            if e <= tod:
                continue
            begin = max(s, tod)
            if amount <= e - begin:
                return begin + amount
            amount -= e - begin
        raise AssertionError("amount exceeds the day's office time")  # pragma: no cover

    def add(self, start: datetime, amount: int, unit: Unit) -> datetime:
        """See :func:`add_working_time`."""
        local = self.local(start)
        day = local.date()
        i = self._index(day)
        if unit == "days":
            if amount == 0 and self._working_on(i) and _tod(local) < self.periods[-1][1]:
                j = i
            else:
                j = self._nth_after(i, max(amount, 1))
            return self.at(self._day(j), self.periods[-1][1])
        need = amount * 3600 * _US
        if need == 0:
            return local
        tod = _tod(local)
        today = self.office_between(tod, 86_400 * _US) if self._working_on(i) else 0
        if need <= today:
            return self.at(day, self._instant(tod, need))
        need -= today
        per_day = self.day_us
        k = -(-need // per_day)  # whole office days begun
        j = self._nth_after(i, k)
        return self.at(self._day(j), self._instant(0, need - (k - 1) * per_day))

    def between(self, a: datetime, b: datetime, unit: Unit) -> float:
        """See :func:`working_time_between`."""
        la, lb = self.local(a, "a"), self.local(b, "b")
        if lb < la:
            return -self.between(b, a, unit)
        ia, ib = self._index(la.date()), self._index(lb.date())
        self._require(la.year, lb.year)
        if unit == "days":
            return float(self.cum[ib + 1] - self.cum[ia + 1])
        ta, tb = _tod(la), _tod(lb)
        if ia == ib:
            us = self.office_between(ta, tb) if self._working_on(ia) else 0
        else:
            us = self.office_between(ta, 86_400 * _US) if self._working_on(ia) else 0
            us += (self.cum[ib] - self.cum[ia + 1]) * self.day_us
            us += self.office_between(0, tb) if self._working_on(ib) else 0
        return us / (3600 * _US)


def _tod(moment: datetime) -> int:
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * _US + moment.microsecond


def _us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US + t.microsecond


def _time_of(us: int) -> time:
    seconds, micro = divmod(us, _US)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60, micro)


# --------------------------------------------------------------------------- loading

_VERSION_SQL = text("SELECT version FROM calendar_settings WHERE id = 1")
_LOAD_SQL = text(
    """
    SELECT s.version, s.timezone,
           ARRAY(SELECT ARRAY[extract(epoch FROM o.starts), extract(epoch FROM o.ends)]
                 FROM calendar_office_hours o ORDER BY o.starts) AS periods,
           ARRAY(SELECT y.year FROM calendar_years y ORDER BY 1) AS years,
           ARRAY(SELECT d.day FROM calendar_days d WHERE d.kind = 'holiday') AS holidays,
           ARRAY(SELECT d.day FROM calendar_days d WHERE d.kind = 'workday') AS workdays
    FROM calendar_settings s WHERE s.id = 1
    """
)


def build_calendar(
    *,
    version: int,
    timezone: str,
    periods: Sequence[tuple[time, time]],
    years: Iterable[int],
    holidays: Iterable[date],
    workdays: Iterable[date],
) -> Calendar:
    """Index a calendar (what :func:`load_calendar` does with the database's rows)."""
    known = frozenset(years)
    hol, work = frozenset(holidays), frozenset(workdays)
    first = date(min(known), 1, 1).toordinal() if known else date(MIN_YEAR, 1, 1).toordinal()
    last = date(max(known), 12, 31).toordinal() if known else first - 1
    cum = [0]
    for ordinal in range(first, last + 1):
        d = date.fromordinal(ordinal)
        working = d.year in known and (d in work or (d.weekday() < 5 and d not in hol))
        cum.append(cum[-1] + working)
    return Calendar(
        version=version,
        zone=ZoneInfo(timezone),
        periods=tuple((_us(s), _us(e)) for s, e in periods),
        years=known,
        holidays=hol,
        workdays=work,
        first=first,
        cum=tuple(cum),
    )


#: Calendars by (database, version), shared by every connection of the process; a few
#: entries at most (older versions are dropped when a newer one is loaded).
_SNAPSHOTS: dict[tuple[Any, int], Calendar] = {}
_SNAPSHOTS_LOCK = Lock()
MAX_SNAPSHOTS = 8
#: Which database a connection talks to (cluster start time and port, database name): the
#: version comes from a sequence of that database only.
_DB_KEY_SQL = text(
    "SELECT pg_postmaster_start_time(), inet_server_addr(), inet_server_port(), current_database()"
)
_DB_KEY = "geogrid.calendar.db"


def _db_key(conn: Connection) -> Any:
    """The database of ``conn`` (read once per physical connection)."""
    key = conn.info.get(_DB_KEY)
    if key is None:
        key = conn.info[_DB_KEY] = tuple(conn.execute(_DB_KEY_SQL).one())
    return key


def calendar_version(conn: Connection) -> int:
    """The calendar's current version (one small query)."""
    version = conn.execute(_VERSION_SQL).scalar_one_or_none()
    if version is None:
        raise InvalidInput("the working calendar is missing: run `geogrid db upgrade`")
    return int(version)


def load_calendar(conn: Connection, version: int | None = None) -> Calendar:
    """The calendar, cached in the process by database and version.

    Within one transaction the snapshot it used is used again without a query; a new
    transaction reads the version (one small query, or none when ``version`` gives the
    value the caller read in this transaction) and reloads only when the calendar was
    edited since (its version changed). The snapshot is shared by every connection of
    the process (server workers: one load per edit, not one per pooled connection).
    """
    cached: tuple[Calendar, Any] | None = conn.info.get(_CACHE_KEY)
    tx = conn.get_transaction()
    if (
        cached is not None
        and tx is not None
        and cached[1] is tx
        and (version is None or cached[0].version == version)
    ):
        return cached[0]
    if version is None:
        version = calendar_version(conn)
    key = (_db_key(conn), version)
    cal = _SNAPSHOTS.get(key)
    if cal is None:
        row = conn.execute(_LOAD_SQL).one()
        cal = build_calendar(
            version=row.version,
            timezone=row.timezone,
            periods=[(_time_of(int(s * _US)), _time_of(int(e * _US))) for s, e in row.periods],
            years=row.years,
            holidays=row.holidays,
            workdays=row.workdays,
        )
        with _SNAPSHOTS_LOCK:
            for old in [k for k in _SNAPSHOTS if k[0] == key[0] and k[1] < cal.version]:
                del _SNAPSHOTS[old]
            _SNAPSHOTS[(key[0], cal.version)] = cal
            while len(_SNAPSHOTS) > MAX_SNAPSHOTS:  # versions of rolled-back edits, say
                del _SNAPSHOTS[next(iter(_SNAPSHOTS))]
    conn.info[_CACHE_KEY] = (cal, conn.get_transaction())
    return cal


def invalidate(conn: Connection) -> None:
    """Forget the snapshot ``conn``'s transaction used (edits call it: the edit's own
    transaction then reads the version again, which the triggers moved)."""
    conn.info.pop(_CACHE_KEY, None)


# --------------------------------------------------------------------------- arithmetic


def _check_amount(amount: int, unit: str) -> Unit:
    if unit not in UNITS:
        raise InvalidInput(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInput(f"amount must be a whole number of {unit}, not {amount!r}")
    checked: Unit = "hours" if unit == "hours" else "days"
    if not 0 <= amount <= MAX_AMOUNT[checked]:
        raise InvalidInput(f"amount must be between 0 and {MAX_AMOUNT[checked]} {unit}")
    return checked


def add_working_time(conn: Connection, start: datetime, amount: int, unit: Unit) -> datetime:
    """The deadline ``amount`` working hours or days after ``start``.

    Parameters
    ----------
    conn
        A connection to the store (the calendar is cached on it).
    start
        A timezone-aware moment (naive datetimes are refused).
    amount
        Whole hours or days, ``0 <= amount <= MAX_AMOUNT[unit]``.
    unit
        ``"hours"``: office hours of working days; ``"days"``: working days, the start
        day not counted, the deadline at the close of office hours.

    Returns
    -------
    datetime
        In the calendar's time zone (Asia/Shanghai unless configured otherwise).

    Raises
    ------
    CalendarUnknown
        The deadline would fall in, or beyond, a year the calendar does not know.
    InvalidInput
        A naive ``start``, an unknown unit, a negative or too large amount.
    """
    checked = _check_amount(amount, unit)
    return load_calendar(conn).add(start, amount, checked)


def working_time_between(conn: Connection, a: datetime, b: datetime, unit: Unit) -> float:
    """Working time from ``a`` to ``b`` (negative when ``b`` is earlier).

    ``"hours"``: office hours between the two moments (fractional); ``"days"``: working
    days after ``a``'s date up to and including ``b``'s date, so that
    ``working_time_between(c, a, add_working_time(c, a, n, "days"), "days") == n`` and
    likewise for hours.

    Raises
    ------
    CalendarUnknown
        A year from ``a`` to ``b`` is unknown to the calendar.
    """
    if unit not in UNITS:
        raise InvalidInput(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    return load_calendar(conn).between(a, b, unit)


def is_working_day(conn: Connection, day: date) -> bool:
    """Is ``day`` a working day (weekday not a holiday, or a make-up day)?"""
    return load_calendar(conn).is_workday(day)


# --------------------------------------------------------------------------- administration


@dataclass(frozen=True)
class DayEntry:
    """A day that differs from the default week."""

    day: date
    kind: DayKind
    name: str | None = None
    source: str = "admin"


@dataclass(frozen=True)
class YearInfo:
    year: int
    source: str
    declared_at: datetime | None
    declared_by: str | None


@dataclass(frozen=True)
class YearView:
    """One year of the calendar with everything a page needs to show it."""

    year: int
    known: bool
    source: str | None
    timezone: str
    office_hours: list[tuple[time, time]]
    days: list[DayEntry]
    years: list[YearInfo]
    version: int


def check_entry(entry: DayEntry, year: int | None = None) -> DayEntry:
    """Validate one day (the database's CHECK constraints repeat these rules).

    >>> check_entry(DayEntry(date(2027, 2, 6), "workday", "春节")).kind
    'workday'
    >>> check_entry(DayEntry(date(2027, 2, 8), "workday", "春节"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: 2027-02-08 is a Monday: ... must be a Saturday or Sunday
    """
    if entry.kind not in KINDS:
        raise InvalidInput(f"{entry.day}: kind must be holiday or workday, not {entry.kind!r}")
    name = (entry.name or "").strip() or None
    if entry.kind == "holiday" and name is None:
        raise InvalidInput(f"{entry.day}: a public holiday needs its name (e.g. 春节)")
    if name is not None and len(name) > MAX_NAME:
        raise InvalidInput(f"{entry.day}: the name is longer than {MAX_NAME} characters")
    if entry.kind == "workday" and entry.day.weekday() < 5:
        raise InvalidInput(
            f"{entry.day} is a {entry.day.strftime('%A')}: a make-up working day (调休) must "
            "be a Saturday or Sunday"
        )
    if year is not None and entry.day.year != year:
        raise InvalidInput(f"{entry.day} is not in {year}")
    return DayEntry(entry.day, entry.kind, name, entry.source)


def _check_year(year: int) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidInput(f"year must be between {MIN_YEAR} and {MAX_YEAR}, not {year!r}")
    return year


def _known(conn: Connection, year: int) -> str | None:
    source: str | None = conn.execute(
        text("SELECT source FROM calendar_years WHERE year = :y"), {"y": year}
    ).scalar_one_or_none()
    return source


def year_view(conn: Connection, year: int) -> YearView:
    """The days of ``year`` that differ from the default week, office hours, known years."""
    _check_year(year)
    settings = conn.execute(
        text("SELECT timezone, version FROM calendar_settings WHERE id = 1")
    ).one()
    hours = conn.execute(
        text("SELECT starts, ends FROM calendar_office_hours ORDER BY starts")
    ).all()
    days = conn.execute(
        text(
            "SELECT day, kind, name, source FROM calendar_days "
            "WHERE day BETWEEN make_date(:y, 1, 1) AND make_date(:y, 12, 31) ORDER BY day"
        ),
        {"y": year},
    ).all()
    years = conn.execute(
        text("SELECT year, source, declared_at, declared_by FROM calendar_years ORDER BY year")
    ).all()
    infos = [YearInfo(*r) for r in years]
    source = next((y.source for y in infos if y.year == year), None)
    return YearView(
        year=year,
        known=source is not None,
        source=source,
        timezone=settings.timezone,
        office_hours=[(r.starts, r.ends) for r in hours],
        days=[DayEntry(*r) for r in days],
        years=infos,
        version=settings.version,
    )


_UPSERT_DAY = text(
    """
    INSERT INTO calendar_days (day, year, kind, name, source)
    VALUES (:day, :year, :kind, :name, :source)
    ON CONFLICT (day) DO UPDATE SET kind = excluded.kind, name = excluded.name,
        source = excluded.source, updated_at = now()
    """
)


def set_day(conn: Connection, entry: DayEntry) -> DayEntry:
    """Add or change one holiday or make-up working day of a known year."""
    entry = check_entry(entry)
    if _known(conn, entry.day.year) is None:
        raise NotFound(
            f"{entry.day.year} is not in the working calendar: declare the whole year first "
            "(POST /api/calendar/years or `geogrid calendar declare`)"
        )
    conn.execute(_UPSERT_DAY, _params(entry))
    invalidate(conn)
    return entry


def remove_day(conn: Connection, day: date) -> None:
    """Make ``day`` an ordinary day of the week again."""
    if _known(conn, day.year) is None:
        raise NotFound(f"{day.year} is not in the working calendar")
    gone = conn.execute(text("DELETE FROM calendar_days WHERE day = :d"), {"d": day}).rowcount
    if not gone:
        raise NotFound(f"{day} is neither a holiday nor a make-up working day")
    invalidate(conn)


def _params(entry: DayEntry) -> dict[str, Any]:
    return {"day": entry.day, "year": entry.day.year, "kind": entry.kind, "name": entry.name,
            "source": entry.source}  # fmt: skip


def declare_year(
    conn: Connection,
    year: int,
    days: Sequence[DayEntry],
    *,
    source: str = "admin",
    declared_by: str | None = None,
    replace: bool = False,
) -> YearInfo:
    """Declare every holiday and make-up working day of ``year`` (the State Council's
    notice): the year becomes known. A known year is replaced only with ``replace``.

    Raises
    ------
    InvalidInput
        A bad year or day, a day given twice, a day outside ``year``, no holiday at all.
    Conflict
        The year is known already and ``replace`` is false.
    """
    _check_year(year)
    checked = [check_entry(DayEntry(d.day, d.kind, d.name, source), year) for d in days]
    seen: set[date] = set()
    for entry in checked:
        if entry.day in seen:
            raise InvalidInput(f"{entry.day} is listed twice")
        seen.add(entry.day)
    if not any(e.kind == "holiday" for e in checked):
        raise InvalidInput(
            f"no public holiday listed for {year}: a year's notice always names its holidays"
        )
    existing = _known(conn, year)
    if existing is not None and not replace:
        raise Conflict(f"{year} is known already (source: {existing}); replace it explicitly")
    conn.execute(text("DELETE FROM calendar_years WHERE year = :y"), {"y": year})  # cascades
    row = conn.execute(
        text(
            "INSERT INTO calendar_years (year, source, declared_by) VALUES (:y, :s, :by) "
            "RETURNING year, source, declared_at, declared_by"
        ),
        {"y": year, "s": source, "by": declared_by},
    ).one()
    if checked:
        conn.execute(_UPSERT_DAY, [_params(e) for e in checked])
    invalidate(conn)
    return YearInfo(*row)


def set_office_hours(
    conn: Connection, periods: Sequence[tuple[time, time]], timezone: str | None = None
) -> None:
    """Replace the office hours (sorted, non-overlapping periods within one day) and
    optionally the time zone (an IANA name such as Asia/Shanghai)."""
    if not 1 <= len(periods) <= MAX_PERIODS:
        raise InvalidInput(f"give between 1 and {MAX_PERIODS} office periods")
    ordered = sorted(periods)
    for s, e in ordered:
        if s.tzinfo is not None or e.tzinfo is not None:
            raise InvalidInput("office hours are local times, without a time zone")
        if not s < e:
            raise InvalidInput(f"an office period must end after it starts: {s}–{e}")
    for (_, e1), (s2, _) in pairwise(ordered):
        if s2 < e1:
            raise InvalidInput(f"office periods overlap at {s2}")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {timezone!r} (e.g. Asia/Shanghai)") from None
        conn.execute(
            text(
                "UPDATE calendar_settings "
                "SET timezone = :tz, version = nextval('calendar_version_seq')"
            ),
            {"tz": timezone},
        )
    conn.execute(text("DELETE FROM calendar_office_hours"))
    conn.execute(
        text("INSERT INTO calendar_office_hours (position, starts, ends) VALUES (:p, :s, :e)"),
        [{"p": n, "s": s, "e": e} for n, (s, e) in enumerate(ordered, 1)],
    )
    invalidate(conn)


# --------------------------------------------------------------------------- seeding


def package_source() -> str:
    """``chinesecalendar <version>``: the source named for the years it provides."""
    from importlib.metadata import version

    return f"chinesecalendar {version('chinesecalendar')}"


def package_years() -> dict[int, list[DayEntry]]:
    """Every year the installed ``chinesecalendar`` knows, with its special days."""
    import chinese_calendar as cc
    from chinese_calendar.constants import Holiday

    chinese = {h.value: h.chinese for h in Holiday}
    by_year: dict[int, list[DayEntry]] = {}
    for table, kind in ((cc.holidays, "holiday"), (cc.workdays, "workday")):
        for day, name in table.items():
            by_year.setdefault(day.year, []).append(
                DayEntry(day, kind, chinese.get(name, name))  # type: ignore[arg-type]
            )
    return by_year


def seed(conn: Connection, *, replace: bool = False) -> list[int]:
    """Declare the years of the installed ``chinesecalendar`` that the calendar lacks
    (``replace``: also those seeded from an older package; an administrator's years are
    never overwritten). Returns the years written."""
    source = package_source()
    rows = conn.execute(text("SELECT year, source FROM calendar_years")).all()
    current = {r.year: r.source for r in rows}
    written = []
    for year, days in sorted(package_years().items()):
        old = current.get(year)
        if old is None or (replace and old.startswith("chinesecalendar") and old != source):
            declare_year(conn, year, days, source=source, declared_by="seed", replace=True)
            written.append(year)
    return written
