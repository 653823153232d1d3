"""An embed driven by a portal on ANOTHER local origin, in headless Chromium.

A second ``http.server`` on 127.0.0.1 (another port) serves a portal page that frames
``/embed/...`` with an embed token naming the portal's origin, and talks to it with
``postMessage``: it receives ``ready``, ``click`` and ``selection`` events and sends
``setView`` and ``setFilter``. A portal the token does not name cannot frame the map, and an
expired token shows a Chinese error panel inside the portal instead of JSON.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.pages_support import (
    Live,
    assert_local_only,
    embed_token,
    open_page,
    query,
    wait_for,
)

PORTAL = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>门户</title></head>
<body>
<h1>某门户网站</h1>
<iframe id="map" src="{src}" width="600" height="400" style="border:0"></iframe>
<script>
  var MAP = "{origin}";
  window.events = [];
  window.addEventListener("message", function (e) {{
    if (e.origin !== MAP || !e.data || e.data.source !== "geogrid") return;
    window.events.push(e.data);
    if (e.data.type === "ready") document.body.dataset.ready = "1";
  }});
  window.send = function (msg) {{
    document.getElementById("map").contentWindow.postMessage(msg, MAP);
  }};
</script>
</body></html>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain static web server on another 127.0.0.1 port: (origin, its folder)."""
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _portal_page(folder: Path, live: Live, path: str, name: str = "portal.html") -> str:
    (folder / name).write_text(
        PORTAL.format(src=live.base + path, origin=live.base), encoding="utf-8"
    )
    return name


def _events(page: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in page.evaluate("window.events") if e["type"] == kind]


def _embed_frame(page: Any, live: Live) -> Any:
    return next(f for f in page.frames if f.url.startswith(live.base + "/embed/"))


def test_portal_drives_the_embed_by_postmessage(live: Live, browser: Any, portal: Any) -> None:
    origin, folder = portal
    token = embed_token(live.app, live.url, origins=[origin])
    name = _portal_page(folder, live, f"/embed/grids?embed_token={token}")
    page = open_page(browser, f"{origin}/{name}")
    ready = _events(page, "ready")
    assert len(ready) == 1 and ready[0]["layer"] == "grids" and ready[0]["lang"] == "zh"
    assert len(ready[0]["center"]) == 2 and len(ready[0]["bbox"]) == 4
    frame = _embed_frame(page, live)
    # setView: centre the largest grid at zoom 14
    code, village, x, y = query(
        live.url,
        "SELECT g.code, g.village_code, ST_X(p), ST_Y(p) FROM (SELECT g.code, g.village_code, "
        "ST_PointOnSurface(g.geom) p FROM grids g JOIN plans pl ON pl.id = g.plan_id "
        "AND pl.status = 'active' ORDER BY ST_Area(g.geom) DESC LIMIT 1) g",
    )[0]
    page.evaluate(f"send({{type: 'setView', center: [{x}, {y}], zoom: 14}})")
    wait_for(frame, "ggEmbed.state().view.zoom === 14")
    centre = frame.evaluate("ggEmbed.state().view.center")
    assert abs(centre[0] - x) < 1e-4 and abs(centre[1] - y) < 1e-4
    page.wait_for_load_state("networkidle")
    # click: the portal learns what was clicked, and the selection
    box = page.locator("#map").bounding_box()
    assert box
    for _ in range(10):  # "networkidle" can come before the grid's tile is drawn: again
        n = len(_events(page, "click"))
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        try:
            wait_for(page, f"window.events.filter(e => e.type === 'click').length > {n}",
                     timeout=5000)  # fmt: skip
        except TimeoutError:
            raise AssertionError((page.evaluate("window.events"), page.visit.errors)) from None
        if _events(page, "click")[-1]["feature"] is not None:
            break
        time.sleep(0.5)
    click = _events(page, "click")[-1]
    assert click["feature"]["code"] == code, click
    assert abs(click["lngLat"][0] - x) < 1e-3 and abs(click["lngLat"][1] - y) < 1e-3
    selection = _events(page, "selection")
    assert selection and selection[-1]["feature"]["code"] == code
    assert set(click["feature"]) <= {"id", "code", "name", "village_code", "households",
                                     "population", "plan_id"}  # fmt: skip
    # setFilter: another village only; the grid under the centre is no longer drawn or hit
    other = query(
        live.url,
        "SELECT code FROM admin_areas WHERE level = 'village' AND code <> :v ORDER BY code LIMIT 1",
        v=village,
    )[0][0]
    page.evaluate(f"send({{type: 'setFilter', village: '{other}'}})")
    wait_for(frame, f"ggEmbed.state().filter.village === '{other}'")
    page.wait_for_load_state("networkidle")
    n_clicks = len(_events(page, "click"))
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    wait_for(page, f"window.events.filter(e => e.type === 'click').length > {n_clicks}")
    assert _events(page, "click")[-1]["feature"] is None
    assert _events(page, "selection")[-1]["feature"] is None  # the selection was cleared
    # commands that are not well-formed change nothing
    page.evaluate("send({type: 'setView', center: ['a', 1], zoom: 3}); send('setView'); send(null)")
    page.wait_for_timeout(300)
    assert frame.evaluate("ggEmbed.state().view.zoom") == 14
    page.screenshot(path=str(live.shots / "embed-portal.png"))
    assert_local_only(page.visit)
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def test_portal_filters_the_heat_map(live: Live, browser: Any, portal: Any) -> None:
    origin, folder = portal
    token = embed_token(live.app, live.url, origins=[origin])
    name = _portal_page(folder, live, f"/embed/heat?embed_token={token}&legend=1")
    page = open_page(browser, f"{origin}/{name}")
    frame = _embed_frame(page, live)
    assert frame.locator("#gg-legend section").count() == 1
    with page.expect_request(lambda r: "/tiles/heat/" in r.url and "category=" in r.url):
        page.evaluate("send({type: 'setFilter', category: '安全隐患', from: '2020-01-01'})")
    assert frame.evaluate("ggEmbed.state().filter.category") == "安全隐患"
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def test_a_portal_the_token_does_not_name_cannot_frame_the_map(
    live: Live, browser: Any, portal: Any
) -> None:
    origin, folder = portal
    token = embed_token(live.app, live.url, origins=["http://127.0.0.1:1"])
    name = _portal_page(folder, live, f"/embed/grids?embed_token={token}")
    page = open_page(browser, f"{origin}/{name}", ready="")
    page.wait_for_timeout(1500)
    assert page.evaluate("window.events") == []  # the map never ran
    assert any("frame-ancestors" in e for e in page.visit.errors), page.visit.errors
    page.context.close()


def test_an_expired_token_shows_a_chinese_panel_in_the_portal(
    live: Live, browser: Any, portal: Any
) -> None:
    from geogrid.access.keys import server_secret

    origin, folder = portal
    good = embed_token(live.app, live.url, origins=[origin])
    secret = server_secret(live.app.state.settings)
    claims = jwt.decode(good, secret, algorithms=["HS256"], options={"verify_aud": False})
    expired = jwt.encode({**claims, "exp": datetime.now(UTC) - timedelta(hours=1)}, secret, "HS256")
    name = _portal_page(folder, live, f"/embed/grids?embed_token={expired}")
    page = open_page(browser, f"{origin}/{name}", ready="")
    frame = _embed_frame(page, live)
    wait_for(frame, "document.body.dataset.ready === 'error'")
    panel = frame.inner_text(".gg-error-panel")
    assert "地图暂时无法显示" in panel and "嵌入令牌无效" in panel
    assert "expired" not in panel and "{" not in panel
    page.screenshot(path=str(live.shots / "embed-expired.png"))
    # the only errors: the 401 status of the panel itself
    assert all("401" in e for e in page.visit.errors), page.visit.errors
    assert_local_only(page.visit)
    page.context.close()
