"""Map pages in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

The real app runs with uvicorn in a background thread on a free 127.0.0.1 port against a
copy of the loaded sample town, to which :func:`seed_overlays` adds an active plan, cases,
key units, inspection points and staff by SQL (and a draft plan made by the partitioner, so
that the planner can really move a group). Every page is loaded with every request
recorded: no console error, no request leaving 127.0.0.1, and a screenshot of the map shows
the layers drawn. Set ``GEOGRID_SCREENSHOTS`` to keep the screenshots in a folder.
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from geogrid import store
from tiles import pages as tp

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GRID_STROKE = (0x1F, 0x4E, 0x9C)  # GG.GRID_STROKE in tiles/static/geogrid-map.js
EXTERNAL_URL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*https?://|url\(\s*["']?https?://""", re.I)


# -- test data -------------------------------------------------------------------------------

_SEED_SQL = [
    # The active plan: two grids per village with group polygons, one per other village.
    """
    INSERT INTO plans (town_code, name, status, activated_at)
    SELECT code, '现行方案', 'active', now() FROM admin_areas WHERE level = 'town' LIMIT 1
    """,
    # Each group's grid number: k-tiles of the village's groups ordered west to east.
    """
    CREATE TEMP TABLE seed_assign AS
    SELECT p.id AS plan_id, vg.id AS group_id, vg.village_code,
           ntile(2) OVER (
               PARTITION BY p.id, vg.village_code ORDER BY ST_X(ST_Centroid(vg.geom)), vg.id
           ) AS n
      FROM plans p CROSS JOIN villager_groups vg
     WHERE vg.geom IS NOT NULL
    """,
    """
    INSERT INTO grids (plan_id, code, level, village_code, name, geom, households, population)
    SELECT a.plan_id, a.village_code || lpad(a.n::text, 3, '0'), 3, a.village_code,
           v.name || '第' || a.n || '网格',
           ST_Multi(ST_UnaryUnion(ST_Collect(vg.geom))),
           COALESCE(sum(h.n), 0), COALESCE(sum(h.m), 0)
      FROM seed_assign a
      JOIN villager_groups vg ON vg.id = a.group_id
      JOIN admin_areas v ON v.code = a.village_code
      LEFT JOIN (SELECT group_id, count(*) AS n, sum(members) AS m
                   FROM households GROUP BY group_id) h ON h.group_id = a.group_id
     GROUP BY a.plan_id, a.village_code, a.n, v.name
    """,
    # Villages without group polygons: one grid each.
    """
    INSERT INTO grids (plan_id, code, level, village_code, name, geom, households, population)
    SELECT p.id, v.code || '001', 3, v.code, v.name || '第1网格', v.geom,
           (SELECT count(*) FROM households h WHERE h.village_code = v.code),
           (SELECT COALESCE(sum(members), 0) FROM households h WHERE h.village_code = v.code)
      FROM plans p CROSS JOIN admin_areas v
     WHERE v.level = 'village'
       AND NOT EXISTS (SELECT 1 FROM villager_groups g
                        WHERE g.village_code = v.code AND g.geom IS NOT NULL)
    """,
    """
    INSERT INTO grid_groups (grid_id, group_id, plan_id)
    SELECT g.id, a.group_id, a.plan_id FROM seed_assign a
      JOIN grids g ON g.plan_id = a.plan_id AND g.code = a.village_code || lpad(a.n::text, 3, '0')
    """,
    """
    UPDATE grids g SET metrics = jsonb_build_object(
        'deviation', g.households - 150,
        'polsby_popper', round((4 * pi() * ST_Area(g.geom::geography)
                                / nullif(ST_Perimeter(g.geom::geography), 0) ^ 2)::numeric, 3),
        'groups', COALESCE((SELECT jsonb_agg(vg.group_no::text ORDER BY vg.group_no)
                              FROM grid_groups gg JOIN villager_groups vg ON vg.id = gg.group_id
                             WHERE gg.grid_id = g.id), '[]'::jsonb),
        'flags', CASE WHEN g.households > 180 THEN '["超过目标户数 over target"]'::jsonb
                      ELSE '[]'::jsonb END)
    """,
    # 400 cases at household locations (deterministic), three categories, last 200 days.
    "SELECT setseed(0.42)",
    """
    INSERT INTO cases (case_no, category, status, reported_at, geom, village_code, description)
    SELECT 'C' || lpad(row_number() OVER ()::text, 6, '0'),
           (ARRAY['环境卫生', '矛盾纠纷', '安全隐患'])[1 + (row_number() OVER ()) % 3],
           'reported', now() - ((row_number() OVER ()) % 200) * interval '1 day',
           ST_Translate(h.geom, 0.0003, 0.0002), h.village_code, '示例事件'
      FROM (SELECT geom, village_code FROM households WHERE geom IS NOT NULL
            ORDER BY random() LIMIT 400) h
    """,
    """
    UPDATE cases c SET grid_code = g.code FROM grids g JOIN plans p ON p.id = g.plan_id
     WHERE p.status = 'active' AND ST_Intersects(g.geom, c.geom)
    """,
    """
    INSERT INTO key_units (unit_no, name, unit_type, risk_level, geom, village_code)
    SELECT 'K' || row_number() OVER (), '重点单位' || row_number() OVER (), '加油站', 2,
           geom, village_code FROM cases ORDER BY id LIMIT 20
    """,
    """
    INSERT INTO inspection_points (point_no, name, geom, schedule, village_code)
    SELECT 'P' || row_number() OVER (), '巡查点' || row_number() OVER (),
           ST_Translate(geom, 0.0004, 0), 'monthly', village_code
      FROM cases ORDER BY id DESC LIMIT 20
    """,
    # Staff: a leader (A post) and an information officer for every active grid.
    """
    INSERT INTO staff (name, phone, photo, duties, town_code)
    SELECT (ARRAY['张', '王', '李', '赵', '刘', '陈'])[1 + g.id % 6] || '网格' || g.id,
           '0731-8' || lpad(g.id::text, 6, '0'), 'staff-' || g.id || '.jpg',
           '负责本网格巡查走访、矛盾调解与信息采集', p.town_code
      FROM grids g JOIN plans p ON p.id = g.plan_id WHERE p.status = 'active'
    """,
    """
    INSERT INTO staff_assignments (staff_id, grid_id, role, post)
    SELECT s.id, g.id, r.role, 'A'
      FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
      JOIN staff s ON s.name LIKE '%网格' || g.id
      CROSS JOIN (VALUES ('leader'), ('info_officer')) AS r(role)
    """,
]


def seed_overlays(url: str, *, draft: bool = False) -> dict[str, Any]:
    """Add an active plan, cases, key units, inspection points and staff by SQL.

    With ``draft``, also a draft plan made by :func:`geogrid.plans.create_plan` (the
    partitioner), which the plans API can edit. Returns ``town``, ``active``, ``draft``.
    """
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            for sql in _SEED_SQL:
                conn.execute(text(sql))
            town, active = conn.execute(
                text("SELECT town_code, id FROM plans WHERE status = 'active'")
            ).one()
        draft_id = None
        if draft:
            from geogrid.plans import create_plan

            draft_id = create_plan(engine, town, name="调整草案", author="test", jobs=1)
        return {"town": town, "active": active, "draft": draft_id}
    finally:
        engine.dispose()


# -- the live server and the browser ---------------------------------------------------------


@dataclass
class Live:
    app: Any
    base: str
    ids: dict[str, Any]
    url: str
    shots: Path
    #: page-session cookies of a signed-in planner and town leader
    sessions: dict[str, str] = field(default_factory=dict)
    #: an embed token for every embeddable layer
    embed_token: str = ""


PAGE_PASSWORD = "Pages-test-2026!"


def _sign_in(url: str, base: str) -> dict[str, str]:
    """Page-session cookies of a planner and a town leader, signed in through /login."""
    import httpx

    from geogrid.access import users
    from geogrid.access.scope import Scope

    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
            for role in ("planner", "town_leader"):
                users.add_user(
                    conn, username=f"pages-{role.replace('_', '-')}", role=role,
                    scope=Scope.parse(town), password=PAGE_PASSWORD, must_change_password=False,
                )  # fmt: skip
    finally:
        engine.dispose()
    sessions = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for role in ("planner", "town_leader"):
            r = client.post(
                "/login",
                data={"username": f"pages-{role.replace('_', '-')}", "password": PAGE_PASSWORD},
            )
            assert r.status_code == 303, r.text
            sessions[role] = r.cookies["gg_session"]
            client.cookies.clear()
    return sessions


def embed_token(app: Any, url: str) -> str:
    """A token for every embeddable layer, for pages served from 127.0.0.1."""
    from geogrid.access import embed
    from geogrid.access.keys import server_secret

    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            _, token = embed.issue(
                conn, server_secret(app.state.settings), name="pages test",
                layers=list(embed.EMBEDDABLE), origins=["http://127.0.0.1"], days=1,
                issued_by="test",
            )  # fmt: skip
    finally:
        engine.dispose()
    return token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(pg, _town_template, tmp_path_factory) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    """The real app on a free 127.0.0.1 port, against a seeded copy of the sample town."""
    import uvicorn

    from api import create_app
    from geogrid.settings import Settings

    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    ids = seed_overlays(url, draft=True)
    tmp = tmp_path_factory.mktemp("pages")
    app = create_app(Settings(home=tmp), database_url=url)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    shots = Path(os.environ.get("GEOGRID_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            app.state.test_area_bounds = tp.area_bounds(conn)
    finally:
        engine.dispose()
    base = f"http://127.0.0.1:{port}"
    sessions = _sign_in(url, base)
    try:
        yield Live(app, base, ids, url, shots, sessions, embed_token(app, url))
    finally:
        server.should_exit = True
        thread.join(10)
        pg.drop_database(name)


@dataclass
class Visit:
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (fresh temporary profile per launch)."""
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/setup.sh"
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_for(
    page: Any, expression: str, arg: Any = None, *, timeout: float = 20_000, polling: float = 100
) -> None:
    """Like ``page.wait_for_function``, which evals the predicate in the page: the pages'
    Content-Security-Policy forbids eval, so poll ``page.evaluate`` (run by the debugger
    protocol, outside the policy) instead."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} ms for {expression}")
        page.wait_for_timeout(polling)


def open_page(
    browser: Any,
    url: str,
    *,
    ready: str = "1",
    timeout: float = 20_000,
    session: str | None = None,
) -> Any:
    """Open ``url`` at 1366×768, record requests and console errors, wait for readiness
    (signed in with the page-session cookie ``session`` when given)."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 768}, service_workers="block")
    if session:
        ctx.add_cookies([{"name": "gg_session", "value": session, "url": url}])
    page = ctx.new_page()
    visit = Visit()
    page.on("request", lambda r: visit.requests.append(r.url))
    page.on("console", lambda m: visit.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.errors.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: visit.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
    )
    # Anything not local is recorded above, then refused (the machine has no internet).
    page.route(
        re.compile(r"^(?!https?://127\.0\.0\.1[:/]|file:|data:|blob:).*"),
        lambda route: route.abort(),
    )
    page.goto(url, wait_until="load")
    if ready:
        wait_for(page, "document.body.dataset.ready !== undefined", timeout=timeout, polling=100)
        assert page.evaluate("document.body.dataset.ready") == ready, visit.errors
    page.wait_for_load_state("networkidle")
    page.visit = visit  # type: ignore[attr-defined]
    return page


def assert_local_only(visit: Visit) -> None:
    outside = [
        u for u in visit.requests if not re.match(r"^(https?://127\.0\.0\.1[:/]|data:|blob:)", u)
    ]
    assert not outside, f"requests left 127.0.0.1: {outside}"


def map_pixels(page: Any, path: Path) -> Any:
    """Screenshot of the map element, saved to ``path``, as an RGB numpy array."""
    import numpy as np
    from PIL import Image

    png = page.locator("#map").screenshot(path=str(path))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def count_colour(img: Any, rgb: tuple[int, int, int], tol: int = 40) -> int:
    import numpy as np

    return int((np.abs(img - np.array(rgb)).sum(axis=2) < tol).sum())


def assert_drawn(img: Any, *, stroke: tuple[int, int, int] | None = GRID_STROKE) -> None:
    colours = len({tuple(p) for p in img[::4, ::4].reshape(-1, 3)})
    assert colours > 20, f"map looks blank ({colours} colours)"
    if stroke is not None:
        assert count_colour(img, stroke) > 300, "grid stroke colour not found in the map"


# -- tests -------------------------------------------------------------------------------------


def test_served_pages_and_assets_have_no_external_urls(live: Live) -> None:
    import httpx

    cookies = {"gg_session": live.sessions["town_leader"]}
    with httpx.Client(base_url=live.base, timeout=30, cookies=cookies) as client:
        paths = ["/", "/planner", "/leader", "/public", "/docs", "/embed/grids",
                 f"/embed/heat?embed_token={live.embed_token}"]  # fmt: skip
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert not EXTERNAL_URL.search(r.text), f"{path} links an external URL"
            assert "https://" not in r.text.replace("http://www.w3.org", ""), path
        listing = client.get("/assets").json()
        assert listing["missing"] == [] and listing["basemap"] == "none"
        for asset in listing["assets"]:
            r = client.get(asset)
            assert r.status_code == 200, asset
            if asset.endswith((".css", ".html")):
                assert not EXTERNAL_URL.search(r.text), asset
        css = client.get("/assets/npm/leaflet/dist/leaflet.css").text
        for img in re.findall(r"url\(([^)]+\.(?:png|svg))\)", css):
            name = img.strip("\"'")
            assert client.get(f"/assets/npm/leaflet/dist/{name}").status_code == 200
        # The allow-list holds: no path traversal, no other packages, no dotfiles.
        for bad in ("/assets/npm/leaflet/package.json", "/assets/npm/pbf/index.js",
                    "/assets/npm/leaflet/dist/../../../package.json",
                    "/assets/static/..%2F..%2Fpyproject.toml"):  # fmt: skip
            assert client.get(bad).status_code == 404, bad
        assert client.get("/embed/households").status_code == 404
        # Nothing personal about residents on the public layer.
        body = client.get("/public/grids.geojson").text
        for field_name in ("head_name", "register_no", "address", "members"):
            assert field_name not in body
        photo = client.get("/public/photos/1")
        assert photo.status_code == 200 and photo.headers["content-type"].startswith("image/")


def test_docs_load_from_local_assets(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/docs", ready="")
    page.wait_for_selector(".swagger-ui .opblock-tag", timeout=20_000)
    visit = page.visit
    assert any(
        u.endswith("/assets/npm/swagger-ui-dist/swagger-ui-bundle.js") for u in visit.requests
    )
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


def test_planner_page(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/planner", session=live.sessions["planner"])
    visit = page.visit
    img = map_pixels(page, live.shots / "planner.png")
    assert_drawn(img)
    assert count_colour(img, (0xE6, 0x61, 0x00)) > 100, "active plan outline missing"
    # Grid metrics on click.
    state = page.evaluate(
        "({draft: ggPlanner.state.draft, n: Object.keys(ggPlanner.state.grids).length})"
    )
    assert state["draft"] == live.ids["draft"] and state["n"] > 5
    page.locator("#map").click(position={"x": 540, "y": 380})
    wait_for(page, "document.querySelector('#gg-metrics table') !== null", timeout=5000)
    assert "Polsby" in page.inner_text("#gg-metrics")
    # Move: pick a group, then a neighbouring grid; a stale ETag is refused with its reason.
    candidates = _move_candidates(live.url, live.ids["draft"])
    assert candidates
    group, to = candidates[0]
    page.evaluate("ggPlanner.state.etag = '\"stale\"'")
    assert _try_move(page, group, to).startswith("未调整（412")
    wait_for(page, "ggPlanner.state.etag !== '\"stale\"'")
    outcomes = []
    for group, to in candidates:
        outcomes.append(_try_move(page, group, to))
        if outcomes[-1].startswith("已将"):
            break
    assert outcomes[-1].startswith("已将"), outcomes  # refusals carry the server's reason
    assert all("：" in o and len(o) > 12 for o in outcomes[:-1]), outcomes
    wait_for(
        page,
        "([id, to]) => ggPlanner.layers.groups.toGeoJSON().features"
        ".find(f => f.properties.id === id).properties.grid_code === to",
        arg=[group, to],
        timeout=10_000,
    )
    assert_local_only(visit)
    # Resource errors of refused moves (400/409/412) are expected; nothing else.
    refused = re.compile(r"status of (400|409|412) |^HTTP (400|409|412) .*/moves$")
    assert [e for e in visit.errors if not refused.search(e)] == []
    page.context.close()


def _move_candidates(url: str, plan: int) -> list[tuple[int, str]]:
    """(group id, neighbouring grid) pairs of the draft, longest shared border first."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    """
                    SELECT DISTINCT ON (va.id) va.id, g2.code,
                           ST_Length(ST_Intersection(ST_Boundary(va.geom),
                                                     ST_Boundary(g2.geom))::geography) AS shared
                      FROM grid_groups ga
                      JOIN grids g1 ON g1.id = ga.grid_id
                      JOIN villager_groups va ON va.id = ga.group_id
                      JOIN grids g2 ON g2.plan_id = ga.plan_id AND g2.level = 3
                           AND g2.village_code = va.village_code AND g2.id <> g1.id
                     WHERE ga.plan_id = :p AND ga.part IS NULL
                       AND (SELECT count(*) FROM grid_groups x WHERE x.grid_id = g1.id) > 2
                       AND ST_Intersects(va.geom, g2.geom)
                     ORDER BY va.id, shared DESC
                    """
                ),
                {"p": plan},
            ).all()
    finally:
        engine.dispose()
    rows = sorted(rows, key=lambda r: -r.shared)[:6]
    return [(int(r.id), str(r.code)) for r in rows if r.shared > 20]


def _try_move(page: Any, group: int, to: str) -> str:
    """Pick ``group`` on the planner page, press 移动, pick grid ``to``; the result text."""
    page.evaluate(
        """id => ggPlanner.pick(ggPlanner.layers.groups.toGeoJSON().features
                                .map(f => f.properties).find(p => p.id === id), null)""",
        group,
    )
    page.click("#gg-move-start")
    page.evaluate("code => ggPlanner.pick({grid_code: code}, null)", to)
    wait_for(
        page,
        "() => { const r = document.getElementById('gg-move-result');"
        " return !r.hidden && !r.textContent.startsWith('正在提交'); }",
        timeout=20_000,
    )
    page.wait_for_load_state("networkidle")
    return str(page.inner_text("#gg-move-result"))


def test_leader_page(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/leader", session=live.sessions["town_leader"])
    visit = page.visit
    total = int(page.inner_text("#gg-total"))
    assert total > 100
    options = page.eval_on_selector_all("#gg-category option", "os => os.map(o => o.value)")
    assert {"环境卫生", "矛盾纠纷", "安全隐患"} <= set(options)
    img = map_pixels(page, live.shots / "leader.png")
    assert_drawn(img)
    assert count_colour(img, (0xDE, 0x2D, 0x26), tol=60) > 50, "no heat bins drawn"
    # Filter by category: totals shrink and the heat tiles are re-requested with the filter.
    page.select_option("#gg-category", "安全隐患")
    with page.expect_response(lambda r: "/api/stats/cases-by-grid?" in r.url) as counts:
        page.click("#gg-filters button[type=submit]")
    assert "geometry=false" in counts.value.url  # the grids drawn already are restyled
    wait_for(page, f"+document.getElementById('gg-total').textContent < {total}")
    heat = [u for u in visit.requests if "/tiles/heat/" in u]
    assert any("category=%E5%AE%89" in u for u in heat), heat[-3:]
    # Raw points only at street zoom.
    assert not any("/tiles/cases/" in u for u in visit.requests)
    with page.expect_response(lambda r: "/tiles/cases/16/" in r.url, timeout=10_000):
        page.evaluate("ggLeader.map.setZoom(16, {animate: false})")
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


@pytest.mark.parametrize("layer", ["grids", "heat", "key_units", "inspection_points", "villages"])
def test_embed_pages(live: Live, browser: Any, layer: str) -> None:
    page = open_page(browser, f"{live.base}/embed/{layer}?embed_token={live.embed_token}")
    visit = page.visit
    assert any(f"/tiles/{layer}/" in u for u in visit.requests)
    img = map_pixels(page, live.shots / f"embed-{layer}.png")
    assert_drawn(img, stroke=GRID_STROKE if layer == "grids" else None)
    assert page.locator(".gg-header").count() == 0  # minimal chrome
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


def test_public_page(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/public")
    visit = page.visit
    img = map_pixels(page, live.shots / "public.png")
    assert_drawn(img)
    page.locator("#gg-list li").first.click()
    page.wait_for_selector("#gg-grid .gg-staff img")
    text_ = page.inner_text("#gg-grid")
    assert "网格长" in text_ and "0731-8" in text_
    page.wait_for_load_state("networkidle")
    assert any("/public/photos/" in u for u in visit.requests)
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


def test_gcj02_basemap_shifts_overlays(live: Live, browser: Any, tmp_path: Path) -> None:
    """A local tile folder posing as a GCJ-02 provider: overlays are shifted client-side."""
    import math

    from geogrid.coords import wgs84_to_gcj02

    w, s, e, n = live.app.state.test_area_bounds
    png = _tile_png()
    for z in range(9, 14):  # the page opens at the town's extent (z12 here)
        x0, y0 = _tile_xy(w - 0.5, n + 0.5, z)
        x1, y1 = _tile_xy(e + 0.5, s - 0.5, z)
        for x in range(x0, x1 + 1):
            (tmp_path / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
            for y in range(y0, y1 + 1):
                (tmp_path / str(z) / str(x) / f"{y}.png").write_bytes(png)
    before = live.app.state.settings
    live.app.state.settings = before.model_copy(
        update={"basemap": "gcj02", "basemap_url": "/basemap/{z}/{x}/{y}.png",
                "basemap_dir": tmp_path}
    )  # fmt: skip
    try:
        page = open_page(browser, live.base + "/public")
    finally:
        live.app.state.settings = before
    visit = page.visit
    assert any("/basemap/" in u for u in visit.requests)
    lng, lat = 112.9, 28.2
    got = page.evaluate(f"GG.wgs2gcj({lng}, {lat})")
    want = wgs84_to_gcj02(lng, lat)
    assert math.isclose(got[0], want[0], abs_tol=1e-9) and math.isclose(
        got[1], want[1], abs_tol=1e-9
    )
    # The first vertex of the first grid is drawn at its GCJ-02 position.
    raw, drawn = page.evaluate(
        """() => { let l = null; ggPublic.map.eachLayer(x => { if (x.feature && !l) l = x; });
                   let c = l.feature.geometry.coordinates, ll = l.getLatLngs();
                   while (Array.isArray(c[0])) c = c[0];
                   while (Array.isArray(ll)) ll = ll[0];
                   return [c, [ll.lng, ll.lat]]; }"""
    )
    gx, gy = wgs84_to_gcj02(raw[0], raw[1])
    assert math.isclose(drawn[0], gx, abs_tol=1e-7) and math.isclose(drawn[1], gy, abs_tol=1e-7)
    img = map_pixels(page, live.shots / "public-gcj02.png")
    assert_drawn(img)
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


def _tile_xy(lng: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lng + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _tile_png() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), (250, 246, 232))
    ImageDraw.Draw(img).rectangle((0, 0, 255, 255), outline=(200, 200, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
