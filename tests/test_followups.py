"""Special-population follow-ups (geogrid.fieldwork.followups) over real HTTP as the web
role: next due days on the working calendar (make-up working days counted, holidays
skipped), a due day past the calendar's last year refused, idempotent creates, the
``special`` permission on top of scope, masked and audited answers, the overdue list and
the interval rules' validators.

Hand-worked due days (2026 calendar: 劳动节 1–5 May off, Saturday 9 May worked; 国庆 1–7
October off, Sunday 20 September worked):

* 高 (5 working days) after Wednesday 29 April: 30 Apr (1), 6 May (2), 7 May (3),
  8 May (4), Saturday 9 May (5) → **2026-05-09**;
* 高 after Thursday 17 September: 18 Sep (1), Sunday 20 Sep (2), 21 (3), 22 (4),
  23 (5) → **2026-09-23**;
* 高 after Wednesday 30 September: 1–7 Oct off, 8 Oct (1), 9 Oct (2), Saturday 10 Oct (3),
  12 Oct (4), 13 Oct (5) → **2026-10-13**;
* 低 (60 working days) after 20 November 2026: needs 2027 → refused (the test database's
  calendar is cut after 2026, whatever the installed package knows).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.errors import Forbidden, InvalidInput
from geogrid.fieldwork import followups
from tests.visits_support import CANARIES, VisitWorld, audit_rows, no_canary, visit_world


@pytest.fixture(scope="module")
def world(pg, _town_template: str, sample_town, account_maker) -> Iterator[VisitWorld]:  # type: ignore[no-untyped-def]
    yield from visit_world(pg, _town_template, sample_town.town_code, account_maker)


def _post(w: VisitWorld, headers: dict[str, str], **kw: Any):  # type: ignore[no-untyped-def]
    body = {"record_id": w.records["g1"], "note": "谈话教育, 情况稳定", **kw}
    return w.client.post("/api/followups", headers=headers, json=body)


def _worker(w: VisitWorld, make_account, perms=("special",)):  # type: ignore[no-untyped-def]
    acct = make_account(w.url, "grid_worker", w.codes["grid"], perms)
    return acct, acct.headers(w.client)


@pytest.mark.parametrize(
    ("followed_at", "due"),
    [
        ("2026-04-29T10:00:00+08:00", "2026-05-09"),  # the make-up Saturday counts
        ("2026-09-17T16:00:00+08:00", "2026-09-23"),  # the make-up Sunday counts
        ("2026-09-30T09:00:00+08:00", "2026-10-13"),  # 国庆 skipped, Saturday 10 Oct worked
    ],
)
def test_next_due_on_the_working_calendar(
    world: VisitWorld, make_account, followed_at: str, due: str
) -> None:  # type: ignore[no-untyped-def]
    _, h = _worker(world, make_account)
    r = _post(world, h, followed_at=followed_at)
    assert r.status_code == 201, r.text
    assert r.json()["next_due"] == due


def test_a_due_day_past_the_calendars_last_year_is_refused(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    with world.engine.begin() as conn:  # the calendar's last year: 2026
        conn.execute(text("DELETE FROM calendar_days WHERE day >= '2027-01-01'"))
        conn.execute(text("DELETE FROM calendar_years WHERE year > 2026"))
    when = "2026-11-20T10:00:00+08:00"
    _, h = _worker(world, make_account)
    r = _post(world, h, record_id=world.records["g2"], followed_at=when)
    assert r.status_code == 404  # g2 is the sibling grid's
    leader = make_account(world.url, "village_leader", world.codes["village"], ("special",))
    lh = leader.headers(world.client)
    r = _post(world, lh, record_id=world.records["g2"], followed_at=when)  # 低: 60 days
    assert r.status_code == 400 and r.json()["code"] == "CalendarUnknown", r.text
    assert r.json()["year"] == 2027
    with world.engine.connect() as conn:  # nothing was kept
        n = conn.execute(
            text("SELECT count(*) FROM special_followups WHERE by_name = :u"),
            {"u": leader.username},
        ).scalar_one()
    assert n == 0
    # an explicit next due day needs no calendar
    ok = _post(world, lh, record_id=world.records["g2"], followed_at=when, next_due="2027-01-20")
    assert ok.status_code == 201 and ok.json()["next_due"] == "2027-01-20"


def test_idempotent_on_client_id(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    _, h = _worker(world, make_account)
    key = str(uuid.uuid4())
    first = _post(world, h, client_id=key, followed_at="2026-06-01T10:00:00+08:00")
    second = _post(world, h, client_id=key, followed_at="2026-06-01T10:00:00+08:00")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    with world.engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM special_followups WHERE id = :i"), {"i": first.json()["id"]}
        ).scalar_one()
    assert n == 1


def test_refused_without_the_special_permission(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    acct, h = _worker(world, make_account, perms=())
    assert _post(world, h).status_code == 403
    assert world.client.get("/api/followups/due", headers=h).status_code == 403
    rows = audit_rows(world, acct.username)
    assert [(a, o) for a, o, *_ in rows] == [("special.write", "refused"),
                                             ("special.read", "refused")]  # fmt: skip
    plain = Principal(1, acct.username, Role.grid_worker, Scope.parse(world.codes["grid"]))
    with world.engine.connect() as conn, pytest.raises(Forbidden, match="special"):
        followups.due_records(conn, principal=plain)


def test_due_list_masked_scoped_and_audited(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    acct, h = _worker(world, make_account)
    r = world.client.get("/api/followups/due", headers=h, params={"within_days": 366})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert {i["record_id"] for i in items} == {world.records["g1"]}  # not the sibling's
    (item,) = items
    assert item["name"] == "欧**华" and item["id_number"].startswith("4201****")
    assert item["risk_level"] == "高" and item["working_days"] == 5
    no_canary(r.text)
    one = world.client.get(f"/api/followups/records/{world.records['g1']}", headers=h)
    assert one.status_code == 200 and one.json()["schedule"]["record_id"] == world.records["g1"]
    no_canary(one.text)
    rows = audit_rows(world, acct.username)
    assert all(a == "special.read" and o == "ok" for a, o, *_ in rows) and len(rows) == 3
    assert rows[0].target_ids == [str(world.records["g1"])]
    assert CANARIES[0] not in str([tuple(x) for x in rows])


def test_overdue_and_never_followed(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    leader = make_account(world.url, "village_leader", world.codes["village"], ("special",))
    h = leader.headers(world.client)
    today = dt.date.today()
    with world.engine.begin() as conn:  # a fresh record in G2, never followed up
        g2_record = world.records["g2"]
        conn.execute(text("DELETE FROM special_followups WHERE record_id = :r"), {"r": g2_record})
    due = world.client.get("/api/followups/due", headers=h).json()["items"]
    by_id = {i["record_id"]: i for i in due}
    assert by_id[g2_record]["never_followed"] and by_id[g2_record]["overdue"]
    assert by_id[g2_record]["next_due"] is None
    # followed up with a due day in the future: no longer due today
    later = (today + dt.timedelta(days=30)).isoformat()
    made = _post(world, h, record_id=g2_record, next_due=later)
    assert made.status_code == 201, made.text
    due = world.client.get("/api/followups/due", headers=h).json()["items"]
    assert g2_record not in {i["record_id"] for i in due}
    soon = world.client.get("/api/followups/due", headers=h, params={"within_days": 31}).json()
    assert {i["record_id"]: i["overdue"] for i in soon["items"]}[g2_record] is False


def test_rule_intervals(world: VisitWorld) -> None:
    admin = world.headers["sysadmin"]
    r = world.client.put("/api/followups/rules/中", headers=admin, json={"working_days": 22})
    assert r.status_code == 200 and r.json()["working_days"] == 22
    rules = world.client.get("/api/followups/rules", headers=world.headers["grid_worker"]).json()
    assert [(x["risk_level"], x["working_days"]) for x in rules] == [
        ("高", 5), ("中", 22), ("低", 60)
    ]  # fmt: skip
    world.client.put("/api/followups/rules/中", headers=admin, json={"working_days": 20})


@pytest.mark.parametrize(
    ("scope", "risk", "days", "error", "why"),
    [
        ("town", "高", 5, Forbidden, "every area"),
        ("all", "极", 5, InvalidInput, "risk_level"),
        ("all", "高", 0, InvalidInput, "between 1 and 250"),
        ("all", "高", 251, InvalidInput, "between 1 and 250"),
        ("all", "高", True, InvalidInput, "between 1 and 250"),
    ],
)
def test_rule_validator_rejects(world: VisitWorld, scope, risk, days, error, why) -> None:  # type: ignore[no-untyped-def]
    who = Principal(1, "admin", Role.sysadmin, Scope.parse(world.codes[scope]))
    with world.engine.connect() as conn, pytest.raises(error, match=why):
        followups.set_rule(conn, principal=who, risk_level=risk, working_days=days)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"note": "   "}, "needs a note"),
        ({"followed_at": "2026-06-01T10:00:00"}, "time zone"),
        ({"followed_at": "2099-01-01T10:00:00+08:00"}, "future"),
        ({"followed_at": "2026-06-01T10:00:00+08:00", "next_due": "2026-05-01"}, "before"),
        ({"record_id": 10**12}, "no special population"),
        ({"client_id": "not-a-uuid"}, "client_id"),
    ],
)
def test_followup_validators_reject(world: VisitWorld, change: dict[str, Any], why: str) -> None:
    r = _post(world, world.headers["grid_worker"], **change)
    assert r.status_code in (400, 404), r.text
    assert why in r.json()["description"]
