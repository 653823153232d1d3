"""Shared machinery of the page tests (a helpers module, not a test file): a seeded copy of
the sample town served by the real app with uvicorn on a free 127.0.0.1 port, headless
Debian Chromium driven by Playwright, and helpers that record every request and console
error of a page. Screenshots go to ``$GEOGRID_ARTIFACTS`` (or ``$GEOGRID_SCREENSHOTS``) when
set, else to a temporary folder.
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


def artifacts_dir(tmp: Path) -> Path:
    """Where screenshots are kept: ``$GEOGRID_ARTIFACTS`` (CI), ``$GEOGRID_SCREENSHOTS`` or
    a temporary folder."""
    env = os.environ.get("GEOGRID_ARTIFACTS") or os.environ.get("GEOGRID_SCREENSHOTS")
    path = Path(env) if env else tmp / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def embed_token(app: Any, url: str, origins: list[str] | None = None, days: int = 1) -> str:
    """A token for every embeddable layer, for pages served from ``origins`` (default
    ``http://127.0.0.1``)."""
    from geogrid.access import embed
    from geogrid.access.keys import server_secret

    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            _, token = embed.issue(
                conn, server_secret(app.state.settings), name="pages test",
                layers=list(embed.EMBEDDABLE), origins=origins or ["http://127.0.0.1"],
                days=days,
                issued_by="test",
            )  # fmt: skip
    finally:
        engine.dispose()
    return token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_server(pg, template, tmp_path_factory, **settings: Any) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    """The real app on a free 127.0.0.1 port, against a seeded copy of the sample town
    (``template``); a test module wraps it in its own module-scoped ``live`` fixture."""
    import uvicorn

    from api import create_app
    from geogrid.settings import Settings

    name = pg.create_database(template=template)
    url = pg.url(name)
    ids = seed_overlays(url, draft=True)
    tmp = tmp_path_factory.mktemp("pages")
    app = create_app(Settings(home=tmp, **settings), database_url=url)
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
    shots = artifacts_dir(tmp)
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


def chromium() -> Iterator[Any]:
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
    viewport: tuple[int, int] = (1366, 768),
    context: dict[str, Any] | None = None,
) -> Any:
    """Open ``url`` at ``viewport``, record requests and console errors, wait for readiness
    (signed in with the page-session cookie ``session`` when given; ``context``: more
    options of the browser context, e.g. geolocation)."""
    ctx = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        service_workers="block",
        **(context or {}),
    )
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


def tile_xy(lng: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lng + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def tile_png() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), (250, 246, 232))
    ImageDraw.Draw(img).rectangle((0, 0, 255, 255), outline=(200, 200, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def query(url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of ``sql`` on the test database, with the owner's rights (test inputs derived
    from the data, e.g. registered addresses the web server may not read)."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def active_grid(url: str, *, last: bool = False) -> str:
    """The first (or last) grid code of the active plan."""
    order = "DESC" if last else "ASC"
    return str(
        query(
            url,
            "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
            f"WHERE p.status = 'active' ORDER BY g.code {order} LIMIT 1",
        )[0][0]
    )


def make_mbtiles(
    path: Path,
    tiles: dict[tuple[int, int, int], bytes],
    *,
    fmt: str | None = "png",
    meta: dict[str, str] | None = None,
) -> Path:
    """A small MBTiles file; ``tiles`` keyed by XYZ (stored TMS-style, rows from the south)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        conn.execute(
            "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, "
            "tile_data BLOB)"
        )
        rows = {"name": "test", "minzoom": "0", "maxzoom": "14", **(meta or {})}
        if fmt is not None:
            rows["format"] = fmt
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", rows.items())
        conn.executemany(
            "INSERT INTO tiles VALUES (?, ?, ?, ?)",
            [(z, x, (1 << z) - 1 - y, data) for (z, x, y), data in tiles.items()],
        )
        conn.commit()
    finally:
        conn.close()
    return path
