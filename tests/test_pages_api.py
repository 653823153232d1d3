"""Page routes through the real app (TestClient, real PostGIS): the public grid look-ups,
the public grid page, error panels instead of JSON for browsers, the page language, and
the MBTiles base map (tiles/basemap.py) with the inputs it must refuse."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.errors import ConfigurationError, NotFound
from tests.pages_support import embed_token, make_mbtiles, seed_overlays, tile_png
from tiles import basemap

HTML = {"Accept": "text/html,application/xhtml+xml"}
#: What a public look-up may answer, field by field: grids and staff, nothing else.
CARD_FIELDS = {"code", "name", "village", "village_code", "town", "households", "staff", "url"}
STAFF_FIELDS = {"id", "name", "phone", "tel", "duties", "role", "post", "photo_url"}


@dataclass
class Town:
    client: TestClient
    engine: Engine  # the owner's connection: reads the register to derive test inputs
    app: Any


@pytest.fixture(scope="module")
def town(pg, _town_template, tmp_path_factory) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    from api import create_app
    from geogrid.settings import Settings

    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    seed_overlays(url)
    app = create_app(Settings(home=tmp_path_factory.mktemp("pages-api")), database_url=url)
    engine = store.make_engine(url)
    try:
        with TestClient(app) as client:
            yield Town(client, engine, app)
    finally:
        engine.dispose()
        pg.drop_database(name)


def _sample_addresses(engine: Engine, n: int = 40) -> list[tuple[str, str]]:
    """(address as registered, the grid its household's group belongs to), spread over
    villages and address forms, from the sample town's register."""
    sql = """
        SELECT DISTINCT ON (h.village_code, length(h.address_raw) % 5)
               h.address_raw, g.code
          FROM households h
          JOIN grid_groups gg ON gg.group_id = h.group_id AND gg.part IS NULL
          JOIN grids g ON g.id = gg.grid_id
          JOIN plans p ON p.id = gg.plan_id AND p.status = 'active'
         WHERE h.address_raw IS NOT NULL
         ORDER BY h.village_code, length(h.address_raw) % 5, h.id
    """
    with engine.connect() as conn:
        rows = conn.execute(text(sql)).all()
    assert len(rows) > 10
    return [(str(r[0]), str(r[1])) for r in rows[:n]]


def test_find_by_address_gives_the_grid_of_the_households_group(town: Town) -> None:
    samples = _sample_addresses(town.engine)
    with town.engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT head_name FROM households LIMIT 2000"))}
    wrong = []
    for address, want in samples:
        r = town.client.get("/public/find", params={"address": address})
        assert r.status_code == 200, r.text
        body = r.json()
        codes = [g["code"] for g in body["grids"]]
        if body["match"] != "group" or codes != [want]:
            wrong.append((address, want, body["match"], codes))
        for card in body["grids"]:
            assert set(card) <= CARD_FIELDS, set(card) - CARD_FIELDS
            for s in card["staff"]:
                assert set(s) <= STAFF_FIELDS, set(s) - STAFF_FIELDS
        assert not any(n and n in r.text for n in names), "a resident's name in a public answer"
    assert not wrong, wrong


def test_find_by_address_without_a_known_village(town: Town) -> None:
    r = town.client.get("/public/find", params={"address": "123号"})
    assert r.json()["match"] == "none" and r.json()["reason"] == "unreadable"
    r = town.client.get("/public/find", params={"address": "子虚乌有村3组12号"})
    body = r.json()
    assert (body["match"], body["reason"], body["grids"]) == ("none", "no_village", [])
    assert body["parsed"] == {
        "town": None,
        "village": "子虚乌有村",
        "group": 3,
        "house_number": "12",
    }


def test_find_by_address_with_a_village_only(town: Town) -> None:
    with town.engine.connect() as conn:
        village, n = conn.execute(
            text(
                "SELECT v.name, count(*) FROM admin_areas v "
                "JOIN grids g ON g.village_code = v.code "
                "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                "WHERE v.level = 'village' GROUP BY v.name ORDER BY count(*) DESC, v.name LIMIT 1"
            )
        ).one()
    body = town.client.get("/public/find", params={"address": village}).json()
    assert body["match"] == "village" and len(body["grids"]) == n


@pytest.mark.parametrize(
    ("params", "rule"),
    [
        ({}, "the address is required"),
        ({"address": ""}, "empty"),
        ({"address": "   "}, "blank"),
        ({"address": "村" * 101}, "longer than 100 characters"),
        ({"address": "王家湾村\x073组"}, "a control character"),
    ],
)
def test_find_by_address_refuses(town: Town, params: dict[str, str], rule: str) -> None:
    r = town.client.get("/public/find", params=params)
    assert r.status_code == 400, (rule, r.text)
    assert r.json()["code"] in ("InvalidInput", "InvalidParameterValue"), rule


def test_find_by_point(town: Town) -> None:
    with town.engine.connect() as conn:
        code, x, y = conn.execute(
            text(
                "SELECT g.code, ST_X(p), ST_Y(p) FROM (SELECT g.code, ST_PointOnSurface(g.geom) p "
                "FROM grids g JOIN plans pl ON pl.id = g.plan_id AND pl.status = 'active' "
                "ORDER BY g.code DESC LIMIT 1) g"
            )
        ).one()
    body = town.client.get("/public/at", params={"lng": x, "lat": y}).json()
    assert body["match"] == "point" and [g["code"] for g in body["grids"]] == [code]
    assert body["grids"][0]["staff"][0]["tel"].startswith("tel:0731-8")
    far = town.client.get("/public/at", params={"lng": 0, "lat": 0}).json()
    assert far == {"match": "none", "grids": []}
    for bad in ({"lng": 181, "lat": 30}, {"lng": 114, "lat": -91}, {"lng": "x", "lat": 30},
                {"lat": 30}):  # fmt: skip
        assert town.client.get("/public/at", params=bad).status_code == 400, bad


def test_public_grid_page_and_its_error_panels(town: Town) -> None:
    with town.engine.connect() as conn:
        code, name = conn.execute(
            text(
                "SELECT g.code, g.name FROM grids g JOIN plans p ON p.id = g.plan_id "
                "WHERE p.status = 'active' ORDER BY g.code LIMIT 1"
            )
        ).one()
    r = town.client.get(f"/public/grid/{code}", headers=HTML)
    assert r.status_code == 200 and f"<title>{name} · geogrid</title>" in r.text
    assert f'"grid": "{code}"' in r.text
    # a browser gets a panel in the page's language; an API client gets {code, description}
    missing = code[:-3] + "999"
    r = town.client.get(f"/public/grid/{missing}", headers=HTML)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "未找到所请求的内容" in r.text and "no grid" not in r.text
    r = town.client.get(f"/public/grid/{missing}?lang=en", headers=HTML)
    assert "Not found." in r.text and 'lang="en"' in r.text
    r = town.client.get(f"/public/grid/{missing}")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
    r = town.client.get("/public/grid/12345", headers=HTML)
    assert r.status_code == 400 and "输入有误" in r.text
    # other routes keep their JSON, whatever the browser accepts
    r = town.client.get("/public/find", headers=HTML)
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameterValue"


def test_page_language(town: Town) -> None:
    def lang(**kw: Any) -> str:
        r = town.client.get("/public", headers=HTML, **kw)
        return re.search(r'<html lang="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]

    assert lang() == "zh-CN"
    assert lang(params={"lang": "en"}) == "en"
    assert lang(params={"lang": "fr"}) == "zh-CN"
    town.client.cookies.set("gg_lang", "en")
    try:
        assert lang() == "en"
        assert lang(params={"lang": "zh"}) == "zh-CN"  # the URL wins over the cookie
    finally:
        town.client.cookies.clear()
    r = town.client.get("/public?lang=en", headers=HTML)
    catalogue = json.loads(re.search(r'id="gg-messages">(.*?)</script>', r.text).group(1))  # type: ignore[union-attr]
    assert catalogue["public.find"] == "Find" and catalogue["errors.NotFound"] == "Not found."


def test_embed_error_panels(town: Town) -> None:
    from api.auth import secret_of  # noqa: F401  (the secret the app signs with)
    from geogrid.access.keys import server_secret

    url = str(town.engine.url.render_as_string(hide_password=False))
    portal = "http://127.0.0.1:8765"
    good = embed_token(town.app, url, origins=[portal])
    r = town.client.get(f"/embed/heat?embed_token={good}", headers=HTML)
    assert r.status_code == 200
    assert f"frame-ancestors 'self' {portal}" in r.headers["content-security-policy"]
    # garbage: a panel, framed by this site only
    r = town.client.get("/embed/heat?embed_token=not-a-token", headers=HTML)
    assert r.status_code == 401 and "嵌入令牌无效" in r.text
    assert r.headers["content-security-policy"].endswith("frame-ancestors 'self'")
    assert "expired" not in r.text  # the server's English description is not shown
    # expired: the panel may be framed by the portal the token names (it shows no data)
    secret = server_secret(town.app.state.settings)
    claims = jwt.decode(good, secret, algorithms=["HS256"], options={"verify_aud": False})
    claims["exp"] = datetime.now(UTC) - timedelta(days=1)
    expired = jwt.encode(claims, secret, algorithm="HS256")
    r = town.client.get(f"/embed/heat?embed_token={expired}&lang=en", headers=HTML)
    assert r.status_code == 401 and "invalid, expired or revoked" in r.text
    assert f"frame-ancestors 'self' {portal}" in r.headers["content-security-policy"]
    # a forged token naming another portal does not widen who may frame the panel
    forged = jwt.encode({**claims, "origins": ["http://evil.example"]}, b"x" * 32, "HS256")
    r = town.client.get(f"/embed/heat?embed_token={forged}", headers=HTML)
    assert "evil" not in r.headers["content-security-policy"]
    # revoked token and a layer the token does not name
    with town.engine.begin() as conn:
        conn.execute(text("UPDATE embed_tokens SET revoked_at = now()"))
    r = town.client.get(f"/embed/heat?embed_token={good}", headers=HTML)
    assert r.status_code == 401 and "嵌入令牌无效" in r.text
    r = town.client.get(f"/embed/heat?embed_token={good}")
    assert r.status_code == 401 and r.json()["code"] == "Unauthenticated"
    r = town.client.get("/embed/nosuchlayer", headers=HTML)
    assert r.status_code == 404 and "gg-error-panel" in r.text
    r = town.client.get("/embed/key_units", headers=HTML)  # not public, no token
    assert r.status_code == 401 and "gg-error-panel" in r.text


# -- MBTiles ---------------------------------------------------------------------------------


def _bad_files(tmp: Path) -> dict[str, Path]:
    junk = tmp / "junk.mbtiles"
    junk.write_bytes(b"this is not sqlite" * 100)
    no_tiles = tmp / "no-tiles.mbtiles"
    conn = sqlite3.connect(no_tiles)
    conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    conn.execute("INSERT INTO metadata VALUES ('format', 'png')")
    conn.commit()
    conn.close()
    no_meta = tmp / "no-meta.mbtiles"
    conn = sqlite3.connect(no_meta)
    conn.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
    conn.commit()
    conn.close()
    return {
        "missing file": tmp / "nowhere.mbtiles",
        "not SQLite": junk,
        "no tiles table": no_tiles,
        "no metadata table": no_meta,
        "no format": make_mbtiles(tmp / "nofmt.mbtiles", {}, fmt=None),
        "unknown format": make_mbtiles(tmp / "tiff.mbtiles", {}, fmt="tiff"),
        "zoom not a number": make_mbtiles(tmp / "z.mbtiles", {}, meta={"maxzoom": "high"}),
        "zoom out of range": make_mbtiles(tmp / "z31.mbtiles", {}, meta={"maxzoom": "31"}),
    }


BAD_MBTILES = ("missing file", "not SQLite", "no tiles table", "no metadata table", "no format",
               "unknown format", "zoom not a number", "zoom out of range")  # fmt: skip


@pytest.mark.parametrize("rule", BAD_MBTILES)
def test_open_mbtiles_refuses(tmp_path: Path, rule: str) -> None:
    path = _bad_files(tmp_path)[rule]
    with pytest.raises(ConfigurationError):
        basemap.open_mbtiles(path)


def test_open_mbtiles_reads_metadata(tmp_path: Path) -> None:
    path = make_mbtiles(
        tmp_path / "v.mbtiles",
        {},
        fmt="pbf",
        meta={"bounds": "114,30,115,31", "attribution": "本地", "minzoom": "5", "maxzoom": "4",
              "json": json.dumps({"vector_layers": [{"id": "water"}, {"id": "roads"}]})},
    )  # fmt: skip
    mb = basemap.open_mbtiles(path)
    assert (mb.vector, mb.media_type, mb.minzoom, mb.maxzoom) == (
        True, "application/x-protobuf", 5, 5,
    )  # fmt: skip
    assert mb.bounds == (114.0, 30.0, 115.0, 31.0) and mb.vector_layers == ["water", "roads"]
    with pytest.raises(NotFound):
        mb.tile(2, 4, 0)  # x beyond 2**z


def test_mbtiles_base_map_is_served(town: Town, tmp_path: Path) -> None:
    png = tile_png()
    raster = make_mbtiles(tmp_path / "r.mbtiles", {(3, 6, 2): png})
    before = town.app.state.settings
    try:
        town.app.state.settings = before.model_copy(update={"basemap": "none"})
        assert town.client.get("/basemap/mbtiles/3/6/2").status_code == 404  # none configured
        town.app.state.settings = before.model_copy(
            update={"basemap": "mbtiles", "basemap_mbtiles": raster}
        )
        r = town.client.get("/basemap/mbtiles/3/6/2")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == png  # XYZ y=2 is TMS row 5 at zoom 3: the flip is right
        assert town.client.get("/basemap/mbtiles/3/6/5").status_code == 204  # no such tile
        assert town.client.get("/basemap/mbtiles/3/8/2").status_code == 404  # outside zoom 3
        page = town.client.get("/public", headers=HTML).text
        assert '"kind": "mbtiles"' in page and "/basemap/mbtiles/{z}/{x}/{y}" in page
        assert str(tmp_path) not in page  # no file paths in pages
        mvt = gzip.compress(b"\x1a\x00")  # an (empty) layer-less vector tile, gzipped
        vector = make_mbtiles(tmp_path / "v.mbtiles", {(3, 6, 2): mvt}, fmt="pbf")
        town.app.state.settings = before.model_copy(
            update={"basemap": "mbtiles", "basemap_mbtiles": vector}
        )
        r = town.client.get("/basemap/mbtiles/3/6/2")
        assert r.headers["content-type"] == "application/x-protobuf"
        assert r.headers["content-encoding"] == "gzip" and r.content == b"\x1a\x00"
        town.app.state.settings = before.model_copy(
            update={"basemap": "mbtiles", "basemap_mbtiles": tmp_path / "gone.mbtiles"}
        )
        r = town.client.get("/public", headers=HTML)
        assert r.status_code == 503 and "系统配置不完整" in r.text
    finally:
        town.app.state.settings = before
