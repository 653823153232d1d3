"""Cases in tiles, heat and OGC features, filtered by workflow status and overdue, counted
against the database (decoded MVT, not golden files)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.overlays import import_overlay
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings


@dataclass
class Town:
    client: TestClient
    engine: Engine
    headers: dict[str, str]
    bbox: tuple[float, float, float, float]


@pytest.fixture(scope="module")
def town(pg, _town_template: str, sample_town, account_maker, tmp_path_factory) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    activate_plan(engine, create_plan(engine, sample_town.town_code, name="a", jobs=1))
    import_overlay(engine, sample_town.cases, "cases")
    with engine.connect() as conn:
        bbox = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom) AS e FROM cases) s"
            )
        ).one()
    leader = account_maker(url, "town_leader", sample_town.town_code)
    app = create_app(Settings(home=tmp_path_factory.mktemp("layers")), database_url=url)
    try:
        with TestClient(app) as client:
            yield Town(client, engine, leader.headers(client), tuple(map(float, bbox)))
    finally:
        engine.dispose()
        pg.drop_database(name)


def _tiles(bbox: tuple[float, float, float, float], z: int) -> list[tuple[int, int]]:
    def xy(lon: float, lat: float) -> tuple[int, int]:
        n = 2**z
        x = int((lon + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        return x, y

    x0, y1 = xy(bbox[0], bbox[1])
    x1, y0 = xy(bbox[2], bbox[3])
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def _features(t: Town, layer: str, z: int, x: int, y: int, **params: str) -> list[dict]:
    r = t.client.get(f"/tiles/{layer}/{z}/{x}/{y}.mvt", headers=t.headers, params=params)
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204 or not r.content:
        return []
    return mapbox_vector_tile.decode(r.content).get(layer, {}).get("features", [])


def _count(t: Town, where: str) -> int:
    with t.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM cases c WHERE {where}")).scalar_one())


OVERDUE = (
    "c.status IN ('reported', 'accepted', 'verified', 'registered', 'dispatched', "
    "'in_progress', 'handled', 'checked', 'evaluated') AND c.due_at < now()"
)


@pytest.mark.parametrize("z", [11, 13])
def test_counts_below_street_zoom_follow_the_filters(town: Town, z: int) -> None:
    for params, where in (
        ({"status": "dispatched,in_progress"}, "c.status IN ('dispatched', 'in_progress')"),
        ({"overdue": "true"}, OVERDUE),
        ({"status": "archived", "overdue": "false"}, "c.status = 'archived'"),
    ):
        for layer, key in (("cases", "count"), ("heat", "n")):
            total = sum(
                f["properties"][key]
                for x, y in _tiles(town.bbox, z)
                for f in _features(town, layer, z, x, y, **params)
            )
            assert total == _count(town, where), (layer, params)


def test_points_carry_status_and_overdue(town: Town) -> None:
    with town.engine.connect() as conn:
        lon, lat = conn.execute(
            text(f"SELECT ST_X(geom), ST_Y(geom) FROM cases c WHERE {OVERDUE} ORDER BY id LIMIT 1")
        ).one()
    z = 16
    ((x, y),) = _tiles((lon, lat, lon, lat), z)
    every = _features(town, "cases", z, x, y)
    late = _features(town, "cases", z, x, y, overdue="true")
    assert late and all(f["properties"]["overdue"] is True for f in late)
    assert {f["properties"]["case_no"] for f in late} == {
        f["properties"]["case_no"] for f in every if f["properties"]["overdue"]
    }
    for f in every:
        assert {"status", "priority", "current_grid_code"} <= set(f["properties"])
        assert not {"reporter", "name", "phone"} & set(f["properties"])
    only = _features(town, "cases", z, x, y, status="archived")
    assert all(f["properties"]["status"] == "archived" for f in only)


@pytest.mark.parametrize(
    ("params", "words"),
    [({"status": "done"}, "unknown case status"), ({"overdue": "maybe"}, "true or false")],
)
def test_bad_filters_are_refused(town: Town, params: dict[str, str], words: str) -> None:
    r = town.client.get("/tiles/cases/12/3300/1700.mvt", headers=town.headers, params=params)
    assert r.status_code == 400 and words in r.json()["description"]


def test_ogc_items_have_workflow_properties_and_filters(town: Town) -> None:
    r = town.client.get(
        "/ogc/collections/cases/items", headers=town.headers, params={"overdue": "1", "limit": 1000}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["numberMatched"] == _count(town, OVERDUE)
    for f in body["features"]:
        p = f["properties"]
        assert p["overdue"] == 1 and p["due_at"] and p["status"] != "closed"
    r = town.client.get(
        "/ogc/collections/cases/items",
        headers=town.headers,
        params={"status": "suspended", "limit": 1000},
    )
    assert r.json()["numberMatched"] == _count(town, "c.status = 'suspended'")
