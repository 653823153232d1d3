"""The leak test: canary names, phones and ID numbers in the register, then every public
response, every tile, OGC page, error body and log line searched for them — zero hits."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.overlays import import_overlay
from geogrid.people.crypto import key_provider
from geogrid.people.idcard import check_character
from geogrid.people.load import import_members
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings

HEAD_NAME, HEAD_PHONE = "柳丝雀", "13700001111"
MEMBER_NAME, MEMBER_PHONE = "金丝雀三号", "13987654321"
MEMBER_ID = "42011719900101123" + check_character("42011719900101123")
CANARIES = (HEAD_NAME, HEAD_PHONE, MEMBER_NAME, MEMBER_PHONE, MEMBER_ID, MEMBER_ID[-8:])


@dataclass
class Leaky:
    client: TestClient
    engine: Engine
    url: str
    lon: float
    lat: float
    grid: str


@pytest.fixture(scope="module")
def leaky(pg, _town_template: str, sample_town, tmp_path_factory) -> Iterator[Leaky]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    home: Path = tmp_path_factory.mktemp("leak-home")
    home.chmod(0o755)
    plan = create_plan(engine, sample_town.town_code, jobs=1)
    activate_plan(engine, plan)
    import_overlay(engine, sample_town.cases, "cases")
    with engine.begin() as conn:
        hh, reg, vname, lon, lat, grid = conn.execute(
            text(
                "SELECT h.id, h.register_no, a.name, ST_X(h.geom), ST_Y(h.geom), h.grid_code "
                "FROM households h JOIN admin_areas a ON a.code = h.village_code "
                "WHERE h.geom IS NOT NULL AND h.grid_code IS NOT NULL ORDER BY h.id LIMIT 1"
            )
        ).one()
        conn.execute(
            text("UPDATE households SET head_name = :n, phone = :p WHERE id = :h"),
            {"n": HEAD_NAME, "p": HEAD_PHONE, "h": hh},
        )
    members = home / "members.csv"
    with members.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["村", "户号", "姓名", "与户主关系", "公民身份号码", "联系电话"])
        out.writerow([vname, reg, MEMBER_NAME, "户主", MEMBER_ID, MEMBER_PHONE])
    assert import_members(engine, members, key_provider(home, env={}, create=True)).inserted == 1
    app = create_app(Settings(home=home, log_level="DEBUG"), database_url=url)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Leaky(client, engine, url, float(lon), float(lat), str(grid))
    finally:
        engine.dispose()
        pg.drop_database(name)


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _hits(body: bytes) -> list[str]:
    text_ = body.decode("utf-8", "replace")
    return [c for c in CANARIES if c in text_ or c.encode() in body]


def _public_urls(t: Leaky) -> list[str]:
    urls = [
        "/", "/public", "/public/grids.geojson", "/ogc", "/ogc/collections", "/ogc/api",
        "/openapi.json", "/health", "/assets", "/login", "/embed/grids", "/embed/villages",
        f"/api/grids/{t.grid}/staff",
    ]  # fmt: skip
    for coll in ("towns", "villages", "groups", "grids", "cases", "key_units", "households"):
        urls += [f"/ogc/collections/{coll}", f"/ogc/collections/{coll}/items?limit=10000"]
    for layer in ("towns", "villages", "groups", "grids", "households", "cases", "heat"):
        urls.append(f"/tiles/{layer}.json")
        for z in (10, 12, 14, 15, 16):
            x, y = _tile(t.lon, t.lat, z)
            urls.append(f"/tiles/{layer}/{z}/{x}/{y}.mvt")
    # errors (what a request carries may be echoed back; the register's data must not be)
    urls += [
        "/ogc/collections/grids/items?name=x",
        "/ogc/collections/nope/items",
        "/api/plans?town=1",
        "/no/such/page",
        "/tiles/grids/99/0/0.mvt?category=x",
        "/api/people?q=1",
    ]
    box = f"{t.lon - 0.01},{t.lat - 0.01},{t.lon + 0.01},{t.lat + 0.01}"
    urls += [f"/ogc/collections/{c}/items?bbox={box}" for c in ("groups", "grids", "villages")]
    return urls


def test_no_personal_data_in_public_responses_tiles_errors_or_logs(
    leaky: Leaky, caplog: pytest.LogCaptureFixture
) -> None:
    # the canaries are there to find (else the test could not fail)
    with leaky.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM households WHERE head_name = :n"), {"n": HEAD_NAME}
            ).scalar_one()
            == 1
        )
        members = conn.execute(text("SELECT count(*) FROM household_members")).scalar_one()
    assert members >= 1
    caplog.set_level(logging.DEBUG)
    leaks = []
    seen = 0
    for url in _public_urls(leaky):
        r = leaky.client.get(url)
        seen += 1
        assert r.status_code < 500, (url, r.status_code, r.text[:200])
        for hit in _hits(r.content):
            leaks.append(f"{url}: {hit}")
    # sign-in attempts and bad bodies carrying the canaries
    leaky.client.post("/api/auth/token", data={"username": MEMBER_NAME, "password": MEMBER_ID})
    r = leaky.client.post("/api/people/search", json={"name": MEMBER_NAME})
    leaks += [f"search: {h}" for h in _hits(r.content)]
    r = leaky.client.post("/api/plans", json={"town": MEMBER_ID, "name": MEMBER_NAME})
    leaks += [f"bad plan body: {h}" for h in _hits(r.content)]
    for record in caplog.records:
        line = record.getMessage() + " " + str(record.args or "")
        leaks += [f"log {record.name}: {c}" for c in CANARIES if c in line]
    assert seen > 60
    assert leaks == []


def test_signed_in_responses_are_masked(leaky: Leaky, make_account) -> None:  # type: ignore[no-untyped-def]
    worker = make_account(leaky.url, "grid_worker", leaky.grid)
    h = worker.headers(leaky.client)
    r = leaky.client.get("/api/people?limit=500", headers=h)
    assert r.status_code == 200, r.text
    body = r.content
    assert _hits(body) == []
    assert "金*********"[:1] in body.decode()  # the masked name is there
    for layer in ("cases", "households", "grids"):
        x, y = _tile(leaky.lon, leaky.lat, 16)
        tile = leaky.client.get(f"/tiles/{layer}/16/{x}/{y}.mvt", headers=h)
        assert _hits(tile.content) == []
