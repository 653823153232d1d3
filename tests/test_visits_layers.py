"""Visit coverage per grid as an OGC API collection and a vector-tile layer (issue 13 §6).

The sample town with an active plan; in grid G (hand-worked): household A visited twice
this quarter, household B once on the quarter's first day, household C only the day
before the quarter began, every other household never. So this quarter G has
``visited = 2`` of its ``n`` households (C does not count), ``never_visited = n − 2``,
coverage ``2 ÷ n``; the sibling grid has no visit at all (0 %). A third household visited
later raises the layer's version, and the next tile shows 3. Access: every signed-in role
may read it (numbers only), anonymous readers only once the layer is published.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import mapbox_vector_tile
import pytest
from sqlalchemy import text

from tests.fieldwork_support import SUBJECTS, World, make_world

COVERAGE = "/ogc/collections/visit_coverage/items"
PROPERTIES = {
    "code", "name", "village_code", "town_code", "period_start", "households", "visited",
    "never_visited", "coverage_percent",
}  # fmt: skip
TILE_FIELDS = {
    "code", "name", "village_code", "households", "visited", "never_visited", "coverage",
}  # fmt: skip


@pytest.fixture(scope="module")
def world(pg, _town_template, sample_town, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(
        pg, _town_template, sample_town, account_maker, tmp_path_factory.mktemp("vlayers")
    )


def _today() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _visit(w: World, household: int, day: dt.date) -> None:
    with w.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO visits (household_id, village_code, visited_on, worker_name, notes) "
                "SELECT id, village_code, :d, 'wkr-秘', '低保申请情况' FROM households "
                "WHERE id = :h"
            ),
            {"h": household, "d": day},
        )


@pytest.fixture(scope="module")
def grid(world: World) -> tuple[str, int, list[int]]:
    """(grid code, its households, the ids of A, B, C and a fourth) with the visits made."""
    code = world.codes["grid"]
    with world.engine.connect() as conn:
        ids = list(
            conn.execute(
                text("SELECT id FROM households WHERE scope_key = :g ORDER BY id"), {"g": code}
            ).scalars()
        )
    assert len(ids) >= 4
    today = _today()
    start = _quarter_start(today)
    _visit(world, ids[0], today)
    _visit(world, ids[0], start)
    _visit(world, ids[1], start)
    _visit(world, ids[2], start - dt.timedelta(days=1))
    return code, len(ids), ids


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def test_ogc_collection_worked_out_by_hand(world: World, grid: tuple[str, int, list[int]]) -> None:
    code, n, _ = grid
    h = world.headers["town_leader"]
    r = world.client.get(COVERAGE, params={"code": code}, headers=h)
    assert r.status_code == 200, r.text
    (feature,) = r.json()["features"]
    props = feature["properties"]
    assert set(props) == PROPERTIES
    assert feature["id"] == code and feature["geometry"]["type"] == "MultiPolygon"
    assert (props["households"], props["visited"], props["never_visited"]) == (n, 2, n - 2)
    assert props["coverage_percent"] == round(200 / n)
    assert props["period_start"] == _quarter_start(_today()).isoformat()
    sibling = world.client.get(COVERAGE, params={"code": world.codes["sibling"]}, headers=h)
    (other,) = sibling.json()["features"]
    assert (other["properties"]["visited"], other["properties"]["coverage_percent"]) == (0, 0)
    # nothing personal: no register number, name, note or visit in the answer
    with world.engine.connect() as conn:
        regs = conn.execute(
            text("SELECT register_no FROM households WHERE scope_key = :g"), {"g": code}
        ).scalars()
        assert all(f'"{reg}"' not in r.text for reg in regs)
    assert "低保申请情况" not in r.text and "wkr-秘" not in r.text
    queryables = world.client.get("/ogc/collections/visit_coverage/queryables", headers=h)
    assert queryables.status_code == 200
    assert set(queryables.json()["properties"]) >= {"code", "village_code", "coverage_percent"}


def test_tile_layer_worked_out_by_hand_and_following_new_visits(
    world: World, grid: tuple[str, int, list[int]]
) -> None:
    code, n, ids = grid
    h = world.headers["viewer"]
    x, y = _tile(*world.points["grid"], 15)
    url = f"/tiles/visit_coverage/15/{x}/{y}.mvt"

    def mine() -> dict[str, object]:
        r = world.client.get(url, headers=h)
        assert r.status_code == 200, r.text
        feats = mapbox_vector_tile.decode(r.content)["visit_coverage"]["features"]
        return next(f["properties"] for f in feats if f["properties"]["code"] == code)

    props = mine()
    assert set(props) == TILE_FIELDS
    assert (props["households"], props["visited"], props["never_visited"]) == (n, 2, n - 2)
    assert props["coverage"] == pytest.approx(round(2 / n, 4))
    _visit(world, ids[3], _today())  # the layer's version moves: the cached tile is stale
    # the server trusts a version reading for its poll interval (0.25 s, TileService):
    # past it the new version is seen and the tile is rendered again
    time.sleep(0.6)
    assert mine()["visited"] == 3
    doc = world.client.get("/tiles/visit_coverage.json", headers=h).json()
    assert set(doc["vector_layers"][0]["fields"]) == TILE_FIELDS


SIGNED_IN = [k for k, (role, _, _) in SUBJECTS.items() if role is not None]


@pytest.mark.parametrize("subject", SIGNED_IN)
def test_every_signed_in_role_reads_the_layer(
    world: World, grid: tuple[str, int, list[int]], subject: str
) -> None:
    h = world.headers[subject]
    x, y = _tile(*world.points["grid"], 15)
    assert world.client.get(COVERAGE, params={"limit": 1}, headers=h).status_code == 200
    assert world.client.get(f"/tiles/visit_coverage/15/{x}/{y}.mvt", headers=h).status_code == 200
    listed = world.client.get("/ogc/collections", headers=h).json()["collections"]
    assert "visit_coverage" in {c["id"] for c in listed}


def test_anonymous_readers_only_once_published(
    world: World, grid: tuple[str, int, list[int]]
) -> None:
    x, y = _tile(*world.points["grid"], 15)
    paths = (
        COVERAGE,
        "/ogc/collections/visit_coverage",
        f"/tiles/visit_coverage/15/{x}/{y}.mvt",
        "/tiles/visit_coverage.json",
    )
    for path in paths:
        r = world.client.get(path)
        assert r.status_code == 401, (path, r.status_code)
        assert set(r.json()) >= {"code", "description"}
    listed = world.client.get("/ogc/collections").json()["collections"]
    assert "visit_coverage" not in {c["id"] for c in listed}
    sec = world.headers["secadmin"]  # the security administrator publishes it
    r = world.client.put("/api/layers/public/visit_coverage", json={"public": True}, headers=sec)
    assert r.status_code == 200 and r.json()["visit_coverage"] is True, r.text
    try:
        for path in paths:
            r = world.client.get(path)
            for _ in range(20):  # the public-layer set is cached for a few seconds
                if r.status_code == 200:
                    break
                time.sleep(0.5)
                r = world.client.get(path)
            assert r.status_code == 200, (path, r.status_code)
    finally:
        with world.engine.begin() as conn:
            conn.execute(text("DELETE FROM public_layers WHERE layer = 'visit_coverage'"))
