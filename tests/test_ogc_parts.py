"""OGC API beyond Part 1: CRS (Part 2), queryables and CQL2 filters (Part 3), sorting,
properties, keyset paging, OGC API – Tiles, and the access rules on all of them.

Expected answers come from SQL written here (PostGIS' own ``ST_Transform`` for
coordinates), never from geogrid's query builder. One database per module; reads only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from geogrid.features import COLLECTIONS, CONFORMANCE
from geogrid.ogcapi.crs import SUPPORTED
from tests.ogc_support import Served, follow, served_town
from tests.ogc_support import get_json as _get

GEOJSON = "application/geo+json"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


@pytest.fixture(scope="module")
def served(pg, _town_template, sample_town, tmp_path_factory, account_maker) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ogc-parts")
    with served_town(pg, _town_template, sample_town, tmp, account_maker, public=False) as s:
        yield s


def _ids(served: Served, cid: str, **params: Any) -> list[str]:
    body = _get(served, f"/ogc/collections/{cid}/items", limit=10_000, **params)
    assert body["numberMatched"] == body["numberReturned"]
    return [f["id"] for f in body["features"]]


def _zones(lon: float) -> dict[str, int]:
    """The CGCS2000 Gauss-Krüger EPSG codes covering longitude ``lon``."""
    z3, z6 = round(lon / 3), int(lon // 6) + 1
    return {
        "3° zone": 4513 + z3 - 25,
        "3° CM": 4534 + (3 * z3 - 75) // 3,
        "6° zone": 4491 + z6 - 13,
        "6° CM": 4502 + (6 * z6 - 3 - 75) // 6,
    }


# -- Part 1 clean-up ---------------------------------------------------------------------------


def test_landing_page_with_and_without_slash(served: Served) -> None:
    plain = served.client.get("/ogc", follow_redirects=False)
    slash = served.client.get("/ogc/", follow_redirects=False)
    assert plain.status_code == slash.status_code == 200
    assert plain.json()["links"] == slash.json()["links"]
    rels = {link["rel"] for link in slash.json()["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes" in rels


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ogc/collections/nope/queryables", 404),
        ("/ogc/collections/nope/items", 404),
        ("/ogc/collections/nope/tiles", 404),
        ("/ogc/collections/towns/tiles/NoSuchTMS", 404),
        ("/ogc/tileMatrixSets/NoSuchTMS", 404),
        ("/ogc/collections/towns/tiles/WebMercatorQuad/3/99/99", 404),
        ("/ogc/collections/towns/tiles/WebMercatorQuad/x/0/0", 404),
        ("/ogc/no/such/path", 404),
        ("/ogc/collections/towns/queryables?foo=1", 400),
        ("/ogc/tileMatrixSets?foo=1", 400),
    ],
)
def test_every_error_is_an_ogc_exception(served: Served, path: str, status: int) -> None:
    r = served.client.get(path)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"code", "description"} and body["description"]
    assert "detail" not in body  # not FastAPI's body


def test_every_referenced_schema_is_defined(served: Served) -> None:
    from openapi_spec_validator import OpenAPIV30SpecValidator, validate

    for path in ("/ogc/api", "/openapi.json"):
        raw = served.client.get(path).text
        doc = json.loads(raw)
        refs = {r.split("/")[-1] for r in json.loads(json.dumps(_refs(doc)))}
        assert refs <= set(doc["components"]["schemas"]), (path, refs)
    ogc = served.client.get("/ogc/api").json()
    validate(ogc, cls=OpenAPIV30SpecValidator)
    for p in ("/collections/{collectionId}/queryables", "/tileMatrixSets"):
        assert p in ogc["paths"], p
    assert not any(p.startswith("/ogc") for p in ogc["paths"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_conformance_declares_parts_2_3_and_tiles(served: Served) -> None:
    declared = set(_get(served, "/ogc/conformance")["conformsTo"])
    assert set(CONFORMANCE) <= declared
    for cls in (
        "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    ):
        assert cls in declared, cls


# -- Part 2: CRS -------------------------------------------------------------------------------


def test_axis_order_of_every_crs_matches_its_definition() -> None:
    import pyproj

    for uri, crs in SUPPORTED.items():
        if uri.endswith("CRS84"):
            assert not crs.flip and crs.srid == 4326
            continue
        definition = pyproj.CRS.from_epsg(int(uri.rsplit("/", 1)[1]))
        first = definition.axis_info[0].direction
        assert crs.flip == (first == "north"), uri
        assert crs.geographic == definition.is_geographic, uri


def test_collections_list_crs_and_storage_crs(served: Served) -> None:
    coll = _get(served, "/ogc/collections/key_units")
    assert coll["storageCrs"].endswith("CRS84")
    for code in (4326, 4490, 3857, 4491, 4512, 4513, 4554):
        assert f"{EPSG}{code}" in coll["crs"], code


def _transformed(served: Served, srid: int, flip: bool) -> dict[str, tuple[float, float]]:
    sql = (
        "SELECT unit_no, ST_X(g), ST_Y(g) FROM "
        f"(SELECT unit_no, ST_Transform(geom, {srid}) g FROM key_units) s"
    )
    with served.engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(text(sql)).all()
    return {r[0]: ((r[2], r[1]) if flip else (r[1], r[2])) for r in rows}


def test_items_in_every_kind_of_crs_match_postgis(served: Served) -> None:
    lon = (served.town_bbox[0] + served.town_bbox[2]) / 2
    codes = {"CGCS2000": 4490, "WGS 84": 4326, "Web Mercator": 3857, **_zones(lon)}
    for label, code in codes.items():
        crs = SUPPORTED[f"{EPSG}{code}"]
        r = served.client.get(
            "/ogc/collections/key_units/items", params={"crs": f"EPSG:{code}", "limit": 1000}
        )
        assert r.status_code == 200, (label, r.text)
        assert r.headers["Content-Crs"] == f"<{EPSG}{code}>", label
        expected = _transformed(served, code, crs.flip)
        tol = 1e-6 if crs.geographic else 0.002
        for f in r.json()["features"]:
            a, b = f["geometry"]["coordinates"]
            ea, eb = expected[f["id"]]
            assert abs(a - ea) <= tol and abs(b - eb) <= tol, (label, f["id"], (a, b), (ea, eb))
    one = served.client.get("/ogc/collections/key_units/items/KU00001", params={"crs": "EPSG:4490"})
    lat, lon1 = one.json()["geometry"]["coordinates"]
    assert one.headers["Content-Crs"] == f"<{EPSG}4490>" and lat < lon1  # latitude first


def test_bbox_in_other_crs_selects_what_postgis_selects(served: Served) -> None:
    x0, y0, x1, y1 = served.town_bbox
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    expected = sorted(
        served.column(
            "SELECT unit_no FROM key_units WHERE ST_Intersects(geom, "
            "ST_MakeEnvelope(:a, :b, :c, :d, 4326))",
            **dict(zip("abcd", box, strict=True)),
        )
    )
    assert 0 < len(expected) < served.count("SELECT count(*) FROM key_units")
    latlon = f"{box[1]},{box[0]},{box[3]},{box[2]}"
    assert sorted(_ids(served, "key_units", bbox=latlon, **{"bbox-crs": "EPSG:4490"})) == expected
    assert sorted(_ids(served, "key_units", bbox=latlon, **{"bbox-crs": f"{EPSG}4326"})) == (
        expected
    )
    zone = _zones((x0 + x1) / 2)["3° zone"]
    with served.engine.connect() as conn:
        from sqlalchemy import text

        gk = conn.execute(
            text(
                "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM (SELECT "
                "ST_Transform(ST_MakeEnvelope(:a, :b, :c, :d, 4326), :z)::box2d b) s"
            ),
            {**dict(zip("abcd", box, strict=True)), "z": zone},
        ).one()
        in_gk = sorted(
            r[0]
            for r in conn.execute(
                text(
                    "SELECT unit_no FROM key_units WHERE ST_Intersects(geom, "
                    "ST_Transform(ST_MakeEnvelope(:e, :n, :e2, :n2, :z), 4326))"
                ),
                {"e": gk[0], "n": gk[1], "e2": gk[2], "n2": gk[3], "z": zone},
            )
        )
    northing_first = f"{gk[1]},{gk[0]},{gk[3]},{gk[2]}"
    assert sorted(
        _ids(served, "key_units", bbox=northing_first, **{"bbox-crs": f"EPSG:{zone}"})
    ) == (in_gk)


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"crs": "EPSG:2000"}, "crs"),
        ({"crs": "not a crs"}, "crs"),
        ({"bbox": "1,2,3,4", "bbox-crs": "EPSG:9999"}, "bbox-crs"),
        ({"bbox-crs": "EPSG:4490"}, "bbox-crs"),
        ({"bbox": "114,30,115,31", "bbox-crs": "EPSG:4490"}, "bbox"),  # lon first: lat > 90?
        ({"bbox": "3400000,500000,3300000,600000", "bbox-crs": "EPSG:4524"}, "bbox"),
        ({"filter": "S_INTERSECTS(geometry, BBOX(1,2,3,4))", "filter-crs": "EPSG:1"}, "filter-crs"),
    ],
)
def test_bad_crs_parameters_are_400(served: Served, params: dict[str, str], mentions: str) -> None:
    r = served.client.get("/ogc/collections/key_units/items", params=params)
    assert r.status_code == 400, (params, r.text)
    assert r.json()["code"] == "InvalidParameterValue" and mentions in r.json()["description"]


# -- Part 3: queryables and CQL2 ---------------------------------------------------------------


def test_queryables_are_the_public_properties(served: Served) -> None:
    for cid, coll in COLLECTIONS.items():
        doc = _get(served, f"/ogc/collections/{cid}")
        link = next(x for x in doc["links"] if x["rel"].endswith("/queryables"))
        r = served.client.get(urlsplit(link["href"]).path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
        schema = r.json()
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == link["href"] and schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) == {p.name for p in coll.properties} | {"geometry"}
        assert schema["properties"]["geometry"]["format"].startswith("geometry-")
        for name, prop in schema["properties"].items():
            assert "type" in prop or name == "geometry", (cid, name)


#: (collection, CQL2 text, CQL2 JSON or None, the same condition in SQL over the table)
CQL_CASES = [
    ("key_units", "risk_level >= 2", {"op": ">=", "args": [{"property": "risk_level"}, 2]},
     "SELECT unit_no FROM key_units WHERE risk_level >= 2"),
    ("key_units", "unit_type IN ('学校', '幼儿园') AND NOT risk_level = 1",
     {"op": "and", "args": [
         {"op": "in", "args": [{"property": "unit_type"}, ["学校", "幼儿园"]]},
         {"op": "not", "args": [{"op": "=", "args": [{"property": "risk_level"}, 1]}]}]},
     "SELECT unit_no FROM key_units WHERE unit_type IN ('学校', '幼儿园') AND risk_level <> 1"),
    ("key_units", "name LIKE '%小学'", {"op": "like", "args": [{"property": "name"}, "%小学"]},
     "SELECT unit_no FROM key_units WHERE name LIKE '%小学'"),
    ("key_units", "risk_level BETWEEN 2 AND 3",
     {"op": "between", "args": [{"property": "risk_level"}, 2, 3]},
     "SELECT unit_no FROM key_units WHERE risk_level BETWEEN 2 AND 3"),
    ("key_units", "grid_code IS NULL OR risk_level < 2", None,
     "SELECT unit_no FROM key_units WHERE grid_code IS NULL OR risk_level < 2"),
    ("cases", "reported_at > TIMESTAMP('2025-10-01T00:00:00Z') AND category = '环境卫生'",
     {"op": "and", "args": [
         {"op": "t_after", "args": [{"property": "reported_at"},
                                    {"timestamp": "2025-10-01T00:00:00Z"}]},
         {"op": "=", "args": [{"property": "category"}, "环境卫生"]}]},
     "SELECT case_no FROM cases WHERE reported_at > '2025-10-01T00:00:00Z' "
     "AND category = '环境卫生'"),
    ("cases", "reported_at T_BEFORE TIMESTAMP('2025-02-01T00:00:00Z')",
     {"op": "t_during", "args": [{"property": "reported_at"},
                                 {"interval": ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"]}]},
     None),
    ("cases", "category <> '其他' AND village_code LIKE '%1'", None,
     "SELECT case_no FROM cases WHERE category <> '其他' AND village_code LIKE '%1'"),
    ("inspection_points", "last_inspected >= DATE('2025-11-01')",
     {"op": ">=", "args": [{"property": "last_inspected"}, {"date": "2025-11-01"}]},
     "SELECT point_no FROM inspection_points WHERE last_inspected >= '2025-11-01'"),
]  # fmt: skip


@pytest.mark.parametrize(("cid", "text_", "json_", "sql"), CQL_CASES)
def test_cql2_filters_select_what_sql_selects(
    served: Served, cid: str, text_: str, json_: Any, sql: str | None
) -> None:
    got = sorted(_ids(served, cid, filter=text_))
    if sql is not None:
        assert got == sorted(served.column(sql)), text_
    if json_ is not None:
        via_json = sorted(
            _ids(served, cid, filter=json.dumps(json_), **{"filter-lang": "cql2-json"})
        )
        if sql is not None:
            assert via_json == got
        else:  # T_BEFORE Feb 1 vs T_DURING January (UTC): the same cases but exact instants
            edge = served.column(
                "SELECT case_no FROM cases WHERE reported_at <= '2025-01-01T00:00:00Z'"
            )
            assert sorted(set(via_json) | set(edge)) == got
    assert got, text_  # every case selects something (and not everything, for most)


def test_spatial_filters_and_filter_crs(served: Served) -> None:
    x0, y0, x1, y1 = served.town_bbox
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    env = dict(zip("abcd", box, strict=True))
    inside = sorted(
        served.column(
            "SELECT unit_no FROM key_units WHERE ST_Intersects(geom, "
            "ST_MakeEnvelope(:a, :b, :c, :d, 4326))",
            **env,
        )
    )
    bbox_text = f"S_INTERSECTS(geometry, BBOX({box[0]}, {box[1]}, {box[2]}, {box[3]}))"
    assert sorted(_ids(served, "key_units", filter=bbox_text)) == inside
    ring = [
        [box[0], box[1]],
        [box[2], box[1]],
        [box[2], box[3]],
        [box[0], box[3]],
        [box[0], box[1]],
    ]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    as_json = {"op": "s_within", "args": [{"property": "geometry"}, polygon]}
    assert sorted(
        _ids(served, "key_units", filter=json.dumps(as_json), **{"filter-lang": "cql2-json"})
    ) == sorted(
        served.column(
            "SELECT unit_no FROM key_units WHERE ST_Within(geom, "
            "ST_MakeEnvelope(:a, :b, :c, :d, 4326))",
            **env,
        )
    )
    # the same box in EPSG:4490, latitude first
    flipped = f"S_INTERSECTS(geometry, BBOX({box[1]}, {box[0]}, {box[3]}, {box[2]}))"
    assert sorted(_ids(served, "key_units", filter=flipped, **{"filter-crs": "EPSG:4490"})) == (
        inside
    )
    outside = f"S_DISJOINT(geometry, BBOX({box[0]}, {box[1]}, {box[2]}, {box[3]}))"
    assert len(_ids(served, "key_units", filter=outside)) + len(inside) == served.count(
        "SELECT count(*) FROM key_units"
    )


#: A bad filter per rule: (parameters, what the 400's description names)
BAD_FILTERS = [
    ({"filter": "no_such_property = 1"}, "unknown property 'no_such_property'"),
    ({"filter": "risk_level = "}, "not valid cql2-text"),
    ({"filter": "risk_level = 'high'"}, "expected a number"),
    ({"filter": "name = 3"}, "expected a string"),
    ({"filter": "risk_level LIKE '1%'"}, "LIKE needs a string property"),
    ({"filter": "CASEI(name) = 'x'"}, "expected a property name"),
    ({"filter": "risk_level = 1 + 1"}, "got Add"),
    ({"filter": "name T_AFTER TIMESTAMP('2025-01-01T00:00:00Z')"}, "is not a time"),
    ({"filter": "S_INTERSECTS(name, BBOX(1,2,3,4))"}, "is not a geometry"),
    ({"filter": "name = name2"}, "unknown property 'name2'"),
    ({"filter": "name = 'x'", "filter-lang": "ecql"}, "filter-lang"),
    ({"filter-lang": "cql2-text"}, "without filter"),
    ({"filter": ""}, "empty"),
    ({"filter": "{not json", "filter-lang": "cql2-json"}, "not JSON"),
    ({"filter": '{"op": "=", "args": [{"property": "x"}]}', "filter-lang": "cql2-json"}, "filter"),
    ({"filter": "x" * 20_001}, "longer than"),
    # coordinates outside a geographic filter-crs (metres read as degrees): one per form
    ({"filter": "S_INTERSECTS(geometry, BBOX(1000000, 1000000, 2000000, 2000000))"}, "outside"),
    ({"filter": "S_INTERSECTS(geometry, POINT(114 91))"}, "outside the range"),
    (
        {"filter": "S_INTERSECTS(geometry, POINT(114.3 30.5))", "filter-crs": "EPSG:4490"},
        "latitude, longitude",
    ),
    ({"filter": "S_WITHIN(geometry, GEOMETRYCOLLECTION(POINT(1 2), POINT(181 2)))"}, "outside"),
    (
        {
            "filter": '{"op": "s_intersects", "args": [{"property": "geometry"}, '
            '{"bbox": [-200, 30, 114, 31]}]}',
            "filter-lang": "cql2-json",
        },
        "outside",
    ),
]


@pytest.mark.parametrize(("params", "mentions"), BAD_FILTERS)
def test_bad_filters_are_400(served: Served, params: dict[str, str], mentions: str) -> None:
    r = served.client.get("/ogc/collections/key_units/items", params=params)
    assert r.status_code == 400, (params, r.text[:300])
    body = r.json()
    assert body["code"] == "InvalidParameterValue" and mentions in body["description"], body
    assert "SELECT" not in body["description"]


def test_every_queryable_is_a_typed_query_parameter(served: Served) -> None:
    """queryables-query-parameters: ``?name=value`` for every queryable, value typed."""
    day = served.column("SELECT max(last_inspected)::text FROM inspection_points")[0]
    assert sorted(_ids(served, "inspection_points", last_inspected=day)) == sorted(
        served.column(
            "SELECT point_no FROM inspection_points WHERE last_inspected = CAST(:d AS date)", d=day
        )
    )
    assert _ids(served, "cases", reported_at="2025-01-01T00:49:33Z") == ["C2025000001"]
    assert _ids(served, "key_units", name="no such unit") == []


def test_filter_values_are_bound_not_written(served: Served) -> None:
    sneaky = {
        "op": "or",
        "args": [
            {"op": "=", "args": [{"property": "name"}, "x' OR '1'='1"]},
            {"op": "like", "args": [{"property": "name"}, "%';DROP TABLE key_units;--%"]},
        ],
    }
    lang = {"filter-lang": "cql2-json"}
    assert _ids(served, "key_units", filter=json.dumps(sneaky), **lang) == []
    assert served.count("SELECT count(*) FROM key_units") > 0


# -- sorting, properties, keyset paging --------------------------------------------------------


def test_sortby_and_properties(served: Served) -> None:
    body = _get(
        served,
        "/ogc/collections/key_units/items",
        sortby="-risk_level,name",
        properties="name,risk_level",
        limit=1000,
    )
    assert [f["id"] for f in body["features"]] == served.column(
        "SELECT unit_no FROM key_units ORDER BY risk_level DESC, name, unit_no"
    )
    assert {tuple(f["properties"]) for f in body["features"]} == {("name", "risk_level")}
    for params in ({"sortby": "head_name"}, {"sortby": "name,name"}, {"properties": "phone"}):
        r = served.client.get("/ogc/collections/key_units/items", params=params)
        assert r.status_code == 400 and r.json()["code"] == "InvalidParameterValue", params


def test_cursor_paging_forward_and_back(served: Served) -> None:
    """Next links seek by cursor through a filtered, sorted collection (with ties and
    NULLs in the sort key); prev links walk back to the first page."""
    expected = served.column(
        "SELECT case_no FROM cases WHERE category <> '其他' "
        "ORDER BY grid_code DESC NULLS LAST, reported_at, case_no"
    )
    params = {"filter": "category <> '其他'", "sortby": "-grid_code,reported_at", "limit": 700}
    page = _get(served, "/ogc/collections/cases/items", **params)
    pages = [page]
    while (nxt := next((x for x in page["links"] if x["rel"] == "next"), None)) is not None:
        assert "cursor=" in nxt["href"]
        page = follow(served, nxt["href"])
        pages.append(page)
    assert [f["id"] for p in pages for f in p["features"]] == expected
    back = [pages[-1]]
    while (prev := next((x for x in back[-1]["links"] if x["rel"] == "prev"), None)) is not None:
        back.append(follow(served, prev["href"]))
    assert [[f["id"] for f in p["features"]] for p in reversed(back)] == [
        [f["id"] for f in p["features"]] for p in pages
    ]


def test_bad_cursors_are_400(served: Served) -> None:
    page = _get(served, "/ogc/collections/cases/items", sortby="reported_at", limit=5)
    nxt = next(x for x in page["links"] if x["rel"] == "next")
    cursor = parse_qs(urlsplit(nxt["href"]).query)["cursor"][0]
    for params in (
        {"cursor": "not-a-cursor"},
        {"cursor": cursor},  # made for sortby=reported_at
        {"cursor": cursor, "sortby": "-reported_at"},
        {"cursor": "eyJrIjpbeyJ4IjoxfV0sImIiOjAsInMiOiIifQ"},  # a value of no known type
    ):
        r = served.client.get("/ogc/collections/cases/items", params=params)
        assert r.status_code == 400 and "cursor" in r.json()["description"], params


# -- OGC API – Tiles ---------------------------------------------------------------------------


def test_tile_matrix_set_and_tilesets(served: Served) -> None:
    sets = _get(served, "/ogc/tileMatrixSets")["tileMatrixSets"]
    assert [s["id"] for s in sets] == ["WebMercatorQuad"]
    tms = _get(served, "/ogc/tileMatrixSets/WebMercatorQuad")
    assert tms["crs"].endswith("/3857") and len(tms["tileMatrices"]) == 23
    for m in tms["tileMatrices"]:
        z = int(m["id"])
        assert m["matrixWidth"] == m["matrixHeight"] == 2**z
        assert abs(m["cellSize"] * 256 * 2**z - 40075016.6855784) < 1e-3
    listed = _get(served, "/ogc/collections/key_units/tiles")["tilesets"]
    assert listed[0]["dataType"] == "vector"
    meta = _get(served, "/ogc/collections/key_units/tiles/WebMercatorQuad")
    template = next(x for x in meta["links"] if x["rel"] == "item")
    assert template["templated"] is True and "{tileMatrix}/{tileRow}/{tileCol}" in template["href"]
    assert meta["layers"][0]["id"] == "key_units"


def test_ogc_tile_is_the_vector_tile(served: Served) -> None:
    import mapbox_vector_tile

    from tiles.layers import lonlat_to_tile

    x0, y0, x1, y1 = served.town_bbox
    x, y = lonlat_to_tile((x0 + x1) / 2, (y0 + y1) / 2, 12)
    ogc = served.client.get(f"/ogc/collections/villages/tiles/WebMercatorQuad/12/{y}/{x}")
    xyz = served.client.get(f"/tiles/villages/12/{x}/{y}.mvt")
    assert ogc.status_code == xyz.status_code == 200
    assert ogc.headers["content-type"] == xyz.headers["content-type"]
    assert ogc.content == xyz.content and ogc.headers["ETag"] == xyz.headers["ETag"]
    assert mapbox_vector_tile.decode(ogc.content)["villages"]["features"]


# -- access rules --------------------------------------------------------------------------------


def test_anonymous_and_embed_access(served: Served) -> None:
    from geogrid.access import embed
    from geogrid.access.keys import server_secret

    c = served.client
    with served.engine.begin() as conn:
        public = embed.public_layers(conn)
        _, token = embed.issue(
            conn,
            server_secret(c.app.state.settings),  # type: ignore[attr-defined]
            name="ogc-test",
            layers=["key_units"],
            origins=["http://portal.example"],
            days=1,
            issued_by=None,
        )
    assert "key_units" not in public and "towns" in public
    paths = [
        "/ogc/collections/{}/items",
        "/ogc/collections/{}/queryables",
        "/ogc/collections/{}/tiles",
        "/ogc/collections/{}/tiles/WebMercatorQuad",
    ]
    for p in paths:
        assert _anon(c, p.format("towns")) == 200, p
        assert _anon(c, p.format("key_units")) == 401, p
        assert _anon(c, p.format("cases")) == 401, p
        assert _anon(c, p.format("key_units"), {"X-Embed-Token": token}) == 200, p
        assert _anon(c, p.format("towns"), {"X-Embed-Token": token}) == 403, p


def _anon(client: Any, path: str, headers: dict[str, str] | None = None) -> int:
    saved = client.headers.pop("Authorization", None)
    try:
        return int(client.get(path, headers=headers or {}).status_code)
    finally:
        if saved is not None:
            client.headers["Authorization"] = saved


def test_a_filter_cannot_widen_a_scope(served: Served, account_maker) -> None:  # type: ignore[no-untyped-def]
    village = served.column("SELECT min(village_code) FROM cases")[0]
    worker = account_maker(served.url, "village_leader", village)
    headers = worker.headers(served.client)
    everything = "case_no LIKE '%' OR village_code IS NULL OR village_code <> 'x'"
    r = served.client.get(
        "/ogc/collections/cases/items",
        params={"filter": everything, "limit": 10_000},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["numberMatched"] == served.count(
        "SELECT count(*) FROM cases WHERE coalesce(grid_code, village_code) LIKE :v || '%'",
        v=village,
    )
    assert {f["properties"]["village_code"] for f in body["features"]} == {village}


def test_scoped_case_tiles_are_the_tile_service_s(served: Served, account_maker) -> None:  # type: ignore[no-untyped-def]
    from tiles.layers import lonlat_to_tile

    village, lon, lat = served.column(
        "SELECT array[village_code, ST_X(geom)::text, ST_Y(geom)::text] FROM cases "
        "ORDER BY case_no LIMIT 1"
    )[0]
    x, y = lonlat_to_tile(float(lon), float(lat), 16)
    headers = account_maker(served.url, "village_leader", village).headers(served.client)
    ogc = served.client.get(
        f"/ogc/collections/cases/tiles/WebMercatorQuad/16/{y}/{x}", headers=headers
    )
    xyz = served.client.get(f"/tiles/cases/16/{x}/{y}.mvt", headers=headers)
    assert ogc.status_code == xyz.status_code == 200
    assert ogc.content == xyz.content and ogc.headers["ETag"] == xyz.headers["ETag"]
    assert ogc.headers["Cache-Control"].startswith("private")
    assert _anon(served.client, f"/ogc/collections/cases/tiles/WebMercatorQuad/16/{y}/{x}") == 401
