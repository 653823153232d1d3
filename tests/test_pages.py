"""Map pages in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

The real app runs with uvicorn in a background thread on a free 127.0.0.1 port against a
copy of the loaded sample town, to which :func:`tests.pages_support.seed_overlays` adds an
active plan, cases, key units, inspection points and staff by SQL (and a draft plan made by
the partitioner, so that the planner can really move a group). Every page is loaded with
every request recorded: no console error, no request leaving 127.0.0.1, and a screenshot of
the map shows the layers drawn. Set ``GEOGRID_ARTIFACTS`` to keep the screenshots.
The planner's own flow is tested in tests/test_planner_ui.py. See also
tests/test_pages_layout.py (viewports, languages), tests/test_pages_public.py
(address search, location, MBTiles) and tests/test_embed_drive.py (postMessage, error panels).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.pages_support import (
    EXTERNAL_URL,
    GRID_STROKE,
    Live,
    active_grid,
    assert_drawn,
    assert_local_only,
    count_colour,
    map_pixels,
    open_page,
    tile_png,
    tile_xy,
    wait_for,
)

HEAT_DARK = (0x54, 0x27, 0x8F)  # the darkest bins of GG.RAMPS.heat (purples)


def test_served_pages_and_assets_have_no_external_urls(live: Live) -> None:
    import httpx

    grid = active_grid(live.url)
    cookies = {"gg_session": live.sessions["town_leader"]}
    with httpx.Client(base_url=live.base, timeout=30, cookies=cookies) as client:
        paths = ["/", "/planner", "/leader", "/public", "/docs", "/embed/grids", "/embed",
                 f"/public/grid/{grid}", f"/embed/heat?embed_token={live.embed_token}"]  # fmt: skip
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


def test_leader_page(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/leader", session=live.sessions["town_leader"])
    visit = page.visit
    total = int(page.inner_text("#gg-total"))
    assert total > 100
    options = page.eval_on_selector_all("#gg-category option", "os => os.map(o => o.value)")
    assert {"环境卫生", "矛盾纠纷", "安全隐患"} <= set(options)
    img = map_pixels(page, live.shots / "leader.png")
    assert_drawn(img)
    assert count_colour(img, HEAT_DARK, tol=60) > 50, "no heat bins drawn"
    # One legend section per layer, each with its own colours (no ramp shared by two).
    sections = page.eval_on_selector_all(
        "#gg-legend section",
        "ss => ss.map(s => [s.dataset.layer, [...s.querySelectorAll('i')]"
        ".map(i => getComputedStyle(i).backgroundColor)])",
    )
    shown = dict(sections)
    assert {"heat", "counts"} <= set(shown), shown  # points appear at street zoom only
    assert not set(shown["heat"]) & set(shown["counts"]), shown
    band = {"rgb(46, 125, 50)", "rgb(249, 168, 37)", "rgb(198, 40, 40)"}
    assert not band & {*shown["heat"], *shown["counts"]}, "band colours reused for counts"
    # Filter by category: totals shrink and the heat tiles are re-requested with the filter.
    page.select_option("#gg-category", "安全隐患")
    with page.expect_response(lambda r: "/api/stats/cases-by-grid?" in r.url) as counts:
        page.click("#gg-filters button[type=submit]")
    assert "geometry=false" in counts.value.url  # the grids drawn already are restyled
    wait_for(page, f"+document.getElementById('gg-total').textContent < {total}")
    heat = [u for u in visit.requests if "/tiles/heat/" in u]
    assert any("category=%E5%AE%89" in u for u in heat), heat[-3:]
    # Raw points only at street zoom, with their own legend section.
    assert not any("/tiles/cases/" in u for u in visit.requests)
    with page.expect_request(lambda r: "/tiles/cases/16/" in r.url, timeout=10_000):
        page.evaluate("ggLeader.map.setZoom(16, {animate: false})")
    wait_for(page, "!!document.querySelector('#gg-legend section[data-layer=points]')")
    # A failed load shows an error; the next success clears it.
    page.route("**/api/stats/cases-by-grid?*", lambda route: route.abort())
    page.click("#gg-filters button[type=submit]")
    wait_for(page, "document.getElementById('gg-status').className.includes('error')")
    assert "网络" in page.inner_text("#gg-status")
    page.unroute("**/api/stats/cases-by-grid?*")
    page.click("#gg-filters button[type=submit]")
    wait_for(page, "document.getElementById('gg-status').hidden")
    # Empty state: a period with no cases.
    page.fill("#gg-from", "2001-01-01")
    page.fill("#gg-to", "2001-01-31")
    page.click("#gg-filters button[type=submit]")
    wait_for(page, "!document.getElementById('gg-empty').hidden")
    assert page.inner_text("#gg-total") == "0"
    assert "没有事件" in page.inner_text("#gg-empty")
    assert_local_only(visit)
    aborted = [e for e in visit.errors if "ERR_FAILED" not in e]
    assert not aborted, visit.errors
    page.context.close()


@pytest.mark.parametrize("layer", ["grids", "heat", "key_units", "inspection_points", "villages"])
def test_embed_pages(live: Live, browser: Any, layer: str) -> None:
    page = open_page(browser, f"{live.base}/embed/{layer}?embed_token={live.embed_token}")
    visit = page.visit
    assert any(f"/tiles/{layer}/" in u for u in visit.requests)
    img = map_pixels(page, live.shots / f"embed-{layer}.png")
    assert_drawn(img, stroke=GRID_STROKE if layer == "grids" else None)
    assert page.locator(".gg-header").count() == 0  # minimal chrome
    assert page.locator("#gg-legend section").count() == 1
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


def test_embed_url_options(live: Live, browser: Any) -> None:
    """centre/zoom, legend and base map off, language: all read from the URL."""
    url = (
        f"{live.base}/embed/grids?embed_token={live.embed_token}&lang=en&legend=0&basemap=0"
        "&center=114.5,30.5&zoom=9"
    )
    page = open_page(browser, url)
    state = page.evaluate("ggEmbed.state()")
    assert state["view"]["zoom"] == 9
    assert abs(state["view"]["center"][0] - 114.5) < 0.01
    assert page.locator("#gg-legend").count() == 0
    assert page.locator("#gg-nobasemap").count() == 0  # the base map was turned off on purpose
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.inner_text("#gg-embed-title") == "Grids"
    w, s, e, n = live.app.state.test_area_bounds
    page2 = open_page(browser, f"{live.base}/embed/villages?bbox={w},{s},{e},{n}")
    b = page2.evaluate("ggEmbed.state().view.bbox")
    assert b[0] <= w + 0.01 and b[2] >= e - 0.01
    assert not page.visit.errors and not page2.visit.errors
    page.context.close()
    page2.context.close()


def test_public_page(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/public")
    visit = page.visit
    img = map_pixels(page, live.shots / "public.png")
    assert_drawn(img)
    page.click("#gg-all summary")
    page.locator("#gg-list li button").first.click()
    page.wait_for_selector("#gg-grid .gg-staff img")
    text_ = page.inner_text("#gg-grid")
    assert "网格长" in text_ and "0731-8" in text_
    tel = page.get_attribute("#gg-grid a.gg-tel", "href")
    assert tel and re.fullmatch(r"tel:0731-8\d{6}", tel), tel
    code = page.get_attribute("#gg-grid", "data-code")
    assert page.url.split("?")[0].endswith(f"/public/grid/{code}")  # shareable address
    page.wait_for_load_state("networkidle")
    assert any("/public/photos/" in u for u in visit.requests)
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()
    # The grid's own page (the printed QR codes point here) opens with it selected.
    page = open_page(browser, f"{live.base}/public/grid/{code}")
    assert page.evaluate("document.body.dataset.selected") == code
    assert page.inner_text("#gg-grid h2") == page.title().split(" · ")[0]
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def test_gcj02_basemap_shifts_overlays(live: Live, browser: Any, tmp_path: Path) -> None:
    """A local tile folder posing as a GCJ-02 provider: overlays are shifted client-side."""
    import math

    from geogrid.coords import wgs84_to_gcj02

    w, s, e, n = live.app.state.test_area_bounds
    png = tile_png()
    for z in range(9, 14):  # the page opens at the town's extent (z12 here)
        x0, y0 = tile_xy(w - 0.5, n + 0.5, z)
        x1, y1 = tile_xy(e + 0.5, s - 0.5, z)
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
