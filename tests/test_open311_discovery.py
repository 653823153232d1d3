"""Open311 Service Discovery (``/open311/discovery.json`` and ``.xml``) field by field against
the discovery specification, and the GeoReport v2 encoding rules every Open311 answer follows
(UTF-8 content types, the XML declaration, the spec's 404s)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.settings import Settings

SPEC = "http://wiki.open311.org/GeoReport_v2"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
FIELDS = ["changeset", "contact", "key_service", "endpoints"]
ENDPOINT = ["specification", "url", "changeset", "type", "formats"]


@dataclass
class World:
    client: TestClient
    public: TestClient  # an app with GEOGRID_PUBLIC_BASE_URL set
    engine: Engine
    admin: dict[str, str]


@pytest.fixture(scope="module")
def world(pg, _town_template, tmp_path_factory, account_maker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    home = tmp_path_factory.mktemp("discovery")
    app = create_app(Settings(home=home), database_url=url)
    public = create_app(
        Settings(home=home, public_base_url="https://grid.example.gov.cn/"), database_url=url
    )
    admin = account_maker(url, "sysadmin")  # the shared category dictionary's editor
    try:
        with TestClient(app) as client, TestClient(public) as other:
            yield World(client, other, engine, admin.headers(client))
    finally:
        engine.dispose()
        pg.drop_database(name)


def _json(client: TestClient, **params: str) -> dict:
    r = client.get("/open311/discovery.json", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    return r.json()


def test_discovery_json_field_by_field(world: World) -> None:
    doc = _json(world.client)
    assert list(doc) == FIELDS
    assert ISO.match(doc["changeset"])
    assert "网格" in doc["contact"] and "http://testserver/complain" in doc["contact"]
    assert "API 密钥" in doc["key_service"]
    (endpoint,) = doc["endpoints"]
    assert list(endpoint) == ENDPOINT
    assert endpoint == {
        "specification": SPEC,
        "url": "http://testserver/open311/v2",
        "changeset": doc["changeset"],
        "type": "production",
        "formats": ["text/xml", "application/json"],
    }
    english = _json(world.client, lang="en")
    assert "No API key" in english["key_service"] and "grid service centre" in english["contact"]
    assert english["endpoints"] == doc["endpoints"]


def test_discovery_xml_mirrors_the_json(world: World) -> None:
    r = world.client.get("/open311/discovery.xml")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(r.content)
    assert root.tag == "discovery"
    assert [c.tag for c in root] == FIELDS
    doc = _json(world.client)
    assert root.findtext("changeset") == doc["changeset"]
    assert root.findtext("contact") == doc["contact"]
    assert root.findtext("key_service") == doc["key_service"]
    endpoints = root.findall("endpoints/endpoint")
    assert len(endpoints) == 1
    (e,) = endpoints
    assert [c.tag for c in e] == ENDPOINT
    assert e.findtext("specification") == SPEC
    assert e.findtext("url") == "http://testserver/open311/v2"
    assert e.findtext("type") == "production"
    assert [f.text for f in e.findall("formats/format")] == ["text/xml", "application/json"]


def test_the_endpoint_url_serves_every_format_it_names(world: World) -> None:
    (endpoint,) = _json(world.client)["endpoints"]
    path = endpoint["url"].removeprefix("http://testserver")
    for fmt, mime in (("xml", "text/xml"), ("json", "application/json")):
        assert mime in endpoint["formats"]
        r = world.client.get(f"{path}/services.{fmt}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(mime)


def test_public_base_url_names_the_endpoint(world: World) -> None:
    doc = _json(world.public)
    assert doc["endpoints"][0]["url"] == "https://grid.example.gov.cn/open311/v2"
    assert "https://grid.example.gov.cn/complain" in doc["contact"]
    root = ET.fromstring(world.public.get("/open311/discovery.xml").content)
    assert root.findtext("endpoints/endpoint/url") == "https://grid.example.gov.cn/open311/v2"


def test_changeset_moves_when_a_service_changes(world: World) -> None:
    before = _json(world.client)["changeset"]
    assert _json(world.client)["changeset"] == before  # stable while nothing changes
    first = world.client.get("/open311/v2/services.json").json()[0]
    code, name = first["service_code"], first["service_name"]
    r = world.client.put(
        f"/api/cases/categories/{code}", json={"name": name + "（改）"}, headers=world.admin
    )
    assert r.status_code == 200, r.text
    try:
        after = _json(world.client)["changeset"]
        # later, and sortable as text: ISO 8601, always in China time
        assert after > before
        assert datetime.fromisoformat(after) > datetime.fromisoformat(before)
        names = {s["service_code"]: s["service_name"]
                 for s in world.client.get("/open311/v2/services.json").json()}  # fmt: skip
        assert names[code] == name + "（改）"
        xml = ET.fromstring(world.client.get("/open311/discovery.xml").content)
        assert xml.findtext("changeset") == xml.findtext("endpoints/endpoint/changeset") == after
    finally:
        world.client.put(f"/api/cases/categories/{code}", json={"name": name}, headers=world.admin)


@pytest.mark.parametrize("fmt", ["html", "csv", "XML"])
def test_other_formats_are_refused_in_a_georeport_error_array(world: World, fmt: str) -> None:
    r = world.client.get(f"/open311/discovery.{fmt}")
    assert r.status_code == 400
    (error,) = r.json()
    assert error["code"] == 400 and error["rule"] == "format_unsupported"


def test_every_open311_answer_says_utf8(world: World) -> None:
    for path in (
        "/open311/v2/services.json",
        "/open311/v2/requests.json",
        "/open311/v2/requests/999999.json",  # an error array too
    ):
        r = world.client.get(path)
        assert r.headers["content-type"] == "application/json; charset=utf-8", path
    for path in ("/open311/v2/services.xml", "/open311/v2/requests/999999.xml"):
        r = world.client.get(path)
        assert r.headers["content-type"] == "text/xml; charset=utf-8", path
        assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), path
    errors = ET.fromstring(world.client.get("/open311/v2/requests/999999.xml").content)
    assert errors.tag == "errors" and errors.findtext("error/code") == "404"
    assert errors.findtext("error/description")


def test_georeport_404s(world: World) -> None:
    """GeoReport's "404 - service_code ... was not found" on POST, and "404 - token not
    found" on GET tokens; a missing service_code stays a 400."""
    services = world.client.get("/open311/v2/services.json").json()
    assert "9999" not in {s["service_code"] for s in services}
    body = {"service_code": "9999", "lat": 30.4, "long": 114.3, "description": "路灯坏了很久"}
    for send in ({"json": body}, {"data": body}):  # JSON and form-encoded alike
        r = world.client.post("/open311/v2/requests.json", **send)  # type: ignore[arg-type]
        assert r.status_code == 404, r.text
        assert [(e["code"], e["rule"]) for e in r.json()] == [(404, "service_code_unknown")]
    missing = {k: v for k, v in body.items() if k != "service_code"}
    r = world.client.post("/open311/v2/requests.json", json=missing)
    assert r.status_code == 400 and "service_code_missing" in {e["rule"] for e in r.json()}
    r = world.client.get("/open311/v2/tokens/AAAA-BBBB-CCCC.xml")
    assert r.status_code == 404
    assert ET.fromstring(r.content).findtext("error/code") == "404"


def test_the_specs_example_submission_is_accepted(world: World) -> None:
    """The GeoReport v2 example POST (form-encoded, with api_key, jurisdiction_id, device_id,
    account_id, e-mail and names, which a one-jurisdiction server without keys may ignore)
    creates a request; the answer names it and never echoes the contact."""
    services = world.client.get("/open311/v2/services.json").json()
    code = next(
        s["service_code"]
        for s in services
        if not any(
            a["required"]
            for a in world.client.get(f"/open311/v2/services/{s['service_code']}.json").json()[
                "attributes"
            ]
        )
    )
    with world.engine.connect() as conn:
        lon, lat = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p "
                "FROM admin_areas WHERE level = 'village' ORDER BY code LIMIT 1) q"
            )
        ).one()
    form = {
        "api_key": "xyz", "jurisdiction_id": "city.gov", "service_code": code,
        "lat": str(lat), "long": str(lon), "address_string": "幸福路 8 号",
        "email": "smit333@example.com", "device_id": "tt222111", "account_id": "123456",
        "first_name": "john", "last_name": "smith", "phone": "111111111",
        "description": "A large sinkhole is destroying the street",
    }  # fmt: skip
    r = world.client.post("/open311/v2/requests.xml", data=form)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(r.content)
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id", "").isdigit()
    assert "smith" not in r.text and "111111111" not in r.text
