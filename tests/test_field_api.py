"""The field app's APIs and shell against a real PostGIS town: the bundle holds only the
worker's own grid with personal data masked and is audited; the outbox sync creates each
record once (sent twice: nothing twice), refuses a key of another user, shows a stale edit
as a conflict with the record as it is now, and rejects bad records one rule at a time; the
shell routes (page, service worker, manifest, assets); and the role × route matrix (every
route under /field and /api/field is listed here; tests/test_access_api.py leaves them to
this file)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, text

from api import create_app
from api.auth import all_routes, policy_of
from geogrid import store
from geogrid.access.policy import ANONYMOUS, POLICY
from geogrid.people.crypto import key_provider
from geogrid.people.load import import_members
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings

#: (method, route) → action
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/field"): "page.field",
    ("GET", "/field/"): "page.field",
    ("GET", "/field/sw.js"): "page.field",
    ("GET", "/field/manifest.webmanifest"): "page.field",
    ("GET", "/api/field/bundle"): "field.bundle",
    ("POST", "/api/field/sync"): "field.sync",
}

#: subject → (role, scope key)
SUBJECTS: dict[str, tuple[str | None, str]] = {
    "anonymous": (None, ""),
    "sysadmin": ("sysadmin", "all"),
    "secadmin": ("secadmin", "all"),
    "auditor": ("auditor", "all"),
    "planner": ("planner", "town"),
    "viewer": ("viewer", "town"),
    "town_leader": ("town_leader", "town"),
    "village_leader": ("village_leader", "village"),
    "grid_worker": ("grid_worker", "grid"),
    "grid_worker_sibling": ("grid_worker", "sibling"),
}

#: the head of a household in the worker's grid and one in the sibling grid (plain values
#: that must never appear in a bundle)
HEADS = {"own": ("欧阳娜娜", "13812345678"), "sibling": ("司马相如", "13912345670")}


@dataclass
class World:
    client: TestClient
    url: str
    engine: Engine
    codes: dict[str, str]
    households: dict[str, int]
    lon: float
    lat: float
    headers: dict[str, dict[str, str]]
    usernames: dict[str, str]


def _id_number(first17: str) -> str:
    from geogrid.people.idcard import check_character

    return first17 + check_character(first17)


def _members(engine: Engine, home: Any, households: dict[str, int]) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT h.id, h.register_no, a.name FROM households h "
                "JOIN admin_areas a ON a.code = h.village_code WHERE h.id = ANY(:i)"
            ),
            {"i": list(households.values())},
        ).all()
    by_id = {r.id: r for r in rows}
    path = home / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["村", "户号", "姓名", "与户主关系", "公民身份号码", "联系电话"])
        for i, (key, (name, phone)) in enumerate(HEADS.items()):
            r = by_id[households[key]]
            out.writerow(
                [r.name, r.register_no, name, "户主", _id_number(f"4201171980010100{i}"), phone]
            )
    keys = key_provider(home, env={}, create=True)
    assert import_members(engine, path, keys).inserted == 2


def _jpeg(colour: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def world(pg, _town_template: str, sample_town, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    plan = create_plan(engine, sample_town.town_code, name="active", jobs=1)
    activate_plan(engine, plan)
    with engine.connect() as conn:
        village, grid, sibling = conn.execute(
            text(
                "SELECT g.village_code, min(g.code), max(g.code) FROM grids g "
                "WHERE g.plan_id = :p AND g.level = 3 GROUP BY g.village_code "
                "HAVING count(*) >= 2 ORDER BY g.village_code LIMIT 1"
            ),
            {"p": plan},
        ).one()
        own = conn.execute(
            text("SELECT id, ST_X(geom), ST_Y(geom) FROM households WHERE grid_code = :g "
                 "AND geom IS NOT NULL ORDER BY id LIMIT 1"),
            {"g": grid},
        ).one()  # fmt: skip
        sib = conn.execute(
            text("SELECT min(id) FROM households WHERE grid_code = :g"), {"g": sibling}
        ).scalar_one()
    households = {"own": int(own[0]), "sibling": int(sib)}
    home = tmp_path_factory.mktemp("field-api")
    _members(engine, home, households)
    codes = {"all": "all", "town": sample_town.town_code, "village": village, "grid": grid,
             "sibling": sibling}  # fmt: skip
    accounts = {
        key: account_maker(url, role, codes[scope])
        for key, (role, scope) in SUBJECTS.items()
        if role is not None
    }
    app = create_app(Settings(home=home), database_url=url)
    try:
        with TestClient(app) as client:
            headers: dict[str, dict[str, str]] = {"anonymous": {}}
            headers.update({k: a.headers(client) for k, a in accounts.items()})
            yield World(
                client, url, engine, codes, households, float(own[1]), float(own[2]), headers,
                {k: a.username for k, a in accounts.items()},
            )  # fmt: skip
    finally:
        engine.dispose()
        pg.drop_database(name)


def _count(w: World, sql: str, **params: Any) -> int:
    with w.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def _sync(w: World, who: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = w.client.post("/api/field/sync", json={"records": records}, headers=w.headers[who])
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def _upload(w: World, who: str, data: bytes) -> str:
    r = w.client.post(
        "/api/cases/files", files={"file": ("p.jpg", data, "image/jpeg")}, headers=w.headers[who]
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


# -- the bundle --------------------------------------------------------------------------------


def test_bundle_holds_only_the_own_grid_masked_and_is_audited(world: World) -> None:
    w = world
    r = w.client.get("/api/field/bundle", headers=w.headers["grid_worker"])
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    text_body = r.text
    for name, phone in HEADS.values():
        assert name not in text_body and phone not in text_body
    assert [g["code"] for g in body["grids"]] == [w.codes["grid"]]
    assert body["grids"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    expected = _count(w, "SELECT count(*) FROM households WHERE grid_code = :g", g=w.codes["grid"])
    assert len(body["households"]) == expected > 0
    assert {h["grid_code"] for h in body["households"]} == {w.codes["grid"]}
    own = next(h for h in body["households"] if h["id"] == w.households["own"])
    assert own["head"] == "欧**娜" and own["phone"] == "138****5678"
    assert w.households["sibling"] not in {h["id"] for h in body["households"]}
    assert body["user"]["username"] == w.usernames["grid_worker"]
    west, south, east, north = body["bbox"]
    assert west <= w.lon <= east and south <= w.lat <= north
    assert {"cases", "categories", "key_units", "due_inspections", "visits"} <= set(body)
    assert body["basemap"] is None  # no local base map configured
    with w.engine.connect() as conn:
        entry = conn.execute(
            text("SELECT target_ids, detail FROM audit_log WHERE action = 'field.bundle' "
                 "AND actor = :u ORDER BY id DESC LIMIT 1"),
            {"u": w.usernames["grid_worker"]},
        ).one()  # fmt: skip
    assert str(w.households["own"]) in entry.target_ids
    assert entry.detail["households"] == expected
    assert "欧阳" not in json.dumps(entry.detail, ensure_ascii=False)


def test_sibling_worker_sees_only_the_sibling_grid(world: World) -> None:
    w = world
    body = w.client.get("/api/field/bundle", headers=w.headers["grid_worker_sibling"]).json()
    assert [g["code"] for g in body["grids"]] == [w.codes["sibling"]]
    ids = {h["id"] for h in body["households"]}
    assert w.households["sibling"] in ids and w.households["own"] not in ids
    sib = next(h for h in body["households"] if h["id"] == w.households["sibling"])
    assert sib["head"] == "司**如"


# -- the sync ----------------------------------------------------------------------------------


def _case(w: World, photos: list[str], description: str = "路灯损坏") -> dict[str, Any]:
    return {"category": "0401", "lon": w.lon, "lat": w.lat, "description": description,
            "photos": photos, "recorded_at": "2026-11-30T08:00:00+08:00",
            "position_source": "gps", "accuracy_m": 12}  # fmt: skip


def test_outbox_sent_twice_creates_nothing_twice(world: World) -> None:
    w = world
    sha = _upload(w, "grid_worker", _jpeg((9, 9, 9)))
    records = [
        {"client_id": str(uuid.uuid4()), "kind": "case", "body": _case(w, [sha], "井盖缺失")},
        {"client_id": str(uuid.uuid4()), "kind": "visit",
         "body": {"household_id": w.households["own"], "notes": "家中老人身体尚可",
                  "people_met": ["欧阳娜娜"], "photos": [sha]}},
    ]  # fmt: skip
    cases0 = _count(w, "SELECT count(*) FROM cases")
    visits0 = _count(w, "SELECT count(*) FROM visits")
    first = _sync(w, "grid_worker", records)
    assert [r["status"] for r in first] == ["created", "created"], first
    again = _sync(w, "grid_worker", records)
    assert [r["status"] for r in again] == ["already-there", "already-there"]
    assert [r["record_id"] for r in again] == [r["record_id"] for r in first]
    assert _count(w, "SELECT count(*) FROM cases") == cases0 + 1
    assert _count(w, "SELECT count(*) FROM visits") == visits0 + 1
    case_id = first[0]["record_id"]
    assert _count(w, "SELECT count(*) FROM case_files WHERE case_id = :c", c=case_id) == 1
    assert _count(
        w, "SELECT count(*) FROM cases WHERE id = :c AND source = 'grid_worker' "
        "AND reported_at = '2026-11-30T00:00:00Z'", c=case_id,
    ) == 1  # fmt: skip
    # the case is on the worker's own record of it
    case = w.client.get(f"/api/cases/{case_id}", headers=w.headers["grid_worker"]).json()
    assert case["grid_code"] == w.codes["grid"]


def test_a_key_used_by_another_user_is_refused(world: World) -> None:
    w = world
    key = str(uuid.uuid4())
    body = {"household_id": w.households["own"], "notes": "第一次"}
    assert (
        _sync(w, "grid_worker", [{"client_id": key, "kind": "visit", "body": body}])[0]["status"]
        == "created"
    )
    other = _sync(w, "village_leader", [{"client_id": key, "kind": "visit", "body": body}])[0]
    assert (other["status"], other["code"]) == ("error", "Conflict")


def test_a_stale_edit_comes_back_as_a_conflict(world: World) -> None:
    w = world
    made = _sync(w, "grid_worker", [{"client_id": str(uuid.uuid4()), "kind": "visit",
                                     "body": {"household_id": w.households["own"],
                                              "notes": "原始记录"}}])[0]  # fmt: skip
    vid, version = made["record_id"], made["version"]
    # the server's copy changes (another device of the same worker)
    edit_there = {"client_id": str(uuid.uuid4()), "kind": "visit", "record_id": vid,
                  "base_version": version, "body": {"notes": "在办公室改过"}}  # fmt: skip
    there = _sync(w, "grid_worker", [edit_there])[0]
    assert (there["status"], there["version"]) == ("updated", version + 1)
    # the phone's offline edit, based on the old version: a conflict, nothing overwritten
    mine = {"client_id": str(uuid.uuid4()), "kind": "visit", "record_id": vid,
            "base_version": version, "body": {"notes": "手机上离线修改"}}  # fmt: skip
    clash = _sync(w, "grid_worker", [mine])[0]
    assert clash["status"] == "conflict" and clash["code"] == "StaleVersion"
    assert clash["current"]["notes"] == "在办公室改过"
    assert clash["current"]["version"] == version + 1
    assert _count(w, "SELECT count(*) FROM visits WHERE id = :v AND notes = '在办公室改过'", v=vid)
    # keep mine: sent again based on the version now there
    kept = _sync(w, "grid_worker", [{**mine, "base_version": version + 1}])[0]
    assert (kept["status"], kept["version"]) == ("updated", version + 2)
    # the same edit sent once more (a lost answer): found, not re-applied, no conflict
    assert _sync(w, "grid_worker", [{**mine, "base_version": version + 1}])[0]["status"] == (
        "already-there"
    )
    assert _count(w, "SELECT version FROM visits WHERE id = :v", v=vid) == version + 2


def test_inspection_from_the_bundle_is_recorded_once(world: World) -> None:
    from geogrid.access import users
    from geogrid.fieldwork.inspections import PointCreate, create_point

    w = world
    with w.engine.begin() as conn:
        leader = users.get_user(conn, username=w.usernames["town_leader"]).principal()
        point = create_point(
            conn, principal=leader, body=PointCreate(name="村委会消防点", lon=w.lon, lat=w.lat)
        )
    bundle = w.client.get("/api/field/bundle", headers=w.headers["grid_worker"]).json()
    template = next(t for t in bundle["inspection_templates"] if t["code"] == point.template_code)
    body = {
        "point_id": point.id,
        "inspected_at": "2026-11-30T09:00:00+08:00",
        "results": [{"item": i["code"], "result": "pass"} for i in template["items"]],
    }
    rec = {"client_id": str(uuid.uuid4()), "kind": "inspection", "body": body}
    first = _sync(w, "grid_worker", [rec])[0]
    assert first["status"] == "created", first
    assert _sync(w, "grid_worker", [rec])[0]["status"] == "already-there"
    assert _count(w, "SELECT count(*) FROM inspection_records WHERE point_id = :p", p=point.id) == 1
    # another grid's worker may not inspect it
    other = _sync(w, "grid_worker_sibling", [{**rec, "client_id": str(uuid.uuid4())}])[0]
    assert other["status"] == "error"


#: (rule, record) → the per-record refusal; every record is otherwise well formed
BAD_RECORDS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown kind": ({"kind": "parcel", "body": {}}, "InvalidInput"),
    "no body": ({"kind": "case"}, "InvalidInput"),
    "client id not a uuid": ({"client_id": "abc", "kind": "case", "body": {}}, "InvalidInput"),
    "unknown field": ({"kind": "visit", "body": {}, "extra": 1}, "InvalidInput"),
    "case without category": ({"kind": "case", "body": {"lon": 114.3, "lat": 30.5,
                                                         "description": "x"}}, "InvalidInput"),
    "case with unknown field": ({"kind": "case", "body": {"category": "0401", "lon": 114.3,
                                "lat": 30.5, "description": "x", "reporter": "x"}},
                                "InvalidInput"),
    "case out of scope": ({"kind": "case", "body": {"category": "0401", "lon": 100.0,
                           "lat": 30.0, "description": "x"}}, "InvalidInput"),
    "case photo not uploaded": ({"kind": "case", "body": {"category": "0401", "lon": 0.0,
                                 "lat": 0.0, "description": "x", "photos": ["f" * 64]}},
                                "InvalidInput"),
    "case recorded without zone": ({"kind": "case", "body": {"category": "0401", "lon": 114.3,
                                    "lat": 30.5, "description": "x",
                                    "recorded_at": "2026-11-30T08:00:00"}}, "InvalidInput"),
    "edit of a case": ({"kind": "case", "record_id": 1, "base_version": 0, "body": {}},
                       "InvalidInput"),
    "edit without base version": ({"kind": "visit", "record_id": 1, "body": {"notes": "x"}},
                                  "InvalidInput"),
    "visit of a household out of scope": ({"kind": "visit", "body": {"household_id": 2**40,
                                           "notes": "x"}}, "NotFound"),
    "follow-up without the permission": ({"kind": "followup", "body": {"record_id": 1,
                                          "note": "x"}}, "Forbidden"),
    "inspection without results": ({"kind": "inspection", "body": {"point_id": 1,
                                    "results": []}}, "InvalidInput"),
}  # fmt: skip


@pytest.mark.parametrize("rule", sorted(BAD_RECORDS))
def test_bad_records_are_refused_one_rule_at_a_time(world: World, rule: str) -> None:
    w = world
    record, code = BAD_RECORDS[rule]
    record = {"client_id": str(uuid.uuid4()), **record}
    cases0 = _count(w, "SELECT count(*) FROM cases")
    good = {"client_id": str(uuid.uuid4()), "kind": "visit",
            "body": {"household_id": w.households["own"], "notes": f"好记录 {rule}"}}  # fmt: skip
    bad, ok = _sync(w, "grid_worker", [record, good])
    assert (bad["status"], bad["code"]) == ("error", code), bad
    assert bad["reason"]
    assert ok["status"] == "created"  # one bad record never takes the others down
    assert _count(w, "SELECT count(*) FROM cases") == cases0


def test_batch_rules(world: World) -> None:
    w = world
    key = str(uuid.uuid4())
    rec = {"client_id": key, "kind": "visit", "body": {"notes": "x"}}
    r = w.client.post("/api/field/sync", json={"records": [rec, rec]},
                      headers=w.headers["grid_worker"])  # fmt: skip
    assert r.status_code == 400 and r.json()["code"] == "InvalidInput"
    many = [{**rec, "client_id": str(uuid.uuid4())} for _ in range(201)]
    r = w.client.post("/api/field/sync", json={"records": many}, headers=w.headers["grid_worker"])
    assert r.status_code == 400 and set(r.json()) >= {"code", "description"}
    r = w.client.post("/api/field/sync", json={"outbox": []}, headers=w.headers["grid_worker"])
    assert r.status_code == 400 and set(r.json()) >= {"code", "description"}


def test_visit_edit_by_a_role_without_visit_write_is_refused(world: World) -> None:
    w = world
    rec = {"client_id": str(uuid.uuid4()), "kind": "visit",
           "body": {"household_id": w.households["own"], "notes": "镇领导"}}  # fmt: skip
    res = _sync(w, "town_leader", [rec])[0]
    assert (res["status"], res["code"]) == ("error", "Forbidden")


# -- the shell ---------------------------------------------------------------------------------


def test_shell_routes(world: World) -> None:
    c = world.client
    r = c.get("/field?lang=en", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/field/?lang=en"
    page = c.get("/field/")
    assert page.status_code == 200 and 'rel="manifest"' in page.text
    assert "网格外勤" in page.text and "http://" not in page.text and "https://" not in page.text
    sw = c.get("/field/sw.js")
    assert sw.status_code == 200 and "javascript" in sw.headers["content-type"]
    assert "/*SHELL*/" not in sw.text and "/assets/static/field/app.js?v=" in sw.text
    assert "/assets/npm/workbox-sw/build/workbox-sw.js" in sw.text
    for url in re_urls(sw.text):
        assert c.get(url).status_code == 200, url
    for module in ("core", "routing", "strategies", "expiration"):
        r = c.get(f"/assets/npm/workbox-{module}/build/workbox-{module}.prod.js")
        assert r.status_code == 200, module
    m = c.get("/field/manifest.webmanifest")
    assert m.headers["content-type"].startswith("application/manifest+json")
    manifest = m.json()
    assert manifest["start_url"] == "/field/" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        img = Image.open(io.BytesIO(c.get(icon["src"]).content))
        assert f"{img.width}x{img.height}" == icon["sizes"]
    assert c.get("/field/manifest.webmanifest?lang=en").json()["name"] == "geogrid field work"


def re_urls(source: str) -> list[str]:
    import re

    shell = re.search(r"var SHELL = (\[.*?\]);", source)
    assert shell is not None
    return list(json.loads(shell.group(1)))


# -- the access matrix -------------------------------------------------------------------------


def test_every_field_route_is_in_the_matrix(world: World) -> None:
    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith(("/field", "/api/field"))
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == ROUTES


def _expected(subject: str, method: str, route: str) -> int:
    role, _ = SUBJECTS[subject]
    action = ROUTES[(method, route)]
    relation = POLICY[action].roles.get(role or ANONYMOUS)
    if relation is None:
        return 401 if role is None else 403
    return 308 if route == "/field" else 200


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_role_matrix(world: World, subject: str, route: tuple[str, str]) -> None:
    w = world
    method, path = route
    kw: dict[str, Any] = {}
    if method == "POST":
        kw["json"] = {"records": []}
    r = w.client.request(method, path, headers=w.headers[subject], follow_redirects=False, **kw)
    assert r.status_code == _expected(subject, method, path), (subject, route, r.text)
    if r.status_code >= 400:
        assert set(r.json()) >= {"code", "description"}
