"""OGC API – Features at /ogc, checked against the standard's requirements (17-069r4).

One database per module (the sample town with its overlays and a small active plan) and
one app: these tests only read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from geogrid.features import COLLECTIONS, CONFORMANCE, MAX_LIMIT
from tests.ogc_support import Served, follow, live_server, served_town
from tests.ogc_support import get_json as _get

GEOJSON = "application/geo+json"
#: Every column of the store holding personal data; none may appear in any output.
PERSONAL = ("head_name", "phone", "register_no", "address_raw", "address_norm")
PUBLIC = {
    "towns": {"code", "name", "county_code"},
    "villages": {"code", "name", "town_code", "households", "groups_without_territory"},
    "groups": {"village_code", "group_no", "name", "territory_source", "households"},
    "grids": {"code", "name", "village_code", "town_code", "plan_id", "households", "population"},
    "cases": {
        "case_no",
        "category",
        "status",
        "reported_at",
        "village_code",
        "grid_code",
        "description",
        "category_code",
        "priority",
        "current_grid_code",
        "due_at",
        "overdue",
    },
    "key_units": {
        "unit_no",
        "name",
        "unit_type",
        "risk_level",
        "address",
        "village_code",
        "grid_code",
        "overdue_filings",
    },
    "inspection_points": {
        "point_no",
        "name",
        "schedule",
        "last_inspected",
        "key_unit_no",
        "village_code",
        "grid_code",
        "next_due",
        "due_state",
    },
    "visit_coverage": {
        "code",
        "name",
        "village_code",
        "town_code",
        "period_start",
        "households",
        "visited",
        "never_visited",
        "coverage_percent",
    },
}
#: SQL counting each collection's features (independent of geogrid.features).
COUNT_SQL = {
    "towns": "SELECT count(*) FROM admin_areas WHERE level = 'town'",
    "villages": "SELECT count(*) FROM admin_areas WHERE level = 'village'",
    # a feature is a territory: groups without one are listed by their village
    "groups": "SELECT count(*) FROM villager_groups WHERE geom IS NOT NULL",
    "grids": "SELECT count(*) FROM grids g JOIN plans p ON p.id = g.plan_id "
    "WHERE p.status = 'active' AND g.level = 3",
    "cases": "SELECT count(*) FROM cases",
    "key_units": "SELECT count(*) FROM key_units",
    "inspection_points": "SELECT count(*) FROM inspection_points",
    "visit_coverage": "SELECT count(*) FROM grids g JOIN plans p ON p.id = g.plan_id "
    "WHERE p.status = 'active' AND g.level = 3",
}


@pytest.fixture(scope="module")
def served(pg, _town_template, sample_town, tmp_path_factory, account_maker) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ogc")
    with served_town(pg, _town_template, sample_town, tmp, account_maker, public=False) as s:
        yield s


def _path(href: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(href)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


# -- landing, conformance, API definition ---------------------------------------------------


def test_landing_page_links(served: Served) -> None:
    r = served.client.get("/ogc")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    links = {link["rel"]: link for link in r.json()["links"]}
    for rel in ("self", "service-desc", "service-doc", "conformance", "data"):
        assert rel in links, rel
        assert links[rel]["href"].startswith("http"), links[rel]
        assert links[rel]["type"]
    assert "openapi" in links["service-desc"]["type"] and "3.0" in links["service-desc"]["type"]
    assert links["service-doc"]["type"] == "text/html"
    for rel in ("self", "service-desc", "conformance", "data"):
        assert served.client.get(_path(links[rel]["href"])[0]).status_code == 200


def test_conformance_declares_core_geojson_oas30(served: Served) -> None:
    body = _get(served, "/ogc/conformance")
    assert set(CONFORMANCE) <= set(body["conformsTo"])
    part1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
    assert {part1 + c for c in ("core", "geojson", "oas30")} <= set(body["conformsTo"])


def test_api_definition_is_openapi_30(served: Served) -> None:
    r = served.client.get("/ogc/api")
    assert r.status_code == 200 and "openapi" in r.headers["content-type"]
    doc = json.loads(r.text)
    assert re.fullmatch(r"3\.0\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    raw = r.text
    assert '"type": ["' not in raw and '"type":["' not in raw  # no 3.1 type arrays
    assert '{"type":"null"}' not in raw.replace(" ", "")
    paths = doc["paths"]
    # paths are relative to the server URL, which ends in /ogc: both agree
    (server,) = doc["servers"]
    assert server["url"].endswith("/ogc")
    for p in ("/", "/conformance", "/collections", "/collections/{collectionId}"):
        assert "get" in paths[p], p
        assert served.client.get(urlsplit(server["url"] + p).path).status_code in (200, 404)
    assert not any(p.startswith("/ogc") for p in paths)
    for cid, coll in COLLECTIONS.items():
        params = {p["name"] for p in paths[f"/collections/{cid}/items"]["get"]["parameters"]}
        assert {"limit", "offset", "bbox", "f"} <= params
        assert ("datetime" in params) == (coll.time is not None)
        assert set(coll.queryables) <= params
    limit = next(
        p for p in paths["/collections/cases/items"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == MAX_LIMIT
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', raw))
    assert refs <= set(doc["components"]["schemas"])
    from openapi_spec_validator import OpenAPIV30SpecValidator, validate

    validate(doc, cls=OpenAPIV30SpecValidator)  # the full OpenAPI 3.0 schema check


# -- collections -----------------------------------------------------------------------------


def test_collections_with_extents_and_links(served: Served) -> None:
    body = _get(served, "/ogc/collections")
    by_id = {c["id"]: c for c in body["collections"]}
    assert set(by_id) == set(PUBLIC)
    x0, y0, x1, y1 = served.town_bbox
    for cid, c in by_id.items():
        rels = {link["rel"]: link for link in c["links"]}
        assert rels["items"]["type"] == GEOJSON and rels["self"]["type"] == "application/json"
        assert c["itemType"] == "feature"
        (bx0, by0, bx1, by1), *_ = c["extent"]["spatial"]["bbox"]
        assert c["extent"]["spatial"]["crs"].endswith("CRS84")
        assert x0 - 0.05 <= bx0 <= bx1 <= x1 + 0.05, cid  # lon first, inside the town
        assert y0 - 0.05 <= by0 <= by1 <= y1 + 0.05, cid
        assert ("temporal" in c["extent"]) == (cid in ("cases", "inspection_points"))
        assert _get(served, f"/ogc/collections/{cid}")["id"] == cid
    lo, hi = by_id["cases"]["extent"]["temporal"]["interval"][0]
    assert lo.startswith("2025-01-01") or lo.startswith("2024-12-31")
    assert hi.startswith("2025-12") or hi.startswith("2026-01")


def test_unknown_collection_and_feature_are_404(served: Served) -> None:
    assert served.client.get("/ogc/collections/households").status_code == 404
    assert served.client.get("/ogc/collections/households/items").status_code == 404
    r = served.client.get("/ogc/collections/cases/items/NO-SUCH-CASE")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


# -- items -----------------------------------------------------------------------------------


def test_paging_links_follow_limit_and_offset(served: Served) -> None:
    total = served.count(COUNT_SQL["cases"])
    r = served.client.get("/ogc/collections/cases/items", params={"limit": 1000})
    assert r.headers["content-type"].startswith(GEOJSON)
    page = r.json()
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert page["type"] == "FeatureCollection"
        assert page["numberMatched"] == total
        assert page["numberReturned"] == len(page["features"]) <= 1000
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", page["timeStamp"])
        links = {link["rel"]: link for link in page["links"]}
        assert {"self", "alternate", "collection"} <= set(links)
        offset = len(seen)
        assert int(_path(links["self"]["href"])[1].get("offset", 0)) == offset
        if offset:
            assert int(_path(links["prev"]["href"])[1].get("offset", 0)) == max(0, offset - 1000)
        else:
            assert "prev" not in links
        seen += [f["id"] for f in page["features"]]
        if "next" not in links:
            break
        nxt = _path(links["next"]["href"])[1]
        assert nxt["limit"] == "1000" and int(nxt["offset"]) == len(seen)
        page = follow(served, links["next"]["href"])
    assert len(seen) == len(set(seen)) == total
    assert pages == -(-total // 1000)


def test_default_and_clamped_limit(served: Served) -> None:
    assert _get(served, "/ogc/collections/cases/items")["numberReturned"] == 10
    body = _get(served, "/ogc/collections/groups/items", limit=MAX_LIMIT * 5)
    assert body["numberReturned"] == served.count(COUNT_SQL["groups"]) <= MAX_LIMIT
    self_link = next(link for link in body["links"] if link["rel"] == "self")
    assert _path(self_link["href"])[1]["limit"] == str(MAX_LIMIT)
    last = _get(served, "/ogc/collections/cases/items", offset=10**6)
    assert last["numberReturned"] == 0 and last["features"] == []


def test_bbox_filter_matches_postgis(served: Served) -> None:
    x0, y0, x1, y1 = served.town_bbox
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    bbox = ",".join(f"{v:.6f}" for v in box)
    env = "ST_MakeEnvelope(:a, :b, :c, :d, 4326)"
    vals = dict(zip("abcd", (float(f"{v:.6f}") for v in box), strict=True))
    for cid, table in (("cases", "cases"), ("villages", "admin_areas"), ("key_units", "key_units")):
        extra = " AND level = 'village'" if cid == "villages" else ""
        expected = served.count(
            f"SELECT count(*) FROM {table} WHERE ST_Intersects(geom, {env}){extra}", **vals
        )
        body = _get(served, f"/ogc/collections/{cid}/items", bbox=bbox, limit=MAX_LIMIT)
        assert body["numberMatched"] == body["numberReturned"] == expected, cid
        assert 0 < expected < served.count(COUNT_SQL[cid])
    for f in _get(served, "/ogc/collections/cases/items", bbox=bbox, limit=500)["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert box[0] <= lon <= box[2] and box[1] <= lat <= box[3]


def test_datetime_filters_match_sql_counts(served: Served) -> None:
    def matched(cid: str, value: str) -> int:
        items = _get(served, f"/ogc/collections/{cid}/items", datetime=value, limit=1)
        return int(items["numberMatched"])

    count = served.count
    assert matched("cases", "../2025-06-30") == count(
        "SELECT count(*) FROM cases WHERE reported_at < '2025-07-01T00:00:00+08:00'"
    )
    assert matched("cases", "2025-03-01T00:00:00Z/2025-03-31T23:59:59Z") == count(
        "SELECT count(*) FROM cases WHERE reported_at BETWEEN '2025-03-01T00:00:00Z' "
        "AND '2025-03-31T23:59:59Z'"
    )
    assert matched("cases", "2025-10-01/..") == count(
        "SELECT count(*) FROM cases WHERE reported_at >= '2025-10-01T00:00:00+08:00'"
    )
    assert matched("cases", "2025-05-20") == count(
        "SELECT count(*) FROM cases WHERE reported_at >= '2025-05-20T00:00:00+08:00' "
        "AND reported_at < '2025-05-21T00:00:00+08:00'"
    )
    assert matched("cases", "2025-01-01T00:49:33Z") >= 1  # C2025000001, an instant
    assert matched("inspection_points", "2025-11-01/2025-11-30") == count(
        "SELECT count(*) FROM inspection_points "
        "WHERE last_inspected BETWEEN '2025-11-01' AND '2025-11-30'"
    )
    both = _get(
        served,
        "/ogc/collections/cases/items",
        datetime="2025-01-01/2025-01-31",
        category="安全隐患",
        limit=1000,
    )
    assert both["numberMatched"] == count(
        "SELECT count(*) FROM cases WHERE category = '安全隐患' "
        "AND reported_at >= '2025-01-01T00:00:00+08:00' "
        "AND reported_at < '2025-02-01T00:00:00+08:00'"
    )
    for f in both["features"]:
        assert "2024-12-31T16:00:00Z" <= f["properties"]["reported_at"] < "2025-01-31T16:00:00Z"


def test_property_filters(served: Served) -> None:
    body = _get(served, "/ogc/collections/cases/items", category="安全隐患", limit=MAX_LIMIT)
    assert body["numberMatched"] == served.count(
        "SELECT count(*) FROM cases WHERE category = '安全隐患'"
    )
    assert {f["properties"]["category"] for f in body["features"]} == {"安全隐患"}
    body = _get(served, "/ogc/collections/key_units/items", risk_level=3, limit=100)
    assert body["numberMatched"] == served.count(
        "SELECT count(*) FROM key_units WHERE risk_level = 3"
    )
    assert {f["properties"]["risk_level"] for f in body["features"]} == {3}
    village = served.count("SELECT min(village_code)::bigint FROM cases")
    code = str(village)
    body = _get(served, "/ogc/collections/cases/items", village_code=code, limit=1)
    assert body["numberMatched"] == served.count(
        "SELECT count(*) FROM cases WHERE village_code = :v", v=code
    )
    grids = _get(served, "/ogc/collections/grids/items", village_code=code)
    assert grids["numberMatched"] == 2
    assert {f["id"] for f in grids["features"]} == {code + "001", code + "002"}


def test_groups_are_territories_and_villages_list_the_rest(served: Served) -> None:
    """A villager group with no territory yet is no feature of ``groups`` (no null or
    made-up geometry); its village lists it, so nothing is hidden."""
    groups = _get(served, "/ogc/collections/groups/items", limit=MAX_LIMIT)
    assert groups["features"] and all(f["geometry"] for f in groups["features"])
    assert {f["id"] for f in groups["features"]} == set(
        served.column(
            "SELECT village_code || '-' || group_no FROM villager_groups WHERE geom IS NOT NULL"
        )
    )
    missing = served.column(
        "SELECT village_code || '-' || group_no FROM villager_groups WHERE geom IS NULL"
    )
    assert missing  # the sample town has groups named by households only
    village, number = missing[0].split("-")
    r = served.client.get(f"/ogc/collections/groups/items/{missing[0]}")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
    villages = _get(served, "/ogc/collections/villages/items", limit=MAX_LIMIT)["features"]
    listed = {
        f"{f['id']}-{n}"
        for f in villages
        for n in (f["properties"]["groups_without_territory"] or "").split(",")
        if n
    }
    assert listed == set(missing)
    only = _get(
        served,
        "/ogc/collections/villages/items",
        filter="groups_without_territory IS NOT NULL",
        limit=MAX_LIMIT,
    )
    assert {f["id"] for f in only["features"]} == {m.split("-")[0] for m in missing}
    assert village in {f["id"] for f in only["features"]} and number


def test_feature_by_id_in_crs84(served: Served) -> None:
    with served.engine.connect() as conn:
        x, y = conn.execute(
            text("SELECT ST_X(geom), ST_Y(geom) FROM cases WHERE case_no = 'C2025000001'")
        ).one()
    r = served.client.get("/ogc/collections/cases/items/C2025000001")
    assert r.status_code == 200 and r.headers["content-type"].startswith(GEOJSON)
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == "C2025000001"
    assert f["geometry"]["type"] == "Point"
    lon, lat = f["geometry"]["coordinates"]
    assert (round(lon, 6), round(lat, 6)) == (round(x, 6), round(y, 6))
    x0, y0, x1, y1 = served.town_bbox
    assert x0 <= lon <= x1 and y0 <= lat <= y1  # lon first (CRS84), not lat, lon
    assert {link["rel"] for link in f["links"]} >= {"self", "collection"}
    assert f["properties"]["reported_at"] == "2025-01-01T00:49:33Z"
    group = _get(served, "/ogc/collections/groups/items", limit=1)["features"][0]
    assert _get(served, f"/ogc/collections/groups/items/{group['id']}")["id"] == group["id"]


def test_content_negotiation(served: Served) -> None:
    r = served.client.get(
        "/ogc/collections/towns/items", headers={"Accept": "application/geo+json"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith(GEOJSON)
    assert served.client.get("/ogc/collections/towns/items?f=json").status_code == 200
    assert served.client.get("/ogc/collections?f=json").status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "mentions"),
    [
        ("/ogc/collections/cases/items", {"foo": "1"}, "foo"),
        ("/ogc/collections/cases/items", {"bbox": "1,2,3"}, "bbox"),
        ("/ogc/collections/cases/items", {"bbox": "a,b,c,d"}, "bbox"),
        ("/ogc/collections/cases/items", {"bbox": "30.4,114.3,30.5,114.4"}, "bbox"),
        ("/ogc/collections/cases/items", {"bbox": "114,31,115,30"}, "bbox"),
        ("/ogc/collections/cases/items", {"limit": "0"}, "limit"),
        ("/ogc/collections/cases/items", {"limit": "ten"}, "limit"),
        ("/ogc/collections/cases/items", {"offset": "-1"}, "offset"),
        ("/ogc/collections/cases/items", {"datetime": "yesterday"}, "datetime"),
        ("/ogc/collections/cases/items", {"datetime": "2025-06-30/2025-01-01"}, "datetime"),
        ("/ogc/collections/towns/items", {"datetime": "2025-01-01"}, "datetime"),
        ("/ogc/collections/cases/items", {"head_name": "x"}, "head_name"),
        ("/ogc/collections/key_units/items", {"risk_level": "high"}, "risk_level"),
        ("/ogc/collections/inspection_points/items", {"last_inspected": "x"}, "last_inspected"),
        ("/ogc/collections/cases/items", {"reported_at": "2025-01-01"}, "reported_at"),
        ("/ogc/collections/cases/items", {"f": "xml"}, "f="),
        ("/ogc/collections/cases/items/C2025000001", {"limit": "5"}, "limit"),
        ("/ogc", {"foo": "bar"}, "foo"),
        ("/ogc/collections", {"bbox": "1,2,3,4"}, "bbox"),
        ("/ogc/conformance", {"f": "xml"}, "f="),
    ],
)
def test_bad_parameters_are_400_with_ogc_exception(
    served: Served, path: str, params: dict[str, str], mentions: str
) -> None:
    r = served.client.get(path, params=params)
    assert r.status_code == 400, (path, params, r.text)
    body = r.json()
    assert body["code"] == "InvalidParameterValue"
    assert mentions in body["description"]


def test_repeated_parameter_is_400(served: Served) -> None:
    r = served.client.get("/ogc/collections/cases/items?limit=5&limit=6")
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameterValue"


def test_no_personal_field_in_any_collection(served: Served) -> None:
    with served.engine.connect() as conn:
        phones = [
            p
            for (p,) in conn.execute(
                text("SELECT phone FROM households WHERE phone IS NOT NULL LIMIT 500")
            )
        ]
    assert phones
    for cid, props in PUBLIC.items():
        raw = served.client.get(f"/ogc/collections/{cid}/items", params={"limit": MAX_LIMIT}).text
        body = json.loads(raw)
        assert body["numberReturned"] == served.count(COUNT_SQL[cid]) > 0, cid
        for f in body["features"]:
            assert set(f["properties"]) == props, cid
        for word in PERSONAL:
            assert word not in raw, (cid, word)
        assert not any(p in raw for p in phones), cid
        one = served.client.get(f"/ogc/collections/{cid}/items/{body['features'][0]['id']}").text
        assert not any(word in one for word in PERSONAL)
    groups = _get(served, "/ogc/collections/groups/items", limit=MAX_LIMIT)["features"]
    assert sum(f["properties"]["households"] for f in groups) == served.count(
        "SELECT count(*) FROM households h JOIN villager_groups g ON g.id = h.group_id "
        "WHERE g.geom IS NOT NULL"
    )


# -- a real GIS client -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_url(served: Served, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with live_server(served.url, tmp_path_factory.mktemp("live")) as live:
        yield live.url


_GDAL_CLIENT = """
import json, sys
import pyogrio
source, bbox = sys.argv[1], tuple(float(v) for v in sys.argv[2].split(","))
out = {"layers": sorted(str(n) for n, _ in pyogrio.list_layers(source))}
for layer in out["layers"]:
    df = pyogrio.read_dataframe(source, layer=layer, PAGE_SIZE=1000)  # cases: 5 pages
    geoms = df.geometry.dropna()
    out[layer] = {
        "count": len(df),
        "crs": ":".join(df.crs.to_authority()) if df.crs is not None else None,
        "bounds": [float(v) for v in geoms.total_bounds],
        "columns": sorted(str(c) for c in df.columns),
    }
out["key_units_in_bbox"] = len(pyogrio.read_dataframe(source, layer="key_units", bbox=bbox))
print(json.dumps(out))
"""


def test_gdal_oapif_reads_every_collection(served: Served, live_url: str, tmp_path: Path) -> None:
    """GDAL's OAPIF driver (through pyogrio) lists and reads every collection.

    GDAL runs in a child process: pyogrio holds the GIL while GDAL fetches pages, which
    would starve the server thread of this process.
    """
    import subprocess
    import sys

    import pyogrio

    assert "OAPIF" in pyogrio.list_drivers(), "pyogrio's GDAL lacks the OAPIF driver"
    bbox = ",".join(map(str, served.town_bbox))
    # GDAL signs in like any API client: the bearer token in every request's headers
    header_file = tmp_path / "gdal-headers.txt"
    header_file.write_text(f"Authorization: {served.client.headers['Authorization']}\n")
    env = {**os.environ, "GDAL_HTTP_HEADER_FILE": str(header_file)}
    run = subprocess.run(
        [sys.executable, "-c", _GDAL_CLIENT, f"OAPIF:{live_url}", bbox],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["layers"] == sorted(PUBLIC)
    x0, y0, x1, y1 = served.town_bbox
    for cid in PUBLIC:
        layer = got[cid]
        assert layer["count"] == served.count(COUNT_SQL[cid]), cid
        assert layer["crs"] in ("EPSG:4326", "OGC:CRS84"), cid  # storageCrs: CRS84
        b = layer["bounds"]
        assert x0 - 0.05 <= b[0] <= b[2] <= x1 + 0.05, cid  # lon first
        assert y0 - 0.05 <= b[1] <= b[3] <= y1 + 0.05, cid
        assert not set(PERSONAL) & set(layer["columns"]), cid
        assert PUBLIC[cid] - {"id"} <= set(layer["columns"]) | {"code", "case_no"}, cid
    assert got["key_units_in_bbox"] == served.count(COUNT_SQL["key_units"])
