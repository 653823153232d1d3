"""Key units (户籍化): due dates on the working calendar (make-up days, Spring Festival, an
unknown year), the register over real HTTP (masking, unmask, versions and 412), filings
(idempotent, due dates moving on), overdue lists and counts per grid, every validator."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from geogrid.cases.calendar import CalendarUnknown
from geogrid.fieldwork import filings
from tests.fieldwork_support import World, make_world, upload

D = dt.date


# --------------------------------------------------------------------------- due dates


@pytest.mark.parametrize(
    ("kind", "basis", "due"),
    [
        # 11 Feb 2026 (Wed): 12, 13, Sat 14 (调休 make-up day), 15–23 Spring Festival, 24, 25
        ("staff_change", D(2026, 2, 11), D(2026, 2, 25)),
        # a Friday: Mon–Fri of the next week
        ("staff_change", D(2025, 6, 6), D(2025, 6, 13)),
        # 16 Feb 2026 is in the Spring Festival: the first working day after it
        ("maintenance", D(2025, 8, 16), D(2026, 2, 24)),
        # 14 Feb 2026 is a Saturday worked (调休): due that day
        ("self_assessment", D(2025, 11, 14), D(2026, 2, 14)),
        # 31 Aug + 6 months clips to 28 Feb 2026, also a Saturday worked
        ("maintenance", D(2025, 8, 31), D(2026, 2, 28)),
        # 1 Oct 2025 National Day: the holiday runs to 8 Oct
        ("self_assessment", D(2025, 7, 1), D(2025, 10, 9)),
    ],
)
def test_due_dates_on_the_working_calendar(db_conn, kind: str, basis: D, due: D) -> None:  # type: ignore[no-untyped-def]
    assert filings.due_date(db_conn, kind, basis) == due


@pytest.mark.parametrize(
    ("kind", "basis"),
    [("staff_change", D(2026, 12, 28)), ("self_assessment", D(2026, 11, 20)),
     ("maintenance", D(2026, 7, 1))],
)  # fmt: skip
def test_a_due_date_past_the_calendar_is_refused(db_conn, kind: str, basis: D) -> None:  # type: ignore[no-untyped-def]
    last = db_conn.execute(text("SELECT max(year) FROM calendar_years")).scalar_one()
    assert last == 2026  # the installed chinesecalendar's last year
    with pytest.raises(CalendarUnknown, match="does not know 2027") as caught:
        filings.due_date(db_conn, kind, basis)
    assert caught.value.detail == {"year": 2027}


def test_add_months_clips_to_the_month_end() -> None:
    assert filings.add_months(D(2024, 1, 31), 1) == D(2024, 2, 29)
    assert filings.add_months(D(2025, 12, 15), 3) == D(2026, 3, 15)


# --------------------------------------------------------------------------- the register


@pytest.fixture(scope="module")
def world(pg, _town_template, sample_town, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(
        pg, _town_template, sample_town, account_maker, tmp_path_factory.mktemp("units")
    )


def _new(w: World, subject: str = "grid_worker", **extra: Any) -> dict[str, Any]:
    lon, lat = w.points["grid"]
    body = {"name": "示例加油站", "unit_type": "加油站", "risk_level": 3, "lon": lon, "lat": lat,
            "address": "示例村1号", **extra}  # fmt: skip
    r = w.client.post("/api/key-units", json=body, headers=w.headers[subject])
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == r.json()["etag"]
    return dict(r.json())


def test_create_places_masks_and_encrypts(world: World) -> None:
    unit = _new(
        world,
        responsible={"name": "张三明", "phone": "13812345678"},
        safety={"name": "李四", "phone": "027-8765 4321"},
    )
    assert unit["grid_code"] == world.codes["grid"]
    assert unit["village_code"] == world.codes["village"]
    assert unit["unit_no"] == f"KU{unit['id']:06d}"
    contacts = {c["role"]: c for c in unit["contacts"]}
    assert contacts["responsible"]["name"] == "张*明"
    assert contacts["responsible"]["phone"] == "138****5678"
    assert contacts["safety"]["name"] == "李*"
    assert {d["kind"] for d in unit["dues"]} == {"maintenance", "self_assessment"}
    with world.engine.connect() as conn:
        blobs = conn.execute(
            text("SELECT phone_enc FROM key_unit_contacts WHERE unit_id = :u"), {"u": unit["id"]}
        ).scalars()
        assert all(b"13812345678" not in bytes(b) for b in blobs)


def test_unmask_needs_the_permission_and_is_audited(world: World) -> None:
    unit = _new(world, responsible={"name": "王五", "phone": "13900001111"})
    url = f"/api/key-units/{unit['id']}/unmask"
    refused = world.client.post(url, json={"reason": "核实"}, headers=world.headers["grid_worker"])
    assert refused.status_code == 403
    r = world.client.post(
        url, json={"reason": "消防核查"}, headers=world.headers["grid_worker_unmask"]
    )
    assert r.status_code == 200, r.text
    assert r.json() == [{"role": "responsible", "name": "王五", "phone": "13900001111"}]
    outside = world.client.post(
        url, json={"reason": "消防核查"}, headers=world.headers["town_leader_other"]
    )
    assert outside.status_code == 403  # no unmask permission, and out of scope anyway
    with world.engine.connect() as conn:
        reason = conn.execute(
            text(
                "SELECT detail->>'reason' FROM audit_log WHERE action = 'unit.unmask' "
                "AND outcome = 'ok' AND :u = ANY(target_ids)"
            ),
            {"u": str(unit["id"])},
        ).scalar_one()
    assert reason == "消防核查"


def test_edits_need_if_match_and_stale_ones_get_412(world: World) -> None:
    unit = _new(world)
    url = f"/api/key-units/{unit['id']}"
    h = world.headers["grid_worker"]
    assert world.client.patch(url, json={"risk_level": 2}, headers=h).status_code == 428
    first = world.client.patch(url, json={"risk_level": 2}, headers={**h, "If-Match": unit["etag"]})
    assert first.status_code == 200, first.text
    assert first.json()["version"] == unit["version"] + 1
    assert first.headers["ETag"] != unit["etag"]
    again = world.client.patch(url, json={"name": "改名"}, headers={**h, "If-Match": unit["etag"]})
    assert again.status_code == 412
    body = again.json()
    assert body["code"] == "StaleVersion"
    assert body["detail"]["current"]["version"] == first.json()["version"]
    assert body["detail"]["current"]["risk_level"] == 2
    junk = world.client.patch(url, json={"name": "x"}, headers={**h, "If-Match": '"nonsense"'})
    assert junk.status_code == 412
    gone = world.client.delete(url, headers={**h, "If-Match": first.json()["etag"]})
    assert gone.status_code == 204
    assert world.client.get(url, headers=h).status_code == 404


def test_a_replaced_manager_must_be_filed_within_five_working_days(world: World) -> None:
    unit = _new(world, safety={"name": "赵六"})
    h = world.headers["grid_worker"]
    r = world.client.patch(
        f"/api/key-units/{unit['id']}",
        json={"safety": {"name": "钱七"}, "staff_changed_on": "2026-02-11"},
        headers={**h, "If-Match": unit["etag"]},
    )
    assert r.status_code == 200, r.text
    dues = {d["kind"]: d for d in r.json()["dues"]}
    assert dues["staff_change"]["due_date"] == "2026-02-25"
    late = world.client.get(
        "/api/key-units/overdue", params={"as_of": "2026-02-26", "grid": world.codes["grid"]},
        headers=h,
    ).json()  # fmt: skip
    assert {"unit_id": unit["id"], "kind": "staff_change"}.items() <= next(
        i for i in late["items"] if i["unit_id"] == unit["id"] and i["kind"] == "staff_change"
    ).items()
    filed = world.client.post(
        f"/api/key-units/{unit['id']}/filings",
        json={"kind": "staff_change", "event_date": "2026-02-11", "note": "已备案"},
        headers=h,
    )
    assert filed.status_code == 201, filed.text
    after = world.client.get(f"/api/key-units/{unit['id']}", headers=h).json()
    assert "staff_change" not in {d["kind"] for d in after["dues"]}


def test_filings_are_idempotent_and_move_the_due_date(world: World) -> None:
    unit = _new(world, registered_on="2025-08-16")
    h = world.headers["grid_worker"]
    dues = {d["kind"]: d["due_date"] for d in unit["dues"]}
    assert dues == {"maintenance": "2026-02-24", "self_assessment": "2025-11-17"}
    photo = upload(world)
    body = {"kind": "maintenance", "event_date": "2026-03-02", "photos": [photo],
            "client_id": str(uuid.uuid4())}  # fmt: skip
    url = f"/api/key-units/{unit['id']}/filings"
    first = world.client.post(url, json=body, headers=h)
    second = world.client.post(url, json=body, headers=h)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["photos"] == [photo]
    assert first.json()["due_date"] == "2026-02-24" and first.json()["on_time"] is False
    assert len(world.client.get(url, headers=h).json()) == 1
    after = world.client.get(f"/api/key-units/{unit['id']}", headers=h).json()
    assert {d["kind"]: d["due_date"] for d in after["dues"]}["maintenance"] == "2026-09-02"
    # another user may not reuse the key
    other = world.client.post(url, json=body, headers=world.headers["village_leader"])
    assert other.status_code == 409
    # a filing is corrected with If-Match
    f = first.json()
    fu = f"{url}/{f['id']}"
    assert world.client.patch(fu, json={"note": "补"}, headers=h).status_code == 428
    ok = world.client.patch(fu, json={"note": "补"}, headers={**h, "If-Match": f["etag"]})
    assert ok.status_code == 200 and ok.json()["version"] == 1
    stale = world.client.patch(fu, json={"note": "再补"}, headers={**h, "If-Match": f["etag"]})
    assert stale.status_code == 412
    assert stale.json()["detail"]["current"]["note"] == "补"


def test_overdue_filings_listed_and_counted_per_grid(world: World) -> None:
    unit = _new(world, registered_on="2025-01-06")
    h = world.headers["village_leader"]
    day = {"as_of": "2026-01-05"}
    page = world.client.get("/api/key-units/overdue", params=day, headers=h).json()
    mine = {(i["kind"], i["due_date"]) for i in page["items"] if i["unit_id"] == unit["id"]}
    assert mine == {("self_assessment", "2025-04-07"), ("maintenance", "2025-07-07")}
    assert page["total"] >= 2
    assert all("contacts" not in i for i in page["items"])
    counts = world.client.get("/api/key-units/overdue/counts", params=day, headers=h).json()
    grid = next(c for c in counts if c["grid_code"] == world.codes["grid"])
    with world.engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM key_unit_dues d JOIN key_units u ON u.id = d.unit_id "
                "WHERE u.grid_code = :g AND d.due_date < :t"
            ),
            {"g": world.codes["grid"], "t": D(2026, 1, 5)},
        ).scalar_one()
    assert grid["overdue_filings"] == expected >= 2
    flagged = world.client.get(
        "/api/key-units", params={**day, "overdue": "true"}, headers=h
    ).json()  # fmt: skip
    assert unit["id"] in {u["id"] for u in flagged}
    # out of scope: not listed at all
    sib = world.client.get("/api/key-units/overdue", params=day, headers=world.headers[
        "grid_worker_sibling"]).json()  # fmt: skip
    assert unit["id"] not in {i["unit_id"] for i in sib["items"]}
    assert (
        world.client.get(
            f"/api/key-units/{unit['id']}", headers=world.headers["grid_worker_sibling"]
        ).status_code
        == 404
    )


def test_row_level_security_hides_managers_out_of_scope(world: World) -> None:
    unit = _new(world, responsible={"name": "孙八"})
    with world.engine.connect() as conn:
        conn.execute(text("SET ROLE geogrid_web"))
        seen = {}
        for scope in (world.codes["grid"], world.codes["sibling"], ""):
            conn.execute(text("SELECT set_config('geogrid.scope', :s, true)"), {"s": scope})
            seen[scope] = conn.execute(
                text("SELECT count(*) FROM key_unit_contacts WHERE unit_id = :u"),
                {"u": unit["id"]},
            ).scalar_one()
        conn.rollback()
    assert seen == {world.codes["grid"]: 1, world.codes["sibling"]: 0, "": 0}


# --------------------------------------------------------------------------- validators

_UNIT_ZOO: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown type", {"unit_type": "火星基地"}, 400, "unknown key-unit type"),
    ("risk level", {"risk_level": 4}, 400, "risk_level"),
    ("blank name", {"name": "   "}, 400, "name is required"),
    ("control character", {"name": "a\u0007b"}, 400, "printable"),
    ("longitude", {"lon": 181.0}, 400, "within ±180"),
    ("outside every village", {"lon": 0.0, "lat": 0.0}, 400, "outside every village"),
    ("unit number", {"unit_no": "KU 1/2"}, 400, "unit_no"),
    ("phone", {"responsible": {"name": "张三", "phone": "call me"}}, 400, "phone"),
    ("manager name", {"safety": {"name": "  "}}, 400, "name is required"),
    ("future registration", {"registered_on": "2099-01-01"}, 400, "future"),
    ("address", {"address": "长" * 201}, 400, "address"),
]


@pytest.mark.parametrize(
    ("rule", "change", "status", "why"), _UNIT_ZOO, ids=[z[0] for z in _UNIT_ZOO]
)
def test_unit_validators_reject(world: World, rule: str, change: dict[str, Any], status: int,
                                why: str) -> None:  # fmt: skip
    lon, lat = world.points["grid"]
    body = {"name": "单位", "unit_type": "工厂", "risk_level": 2, "lon": lon, "lat": lat, **change}
    r = world.client.post("/api/key-units", json=body, headers=world.headers["grid_worker"])
    assert r.status_code == status, r.text
    assert why in r.json()["description"]


def test_unit_outside_the_scope_is_refused(world: World) -> None:
    lon, lat = world.points["sibling"]
    body = {"name": "单位", "unit_type": "工厂", "risk_level": 2, "lon": lon, "lat": lat}
    r = world.client.post("/api/key-units", json=body, headers=world.headers["grid_worker"])
    assert r.status_code == 403


def test_taken_unit_number_conflicts(world: World) -> None:
    _new(world, unit_no="KU-DUP-1")
    lon, lat = world.points["grid"]
    body = {"name": "单位", "unit_type": "工厂", "risk_level": 2, "lon": lon, "lat": lat,
            "unit_no": "KU-DUP-1"}  # fmt: skip
    r = world.client.post("/api/key-units", json=body, headers=world.headers["grid_worker"])
    assert r.status_code == 409


def _filing_zoo(w: World) -> list[tuple[str, dict[str, Any], str]]:
    pdf = w.client.post(
        "/api/cases/files", headers=w.headers["grid_worker"],
        files={"file": ("a.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
                        "application/pdf")},
    )  # fmt: skip
    zoo = [
        ("future date", {"event_date": "2099-01-01"}, "future"),
        ("ancient date", {"event_date": "1999-12-31"}, "before 2000"),
        ("unknown kind", {"kind": "party"}, "kind"),
        ("not a sha", {"photos": ["xyz"]}, "sha256"),
        ("unknown photo", {"photos": ["a" * 64]}, "upload it first"),
        ("too many photos", {"photos": [f"{i:064x}" for i in range(11)]}, "photos"),
        ("long note", {"note": "长" * 2001}, "note"),
    ]
    if pdf.status_code == 201:
        zoo.append(("not an image", {"photos": [pdf.json()["sha256"]]}, "not an image"))
    return zoo


def test_filing_validators_reject(world: World) -> None:
    unit = _new(world)
    wrong = []
    for rule, change, why in _filing_zoo(world):
        body = {"kind": "maintenance", "event_date": "2026-03-01", **change}
        r = world.client.post(
            f"/api/key-units/{unit['id']}/filings", json=body, headers=world.headers["grid_worker"]
        )
        if r.status_code != 400 or why not in r.text:
            wrong.append((rule, r.status_code, r.text[:160]))
    assert wrong == []


@pytest.mark.parametrize("area", ["12345", "4201171052010031", "abcdefghijkl"])
def test_area_filters_are_checked(world: World, area: str) -> None:
    r = world.client.get(
        "/api/key-units/overdue", params={"grid": area}, headers=world.headers["town_leader"]
    )
    assert r.status_code == 400
