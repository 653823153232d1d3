"""The planner's API over real HTTP (TestClient) against a PostGIS copy of the sample town:
history, undo and redo with ETag/If-Match, the move preview (band and contiguity), moves
that need confirmation, rename, locks kept by a redraw, a village re-run, exports read
back (GeoPackage with pyogrio, Excel with openpyxl, CSV), staff photos, and who may do what.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import plans, store
from geogrid.settings import Settings

TOWN = "420117105000"


@dataclass
class Api:
    client: TestClient
    engine: Engine
    active: int
    planner: dict[str, str]
    leader: dict[str, str]
    viewer: dict[str, str]
    other: dict[str, str]  # a planner of another town


@pytest.fixture(scope="module")
def api(pg, _town_template: str, tmp_path_factory, account_maker) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    active = plans.create_plan(engine, TOWN, name="现行", jobs=1)
    plans.activate_plan(engine, active)
    app = create_app(Settings(home=tmp_path_factory.mktemp("home")), database_url=url)
    try:
        with TestClient(app) as c:
            yield Api(
                c, engine, active,
                account_maker(url, "planner", TOWN).headers(c),
                account_maker(url, "town_leader", TOWN).headers(c),
                account_maker(url, "viewer", TOWN).headers(c),
                account_maker(url, "planner", "420117999000").headers(c),
            )  # fmt: skip
    finally:
        engine.dispose()
        pg.drop_database(name)


@pytest.fixture
def draft(api: Api) -> int:
    return plans.create_plan(api.engine, TOWN, name="草案", redraw_from=api.active, jobs=1)


def etag(api: Api, plan_id: int) -> str:
    r = api.client.get(f"/api/plans/{plan_id}", headers=api.planner)
    assert r.status_code == 200
    return str(r.headers["ETag"])


def previews(api: Api, plan_id: int) -> dict[str, dict]:  # type: ignore[type-arg]
    """One preview per outcome (ok, band, and each refusal reason) over candidate moves."""
    with api.engine.connect() as conn:
        plan = plans.load_plan(conn, plan_id)
    seen: dict[str, dict] = {}  # type: ignore[type-arg]
    for u in plan.assignment.itertuples():
        if not str(u.unit).isdigit():
            continue
        codes = set(plan.grids.loc[plan.grids["village_code"] == u.village_code, "code"])
        for to in sorted(codes - {u.grid_code}):
            r = api.client.post(f"/api/plans/{plan_id}/moves/preview", headers=api.planner,
                                json={"group": f"{u.village_code}/{u.unit}", "to": to})  # fmt: skip
            assert r.status_code == 200, r.text
            p = r.json()
            key = "band" if p["needs_confirmation"] else (p["reason"] or "ok")
            seen.setdefault(key, p)
        if {"ok", "band", "breaks_contiguity"} <= set(seen):
            break
    return seen


def test_undo_redo_history_with_etags(api: Api, draft: int) -> None:
    c, h = api.client, api.planner
    ok = previews(api, draft)["ok"]
    tag = etag(api, draft)
    move = {"group": f"{ok['village_code']}/{ok['unit']}", "to": ok["to_grid"]}
    r = c.post(f"/api/plans/{draft}/moves", headers={**h, "If-Match": tag}, json=move)
    assert r.status_code == 200, r.text
    moved = r.headers["ETag"]
    hist = c.get(f"/api/plans/{draft}/history", headers=h).json()
    assert hist["etag"] == moved and hist["can_undo"] and not hist["can_redo"]
    assert (
        hist["entries"][0]["kind"] == "move"
        and hist["entries"][0]["payload"]["to"] == ok["to_grid"]
    )
    url = f"/api/plans/{draft}/undo"
    assert c.post(url, headers=h).status_code == 428
    stale = c.post(url, headers={**h, "If-Match": tag})
    assert stale.status_code == 412 and stale.json()["code"] == "StaleVersion"
    r = c.post(url, headers={**h, "If-Match": moved})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["kind"] == "undo" and body["payload"]["of"] == 1 and r.headers["ETag"] == body["etag"]
    )
    grids = c.get(f"/api/plans/{draft}/grids", headers=h).json()["features"]
    src = next(f["properties"] for f in grids if f["properties"]["code"] == ok["from_grid"])
    assert ok["unit"] in src["groups"] and src["households"] == ok["before"][ok["from_grid"]]
    nothing = c.post(url, headers={**h, "If-Match": body["etag"]})
    assert nothing.status_code == 400 and nothing.json()["reason"] == "nothing_to_undo"
    r = c.post(f"/api/plans/{draft}/redo", headers={**h, "If-Match": body["etag"]})
    assert r.status_code == 200 and r.json()["kind"] == "redo"
    hist = c.get(f"/api/plans/{draft}/history", headers=h).json()
    assert [e["kind"] for e in hist["entries"]] == ["move", "undo", "redo"]
    assert not hist["entries"][0]["undone"] and hist["undo_seq"] == 1


def test_preview_band_and_contiguity_and_confirmation(api: Api, draft: int) -> None:
    c, h = api.client, api.planner
    seen = previews(api, draft)
    band, split = seen["band"], seen["breaks_contiguity"]
    assert (
        band["allowed"] and band["warnings"][0]["min"] == 100 and band["warnings"][0]["max"] == 200
    )
    assert not split["allowed"] and "split" in split["message"]
    # the refused move: 400 with its reason code
    r = c.post(f"/api/plans/{draft}/moves", headers={**h, "If-Match": etag(api, draft)},
               json={"group": f"{split['village_code']}/{split['unit']}", "to": split["to_grid"],
                     "confirm": True})  # fmt: skip
    assert r.status_code == 400 and r.json().get("reason") == "breaks_contiguity", r.text
    group = f"{band['village_code']}/{band['unit']}"
    r = c.post(f"/api/plans/{draft}/moves", headers={**h, "If-Match": etag(api, draft)},
               json={"group": group, "to": band["to_grid"]})  # fmt: skip
    assert r.status_code == 409 and r.json()["reason"] == "out_of_band"
    assert r.json()["warnings"] == band["warnings"]
    r = c.post(f"/api/plans/{draft}/moves", headers={**h, "If-Match": etag(api, draft)},
               json={"group": group, "to": band["to_grid"], "confirm": True})  # fmt: skip
    assert r.status_code == 200, r.text


def test_rename_lock_redraw_and_rerun(api: Api, draft: int) -> None:
    c, h = api.client, api.planner
    grids = c.get(f"/api/plans/{draft}/grids", headers=h).json()["features"]
    by_village: dict[str, list[str]] = {}
    for f in grids:
        by_village.setdefault(f["properties"]["village_code"], []).append(f["properties"]["code"])
    village, codes = max(by_village.items(), key=lambda kv: (len(kv[1]), kv[0]))
    grid = codes[0]
    url = f"/api/plans/{draft}/grids/{grid}"
    r = c.put(url + "/name", headers={**h, "If-Match": etag(api, draft)}, json={"name": "东片网格"})
    assert r.status_code == 200 and r.json()["payload"]["to"] == "东片网格"
    r = c.put(url + "/name", headers={**h, "If-Match": etag(api, draft)}, json={"name": " "})
    assert r.status_code == 400 and r.json()["reason"] == "name_empty"
    r = c.put(url + "/lock", headers={**h, "If-Match": etag(api, draft)}, json={"locked": True})
    assert r.status_code == 200 and r.json()["kind"] == "lock"
    props = next(f["properties"] for f in c.get(f"/api/plans/{draft}/grids", headers=h).json()[
        "features"] if f["properties"]["code"] == grid)  # fmt: skip
    assert props["locked"] and props["name"] == "东片网格"
    # a redraw through the API keeps the locked grid as it is
    with api.engine.connect() as conn:
        before = conn.execute(
            text("SELECT md5(ST_AsBinary(geom)), households FROM grids WHERE plan_id = :p "
                 "AND code = :c"), {"p": draft, "c": grid}).one()  # fmt: skip
    redrawn = plans.create_plan(api.engine, TOWN, redraw_from=draft, jobs=1)
    with api.engine.connect() as conn:
        after = conn.execute(
            text("SELECT md5(ST_AsBinary(geom)), households, locked FROM grids "
                 "WHERE plan_id = :p AND code = :c"), {"p": redrawn, "c": grid}).one()  # fmt: skip
    assert tuple(after[:2]) == tuple(before) and after[2] is True
    # re-run the village with one grid more: the locked grid stays, others follow the count
    r = c.post(f"/api/plans/{draft}/villages/{village}/rerun",
               headers={**h, "If-Match": etag(api, draft)},
               json={"grids": len(codes) + 1})  # fmt: skip
    assert r.status_code == 200, r.text
    now = [
        f["properties"] for f in c.get(f"/api/plans/{draft}/grids", headers=h).json()["features"]
    ]
    mine = [p for p in now if p["village_code"] == village]
    assert len(mine) == len(codes) + 1 and any(p["code"] == grid and p["locked"] for p in mine)
    assert {p["code"] for p in now if p["village_code"] != village} == {
        c for v, cs in by_village.items() if v != village for c in cs
    }
    bad = c.post(f"/api/plans/{draft}/villages/{village}/rerun",
                 headers={**h, "If-Match": etag(api, draft)}, json={"grids": 0})  # fmt: skip
    assert bad.status_code == 400
    r = c.post(f"/api/plans/{api.active}/villages/{village}/rerun",
               headers={**h, "If-Match": etag(api, api.active)}, json={"grids": 2})  # fmt: skip
    assert r.status_code == 409 and r.json()["reason"] == "not_draft"


def test_exports_read_back(api: Api, draft: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import openpyxl
    import pyogrio

    c, h = api.client, api.planner
    n = len(c.get(f"/api/plans/{draft}/grids", headers=h).json()["features"])
    r = c.get(f"/api/plans/{draft}/export.gpkg", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geopackage")
    (tmp_path / "p.gpkg").write_bytes(r.content)
    frame = pyogrio.read_dataframe(tmp_path / "p.gpkg", layer="grids")
    assert len(frame) == n and frame.crs.to_epsg() == 4326
    assert frame["name"].str.contains("网格").all() and frame["village"].str.endswith("村").any()
    assert set(frame["band"]) <= {"区间内", "接近边界", "超出区间"}
    assert not frame["flags"].str.contains("out_of_band|forced_imbalance").any()
    r = c.get(f"/api/plans/{draft}/export.csv", headers=h, params={"lang": "en"})
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Grid code", "Grid name", "Village"] and len(rows) == n + 1
    assert {row[6] for row in rows[1:]} <= {"Within the band", "Near the edge", "Outside the band"}
    r = c.get(f"/api/plans/{draft}/export.xlsx", headers=h)
    assert r.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    sheet = book.active
    assert sheet.title == "网格" and "草案" in sheet["A1"].value
    assert [cell.value for cell in sheet[5]][:3] == ["网格编码", "网格名称", "所属行政村"]
    assert sheet.max_row == 5 + n
    assert c.get(f"/api/plans/{draft}/export.pdf", headers=h).status_code in (400, 404)
    assert c.get(f"/api/plans/{draft}/export.csv", headers=api.other).status_code == 403


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (60, 80), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_staff_with_photo(api: Api) -> None:
    c = api.client
    grid = c.get(f"/api/plans/{api.active}/grids", headers=api.leader).json()["features"][0]
    code = grid["properties"]["code"]
    person = {"role": "guide", "post": "B", "name": "李指导", "phone": "0731-1234"}
    r = c.put(f"/api/grids/{code}/staff", headers=api.leader, json=person)
    assert r.status_code == 200, r.text
    sid = next(s["staff_id"] for s in r.json() if s["role"] == "guide")
    files = {"file": ("me.png", _png(), "image/png")}
    r = c.put(f"/api/staff/{sid}/photo", headers=api.planner, files=files)
    assert r.status_code == 403  # planners do not assign staff
    r = c.put(f"/api/staff/{sid}/photo", headers=api.leader, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mime"] == "image/png" and (body["width"], body["height"]) == (60, 80)
    got = c.get(body["url"])  # public duty contact: no sign-in needed
    assert got.status_code == 200 and got.content == _png()
    thumb = c.get(body["url"], params={"thumb": True})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    staff = c.get(f"/api/grids/{code}/staff").json()
    assert next(s for s in staff if s["staff_id"] == sid)["photo"] == "sha256:" + body["sha256"]
    public = c.get(f"/public/photos/{sid}")  # the public grid page's staff card
    assert public.status_code == 200 and public.headers["content-type"] == "image/png"
    assert public.content == _png()
    bad = c.put(f"/api/staff/{sid}/photo", headers=api.leader,
                files={"file": ("x.png", b"MZ not an image", "image/png")})  # fmt: skip
    assert bad.status_code == 400
    assert c.put("/api/staff/999999/photo", headers=api.leader, files=files).status_code == 404
    assert c.get("/api/staff/999999/photo").status_code == 404


def test_who_may_edit(api: Api, draft: int) -> None:
    """plan.read routes: every role of the town; plan.write: its planners only."""
    c = api.client
    tag = etag(api, draft)
    cases = [(api.planner, 200, 400), (api.leader, 200, 403), (api.viewer, 200, 403),
             (api.other, 403, 403), ({}, 401, 401)]  # fmt: skip
    for who, hist, undo in cases:
        assert c.get(f"/api/plans/{draft}/history", headers=who).status_code == hist
        r = c.post(f"/api/plans/{draft}/undo", headers={**who, "If-Match": tag})
        assert r.status_code == undo, (who, r.text)
