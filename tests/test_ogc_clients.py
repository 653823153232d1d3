"""Real clients of the OGC API on loopback: the ogctests conformance suite, GDAL's OAPIF
driver (CGCS2000, a Gauss-Krüger zone, a CQL2 filter pushed down) and QGIS-style paging.

ogctests 0.1.15 pins httpx<0.28, pytest<9 and pyarrow<18, so it lives in its own venv
(``.venv-ogctests``, made by ``scripts/setup.sh``) and runs as a child process against
the real app served by uvicorn; the town's layers are made public for it (anonymous
requests, as the suite sends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.ogc_support import Live, Served, live_server, served_town

ROOT = Path(__file__).resolve().parents[1]
OGCTESTS_PYTHON = ROOT / ".venv-ogctests" / "bin" / "python"

#: Bugs of ogctests 0.1.15 that fail against any server, fixed by these patches (each
#: bug named in its patch's header); scripts/setup.sh applies them to .venv-ogctests.
OGCTESTS_PATCHES = sorted((ROOT / "scripts" / "patches").glob("ogctests-0.1.15-*.patch"))


@pytest.fixture(scope="module")
def served(pg, _town_template, sample_town, tmp_path_factory, account_maker) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ogc-clients")
    with served_town(pg, _town_template, sample_town, tmp, account_maker, public=True) as s:
        yield s


@pytest.fixture(scope="module")
def live(served: Served, tmp_path_factory) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    with live_server(served.url, tmp_path_factory.mktemp("live")) as server:
        yield server


def _run_ogctests(live: Live, scope: str, tmp: Path) -> dict[str, str | None]:
    """Run one part of ogctests; test name → None (passed) or its failure text."""
    assert OGCTESTS_PYTHON.exists(), "run scripts/setup.sh: it makes .venv-ogctests"
    where = subprocess.run(
        [str(OGCTESTS_PYTHON), "-c", "import ogctests, os; print(os.path.dirname(ogctests.__file__))"],  # noqa: E501
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert OGCTESTS_PATCHES
    for fix in OGCTESTS_PATCHES:  # applied: the patch applies in reverse
        check = subprocess.run(
            ["git", "apply", "-p1", f"--directory={os.path.relpath(Path(where).parent, ROOT)}",
             "-R", "--check", str(fix)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        assert check.returncode == 0, f"run scripts/setup.sh: {fix.name} is not applied"
    ini = tmp / "empty.ini"  # not this project's pytest settings
    ini.write_text("[pytest]\n")
    report = tmp / f"{scope}.xml"
    run = subprocess.run(
        [
            str(OGCTESTS_PYTHON), "-m", "pytest", "-c", str(ini), "--rootdir", str(tmp),
            "-p", "no:cacheprovider", "-q", "--tb=line", f"--junit-xml={report}",
            f"{where}/features/{scope}",
        ],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp,
        env={**os.environ, "INSTANCE_URL": live.url},
    )  # fmt: skip
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    results: dict[str, str | None] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            results[case.get("name", "")] = "skipped"
            continue
        results[case.get("name", "")] = (
            None if problem is None else (problem.get("message", "") + (problem.text or ""))
        )
    return results


@pytest.mark.parametrize(("scope", "tests"), [("core", 29), ("filtering", 10)])
def test_ogctests_suite(served: Served, live: Live, tmp_path: Path, scope: str, tests: int) -> None:
    """Every test of the part passes (none skipped, none expected to fail)."""
    results = _run_ogctests(live, scope, tmp_path)
    assert len(results) == tests, results
    failed = {name: (text or "")[:600] for name, text in results.items() if text is not None}
    assert failed == {}, failed


_GDAL_CLIENT = """
import json, sys
import pyogrio
source, crs, where = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
for layer in sorted(str(n) for n, _ in pyogrio.list_layers(source)):
    df = pyogrio.read_dataframe(source, layer=layer, PAGE_SIZE=1000, CRS=crs)
    geoms = df.geometry.dropna()
    out[layer] = {
        "count": len(df),
        "crs": ":".join(df.crs.to_authority()),
        "bounds": [float(v) for v in geoms.total_bounds],
    }
    if layer == "key_units":
        out["points"] = {r.unit_no: [r.geometry.x, r.geometry.y] for r in df.itertuples()}
out["filtered"] = len(pyogrio.read_dataframe(source, layer="key_units", where=where, CRS=crs))
print(json.dumps(out))
"""

#: FROM clause of each collection (independent of geogrid.features), to transform in SQL.
FROM_SQL = {
    "towns": "FROM admin_areas WHERE level = 'town'",
    "villages": "FROM admin_areas WHERE level = 'village'",
    "groups": "FROM villager_groups WHERE geom IS NOT NULL",
    "grids": "FROM grids g JOIN plans p ON p.id = g.plan_id WHERE p.status = 'active' "
    "AND g.level = 3",
    "cases": "FROM cases",
    "key_units": "FROM key_units",
    "inspection_points": "FROM inspection_points",
    "visit_coverage": "FROM grids g JOIN plans p ON p.id = g.plan_id WHERE p.status = 'active' "
    "AND g.level = 3",
}


def _gk_3deg(lon: float) -> int:
    return 4513 + round(lon / 3) - 25


@pytest.mark.parametrize("which", ["CGCS2000", "Gauss-Krüger 3° zone"])
def test_gdal_reads_every_collection_in_cgcs2000_and_gauss_kruger(
    served: Served, live: Live, tmp_path: Path, which: str
) -> None:
    """GDAL's OAPIF driver asks for the CRS (Part 2) and reads every collection; its
    coordinates (GDAL's easting/longitude-first order) equal PostGIS's ST_Transform; an
    attribute filter reaches the server as a CQL2 ``filter``."""
    x0, _, x1, _ = served.town_bbox
    srid = 4490 if which == "CGCS2000" else _gk_3deg((x0 + x1) / 2)
    header_file = tmp_path / "gdal-headers.txt"
    header_file.write_text(f"Authorization: {served.client.headers['Authorization']}\n")
    env = {**os.environ, "GDAL_HTTP_HEADER_FILE": str(header_file)}
    before = len(live.seen)
    run = subprocess.run(
        [sys.executable, "-c", _GDAL_CLIENT, f"OAPIF:{live.url}", f"EPSG:{srid}",
         "risk_level >= 2 AND unit_type <> '学校'"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    tol = 1e-6 if srid == 4490 else 0.002
    for cid, from_ in FROM_SQL.items():
        layer = got[cid]
        assert layer["crs"] == f"EPSG:{srid}", cid
        assert layer["count"] == served.count(f"SELECT count(*) {from_}"), cid
        with served.engine.connect() as conn:
            from sqlalchemy import text

            box = conn.execute(
                text(
                    "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
                    f"ST_Extent(ST_Transform(geom, {srid})) e {from_}) s"
                )
            ).one()
        assert all(abs(a - b) <= tol for a, b in zip(layer["bounds"], box, strict=True)), (
            cid,
            layer["bounds"],
            box,
        )
    with served.engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(
            text(f"SELECT unit_no, ST_X(g), ST_Y(g) FROM (SELECT unit_no, "
                 f"ST_Transform(geom, {srid}) g FROM key_units) s")
        ).all()  # fmt: skip
    assert len(got["points"]) == len(rows)
    for unit_no, x, y in rows:
        gx, gy = got["points"][unit_no]
        assert abs(gx - x) <= tol and abs(gy - y) <= tol, (unit_no, (gx, gy), (x, y))
    assert got["filtered"] == served.count(
        "SELECT count(*) FROM key_units WHERE risk_level >= 2 AND unit_type <> '学校'"
    )
    pushed = [
        s for s in live.seen[before:] if "/collections/key_units/items" in s and "filter=" in s
    ]
    assert pushed, live.seen[before:]
    crs_param = [s for s in live.seen[before:] if "/items" in s and f"{srid}" in s]
    assert crs_param, "GDAL did not ask for the CRS"


def _page_through(served: Served, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    r = served.client.get("/ogc/collections/cases/items", params=params)
    assert r.status_code == 200, r.text
    page = r.json()
    features, requests = list(page["features"]), 1
    while (nxt := next((x for x in page["links"] if x["rel"] == "next"), None)) is not None:
        parts = urlsplit(nxt["href"])
        page = served.client.get(
            parts.path, params={k: v[0] for k, v in parse_qs(parts.query).items()}
        ).json()
        features += page["features"]
        requests += 1
    return features, requests


def test_qgis_style_requests_match_sql(served: Served) -> None:
    """What QGIS sends while panning a filtered layer: a bbox (in the layer's CRS), a CQL2
    filter and a page size, then the next links; the features are those of direct SQL."""
    x0, y0, x1, y1 = served.town_bbox
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    params = {
        "bbox": f"{box[1]},{box[0]},{box[3]},{box[2]}",
        "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4490",
        "crs": "http://www.opengis.net/def/crs/EPSG/0/4490",
        "filter": "category IN ('环境卫生', '安全隐患') "
        "AND reported_at >= TIMESTAMP('2025-03-01T00:00:00Z')",
        "limit": 100,
    }
    features, requests = _page_through(served, params)
    expected = served.column(
        "SELECT case_no FROM cases WHERE ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, "
        "4326)) AND category IN ('环境卫生', '安全隐患') AND reported_at >= "
        "'2025-03-01T00:00:00Z' ORDER BY case_no",
        **dict(zip("abcd", box, strict=True)),
    )
    assert len(expected) > 100  # more than one page
    assert [f["id"] for f in features] == expected
    assert requests == -(-len(expected) // 100)
    for f in features:  # latitude first in EPSG:4490, inside the box
        lat, lon = f["geometry"]["coordinates"]
        assert box[1] <= lat <= box[3] and box[0] <= lon <= box[2]
