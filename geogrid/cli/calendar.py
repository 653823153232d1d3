"""``geogrid calendar``: the working calendar (工作日历) — show it, seed it from the
``chinesecalendar`` package, edit days and office hours, declare a year from the State
Council's notice, preview a deadline. Every edit is written to the audit log as done by
``cli:<login>``.

A year file lists one day (or a range ``start..end``) per line, ``date,kind,name``:
``kind`` is ``holiday`` (or 休) or ``workday`` (or 班, a make-up Saturday or Sunday);
``#`` starts a comment; a header line is allowed::

    # 2027 (国务院办公厅通知)
    2027-01-01,holiday,元旦
    2027-02-06..2027-02-12,holiday,春节
    2027-02-14,workday,春节
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection

from geogrid.access import audit
from geogrid.cases import calendar as cal
from geogrid.cli.access import _conn, cli_actor
from geogrid.errors import InvalidInput

console = Console()
calendar_app = typer.Typer(
    help="The working calendar: holidays, make-up working days (调休), office hours.",
    no_args_is_help=True,
)

KIND_WORDS = {"holiday": "holiday", "休": "holiday", "workday": "workday", "班": "workday"}
MAX_FILE_BYTES = 1_000_000
_PERIOD = re.compile(r"^(\d{1,2}:\d{2})-(\d{1,2}:\d{2})$")


def _log(conn: Connection, action: str, target: str, **detail: object) -> None:
    audit.record(conn, actor=cli_actor(), action=action, target_type="calendar",
                 target_ids=[target], detail=detail)  # fmt: skip


def _date(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{where}: {value.strip()!r} is not a date (YYYY-MM-DD)") from None


def parse_year_file(path: Path) -> list[cal.DayEntry]:
    """Read a year file (see the module's documentation) into day entries.

    Raises
    ------
    InvalidInput
        An unreadable file, or a line with a bad date, range or kind (named by number).
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    entries: list[cal.DayEntry] = []
    for number, row in enumerate(csv.reader(lines), 1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        where = f"{path.name} line {number}"
        if number == 1 and not cells[0][:1].isdigit():
            continue  # a header
        if len(cells) < 2 or len(cells) > 3:
            raise InvalidInput(f"{where}: expected date,kind,name")
        kind = KIND_WORDS.get(cells[1].lower())
        if kind is None:
            raise InvalidInput(f"{where}: kind must be holiday (休) or workday (班)")
        first_s, _, last_s = cells[0].partition("..")
        first = _date(first_s, where)
        last = _date(last_s, where) if last_s else first
        if not first <= last <= first + timedelta(days=31):
            raise InvalidInput(f"{where}: a range must run forwards, at most a month")
        name = cells[2] if len(cells) == 3 else None
        day = first
        while day <= last:
            entries.append(cal.DayEntry(day, kind, name))  # type: ignore[arg-type]
            day += timedelta(days=1)
    return entries


def _show(view: cal.YearView) -> None:
    state = f"known, source: {view.source}" if view.known else "NOT KNOWN: deadlines refused"
    table = Table(title=f"{view.year} ({state})")
    for column in ("date", "weekday", "kind", "name", "source"):
        table.add_column(column)
    for d in view.days:
        kind = "休 holiday" if d.kind == "holiday" else "班 workday"
        table.add_row(d.day.isoformat(), d.day.strftime("%a"), kind, d.name or "", d.source)
    console.print(table)
    hours = ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in view.office_hours)
    console.print(f"office hours {hours} ({view.timezone}); calendar version {view.version}")
    years = [y.year for y in view.years]
    if years:
        console.print(f"known years: {min(years)}-{max(years)} ({len(years)} years)")


@calendar_app.command("show")
def show(year: Annotated[int | None, typer.Argument(help="default: this year")] = None) -> None:
    """One year: its holidays and make-up working days, office hours, known years."""
    with _conn() as conn:
        zone = cal.load_calendar(conn).zone
        _show(cal.year_view(conn, year or datetime.now(zone).year))


@calendar_app.command("seed")
def seed(
    replace: Annotated[
        bool, typer.Option(help="also rewrite years seeded from an older package")
    ] = False,
) -> None:
    """Add the years the installed chinesecalendar package knows and the calendar lacks
    (years an administrator declared are never overwritten)."""
    with _conn() as conn:
        years = cal.seed(conn, replace=replace)
        if years:
            _log(conn, "calendar.seed", cal.package_source(), years=years)
    what = f"{min(years)}-{max(years)}" if years else "nothing new"
    console.print(f"{cal.package_source()}: {what}")


@calendar_app.command("set")
def set_day(
    day: Annotated[str, typer.Argument(help="YYYY-MM-DD")],
    kind: Annotated[str, typer.Argument(help="holiday (休) or workday (班)")],
    name: Annotated[str | None, typer.Argument(help="e.g. 春节")] = None,
) -> None:
    """Make a day of a known year a public holiday or a make-up working day."""
    checked = KIND_WORDS.get(kind.lower())
    if checked is None:
        raise InvalidInput("kind must be holiday (休) or workday (班)")
    with _conn() as conn:
        entry = cal.set_day(conn, cal.DayEntry(_date(day, "day"), checked, name))  # type: ignore[arg-type]
        _log(conn, "calendar.day.set", entry.day.isoformat(), kind=entry.kind, name=entry.name)
    console.print(f"{entry.day} is now a {entry.kind}")


@calendar_app.command("remove")
def remove_day(day: Annotated[str, typer.Argument(help="YYYY-MM-DD")]) -> None:
    """Make a day an ordinary day of the week again."""
    d = _date(day, "day")
    with _conn() as conn:
        cal.remove_day(conn, d)
        _log(conn, "calendar.day.remove", d.isoformat())
    console.print(f"{d} is an ordinary {d.strftime('%A')} again")


@calendar_app.command("declare")
def declare(
    year: Annotated[int, typer.Argument(help="the year the notice is for")],
    file: Annotated[
        Path, typer.Argument(help="date,kind,name per line", exists=True, dir_okay=False)
    ],
    replace: Annotated[bool, typer.Option(help="replace a year known already")] = False,
) -> None:
    """Declare a whole year from the State Council's notice (published each November):
    every holiday and make-up working day. Deadlines may then reach that year."""
    entries = parse_year_file(file)
    with _conn() as conn:
        cal.declare_year(conn, year, entries, replace=replace, declared_by=cli_actor().username)
        _log(conn, "calendar.year.declare", str(year), days=len(entries), file=file.name)
        _show(cal.year_view(conn, year))


@calendar_app.command("hours")
def office_hours(
    periods: Annotated[list[str], typer.Argument(help="e.g. 08:30-12:00 14:00-17:30")],
    timezone: Annotated[str | None, typer.Option(help="e.g. Asia/Shanghai")] = None,
) -> None:
    """Set the office hours working hours count in (and optionally the time zone)."""
    parsed = []
    for p in periods:
        match = _PERIOD.match(p.strip())
        try:
            if not match:
                raise ValueError
            parsed.append((time.fromisoformat(match[1].zfill(5)),
                           time.fromisoformat(match[2].zfill(5))))  # fmt: skip
        except ValueError:
            raise InvalidInput(f"{p!r} is not a period like 08:30-12:00") from None
    with _conn() as conn:
        cal.set_office_hours(conn, parsed, timezone)
        _log(conn, "calendar.hours.set", "office-hours", periods=periods, timezone=timezone)
    console.print("office hours: " + ", ".join(periods))


@calendar_app.command("deadline")
def deadline(
    start: Annotated[str, typer.Argument(help="e.g. 2026-11-30T09:00+08:00")],
    amount: Annotated[int, typer.Argument(help="whole hours or days")],
    unit: Annotated[str, typer.Argument(help="hours or days")],
) -> None:
    """The deadline AMOUNT working hours or days after START."""
    try:
        moment = datetime.fromisoformat(start)
    except ValueError:
        raise InvalidInput(f"{start!r} is not a date and time (ISO 8601, with +08:00)") from None
    with _conn() as conn:
        end = cal.add_working_time(conn, moment, amount, unit)  # type: ignore[arg-type]
    console.print(end.isoformat())


def register(app: typer.Typer) -> None:
    """``geogrid calendar ...``."""
    app.add_typer(calendar_app, name="calendar")
