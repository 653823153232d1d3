"""The working calendar over real HTTP and at the console: every role allowed or refused,
each admin route's bad inputs refused one rule at a time, a year declared and used."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import chinese_calendar as cc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.access.policy import POLICY, Role
from geogrid.cli.calendar import parse_year_file
from geogrid.errors import InvalidInput
from geogrid.settings import Settings
from tests.conftest import make_home

LAST = max(cc.holidays).year
NEXT = LAST + 1


@dataclass
class World:
    client: TestClient
    url: str
    engine: Engine


def _world(pg: Any) -> Iterator[World]:
    name = pg.create_database()
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        app = create_app(Settings(home=make_home("geogrid-calendar-")), database_url=url)
        with TestClient(app) as client:
            yield World(client, url, engine)
    finally:
        engine.dispose()
        pg.drop_database(name)


@pytest.fixture(scope="module")
def world(pg) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from _world(pg)


@pytest.fixture
def fresh(pg) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """A world of its own, for tests that change which years are known."""
    yield from _world(pg)


def admin(w: World, make_account: Any) -> dict[str, str]:
    headers: dict[str, str] = make_account(w.url, "sysadmin").headers(w.client)
    return headers


# --------------------------------------------------------------------------- the matrix

DAY = "2025-12-08"  # a Monday
HOURS = {"periods": [{"start": "08:30", "end": "12:00"}, {"start": "14:00", "end": "17:30"}]}
#: Every calendar route: (method, path) → (action, a request that succeeds when allowed).
ROUTES: dict[tuple[str, str], tuple[str, tuple[str, str, Any]]] = {
    ("GET", "/api/calendar"): ("calendar.read", ("GET", "/api/calendar?year=2026", None)),
    ("GET", "/api/calendar/deadline"): (
        "calendar.read",
        ("GET", "/api/calendar/deadline?start=2026-02-13T09:00%2B08:00&amount=1&unit=days", None),
    ),
    ("PUT", "/api/calendar/days/{day}"): (
        "calendar.manage",
        ("PUT", f"/api/calendar/days/{DAY}", {"kind": "holiday", "name": "矩阵"}),
    ),
    ("DELETE", "/api/calendar/days/{day}"): (
        "calendar.manage", ("DELETE", f"/api/calendar/days/{DAY}", None),
    ),
    ("POST", "/api/calendar/years"): (
        "calendar.manage",
        ("POST", "/api/calendar/years", {"year": 2199, "replace": True,
                                         "days": [{"date": "2199-01-01", "kind": "holiday",
                                                   "name": "元旦"}]}),
    ),
    ("PUT", "/api/calendar/office-hours"): (
        "calendar.manage", ("PUT", "/api/calendar/office-hours", HOURS),
    ),
}  # fmt: skip

SUBJECTS = [
    ("sysadmin", "all"), ("secadmin", "all"), ("auditor", "all"), ("planner", "420117105000"),
    ("town_leader", "420117105000"), ("village_leader", "420117105201"),
    ("grid_worker", "420117105201001"), ("viewer", "420117105000"),
]  # fmt: skip


def test_every_calendar_route_is_in_the_matrix(world: World) -> None:
    from api.auth import all_routes, policy_of

    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith("/api/calendar")
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == {k: action for k, (action, _) in ROUTES.items()}
    assert {r for r, _ in SUBJECTS} == {str(r) for r in Role}


def test_role_matrix(world: World, make_account: Any) -> None:
    """Every role × every calendar route: readers read, only the system administrator
    edits (others 403, audited), nobody anonymous (401)."""
    failures = []
    for role, scope in [*SUBJECTS, (None, None)]:
        h = make_account(world.url, role, scope).headers(world.client) if role else {}
        for (method, path), (action, (m, url, body)) in ROUTES.items():
            may = role is not None and role in POLICY[action].roles
            r = world.client.request(m, url, json=body, headers=h)
            want = {200, 201, 204} if may else ({403} if role else {401})
            if r.status_code not in want:
                failures.append(f"{role} {method} {path}: {r.status_code} {r.text[:200]}")
    assert failures == [], "\n".join(failures)
    with world.engine.connect() as conn:
        refused = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'calendar.manage' "
                 "AND outcome = 'refused'")
        ).scalar_one()  # fmt: skip
    assert refused == 4 * (len(SUBJECTS) - 1)


# --------------------------------------------------------------------------- reading


def test_read_a_year(world: World, make_account: Any) -> None:
    h = make_account(world.url, "grid_worker", "420117105201001").headers(world.client)
    body = world.client.get("/api/calendar?year=2026", headers=h).json()
    assert body["known"] and body["source"].startswith("chinesecalendar")
    assert body["timezone"] == "Asia/Shanghai"
    assert body["office_hours"][0] == {"start": "08:30", "end": "12:00"}
    days = {d["date"]: d for d in body["days"]}
    assert days["2026-02-17"]["kind"] == "holiday" and days["2026-02-17"]["name"] == "春节"
    assert days["2026-02-14"]["kind"] == "workday"
    assert {y["year"] for y in body["years"]} >= {2004, LAST}
    unknown = world.client.get(f"/api/calendar?year={NEXT + 5}", headers=h).json()
    assert unknown["known"] is False and unknown["days"] == []
    assert world.client.get("/api/calendar", headers=h).status_code == 200


def test_deadline_preview_and_refusal(world: World, make_account: Any) -> None:
    h = make_account(world.url, "viewer", "420117105000").headers(world.client)
    r = world.client.get(
        "/api/calendar/deadline",
        params={"start": "2025-12-30T10:00:00+08:00", "amount": 5, "unit": "days"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["deadline"] == "2026-01-07T17:30:00+08:00"
    r = world.client.get(
        "/api/calendar/deadline",
        params={"start": f"{LAST}-12-20T10:00:00+08:00", "amount": 30, "unit": "days"},
        headers=h,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "CalendarUnknown" and body["year"] == NEXT
    assert str(NEXT) in body["description"] and "declare" in body["description"]


# --------------------------------------------------------------------------- bad inputs

WEEKEND_2025 = "2025-12-06"
#: (method, url, body, status, code): one rule each.
BAD: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/api/calendar?year=1800", None, 400, "InvalidParameterValue"),
    ("GET", "/api/calendar?year=abc", None, 400, "InvalidParameterValue"),
    ("GET", "/api/calendar/deadline?start=2025-12-01T09:00&amount=1&unit=days", None, 400,
     "InvalidInput"),  # no time zone
    ("GET", "/api/calendar/deadline?start=2025-12-01T09:00Z&amount=1&unit=weeks", None, 400,
     "InvalidParameterValue"),
    ("GET", "/api/calendar/deadline?start=2025-12-01T09:00Z&amount=-1&unit=days", None, 400,
     "InvalidParameterValue"),
    ("GET", "/api/calendar/deadline?start=yesterday&amount=1&unit=days", None, 400,
     "InvalidParameterValue"),
    ("PUT", "/api/calendar/days/2025-13-01", {"kind": "holiday", "name": "x"}, 400,
     "InvalidParameterValue"),
    ("PUT", f"/api/calendar/days/{DAY}", {"kind": "leave", "name": "x"}, 400,
     "InvalidParameterValue"),
    ("PUT", f"/api/calendar/days/{DAY}", {"kind": "holiday"}, 400, "InvalidInput"),
    ("PUT", f"/api/calendar/days/{DAY}", {"kind": "holiday", "name": " "}, 400, "InvalidInput"),
    ("PUT", f"/api/calendar/days/{DAY}", {"kind": "holiday", "name": "长" * 41}, 400,
     "InvalidParameterValue"),
    ("PUT", f"/api/calendar/days/{DAY}", {"kind": "workday"}, 400, "InvalidInput"),
    ("PUT", f"/api/calendar/days/{DAY}", {"kind": "holiday", "name": "x", "x": 1}, 400,
     "InvalidParameterValue"),
    ("PUT", "/api/calendar/days/2198-01-01", {"kind": "holiday", "name": "x"}, 404, "NotFound"),
    ("DELETE", "/api/calendar/days/2025-12-09", None, 404, "NotFound"),  # an ordinary day
    ("DELETE", "/api/calendar/days/2198-01-01", None, 404, "NotFound"),
    ("DELETE", "/api/calendar/days/not-a-day", None, 400, "InvalidParameterValue"),
    ("POST", "/api/calendar/years", {"year": 1800, "days": []}, 400, "InvalidParameterValue"),
    ("POST", "/api/calendar/years", {"year": 2198, "days": []}, 400, "InvalidInput"),
    ("POST", "/api/calendar/years",
     {"year": 2198, "days": [{"date": "2197-12-31", "kind": "holiday", "name": "x"}]}, 400,
     "InvalidInput"),
    ("POST", "/api/calendar/years",
     {"year": 2198, "days": [{"date": "2198-01-01", "kind": "holiday", "name": "x"}] * 2}, 400,
     "InvalidInput"),
    ("POST", "/api/calendar/years",
     {"year": 2198, "days": [{"date": "2198-01-01", "kind": "holiday", "name": "x"},
                             {"date": "2198-01-02", "kind": "workday"}]}, 400,
     "InvalidInput"),  # 2198-01-02 is a Wednesday: no make-up day
    ("POST", "/api/calendar/years",
     {"year": 2025, "days": [{"date": "2025-01-01", "kind": "holiday", "name": "元旦"}]}, 409,
     "Conflict"),
    ("POST", "/api/calendar/years",
     {"year": 2198, "days": [{"date": "2198-01-01", "kind": "holiday", "name": "x"}] * 367},
     400, "InvalidParameterValue"),
    ("POST", "/api/calendar/years", {"year": 2198, "days": [], "source": "x"}, 400,
     "InvalidParameterValue"),
    ("PUT", "/api/calendar/office-hours", {"periods": []}, 400, "InvalidParameterValue"),
    ("PUT", "/api/calendar/office-hours", {"periods": [{"start": "12:00", "end": "09:00"}]},
     400, "InvalidInput"),
    ("PUT", "/api/calendar/office-hours",
     {"periods": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]}, 400,
     "InvalidInput"),
    ("PUT", "/api/calendar/office-hours",
     {"periods": [{"start": "09:00", "end": "12:00"}], "timezone": "Mars/Olympus"}, 400,
     "InvalidInput"),
    ("PUT", "/api/calendar/office-hours",
     {"periods": [{"start": "09:00+08:00", "end": "12:00+08:00"}]}, 400,
     "InvalidParameterValue"),
    ("PUT", "/api/calendar/office-hours", {"periods": [{"start": "25:00", "end": "26:00"}]}, 400,
     "InvalidParameterValue"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "body", "status", "code"), BAD,
                         ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])  # fmt: skip
def test_bad_inputs_are_refused(
    world: World, make_account: Any, method: str, url: str, body: Any, status: int, code: str
) -> None:
    h = admin(world, make_account)
    before = world.client.get("/api/calendar?year=2025", headers=h).json()["version"]
    r = world.client.request(method, url, json=body, headers=h)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert "SELECT" not in r.text and "Traceback" not in r.text
    after = world.client.get("/api/calendar?year=2025", headers=h).json()["version"]
    assert after == before  # nothing written


# --------------------------------------------------------------------------- editing


def test_declare_a_year_then_deadlines_reach_it(fresh: World, make_account: Any) -> None:
    h = admin(fresh, make_account)
    c = fresh.client
    q = {"start": f"{LAST}-12-31T10:00:00+08:00", "amount": 1, "unit": "days"}
    assert c.get("/api/calendar/deadline", params=q, headers=h).json()["year"] == NEXT
    days = [{"date": f"{NEXT}-01-01", "kind": "holiday", "name": "元旦"}]
    r = c.post("/api/calendar/years", json={"year": NEXT, "days": days}, headers=h)
    assert r.status_code == 201 and r.json()["known"] and r.json()["source"] == "admin"
    first = date(NEXT, 1, 2)
    while first.weekday() >= 5:
        first = first.replace(day=first.day + 1)
    r = c.get("/api/calendar/deadline", params=q, headers=h)
    assert r.status_code == 200 and r.json()["deadline"] == f"{first}T17:30:00+08:00"
    # an edit shows at once: the first working day becomes a holiday
    r = c.put(f"/api/calendar/days/{first}", json={"kind": "holiday", "name": "测试"}, headers=h)
    assert r.status_code == 200
    assert c.get("/api/calendar/deadline", params=q, headers=h).json()["deadline"] > str(first)
    assert c.delete(f"/api/calendar/days/{first}", headers=h).status_code == 204
    r = c.get("/api/calendar/deadline", params=q, headers=h)
    assert r.json()["deadline"] == f"{first}T17:30:00+08:00"
    r = c.put("/api/calendar/office-hours", headers=h,
              json={"periods": [{"start": "09:00", "end": "17:00"}]})  # fmt: skip
    assert r.status_code == 200 and r.json()["office_hours"] == [{"start": "09:00", "end": "17:00"}]
    r = c.get("/api/calendar/deadline", params=q, headers=h)
    assert r.json()["deadline"] == f"{first}T17:00:00+08:00"
    with fresh.engine.connect() as conn:
        actions = conn.execute(
            text("SELECT action FROM audit_log WHERE action LIKE 'calendar.%' "
                 "AND outcome = 'ok' ORDER BY id")
        ).scalars().all()  # fmt: skip
    assert actions == ["calendar.year.declare", "calendar.day.set", "calendar.day.remove",
                       "calendar.hours.set"]  # fmt: skip


# --------------------------------------------------------------------------- console


def test_console(cli: Any, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "春节" in cli("calendar", "show", "2026")
    assert "nothing new" in cli("calendar", "seed")
    assert cli("calendar", "deadline", "2025-12-30T10:00+08:00", "5", "days").strip() == (
        "2026-01-07T17:30:00+08:00"
    )
    cli("calendar", "deadline", f"{LAST}-12-30T10:00+08:00", "5", "days", code=1)
    notice = tmp_path / "notice.csv"
    notice.write_text(
        f"日期,类型,名称\n# 测试\n{NEXT}-01-01,休,元旦\n{NEXT}-02-05..{NEXT}-02-11,holiday,春节\n",
        encoding="utf-8",
    )
    assert "元旦" in cli("calendar", "declare", str(NEXT), str(notice))
    cli("calendar", "declare", str(NEXT), str(notice), code=1)  # known already
    cli("calendar", "declare", str(NEXT), str(notice), "--replace")
    cli("calendar", "set", f"{NEXT}-03-01", "holiday", "测试")
    cli("calendar", "set", f"{NEXT}-03-02", "rest", code=1)
    cli("calendar", "remove", f"{NEXT}-03-01")
    cli("calendar", "hours", "09:00-12:00", "13:30-17:30", "--timezone", "Asia/Shanghai")
    cli("calendar", "hours", "9-12", code=1)
    assert cli("calendar", "deadline", f"{LAST}-12-31T10:00+08:00", "1", "days").startswith(
        f"{NEXT}-01-0"
    )
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM calendar_days WHERE year = :y"), {"y": NEXT}
        ).scalar_one()
        actors = set(conn.execute(
            text("SELECT actor FROM audit_log WHERE action LIKE 'calendar.%'")
        ).scalars())  # fmt: skip
    assert n == 8 and all(a.startswith("cli:") for a in actors) and actors


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("2027-01-01\n", "expected date,kind,name"),
        ("2027-01-01,off,元旦\n", "kind must be"),
        ("2027-13-01,holiday,x\n", "not a date"),
        ("2027-02-05..2027-02-01,holiday,x\n", "run forwards"),
        ("2027-01-01..2027-06-01,holiday,x\n", "at most a month"),
        ("2027-01-01,holiday,x,y\n", "expected date,kind,name"),
        (b"\xff\xfe\x00bad", "cannot read"),
    ],
)
def test_year_file_guards(tmp_path: Path, content: str | bytes, why: str) -> None:
    path = tmp_path / "year.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text("date,kind,name\n" + content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=why):
        parse_year_file(path)
