"""Fire inspections: schedules on the working calendar (make-up days, Spring Festival, an
unknown year), defaults by risk level, a failed item opening exactly one linked case (also
when sent twice), re-checks, overdue lists, completion rates worked out by hand, templates,
every validator, and 412 on stale edits."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from typing import Any

import mapbox_vector_tile
import pytest
from sqlalchemy import text

from geogrid.cases.calendar import CalendarUnknown
from geogrid.fieldwork import inspections
from tests.fieldwork_support import World, make_world, upload

D = dt.date


@pytest.mark.parametrize(
    ("schedule", "last", "due"),
    [
        ("weekly", D(2026, 2, 7), D(2026, 2, 14)),  # a Saturday worked (调休)
        ("weekly", D(2026, 2, 9), D(2026, 2, 24)),  # 16 Feb: Spring Festival → 24 Feb
        ("monthly", D(2025, 9, 1), D(2025, 10, 9)),  # National Day holiday → 9 Oct
        ("quarterly", D(2025, 11, 16), D(2026, 2, 24)),
        ("halfyearly", D(2025, 8, 31), D(2026, 2, 28)),  # clipped to 28 Feb, a Saturday worked
        ("yearly", D(2025, 5, 31), D(2026, 6, 1)),  # a Sunday → Monday
    ],
)
def test_schedules_on_the_working_calendar(db_conn, schedule: str, last: D, due: D) -> None:  # type: ignore[no-untyped-def]
    assert inspections.next_due(db_conn, schedule, last) == due


def test_a_due_date_past_the_calendar_is_refused(db_conn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CalendarUnknown, match="does not know 2027"):
        inspections.next_due(db_conn, "monthly", D(2026, 12, 10))
    # the last days of the last known year roll into the unknown one: refused too
    with pytest.raises(CalendarUnknown, match="2027"):
        inspections.next_due(db_conn, "weekly", D(2026, 12, 28))


@pytest.fixture(scope="module")
def world(pg, _town_template, sample_town, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(
        pg, _town_template, sample_town, account_maker, tmp_path_factory.mktemp("inspections")
    )


def _unit(w: World, risk: int, unit_type: str = "工厂", where: str = "grid",
          subject: str = "grid_worker") -> int:  # fmt: skip
    lon, lat = w.points[where]
    body = {"name": "单位", "unit_type": unit_type, "risk_level": risk, "lon": lon, "lat": lat}
    r = w.client.post("/api/key-units", json=body, headers=w.headers[subject])
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _point(w: World, where: str = "grid", subject: str = "grid_worker", **extra: Any) -> dict:  # type: ignore[type-arg]
    lon, lat = w.points[where]
    body = {"name": "检查点", "lon": lon, "lat": lat, **extra}
    r = w.client.post("/api/inspections/points", json=body, headers=w.headers[subject])
    assert r.status_code == 201, r.text
    return dict(r.json())


def _items(w: World, code: str) -> list[str]:
    templates = w.client.get("/api/inspections/templates", headers=w.headers["grid_worker"]).json()
    return [i["code"] for t in templates if t["code"] == code for i in t["items"]]


def _send(w: World, point: dict, fail: tuple[str, ...] = (), subject: str = "grid_worker",  # type: ignore[type-arg]
          **extra: Any) -> Any:  # fmt: skip
    results = [{"item": c, "result": "fail" if c in fail else "pass"}
               for c in _items(w, point["template_code"])]  # fmt: skip
    body = {"point_id": point["id"], "results": results, **extra}
    return w.client.post("/api/inspections/records", json=body, headers=w.headers[subject])


def test_schedule_and_checklist_default_by_the_unit(world: World) -> None:
    high = _point(world, key_unit_id=_unit(world, 3))
    low = _point(world, key_unit_id=_unit(world, 1))
    small = _point(world, key_unit_id=_unit(world, 2, "九小场所"))
    chosen = _point(world, key_unit_id=_unit(world, 3), schedule="monthly")
    assert (high["schedule"], low["schedule"], chosen["schedule"]) == (
        "weekly", "quarterly", "monthly",
    )  # fmt: skip
    assert (high["template_code"], small["template_code"]) == ("general", "small_premises")
    assert small["schedule"] == "monthly"
    assert high["point_no"] == f"P{high['id']:06d}"


def test_a_failed_item_opens_exactly_one_linked_case(world: World) -> None:
    point = _point(world, schedule="weekly")
    photo, sign = upload(world, colour=(9, 9, 9)), upload(world, colour=(200, 10, 10))
    key = str(uuid.uuid4())
    extra = {"client_id": key, "photos": [photo], "signature": sign}
    first = _send(world, point, fail=("exits",), **extra)
    second = _send(world, point, fail=("exits",), **extra)
    assert (first.status_code, second.status_code) == (201, 200), first.text
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["signature"] == sign
    cases = first.json()["cases"]
    assert [c["item"] for c in cases] == ["exits"] and second.json()["cases"] == cases
    with world.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.id, c.category_code, c.source, c.grid_code, l.status FROM "
                "inspection_case_links l JOIN cases c ON c.id = l.case_id WHERE l.point_id = :p"
            ),
            {"p": point["id"]},
        ).all()
        records = conn.execute(
            text("SELECT count(*) FROM inspection_records WHERE point_id = :p"), {"p": point["id"]}
        ).scalar_one()
    assert records == 1
    assert [(r.category_code, r.source, r.grid_code, r.status) for r in rows] == [
        ("0301", "inspection", world.codes["grid"], "open")
    ]
    # the next inspection is told to re-check it
    got = world.client.get(f"/api/inspections/points/{point['id']}", headers=world.headers[
        "grid_worker"]).json()  # fmt: skip
    assert [(c["item"], c["case_id"]) for c in got["recheck"]] == [("exits", cases[0]["case_id"])]
    due = world.client.get(
        "/api/inspections/due", params={"within_days": 30}, headers=world.headers["grid_worker"]
    ).json()
    assert [c["item"] for p in due if p["id"] == point["id"] for c in p["recheck"]] == ["exits"]
    # failing again while the case is open opens nothing new
    again = _send(world, point, fail=("exits",))
    assert again.status_code == 201 and again.json()["cases"] == []
    # a passed re-check resolves the link; a later failure opens a new case
    passed = _send(world, point)
    assert [c["case_id"] for c in passed.json()["resolved"]] == [cases[0]["case_id"]]
    got = world.client.get(f"/api/inspections/points/{point['id']}", headers=world.headers[
        "grid_worker"]).json()  # fmt: skip
    assert got["recheck"] == []
    later = _send(world, point, fail=("exits", "wiring"))
    assert sorted(c["item"] for c in later.json()["cases"]) == ["exits", "wiring"]
    assert {c["case_id"] for c in later.json()["cases"]}.isdisjoint({cases[0]["case_id"]})


def test_overdue_points_and_completion_worked_out_by_hand(world: World) -> None:
    # three monthly points of the sibling grid registered Mon 5 Jan 2026: due Thu 5 Feb
    pts = [_point(world, "sibling", "grid_worker_sibling", schedule="monthly") for _ in range(3)]
    with world.engine.begin() as conn:
        conn.execute(
            text("UPDATE inspection_points SET registered_on = '2026-01-05' WHERE id = ANY(:i)"),
            {"i": [p["id"] for p in pts]},
        )
    h = world.headers["grid_worker_sibling"]
    assert _send(world, pts[0], subject="grid_worker_sibling",
                 inspected_at="2026-02-04T10:00:00+08:00").status_code == 201  # fmt: skip
    late = _send(world, pts[1], subject="grid_worker_sibling",
                 inspected_at="2026-02-10T10:00:00+08:00")  # fmt: skip
    assert late.json()["due_date"] == "2026-02-05" and late.json()["on_time"] is False
    overdue = world.client.get(
        "/api/inspections/overdue", params={"as_of": "2026-02-20"}, headers=h
    ).json()
    assert [p["id"] for p in overdue if p["id"] in {q["id"] for q in pts}] == [pts[2]["id"]]
    assert overdue[0]["due_state"] == "overdue"
    rates = world.client.get(
        "/api/inspections/completion",
        params={"from": "2026-02-01", "to": "2026-02-28", "grid": world.codes["sibling"],
                "as_of": "2026-03-01"},
        headers=h,
    ).json()  # fmt: skip
    assert rates == [{"village_code": world.codes["village"], "grid_code": world.codes["sibling"],
                      "due": 3, "on_time": 1, "late": 1, "missed": 1, "rate": 0.3333}]  # fmt: skip
    # the on-time point's next due moved a month on; the late one's from its late date
    dues = {
        p["id"]: p["next_due"]
        for p in world.client.get(
            "/api/inspections/points", params={"grid": world.codes["sibling"]}, headers=h
        ).json()
    }
    assert (dues[pts[0]["id"]], dues[pts[1]["id"]], dues[pts[2]["id"]]) == (
        "2026-03-04", "2026-03-10", "2026-02-05",
    )  # fmt: skip


def test_point_edits_need_if_match_and_stale_ones_get_412(world: World) -> None:
    point = _point(world)
    url = f"/api/inspections/points/{point['id']}"
    h = world.headers["grid_worker"]
    assert world.client.patch(url, json={"schedule": "weekly"}, headers=h).status_code == 428
    ok = world.client.patch(
        url, json={"schedule": "weekly"}, headers={**h, "If-Match": point["etag"]}
    )
    assert ok.status_code == 200 and ok.json()["schedule"] == "weekly"
    stale = world.client.patch(url, json={"name": "x"}, headers={**h, "If-Match": point["etag"]})
    assert stale.status_code == 412
    assert stale.json()["detail"]["current"]["schedule"] == "weekly"


def test_templates_are_edited_by_an_administrator(world: World) -> None:
    body = {"name": "加油站检查", "unit_types": ["加油站"],
            "items": [{"code": "static", "label": "静电接地完好", "case_category": "0302"},
                      {"code": "extinguishers", "label": "灭火器在有效期内",
                       "case_category": "0304"}]}  # fmt: skip
    url = "/api/inspections/templates/petrol"
    assert world.client.put(url, json=body, headers=world.headers["town_leader"]).status_code == 403
    first = world.client.put(url, json=body, headers=world.headers["sysadmin"])
    assert first.status_code == 200, first.text
    second = world.client.put(url, json=body, headers=world.headers["sysadmin"])
    assert second.json()["version"] == first.json()["version"] + 1
    point = _point(world, key_unit_id=_unit(world, 3, "加油站"))
    assert point["template_code"] == "petrol"
    assert _send(world, point, fail=("static",)).json()["cases"][0]["item"] == "static"


_TEMPLATE_ZOO: list[tuple[str, dict[str, Any], str]] = [
    ("duplicate item", {"items": [{"code": "a", "label": "x"}, {"code": "a", "label": "y"}]},
     "twice"),
    ("not a fire category", {"items": [{"code": "a", "label": "x", "case_category": "0401"}]},
     "must be 03"),
    ("unknown category", {"items": [{"code": "a", "label": "x", "case_category": "0399"}]},
     "unknown case category"),
    ("item code", {"items": [{"code": "A b", "label": "x"}]}, "lower-case"),
    ("blank label", {"items": [{"code": "a", "label": "  "}]}, "needs a label"),
    ("unknown unit type", {"unit_types": ["火星基地"]}, "unknown key-unit type"),
    ("no items", {"items": []}, "items"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "change", "why"), _TEMPLATE_ZOO, ids=[z[0] for z in _TEMPLATE_ZOO]
)
def test_template_validators_reject(
    world: World, rule: str, change: dict[str, Any], why: str
) -> None:
    body = {"name": "模板", "items": [{"code": "a", "label": "x"}], **change}
    r = world.client.put(
        "/api/inspections/templates/zoo", json=body, headers=world.headers["sysadmin"]
    )
    assert r.status_code == 400 and why in r.json()["description"], r.text


def test_template_code_is_checked(world: World) -> None:
    body = {"name": "模板", "items": [{"code": "a", "label": "x"}]}
    r = world.client.put(
        "/api/inspections/templates/Bad-Code", json=body, headers=world.headers["sysadmin"]
    )
    assert r.status_code == 400


def test_record_validators_reject(world: World) -> None:
    point = _point(world)
    items = _items(world, point["template_code"])
    ok = [{"item": c, "result": "pass"} for c in items]
    pdf = world.client.post(
        "/api/cases/files", headers=world.headers["grid_worker"],
        files={"file": ("a.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
                        "application/pdf")},
    )  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    zoo: list[tuple[str, dict[str, Any], int, str]] = [
        ("missing item", {"results": ok[1:]}, 400, "incomplete"),
        ("unknown item", {"results": [*ok, {"item": "moon", "result": "pass"}]}, 400,
         "not on the checklist"),
        ("answered twice", {"results": [*ok, ok[0]]}, 400, "twice"),
        ("bad result", {"results": [{**ok[0], "result": "maybe"}, *ok[1:]]}, 400, "result"),
        ("future", {"inspected_at": (now + dt.timedelta(days=1)).isoformat()}, 400, "future"),
        ("no time zone", {"inspected_at": "2026-11-01T10:00:00"}, 400, "time zone"),
        ("too old", {"inspected_at": "2025-01-01T10:00:00+08:00"}, 400, "a year ago"),
        ("unknown photo", {"photos": ["b" * 64]}, 400, "upload it first"),
        ("unknown signature", {"signature": "c" * 64}, 400, "upload it first"),
        ("long note", {"note": "长" * 2001}, 400, "note"),
        ("point out of scope", {"point_id": _point(world, "sibling", "grid_worker_sibling")["id"]},
         404, "no inspection point"),
    ]  # fmt: skip
    if pdf.status_code == 201:
        zoo.append(("signature not an image", {"signature": pdf.json()["sha256"]}, 400,
                    "not an image"))  # fmt: skip
    wrong = []
    for rule, change, status, why in zoo:
        body = {"point_id": point["id"], "results": ok, **change}
        r = world.client.post("/api/inspections/records", json=body, headers=world.headers[
            "grid_worker"])  # fmt: skip
        if r.status_code != status or why not in r.text:
            wrong.append((rule, r.status_code, r.text[:160]))
    assert wrong == []


def test_point_validators_reject(world: World) -> None:
    lon, lat = world.points["grid"]
    other_unit = _unit(world, 2, where="sibling", subject="grid_worker_sibling")
    zoo: list[tuple[str, dict[str, Any], int, str]] = [
        ("schedule", {"schedule": "hourly"}, 400, "schedule"),
        ("unknown template", {"template_code": "nothing"}, 400, "unknown checklist template"),
        ("unit out of scope", {"key_unit_id": other_unit}, 400, "no key unit"),
        ("point number", {"point_no": "P 1"}, 400, "point_no"),
        ("blank name", {"name": " "}, 400, "name"),
        ("outside the scope", {"lon": world.points["sibling"][0],
                               "lat": world.points["sibling"][1]}, 403, "outside your scope"),
    ]  # fmt: skip
    wrong = []
    for rule, change, status, why in zoo:
        body = {"name": "点", "lon": lon, "lat": lat, **change}
        r = world.client.post("/api/inspections/points", json=body, headers=world.headers[
            "grid_worker"])  # fmt: skip
        if r.status_code != status or why not in r.text:
            wrong.append((rule, r.status_code, r.text[:160]))
    assert wrong == []


@pytest.mark.parametrize(
    ("params", "why"),
    [({"from": "2026-03-01", "to": "2026-02-01"}, "ends before"),
     ({"from": "2024-01-01", "to": "2026-02-01"}, "at most a year")],
)  # fmt: skip
def test_completion_periods_are_checked(world: World, params: dict[str, str], why: str) -> None:
    r = world.client.get(
        "/api/inspections/completion", params=params, headers=world.headers["town_leader"]
    )
    assert r.status_code == 400 and why in r.json()["description"]


# --------------------------------------------------------------------------- layers


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


_PERSONAL = ("陈十一", "13712345678", "137****5678", "陈*一")


def test_layers_carry_due_states_and_nothing_personal(world: World) -> None:
    lon, lat = world.points["grid"]
    body = {"name": "图层单位", "unit_type": "宾馆", "risk_level": 2, "lon": lon, "lat": lat,
            "registered_on": "2025-01-06",
            "responsible": {"name": "陈十一", "phone": "13712345678"}}  # fmt: skip
    h = world.headers["town_leader"]
    unit = world.client.post("/api/key-units", json=body, headers=world.headers["grid_worker"])
    assert unit.status_code == 201, unit.text
    point = _point(world, key_unit_id=unit.json()["id"])
    with world.engine.begin() as conn:  # inspected long ago: overdue today
        conn.execute(
            text("UPDATE inspection_points SET last_inspected = '2025-12-01' WHERE id = :i"),
            {"i": point["id"]},
        )
    world.client.get(f"/api/inspections/points/{point['id']}", headers=h)  # due date computed
    x, y = _tile(lon, lat, 16)
    units_tile = world.client.get(f"/tiles/key_units/16/{x}/{y}.mvt", headers=h)
    points_tile = world.client.get(f"/tiles/inspection_points/16/{x}/{y}.mvt", headers=h)
    assert units_tile.status_code == points_tile.status_code == 200
    for raw in (units_tile.content, points_tile.content):
        assert all(p.encode() not in raw for p in _PERSONAL)
    feats = mapbox_vector_tile.decode(units_tile.content)["key_units"]["features"]
    mine = next(
        f["properties"] for f in feats if f["properties"]["unit_no"] == unit.json()["unit_no"]
    )
    assert mine["overdue_filings"] == 2
    assert set(mine) == {"unit_no", "name", "unit_type", "risk_level", "village_code",
                         "grid_code", "overdue_filings"}  # fmt: skip
    feats = mapbox_vector_tile.decode(points_tile.content)["inspection_points"]["features"]
    mine = next(f["properties"] for f in feats if f["properties"]["point_no"] == point["point_no"])
    assert (mine["due_state"], mine["next_due"]) == ("overdue", "2026-01-04")
    tilejson = world.client.get("/tiles/inspection_points.json", headers=h).json()
    assert {"due_state", "next_due"} <= set(tilejson["vector_layers"][0]["fields"])
    # OGC API items: the same flags, no managers
    items = world.client.get(
        "/ogc/collections/key_units/items", params={"unit_no": unit.json()["unit_no"]}, headers=h
    )
    assert items.status_code == 200, items.text
    assert all(p not in items.text for p in _PERSONAL)
    assert items.json()["features"][0]["properties"]["overdue_filings"] == 2
    items = world.client.get(
        "/ogc/collections/inspection_points/items", params={"point_no": point["point_no"]},
        headers=h,
    )  # fmt: skip
    props = items.json()["features"][0]["properties"]
    assert (props["due_state"], props["next_due"]) == ("overdue", "2026-01-04")
