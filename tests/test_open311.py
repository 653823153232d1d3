"""Open311 GeoReport v2 over real HTTP against the sample town with an active plan.

Services and requests are checked field by field against GeoReport v2; requests are made
as JSON, form-encoded and multipart with a photo; every filter of the list; a bad input per
validation rule, each answered with a GeoReport error array naming its rule; the resident's
token (right, wrong, someone else's); nothing personal in any public answer; the rate
limit. Cases move through the real case API (town leader) to check ``status_notes`` and
``status``.
"""

from __future__ import annotations

import io
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.cases.open311 import PUBLIC_FIELDS
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings

SERVICE_FIELDS = [
    "service_code",
    "service_name",
    "description",
    "metadata",
    "type",
    "keywords",
    "group",
]
ATTRIBUTE_FIELDS = [
    "variable",
    "code",
    "datatype",
    "required",
    "datatype_description",
    "order",
    "description",
    "values",
]
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
PERSONAL = {"name": "欧阳秀英", "phone": "13987654321", "email": "ouyang.xy@example.cn"}


@dataclass
class World:
    client: TestClient
    app: Any
    engine: Engine
    url: str
    town: str
    lon: float
    lat: float
    code: str  # a subclass service
    other: str  # another class's subclass
    required_code: str  # a service with a required attribute
    leader: dict[str, str]


@pytest.fixture(scope="module")
def world(pg, _town_template, sample_town, tmp_path_factory, account_maker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    town = sample_town.town_code
    active = create_plan(engine, town, name="active", jobs=1)
    activate_plan(engine, active)
    with engine.begin() as conn:
        lon, lat = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids "
                "WHERE plan_id = :p AND level = 3 ORDER BY code LIMIT 1) q"
            ),
            {"p": active},
        ).one()
        subs = (
            conn.execute(
                text(
                    "SELECT DISTINCT ON (parent_code) code FROM case_categories "
                    "WHERE parent_code IS NOT NULL AND active ORDER BY parent_code, code"
                )
            )
            .scalars()
            .all()
        )
        conn.execute(
            text(
                "INSERT INTO open311_attributes (service_code, code, datatype, description, "
                "required, sort) VALUES (:s, 'households', 'number', '涉及户数', true, 9)"
            ),
            {"s": subs[2]},
        )
    app = create_app(Settings(home=tmp_path_factory.mktemp("open311")), database_url=url)
    app.state.open311_limits = (100_000, 3600)
    leader = account_maker(url, "town_leader", town)
    try:
        with TestClient(app) as client:
            yield World(
                client,
                app,
                engine,
                url,
                town,
                float(lon),
                float(lat),
                subs[0],
                subs[1],
                subs[2],
                leader.headers(client),
            )
    finally:
        engine.dispose()
        pg.drop_database(name)


def _body(w: World, **over: Any) -> dict[str, Any]:
    body = {
        "service_code": w.code,
        "description": "路灯坏了，晚上一片漆黑",
        "lat": w.lat,
        "long": w.lon,
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def _submit(w: World, **over: Any) -> dict[str, Any]:
    r = w.client.post("/open311/v2/requests.json", json=_body(w, **over))
    assert r.status_code == 200, r.text
    (created,) = r.json()
    return created


def _one(w: World, rid: str, **params: str) -> dict[str, Any]:
    r = w.client.get(f"/open311/v2/requests/{rid}.json", params=params)
    assert r.status_code == 200, r.text
    (found,) = r.json()
    return found


def _case(w: World, rid: str) -> dict[str, Any]:
    r = w.client.get(f"/api/cases/{rid}", headers=w.leader)
    assert r.status_code == 200, r.text
    return r.json()


def _act(w: World, rid: str, action: str, note: str = "", public: bool = False) -> None:
    etag = w.client.get(f"/api/cases/{rid}", headers=w.leader).headers["ETag"]
    r = w.client.post(
        f"/api/cases/{rid}/transitions",
        headers={**w.leader, "If-Match": etag},
        json={"action": action, "note": note, "public": public},
    )
    assert r.status_code == 200, r.text


def _instant(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso)


# --------------------------------------------------------------------------- services


def test_services_field_by_field(world: World) -> None:
    r = world.client.get("/open311/v2/services.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    services = r.json()
    with world.engine.connect() as conn:
        cats = {
            c.code: c
            for c in conn.execute(
                text(
                    "SELECT code, name, parent_code FROM case_categories "
                    "WHERE active AND code NOT LIKE '05%'"  # 特殊人群: not public
                )
            )
        }
    assert [s["service_code"] for s in services] == sorted(cats)
    for s in services:
        assert list(s) == SERVICE_FIELDS
        cat = cats[s["service_code"]]
        assert s["service_name"] == cat.name
        assert isinstance(s["description"], str) and cat.name in s["description"]
        assert s["metadata"] is True  # every service asks the common questions
        assert s["type"] == "realtime"
        assert isinstance(s["keywords"], str)
        group = cats[cat.parent_code].name if cat.parent_code else cat.name
        assert s["group"] == group
    parents = {c.parent_code for c in cats.values() if c.parent_code}
    top = next(s for s in services if s["service_code"] in parents)
    assert top["keywords"]  # a class lists its subclasses as keywords


def test_services_as_xml(world: World) -> None:
    r = world.client.get("/open311/v2/services.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert r.content.startswith(b"<?xml") and b"encoding" in r.content[:60]
    root = ET.fromstring(r.content)
    assert root.tag == "services"
    first = root.find("service")
    assert first is not None
    assert [c.tag for c in first] == SERVICE_FIELDS
    assert first.findtext("metadata") == "true"
    assert len(root.findall("service")) == len(world.client.get("/open311/v2/services.json").json())


def test_service_definition(world: World) -> None:
    r = world.client.get(f"/open311/v2/services/{world.required_code}.json")
    assert r.status_code == 200, r.text
    d = r.json()
    assert list(d) == ["service_code", "attributes"] and d["service_code"] == world.required_code
    attrs = {a["code"]: a for a in d["attributes"]}
    for a in d["attributes"]:
        assert list(a) == ATTRIBUTE_FIELDS
        assert a["variable"] is True and isinstance(a["order"], int)
    assert [a["order"] for a in d["attributes"]] == sorted(a["order"] for a in d["attributes"])
    assert attrs["urgency"]["datatype"] == "singlevaluelist" and not attrs["urgency"]["required"]
    assert attrs["urgency"]["values"] == [
        {"key": "normal", "name": "一般"},
        {"key": "urgent", "name": "紧急"},
    ]
    assert attrs["occurred_at"]["datatype"] == "datetime"
    assert attrs["households"] == {
        "variable": True,
        "code": "households",
        "datatype": "number",
        "required": True,
        "datatype_description": None,
        "order": 9,
        "description": "涉及户数",
        "values": [],
    }
    xml = ET.fromstring(world.client.get(f"/open311/v2/services/{world.code}.xml").content)
    assert xml.tag == "service_definition" and xml.find("attributes/attribute/code") is not None
    missing = world.client.get("/open311/v2/services/9999.json")
    assert missing.status_code == 404
    assert missing.json() == [
        {"code": 404, "description": "no service '9999'", "rule": "not_found"}
    ]


# --------------------------------------------------------------------------- requests


def test_create_json_then_read_field_by_field(world: World) -> None:
    created = _submit(
        world, address_string="石门镇幸福路 8 号旁", **{"attribute[urgency]": "urgent"}
    )
    assert list(created) == [
        "service_request_id",
        "token",
        "service_notice",
        "account_id",
        "expected_datetime",
    ]
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", created["token"])
    assert created["account_id"] is None
    rid = created["service_request_id"]
    found = _one(world, rid)
    assert list(found) == list(PUBLIC_FIELDS)
    case = _case(world, rid)
    assert found["service_request_id"] == rid == str(case["id"])
    assert found["status"] == "open"
    assert found["status_notes"] is None  # nothing public said yet
    assert found["service_code"] == world.code == case["category_code"]
    assert found["service_name"] == case["category_name"]
    assert found["description"] == "路灯坏了，晚上一片漆黑"
    assert found["agency_responsible"] == case["assignee"]["name"]  # a post, never a person
    assert ISO.match(found["requested_datetime"]) and ISO.match(found["updated_datetime"])
    assert _instant(found["requested_datetime"]) == _instant(case["reported_at"]).replace(
        microsecond=0
    )
    assert _instant(found["expected_datetime"]) == _instant(case["due_at"]).replace(microsecond=0)
    assert created["expected_datetime"] == found["expected_datetime"]
    assert found["service_notice"] and found["service_notice"] == created["service_notice"]
    assert found["address"] == "石门镇幸福路 8 号旁"
    assert found["address_id"] is None and found["zipcode"] is None
    assert found["lat"] == round(world.lat, 6) and found["long"] == round(world.lon, 6)
    assert found["media_url"] is None
    assert case["source"] == "open311"
    # XML of one request: the same fields
    root = ET.fromstring(world.client.get(f"/open311/v2/requests/{rid}.xml").content)
    assert root.tag == "service_requests"
    assert [c.tag for c in root.find("request")] == list(PUBLIC_FIELDS)  # type: ignore[union-attr]


def test_address_string_or_address_id_instead_of_a_point(world: World) -> None:
    from geogrid.ingest.address import normalise_address

    written = "湖北省石门镇光明村第三村民小组012号"
    with world.engine.begin() as conn:
        point_id = conn.execute(
            text(
                "INSERT INTO address_points (address_norm, geom, source) VALUES "
                "(:a, ST_SetSRID(ST_MakePoint(:x, :y), 4326), 'test') RETURNING id"
            ),
            {"a": normalise_address(written), "x": world.lon, "y": world.lat},
        ).scalar_one()
    by_text = _submit(world, lat=None, long=None, address_string="石门镇光明村3组12号")
    found = _one(world, by_text["service_request_id"])
    assert (found["lat"], found["long"]) == (round(world.lat, 6), round(world.lon, 6))
    assert found["address"] == "石门镇光明村3组12号" and found["address_id"] is None
    by_id = _submit(world, lat=None, long=None, address_id=str(point_id))
    found = _one(world, by_id["service_request_id"])
    assert found["address_id"] == point_id and found["long"] == round(world.lon, 6)
    r = world.client.post(
        "/open311/v2/requests.json", json=_body(world, lat=None, long=None, address_id="99999999")
    )
    assert r.status_code == 400 and r.json()[0]["rule"] == "address_id_invalid"


def test_create_form_encoded(world: World) -> None:
    r = world.client.post(
        "/open311/v2/requests.json",
        data={
            "service_code": world.other,
            "description": "垃圾堆在路边三天了",
            "lat": str(world.lat),
            "long": str(world.lon),
            "attribute[people_affected]": "12",
        },
    )
    assert r.status_code == 200, r.text
    rid = r.json()[0]["service_request_id"]
    assert _one(world, rid)["service_code"] == world.other
    own = _one(world, rid, token=r.json()[0]["token"])
    assert own["attributes"] == {"people_affected": 12.0}
    xml = world.client.post(
        "/open311/v2/requests.xml",
        data={
            "service_code": world.other,
            "description": "井盖缺失有危险",
            "lat": str(world.lat),
            "long": str(world.lon),
        },
    )
    assert xml.status_code == 200
    root = ET.fromstring(xml.content)
    assert root.tag == "service_requests" and root.findtext("request/token")


def _photo(exif: bool = True) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (640, 480), (200, 120, 40))
    out = io.BytesIO()
    ex = Image.Exif()
    ex[0x010F] = "SecretCam"  # Make
    img.save(out, "JPEG", exif=ex.tobytes() if exif else b"")
    return out.getvalue()


def test_create_multipart_with_photo_public_thumbnail(world: World) -> None:
    r = world.client.post(
        "/open311/v2/requests.json",
        data={k: str(v) for k, v in _body(world).items()},
        files={"media": ("IMG_0001.jpg", _photo(), "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    rid = r.json()[0]["service_request_id"]
    found = _one(world, rid)
    assert found["media_url"].startswith("http://testserver/open311/v2/media/" + rid + "/")
    thumb = world.client.get(found["media_url"].replace("http://testserver", ""))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert b"SecretCam" not in thumb.content and thumb.content.startswith(b"\xff\xd8")
    sha = found["media_url"].rsplit("/", 1)[1][:-4]
    other = _submit(world)["service_request_id"]
    assert world.client.get(f"/open311/v2/media/{other}/{sha}.jpg").status_code == 404
    assert world.client.get(f"/open311/v2/media/{rid}/{'0' * 64}.jpg").status_code == 404


def test_status_notes_from_last_public_event_and_closed(world: World) -> None:
    rid = _submit(world)["service_request_id"]
    _act(world, rid, "accept", "已受理，网格员将到现场核实", public=True)
    _act(world, rid, "comment", "内部：联系了物业", public=False)
    found = _one(world, rid)
    assert found["status"] == "open"
    assert found["status_notes"] == "已受理，网格员将到现场核实"
    assert _instant(found["updated_datetime"]) >= _instant(found["requested_datetime"])
    _act(world, rid, "void", "经核实不属于本镇管辖", public=True)
    closed = _one(world, rid)
    assert closed["status"] == "closed"
    assert closed["status_notes"] == "经核实不属于本镇管辖"
    assert closed["service_notice"] is None
    assert "内部" not in world.client.get(f"/open311/v2/requests/{rid}.json").text


def test_updated_datetime_of_a_closed_request_is_when_it_was_closed(world: World) -> None:
    """GeoReport: "for requests with status=closed, this will be the date the request was
    closed" — archiving it (or a comment) later does not move it."""
    rid = _submit(world)["service_request_id"]
    _act(world, rid, "accept", "已受理", public=True)
    _act(world, rid, "void", "不属于本镇管辖", public=True)
    time.sleep(1.1)  # the answer has seconds precision
    _act(world, rid, "archive")
    events = {e["action"]: e["at"] for e in _case(world, rid)["events"]}
    voided, archived = _instant(events["void"]), _instant(events["archive"])
    assert archived - voided >= timedelta(seconds=1)  # type: ignore[operator]
    listed = world.client.get("/open311/v2/requests.json", params={"service_request_id": rid})
    for found in (_one(world, rid), *listed.json()):
        assert found["status"] == "closed"
        assert _instant(found["updated_datetime"]) == voided.replace(microsecond=0)  # type: ignore[union-attr]
    open_one = _submit(world)["service_request_id"]
    _act(world, open_one, "accept", "已受理", public=True)
    accepted = _instant(_case(world, open_one)["updated_at"]).replace(microsecond=0)
    assert _instant(_one(world, open_one)["updated_datetime"]) == accepted  # open: last change


# --------------------------------------------------------------------------- the list


def test_every_filter(world: World) -> None:
    a = _submit(world, service_code=world.code)["service_request_id"]
    b = _submit(world, service_code=world.other)["service_request_id"]
    c = _submit(world, service_code=world.other)["service_request_id"]
    _act(world, c, "reject", "重复投诉", public=True)

    def ids(**params: str) -> list[str]:
        r = world.client.get("/open311/v2/requests.json", params=params)
        assert r.status_code == 200, r.text
        for item in r.json():
            assert list(item) == list(PUBLIC_FIELDS)
        return [x["service_request_id"] for x in r.json()]

    everything = ids()
    assert {a, b, c} <= set(everything)
    times = [
        _instant(x["requested_datetime"])
        for x in world.client.get("/open311/v2/requests.json").json()
    ]
    assert times == sorted(times, reverse=True)  # newest first
    only = ids(service_code=world.other)
    assert b in only and c in only and a not in only
    both = ids(service_code=f"{world.code},{world.other}")
    assert {a, b, c} <= set(both)
    assert c in ids(status="closed") and c not in ids(status="open")
    assert a in ids(status="open") and a not in ids(status="closed")
    assert {a, c} <= set(ids(status="open,closed"))
    # a plain date is a day in China (GeoReport leaves the zone to the server): count the
    # days there, or between 16:00 and 24:00 UTC "tomorrow" here is already today there
    china_today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    tomorrow = (china_today + timedelta(days=1)).isoformat()
    yesterday = (china_today - timedelta(days=1)).isoformat()
    assert ids(start_date=tomorrow) == []
    assert ids(end_date=yesterday, start_date="2025-12-01") == []
    assert a in ids(start_date=yesterday, end_date=tomorrow)
    assert a in ids(start_date=yesterday + "T00:00:00Z")
    assert sorted(ids(service_request_id=f"{a},{c},999999")) == sorted([a, c])
    page1, page2 = ids(page_size="2"), ids(page_size="2", page="2")
    assert len(page1) == 2 and page1 == everything[:2] and page2 == everything[2:4]
    root = ET.fromstring(
        world.client.get("/open311/v2/requests.xml", params={"page_size": "1"}).content
    )
    assert root.tag == "service_requests" and len(root.findall("request")) == 1


def test_staff_reports_are_not_public_requests(world: World) -> None:
    r = world.client.post(
        "/api/cases",
        headers=world.leader,
        json={
            "category": world.code,
            "lon": world.lon,
            "lat": world.lat,
            "description": "巡查发现：某户家庭矛盾",
            "source": "grid_worker",
        },
    )
    assert r.status_code == 201, r.text
    staff = str(r.json()["case"]["id"])
    assert staff not in {
        x["service_request_id"] for x in world.client.get("/open311/v2/requests.json").json()
    }
    for url in (
        f"/open311/v2/requests/{staff}.json",
        f"/open311/v2/requests.json?service_request_id={staff}",
    ):
        r = world.client.get(url)
        assert r.status_code in (200, 404) and "某户家庭矛盾" not in r.text
    assert world.client.get(f"/open311/v2/requests/{staff}.json").status_code == 404


# --------------------------------------------------------------------------- the rules

LONG = "长" * 2001

#: rule → (fields, extra files) of a POST that breaks exactly that rule
SUBMIT_RULES: dict[str, dict[str, Any]] = {
    "service_code_missing": {"service_code": None},
    "service_code_unknown": {"service_code": "9999"},
    "location_missing": {"lat": None, "long": None},
    "location_partial": {"long": None},
    "location_invalid": {"lat": "north"},
    "location_outside": {"lat": 20.0, "long": 100.0},
    "location_unresolved": {"lat": None, "long": None, "address_string": "火星路 1 号"},
    "address_too_long": {"address_string": "路" * 201},
    "address_id_invalid": {"lat": None, "long": None, "address_id": "12a"},
    "description_missing": {"description": "   "},
    "description_too_short": {"description": "坏"},
    "description_too_long": {"description": LONG},
    "attribute_unknown": {"attribute[colour]": "red"},
    "attribute_value_invalid": {"attribute[urgency]": "tomorrow"},
    "email_invalid": {"email": "not-an-address"},
    "phone_invalid": {"phone": "call me"},
    "name_too_long": {"first_name": "名" * 51},
    "media_url_unsupported": {"media_url": "http://example.com/a.jpg"},
    "text_invalid": {"description": "路灯\x07坏了很久"},
}


@pytest.mark.parametrize("rule", sorted(SUBMIT_RULES))
def test_each_submission_rule(world: World, rule: str) -> None:
    before = _count(world)
    r = world.client.post("/open311/v2/requests.json", json=_body(world, **SUBMIT_RULES[rule]))
    status = 404 if rule == "service_code_unknown" else 400  # GeoReport: "404 - ... not found"
    assert r.status_code == status, r.text
    errors = r.json()
    assert isinstance(errors, list) and errors
    for e in errors:
        assert set(e) == {"code", "description", "rule"} and e["code"] == status
        assert isinstance(e["description"], str) and e["description"]
    assert rule in {e["rule"] for e in errors}, errors
    assert _count(world) == before  # nothing stored


def _count(w: World) -> int:
    with w.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM cases")).scalar_one())


def test_attribute_rules_per_datatype(world: World) -> None:
    def rules(**fields: Any) -> set[str]:
        r = world.client.post("/open311/v2/requests.json", json=_body(world, **fields))
        assert r.status_code == 400, r.text
        return {e["rule"] for e in r.json()}

    assert rules(service_code=world.required_code) == {"attribute_missing"}
    assert rules(service_code=world.required_code, **{"attribute[households]": "many"}) == {
        "attribute_value_invalid"
    }
    assert rules(**{"attribute[occurred_at]": "yesterday"}) == {"attribute_value_invalid"}
    assert rules(**{"attribute[people_affected]": "nan"}) == {"attribute_value_invalid"}
    ok = _submit(
        world,
        service_code=world.required_code,
        **{"attribute[households]": 3, "attribute[occurred_at]": "2026-11-29T20:00"},
    )
    own = _one(world, ok["service_request_id"], token=ok["token"])
    assert own["attributes"] == {"households": 3.0, "occurred_at": "2026-11-29T20:00:00+08:00"}


def test_body_rules(world: World) -> None:
    c = world.client
    cases = {
        "body_invalid": c.post("/open311/v2/requests.json", json=[1, 2]),
        "content_type_unsupported": c.post(
            "/open311/v2/requests.json", content=b"x", headers={"content-type": "text/plain"}
        ),
        "body_too_large": c.post(
            "/open311/v2/requests.json", json=_body(world, description="长" * 30_000)
        ),
        "media_invalid": c.post(
            "/open311/v2/requests.json",
            data={k: str(v) for k, v in _body(world).items()},
            files={"media": ("a.jpg", b"MZ\x90\x00 not a photo", "image/jpeg")},
        ),
        "format_unsupported": c.post("/open311/v2/requests.html", json=_body(world)),
    }
    want = {"content_type_unsupported": 415, "body_too_large": 413}
    for rule, r in cases.items():
        assert r.status_code == want.get(rule, 400), (rule, r.text)
        assert rule in {e["rule"] for e in r.json()}, (rule, r.text)
        assert all(e["code"] == r.status_code for e in r.json())


QUERY_RULES = {
    "date_invalid": {"start_date": "last tuesday"},
    "date_range_invalid": {"start_date": "2026-11-20", "end_date": "2026-11-01"},
    "date_range_too_long": {"start_date": "2024-01-01", "end_date": "2026-01-01"},
    "status_invalid": {"status": "pending"},
    "service_code_unknown": {"service_code": "0401,9999"},
    "paging_invalid": {"page_size": "5000"},
    "ids_invalid": {"service_request_id": ",".join(str(i) for i in range(60))},
}


@pytest.mark.parametrize("rule", sorted(QUERY_RULES))
def test_each_query_rule(world: World, rule: str) -> None:
    r = world.client.get("/open311/v2/requests.json", params=QUERY_RULES[rule])
    assert r.status_code == 400, r.text
    assert rule in {e["rule"] for e in r.json()}
    x = world.client.get("/open311/v2/requests.xml", params=QUERY_RULES[rule])
    root = ET.fromstring(x.content)
    assert root.tag == "errors" and root.findtext("error/code") == "400"
    assert rule in {e.findtext("rule") for e in root.findall("error")}


def test_paging_zero_and_unknown_request(world: World) -> None:
    r = world.client.get("/open311/v2/requests.json", params={"page": "0"})
    assert r.status_code == 400 and r.json()[0]["rule"] == "paging_invalid"
    for rid in ("999999999", "abc", "-1"):
        r = world.client.get(f"/open311/v2/requests/{rid}.json")
        assert r.status_code == 404 and r.json()[0]["rule"] == "not_found", rid


# --------------------------------------------------------------------------- tokens


def test_token_shows_own_request_and_wrong_tokens_are_refused(world: World) -> None:
    mine = _submit(world, **{"attribute[urgency]": "normal"})
    theirs = _submit(world)
    rid = mine["service_request_id"]
    _act(world, rid, "accept", "已安排网格员处理", public=True)
    own = _one(world, rid, token=mine["token"])
    assert list(own)[: len(PUBLIC_FIELDS)] == list(PUBLIC_FIELDS)
    assert own["workflow_status"] == "accepted"
    assert own["attributes"] == {"urgency": "normal"}
    assert [h["note"] for h in own["history"]][-1] == "已安排网格员处理"
    assert own["media_urls"] == []
    # the header works too, and the token is read however it is typed
    r = world.client.get(
        f"/open311/v2/requests/{rid}.json",
        headers={"X-Open311-Token": mine["token"].lower().replace("-", " ")},
    )
    assert r.status_code == 200 and r.json()[0]["workflow_status"] == "accepted"
    for bad in (theirs["token"], "AAAA-BBBB-CCCC", "short", "x" * 40):
        r = world.client.get(f"/open311/v2/requests/{rid}.json", params={"token": bad})
        assert r.status_code == 403, bad
        assert r.json()[0]["rule"] == "token_invalid"
        assert "workflow_status" not in r.text
    r = world.client.get(f"/open311/v2/tokens/{mine['token']}.json")
    assert r.status_code == 200 and r.json() == [
        {"service_request_id": rid, "token": mine["token"]}
    ]
    for unknown in ("AAAA-BBBB-CCCC", "short"):  # not found, however malformed (GeoReport)
        r = world.client.get(f"/open311/v2/tokens/{unknown}.json")
        assert r.status_code == 404 and r.json()[0]["rule"] == "token_invalid"
        assert r.json()[0]["code"] == 404
    with world.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT token_hash FROM open311_requests WHERE case_id = :c"), {"c": int(rid)}
        ).scalar_one()
    assert len(stored) == 64 and mine["token"].replace("-", "") not in stored


def test_no_personal_data_in_public_answers(world: World) -> None:
    created = _submit(
        world,
        first_name=PERSONAL["name"][2:],
        last_name=PERSONAL["name"][:2],
        phone=PERSONAL["phone"],
        email=PERSONAL["email"],
        device_id="dev-42",
    )
    rid = created["service_request_id"]
    answers = [
        world.client.get(f"/open311/v2/requests/{rid}.json").text,
        world.client.get(f"/open311/v2/requests/{rid}.xml").text,
        world.client.get("/open311/v2/requests.json").text,
        world.client.get("/open311/v2/requests.xml").text,
        world.client.get(
            f"/open311/v2/requests/{rid}.json", params={"token": created["token"]}
        ).text,
    ]
    for body in answers:
        for value in (*PERSONAL.values(), PERSONAL["name"][:2] + "*", "dev-42"):
            assert value not in body, value
    # staff see the reporter (masked) through the case API
    reporter = _case(world, rid)["reporter"]
    assert (
        reporter and reporter["phone"] != PERSONAL["phone"] and reporter["phone"].endswith("4321")
    )


def test_rate_limit_per_client(world: World) -> None:
    world.app.state.open311_limits = (2, 3600)
    try:
        with TestClient(world.app, client=("198.51.100.7", 40000)) as other:
            codes = [
                other.post("/open311/v2/requests.json", json=_body(world)).status_code
                for _ in range(3)
            ]
            refused = other.post("/open311/v2/requests.json", json=_body(world, lat="bad"))
        with TestClient(world.app, client=("198.51.100.8", 40000)) as another:
            fine = another.post("/open311/v2/requests.json", json=_body(world))
        assert codes == [200, 200, 429]
        assert refused.status_code == 429 and refused.json()[0]["rule"] == "rate_limited"
        assert fine.status_code == 200  # another client is not held back
    finally:
        world.app.state.open311_limits = (100_000, 3600)
    with world.engine.connect() as conn:
        keys = conn.execute(text("SELECT key FROM open311_rate")).scalars().all()
    assert keys and not any("198.51" in k for k in keys)  # addresses are not stored


def test_the_request_guards_answer_open311_clients_in_georeport_arrays(world: World) -> None:
    """A NUL in the URL or an oversized body is refused before any route runs: still as a
    GeoReport error array on /open311, in geogrid's own shape elsewhere."""
    c = world.client
    nul = c.get("/open311/v2/requests/1.json?token=a%00b")
    assert nul.status_code == 400
    refused = {"code": 400, "description": "NUL bytes are not allowed in a URL"}
    assert nul.json() == [{**refused, "rule": "request_refused"}]
    big = c.post(
        "/open311/v2/requests.json",
        content=b"x" * (world.app.state.settings.max_body_bytes + 1),
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413 and big.json()[0]["rule"] == "body_too_large"
    assert c.get("/api/plans?x=%00").json()["code"] == "InvalidInput"
