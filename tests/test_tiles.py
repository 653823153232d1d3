"""Vector tiles, TileJSON, HTTP caching and the heat pyramid, decoded as clients see them.

The sample town is loaded once per module (cases, key units and inspection points by SQL,
an active plan with one level-3 grid per village); tests that change data get their own
copy of the database.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.overlays import import_overlay
from geogrid.settings import Settings
from tiles import heat
from tiles.layers import LAYERS, lonlat_to_tile

PERSONAL = {"head_name", "phone", "register_no", "address", "address_raw", "address_norm"}


# --------------------------------------------------------------------------- data


def _copy_csv(engine: Engine, path: Path, ddl: str, insert: str) -> None:
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        conn.execute(text(f"CREATE TEMP TABLE src ({ddl}) ON COMMIT DROP"))
        with raw.cursor() as cur, cur.copy("COPY src FROM STDIN (FORMAT csv, HEADER)") as cp:
            cp.write(path.read_bytes())
        conn.execute(text(insert))


def load_overlays(engine: Engine, sample: Any) -> None:
    """An active plan, then the sample's cases, key units and inspection points.

    The cases come in through ``geogrid import`` (so each carries its village and grid);
    the other overlays by SQL.
    """
    make_plan(engine, status="active", suffix="001")
    report = import_overlay(engine, sample.cases, "cases")
    assert report.rejected == 0 and report.in_grid == report.inserted
    _copy_csv(
        engine, sample.key_units,
        "unit_id text, name text, type text, risk_level int, lon float8, lat float8, "
        "address text",
        "INSERT INTO key_units (unit_no, name, unit_type, risk_level, address, geom) "
        "SELECT unit_id, name, type, risk_level, address, "
        "ST_SetSRID(ST_MakePoint(lon, lat), 4326) FROM src",
    )  # fmt: skip
    _copy_csv(
        engine, sample.inspection_points,
        "point_id text, name text, lon float8, lat float8, schedule text, last_inspected date",
        "INSERT INTO inspection_points (point_no, name, geom, schedule, last_inspected) "
        "SELECT point_id, name, ST_SetSRID(ST_MakePoint(lon, lat), 4326), schedule, "
        "last_inspected FROM src",
    )  # fmt: skip


def make_plan(engine: Engine, *, status: str, suffix: str) -> int:
    """A plan with one level-3 grid per village (the village polygon)."""
    with engine.begin() as conn:
        plan_id = conn.execute(
            text(
                "INSERT INTO plans (town_code, name, status) SELECT code, :n, :s "
                "FROM admin_areas WHERE level = 'town' LIMIT 1 RETURNING id"
            ),
            {"n": f"plan {suffix}", "s": status},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO grids (plan_id, code, level, village_code, name, geom, households) "
                "SELECT :p, v.code || :suffix, 3, v.code, v.name || '网格' || :suffix, v.geom, "
                "(SELECT count(*) FROM households h WHERE h.village_code = v.code) "
                "FROM admin_areas v WHERE v.level = 'village'"
            ),
            {"p": plan_id, "suffix": suffix},
        )
    return int(plan_id)


@pytest.fixture(scope="module")
def loaded_db(pg, _town_template: str, sample_town) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    engine = store.make_engine(pg.url(name))
    try:
        load_overlays(engine, sample_town)
        with engine.begin() as conn:
            heat.refresh_heat(conn, full=True)
    finally:
        engine.dispose()
    with pg.admin() as conn:  # a template for the tests that change data
        conn.execute(f'CREATE DATABASE "{name}_t" TEMPLATE "{name}"')
    try:
        yield name
    finally:
        pg.drop_database(f"{name}_t")
        pg.drop_database(name)


def _client(url: str, tmp_path: Path, account_maker: Any) -> Iterator[TestClient]:
    """A client signed in as a town leader with everything in scope (cases and heat are
    not public; see tests/test_access_api.py for what anonymous users get)."""
    app = create_app(Settings(home=tmp_path), database_url=url)
    with TestClient(app) as client:
        app.state.tiles.watcher.interval = 0.0  # see every change at once
        client.headers.update(account_maker(url, "town_leader", "all").headers(client))
        yield client


@pytest.fixture(scope="module")
def client(pg, loaded_db: str, tmp_path_factory, account_maker) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    yield from _client(pg.url(loaded_db), tmp_path_factory.mktemp("home"), account_maker)


@pytest.fixture
def own(pg, loaded_db: str, tmp_path: Path, account_maker) -> Iterator[tuple[TestClient, Engine]]:  # type: ignore[no-untyped-def]
    """A client and engine on a private copy of the loaded database."""
    name = pg.create_database(template=f"{loaded_db}_t")
    engine = store.make_engine(pg.url(name))
    try:
        for c in _client(pg.url(name), tmp_path, account_maker):
            yield c, engine
    finally:
        engine.dispose()
        pg.drop_database(name)


@pytest.fixture(scope="module")
def engine(pg, loaded_db: str) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    eng = store.make_engine(pg.url(loaded_db))
    try:
        yield eng
    finally:
        eng.dispose()


# --------------------------------------------------------------------------- helpers


def decode(resp: Any) -> dict[str, Any]:
    if resp.status_code == 204:
        return {}
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return dict(mapbox_vector_tile.decode(resp.content))


def town_bbox(engine: Engine) -> tuple[float, float, float, float]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom) e FROM admin_areas WHERE level = 'town') q"
            )
        ).one()
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])


def tiles_covering(bbox: tuple[float, float, float, float], z: int) -> list[tuple[int, int]]:
    x0, y1 = lonlat_to_tile(bbox[0], bbox[1], z)
    x1, y0 = lonlat_to_tile(bbox[2], bbox[3], z)
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def one_tile_zoom(bbox: tuple[float, float, float, float]) -> int:
    """The highest zoom at which the whole town is in one tile."""
    return max(z for z in range(0, 15) if len(tiles_covering(bbox, z)) == 1)


def count(engine: Engine, where: str = "true", **values: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text(f"SELECT count(*) FROM cases WHERE {where}"), values).scalar_one()
        )


def total(client: TestClient, layer: str, prop: str, z: int, tiles: list[tuple[int, int]],
          query: str = "") -> int:  # fmt: skip
    n = 0
    for x, y in tiles:
        layers = decode(client.get(f"/tiles/{layer}/{z}/{x}/{y}.mvt{query}"))
        n += sum(f["properties"][prop] for f in layers.get(layer, {}).get("features", []))
    return n


# --------------------------------------------------------------------------- tests


def test_every_layer_decodes_with_public_fields_only(client: TestClient, engine: Engine) -> None:
    bbox = town_bbox(engine)
    centre = ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
    for name, layer in LAYERS.items():
        z = 15 if name == "cases" else min(12, layer.maxzoom)
        seen = 0
        for x, y in tiles_covering((centre[0] - 0.01, centre[1] - 0.01, centre[0] + 0.01,
                                    centre[1] + 0.01), z):  # fmt: skip
            layers = decode(client.get(f"/tiles/{name}/{z}/{x}/{y}.mvt"))
            assert set(layers) <= {name}
            for feature in layers.get(name, {}).get("features", []):
                props = set(feature["properties"])
                assert props <= set(layer.fields), (name, props - set(layer.fields))
                assert not props & PERSONAL, name
                seen += 1
        assert seen > 0, name


def test_households_are_counts_that_add_up(client: TestClient, engine: Engine) -> None:
    bbox = town_bbox(engine)
    z = one_tile_zoom(bbox)
    [(x, y)] = tiles_covering(bbox, z)
    feats = decode(client.get(f"/tiles/households/{z}/{x}/{y}.mvt"))["households"]["features"]
    assert {f["geometry"]["type"] for f in feats} <= {"Polygon", "MultiPolygon"}
    assert {f["properties"]["unit"] for f in feats} == {"group", "village"}
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM households")).scalar_one()
    assert sum(f["properties"]["households"] for f in feats) == n


def test_cases_aggregate_below_street_zoom_without_loss(client: TestClient, engine: Engine) -> None:
    bbox = town_bbox(engine)
    z = one_tile_zoom(bbox)
    everything = count(engine)
    for zoom in (z, 13, 14):  # running totals (z <= 14)
        assert total(client, "cases", "count", zoom, tiles_covering(bbox, zoom)) == everything
    # street zoom: one point per case with its public fields
    x, y = lonlat_to_tile((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 15)
    feats = decode(client.get(f"/tiles/cases/15/{x}/{y}.mvt")).get("cases", {}).get("features")
    assert feats and all(f["geometry"]["type"] == "Point" for f in feats)
    assert {"case_no", "category", "reported_at"} <= set(feats[0]["properties"])


def test_heat_tiles_sum_the_window_and_categories(client: TestClient, engine: Engine) -> None:
    bbox = town_bbox(engine)
    z1 = one_tile_zoom(bbox)
    start, end = dt.date(2025, 3, 10), dt.date(2025, 7, 4)
    cats = "环境卫生,消防隐患"
    expected = count(
        engine,
        "category = ANY(:c) AND reported_at >= :t0 AND reported_at < :t1",
        c=cats.split(","),
        t0=dt.datetime(2025, 3, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        t1=dt.datetime(2025, 7, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    )
    assert 0 < expected < count(engine)
    q = f"?from={start}&to={end}&category={cats}"
    for z in (z1, 12, 13, 14, 15, 16):  # both bands: running totals, sums of base rows
        assert total(client, "heat", "n", z, tiles_covering(bbox, z), q) == expected, z
    # the same through the GeoJSON API
    r = client.get(
        "/api/heat", params={"bbox": ",".join(map(str, bbox)), "z": 11, "from": str(start),
                             "to": str(end), "category": cats},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert sum(f["properties"]["n"] for f in fc["features"]) == expected
    assert fc["features"][0]["geometry"]["type"] == "Polygon"


def tile_bbox(z: int, x: int, y: int, inset: float = 1e-9) -> tuple[float, float, float, float]:
    """WGS84 bounds of an XYZ tile, moved ``inset`` degrees inwards on every side."""
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return (x / n * 360 - 180 + inset, lat(y + 1) + inset,
            (x + 1) / n * 360 - 180 - inset, lat(y) - inset)  # fmt: skip


def test_heat_bands_agree_on_one_tile(client: TestClient, engine: Engine) -> None:
    """Running totals (z13–z14) and regrouped base rows (z15–z16) count the same cases."""
    bbox = town_bbox(engine)
    x, y = lonlat_to_tile((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 13)
    window = {"from": "2025-02-11", "to": "2025-10-30", "category": "环境卫生,治安问题"}
    query = "?" + "&".join(f"{k}={v}" for k, v in window.items())
    want = total(client, "heat", "n", 13, [(x, y)], query)
    assert want > 0
    for z in (13, 14, 15, 16):
        n = 2 ** (z - 13)  # the z13 tile's tiles at z
        kids = [(x * n + i, y * n + j) for i in range(n) for j in range(n)]
        assert total(client, "heat", "n", z, kids, query) == want, z
        fc = client.get(
            "/api/heat",
            params={"bbox": ",".join(map(str, tile_bbox(13, x, y))), "z": z, **window},
        ).json()
        assert sum(f["properties"]["n"] for f in fc["features"]) == want, z
        assert {f["properties"]["level"] for f in fc["features"]} == {z + 4}


def test_old_heat_layout_is_rebuilt_after_upgrade(
    own: tuple[TestClient, Engine], account_maker: Any
) -> None:
    client, engine = own
    url = engine.url.render_as_string(hide_password=False)
    bbox = town_bbox(engine)
    z = one_tile_zoom(bbox)
    before = total(client, "heat", "n", z, tiles_covering(bbox, z))
    assert before == count(engine)
    store.downgrade(url, "0005")  # revision 0004's layout: the pyramid is dropped...
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM heat_daily")).scalar_one() == 0
        days = conn.execute(
            text("SELECT count(DISTINCT ((reported_at AT TIME ZONE 'Asia/Shanghai')::date, "
                 "category)) FROM cases")
        ).scalar_one()  # fmt: skip
        # ...and every day of every category is marked for a rebuild
        assert conn.execute(text("SELECT count(*) FROM heat_dirty")).scalar_one() == days
    store.upgrade(url)
    # the downgrade dropped the accounts too: sign in anew
    client.headers.update(account_maker(url, "town_leader", "all").headers(client))
    assert total(client, "heat", "n", z, tiles_covering(bbox, z)) == before  # rebuilt
    with engine.connect() as conn:
        levels = conn.execute(text("SELECT DISTINCT level FROM heat_cum ORDER BY 1")).scalars()
        assert list(levels) == list(heat.CUM_LEVELS) == list(range(4, 19))
        base = conn.execute(text("SELECT DISTINCT level FROM heat_daily")).scalars()
        assert list(base) == [heat.BASE_LEVEL]
        assert conn.execute(text("SELECT count(*) FROM heat_dirty")).scalar_one() == 0


def test_shared_grid_borders_stay_shared(client: TestClient, engine: Engine) -> None:
    with engine.connect() as conn:
        a, b, lon, lat = conn.execute(
            text(
                "SELECT g1.code, g2.code, ST_X(p), ST_Y(p) FROM grids g1 JOIN grids g2 "
                "ON g1.code < g2.code AND ST_Touches(g1.geom, g2.geom) "
                "CROSS JOIN LATERAL (SELECT ST_LineInterpolatePoint(ST_LineMerge("
                "  ST_CollectionExtract(ST_Intersection(ST_Boundary(g1.geom), "
                "  ST_Boundary(g2.geom)), 2)), 0.5) AS p) q "
                "WHERE ST_Length(ST_CollectionExtract(ST_Intersection(g1.geom, g2.geom), 2)) "
                "> 0.005 AND GeometryType(ST_LineMerge(ST_CollectionExtract(ST_Intersection("
                "ST_Boundary(g1.geom), ST_Boundary(g2.geom)), 2))) = 'LINESTRING' LIMIT 1"
            )
        ).one()
    for z in (11, 13, 15):
        x, y = lonlat_to_tile(lon, lat, z)
        feats = decode(client.get(f"/tiles/grids/{z}/{x}/{y}.mvt"))["grids"]["features"]
        polys = {f["properties"]["code"]: shape(f["geometry"]) for f in feats}
        pa, pb = polys[a], polys[b]
        assert pa.is_valid and pb.is_valid
        assert pa.intersection(pb).area == 0, z  # no overlap
        assert pa.boundary.intersection(pb.boundary).length > 0, z  # a common border
        assert pa.union(pb).area == pytest.approx(pa.area + pb.area)  # ... with no gap


def test_http_caching_gzip_vary_cors(client: TestClient, engine: Engine) -> None:
    """A public layer for an anonymous client: shared caches may keep it."""
    bbox = town_bbox(engine)
    z = one_tile_zoom(bbox)
    [(x, y)] = tiles_covering(bbox, z)
    url = f"/tiles/grids/{z}/{x}/{y}.mvt"
    signed_in = client.get(url)
    assert signed_in.headers["cache-control"] == "private, no-cache"  # stays in one browser
    client = TestClient(client.app)  # anonymous: no Authorization header
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decoded it
    etag = plain.headers["etag"]
    assert zipped.headers["etag"] == etag
    assert "Origin" in plain.headers["vary"] and "Accept-Encoding" in plain.headers["vary"]
    assert "access-control-allow-origin" not in plain.headers  # only configured origins
    assert plain.headers["cache-control"].startswith("public, max-age=")
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": 'W/"other"'}).status_code == 200
    # the raw gzip body really is gzip
    raw = client.build_request("GET", url, headers={"Accept-Encoding": "gzip"})
    resp = client.send(raw, stream=True)
    body = b"".join(resp.iter_raw())
    assert gzip.decompress(body) == plain.content
    # an empty tile: 204 with caching headers
    empty = client.get("/tiles/grids/14/0/0.mvt")
    assert empty.status_code == 204 and empty.headers["etag"]


def test_plan_activation_invalidates_grid_tiles(own: tuple[TestClient, Engine]) -> None:
    client, engine = own
    bbox = town_bbox(engine)
    z = one_tile_zoom(bbox)
    [(x, y)] = tiles_covering(bbox, z)
    url = f"/tiles/grids/{z}/{x}/{y}.mvt"
    first = client.get(url)
    cache = client.app.state.tiles.cache  # type: ignore[attr-defined]
    hits = cache.hits
    assert client.get(url).headers["etag"] == first.headers["etag"]
    assert cache.hits == hits + 1  # served from the in-process cache
    codes = {f["properties"]["code"][-3:] for f in decode(first)["grids"]["features"]}
    assert codes == {"001"}
    draft = make_plan(engine, status="draft", suffix="002")
    # a draft is visible with ?plan= only; then activate it atomically
    drafted = decode(client.get(url + f"?plan={draft}"))["grids"]["features"]
    assert {f["properties"]["code"][-3:] for f in drafted} == {"002"}
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET status = 'archived' WHERE status = 'active'"))
        conn.execute(text("UPDATE plans SET status = 'active' WHERE id = :p"), {"p": draft})
    second = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200
    assert second.headers["etag"] != first.headers["etag"]
    codes = {f["properties"]["code"][-3:] for f in decode(second)["grids"]["features"]}
    assert codes == {"002"}


def test_heat_refreshes_incrementally(own: tuple[TestClient, Engine]) -> None:
    client, engine = own
    bbox = town_bbox(engine)
    lon, lat = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    z = one_tile_zoom(bbox)
    [(x, y)] = tiles_covering(bbox, z)
    q = "?from=2025-06-01&to=2025-06-30&category=治安问题"
    before = total(client, "heat", "n", z, [(x, y)], q)
    before_etag = client.get(f"/tiles/heat/{z}/{x}/{y}.mvt{q}").headers["etag"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO cases (case_no, category, reported_at, geom) SELECT 'T' || i, "
                "'治安问题', '2025-06-15 23:30+08', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) "
                "FROM generate_series(1, 3) i"
            ),
            {"lon": lon, "lat": lat},
        )
        assert conn.execute(text("SELECT day, category FROM heat_dirty")).all() == [
            (dt.date(2025, 6, 15), "治安问题")
        ]
    r = client.get(f"/tiles/heat/{z}/{x}/{y}.mvt{q}")
    assert r.headers["etag"] != before_etag
    assert total(client, "heat", "n", z, [(x, y)], q) == before + 3
    # every band sees them; other days are untouched
    assert total(client, "heat", "n", 14, [lonlat_to_tile(lon, lat, 14)],
                 "?from=2025-06-15&to=2025-06-15&category=治安问题") >= 3  # fmt: skip
    # a move to another day and a delete: only those days are recounted
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE cases SET reported_at = '2025-06-16 08:00+08' WHERE case_no = 'T1'")
        )
        conn.execute(text("DELETE FROM cases WHERE case_no = 'T2'"))
        done = heat.refresh_heat(conn)
    assert done.days == 2  # 15 and 16 June of one category
    assert total(client, "heat", "n", z, [(x, y)], q) == before + 2
    # the cases-by-grid statistics agree with the heat totals
    stats = client.get("/api/stats/cases-by-grid", params={"from": "2025-06-01",
                                                           "to": "2025-06-30"}).json()  # fmt: skip
    assert stats["totals"]["治安问题"] == count(
        engine, "category = '治安问题' AND reported_at >= '2025-06-01 00:00+08' "
        "AND reported_at < '2025-07-01 00:00+08'"
    )  # fmt: skip


def _pyramid(engine: Engine) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    with engine.connect() as conn:
        daily = conn.execute(text("SELECT level, bin_x, bin_y, category, day, n "
                                  "FROM heat_daily")).all()  # fmt: skip
        cum = conn.execute(text("SELECT level, bin_x, bin_y, category, year, cum "
                                "FROM heat_cum")).all()  # fmt: skip
    return {tuple(r) for r in daily}, {(*r[:5], bytes(r[5])) for r in cum}


def test_incremental_refresh_equals_a_full_rebuild(own: tuple[TestClient, Engine]) -> None:
    _, engine = own
    with engine.begin() as conn:
        # new cases (one in a bin and on a day that had none), moved, re-dated,
        # re-categorised and deleted ones, across a year boundary
        conn.execute(text(
            "INSERT INTO cases (case_no, category, reported_at, geom) SELECT 'N' || i, "
            "'治安问题', '2024-12-31 23:59+08'::timestamptz + i * interval '1 minute', "
            "ST_SetSRID(ST_MakePoint(114.2 + i * 0.01, 30.35), 4326) "
            "FROM generate_series(0, 5) i"
        ))  # fmt: skip
        ids = conn.execute(text("SELECT id FROM cases ORDER BY id LIMIT 40")).scalars().all()
        conn.execute(text("UPDATE cases SET geom = ST_Translate(geom, 0.003, -0.002) "
                          "WHERE id = ANY(:i)"), {"i": ids[:10]})  # fmt: skip
        conn.execute(text("UPDATE cases SET reported_at = reported_at + interval '40 days' "
                          "WHERE id = ANY(:i)"), {"i": ids[10:20]})  # fmt: skip
        conn.execute(text("UPDATE cases SET category = '其他' WHERE id = ANY(:i)"),
                     {"i": ids[20:30]})  # fmt: skip
        conn.execute(text("DELETE FROM cases WHERE id = ANY(:i)"), {"i": ids[30:40]})
    with engine.begin() as conn:
        done = heat.refresh_heat(conn)
    assert done.days > 10 and done.cum_rows > 0
    incremental = _pyramid(engine)
    with engine.begin() as conn:
        heat.refresh_heat(conn, full=True)
    assert incremental == _pyramid(engine)


def test_refresh_recounts_running_totals_it_finds_inconsistent(
    own: tuple[TestClient, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    _, engine = own
    with engine.begin() as conn:
        case = conn.execute(
            text(
                "SELECT c.id, c.category, c.reported_at FROM cases c WHERE (SELECT count(*) "
                "FROM cases d WHERE d.category = c.category AND ST_DWithin(d.geom, c.geom, "
                "0.0002) AND extract(year FROM d.reported_at) = extract(year FROM "
                "c.reported_at)) > 3 ORDER BY c.id LIMIT 1"
            )
        ).one()  # a case with company in its bin, so the bin keeps a row
        # running totals lost by hand, then a case they counted is deleted
        conn.execute(
            text("DELETE FROM heat_cum WHERE category = :c AND year = :y AND level = 18"),
            {"c": case.category, "y": case.reported_at.year},
        )
        conn.execute(text("DELETE FROM cases WHERE id = :i"), {"i": case.id})
    with engine.begin() as conn, caplog.at_level("WARNING", logger="tiles.heat"):
        heat.refresh_heat(conn)
    assert "inconsistent" in caplog.text
    repaired = _pyramid(engine)[1]
    with engine.begin() as conn:
        heat.refresh_heat(conn, full=True)
    full = _pyramid(engine)[1]
    # every bin the change touched is right again; the untouched lost rows stay lost
    assert repaired < full
    assert all(r[0] == 18 and r[3] == case.category for r in full - repaired)
    assert any(r[0] == 18 and r[3] == case.category for r in repaired)


def test_cases_by_grid(client: TestClient, engine: Engine) -> None:
    window = {"from": "2025-02-01", "to": "2025-08-31", "category": "环境卫生"}
    r = client.get("/api/stats/cases-by-grid", params=window)
    assert r.status_code == 200
    fc = r.json()
    where = ("category = '环境卫生' AND reported_at >= '2025-02-01 00:00+08' "
             "AND reported_at < '2025-09-01 00:00+08'")  # fmt: skip
    with engine.connect() as conn:
        grids = conn.execute(
            text("SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                 "WHERE p.status = 'active' AND g.level = 3")
        ).scalars().all()  # fmt: skip
        # the grid each case lies in, by point in polygon: what the counts must say
        inside = dict(
            conn.execute(
                text(f"SELECT g.code, count(c.id) FROM grids g JOIN plans p ON p.id = g.plan_id "
                     f"LEFT JOIN cases c ON ST_Intersects(g.geom, c.geom) AND {where} "
                     "WHERE p.status = 'active' AND g.level = 3 GROUP BY g.code")
            ).all()
        )  # fmt: skip
    got = {f["properties"]["code"]: f["properties"]["cases"] for f in fc["features"]}
    assert set(got) == set(grids) == set(inside)
    assert got == inside and sum(got.values()) == count(engine, where) > 0
    assert fc["totals"] == {"环境卫生": count(engine, where)}
    assert fc["window"] == {"from": "2025-02-01", "to": "2025-08-31", "categories": ["环境卫生"]}
    # counts only, for a page that has drawn the grids: same numbers, no geometry
    lean = client.get("/api/stats/cases-by-grid", params={**window, "geometry": "false"})
    assert lean.status_code == 200 and len(lean.content) < len(r.content) / 3
    assert all(f["geometry"] is None for f in lean.json()["features"])
    assert {f["properties"]["code"]: f["properties"]["cases"]
            for f in lean.json()["features"]} == got  # fmt: skip
    # a draft plan is counted point in polygon (the cases carry the active plan's codes)
    draft = make_plan(engine, status="draft", suffix="009")
    try:
        r = client.get("/api/stats/cases-by-grid", params={**window, "plan": draft})
        by_draft = {f["properties"]["village_code"]: f["properties"]["cases"]
                    for f in r.json()["features"]}  # fmt: skip
        assert by_draft == {code[:-3]: n for code, n in inside.items()}
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM plans WHERE id = :p"), {"p": draft})


def test_tilejson(client: TestClient) -> None:
    doc = client.get("/tiles/grids.json?plan=7&junk=1").json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == ["http://testserver/tiles/grids/{z}/{x}/{y}.mvt?plan=7"]
    assert doc["minzoom"] == 0 and doc["maxzoom"] == 22
    lon0, lat0, lon1, lat1 = doc["bounds"]
    assert 100 < lon0 < lon1 < 125 and 20 < lat0 < lat1 < 45
    [vl] = doc["vector_layers"]
    assert vl["id"] == "grids" and "code" in vl["fields"] and "households" in vl["fields"]
    heat_doc = client.get("/tiles/heat.json?from=2025-01-01&category=其他").json()
    assert heat_doc["maxzoom"] == heat.MAX_ZOOM
    assert heat_doc["tiles"][0].endswith(".mvt?from=2025-01-01&category=%E5%85%B6%E4%BB%96")


def test_errors_have_a_body(client: TestClient) -> None:
    for url, status in [
        ("/tiles/nope/1/0/0.mvt", 404),
        ("/tiles/nope.json", 404),
        ("/tiles/grids/1/2/0.mvt", 404),
        ("/tiles/grids/23/0/0.mvt", 404),
        ("/tiles/heat/17/0/0.mvt", 404),
        ("/tiles/cases/3/1/1.mvt?from=2025-13-01", 400),
        ("/tiles/cases/3/1/1.mvt?from=2025-02-01&to=2025-01-01", 400),
        ("/tiles/grids/3/1/1.mvt?plan=abc", 400),
        ("/api/heat?bbox=1,2,3&z=3", 400),
        ("/api/heat?bbox=0,0,180,80&z=16", 400),
    ]:
        r = client.get(url)
        assert r.status_code == status, url
        assert r.json()["description"], url


def test_dense_street_zoom_tiles_send_counts_not_a_truncated_list(
    own: tuple[TestClient, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiles import layers as tile_layers

    client, engine = own
    bbox = town_bbox(engine)
    z = 15
    covering = tiles_covering(bbox, z)

    def inside(feature: dict[str, Any]) -> bool:  # points of the tile proper, not its buffer
        px, py = feature["geometry"]["coordinates"]
        return 0 <= px < 4096 and 0 <= py < 4096

    per_tile = {
        (x, y): sum(
            inside(f)
            for f in decode(client.get(f"/tiles/cases/{z}/{x}/{y}.mvt"))
            .get("cases", {})
            .get("features", [])
        )
        for x, y in covering
    }
    busiest = max(per_tile, key=per_tile.__getitem__)
    assert per_tile[busiest] > 20
    monkeypatch.setattr(tile_layers, "CASE_POINTS_MAX", 10)
    with engine.begin() as conn:  # a new data version, so nothing comes from the cache
        conn.execute(
            text(
                "UPDATE cases SET status = status WHERE case_no = (SELECT min(case_no) FROM cases)"
            )
        )
    x, y = busiest
    feats = decode(client.get(f"/tiles/cases/{z}/{x}/{y}.mvt"))["cases"]["features"]
    assert all("case_no" not in f["properties"] for f in feats)  # counts, not points
    assert sum(f["properties"]["count"] for f in feats) == per_tile[busiest]  # nothing lost
