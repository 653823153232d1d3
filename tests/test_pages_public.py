"""The public grid map as a resident uses it on a phone (headless Chromium, 390x844): typing
addresses taken from the sample town's register finds the household's grid, locating
oneself finds the grid there, and base maps from an MBTiles file (raster and vector) are
drawn, with no console error and nothing requested outside 127.0.0.1."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from sqlalchemy import text

from geogrid import store
from tests.pages_support import (
    Live,
    assert_local_only,
    count_colour,
    make_mbtiles,
    map_pixels,
    open_page,
    query,
    tile_xy,
    wait_for,
)

PHONE = (390, 844)
LAND = (236, 226, 198)  # the raster test tiles' colour
META = {"name": "测试底图", "minzoom": "8", "maxzoom": "14", "attribution": "本地底图"}


def _addresses(live: Live, n: int) -> list[tuple[str, str]]:
    """(registered address, the grid of its household's group): one per village, from the
    register (the owner's connection; the web server cannot read addresses)."""
    rows = query(
        live.url,
        """
        SELECT DISTINCT ON (h.village_code) h.address_raw, g.code
          FROM households h
          JOIN grid_groups gg ON gg.group_id = h.group_id AND gg.part IS NULL
          JOIN grids g ON g.id = gg.grid_id
          JOIN plans p ON p.id = gg.plan_id AND p.status = 'active'
         WHERE h.address_raw ~ '组'
         ORDER BY h.village_code, md5(h.register_no)
        """,
    )
    assert len(rows) >= 2
    return [(str(a), str(c)) for a, c in rows[:n]]


def test_address_search_finds_the_grid(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/public", viewport=PHONE)
    for i, (address, code) in enumerate(_addresses(live, 4)):
        page.fill("#gg-address", address)
        before = page.evaluate("document.getElementById('gg-results').dataset.done || ''")
        page.click("#gg-find button[type=submit]")
        wait_for(page, f"(document.getElementById('gg-results').dataset.done || '') !== '{before}'")
        found = page.evaluate("document.getElementById('gg-results').dataset.found")
        assert found == code, (address, code, page.inner_text("#gg-results"))
        assert page.evaluate("document.body.dataset.selected") == code
        card = page.inner_text("#gg-grid")
        assert code in card and "网格长" in card
        assert page.locator("#gg-grid a.gg-tel").count() >= 1
        page.screenshot(path=str(live.shots / f"public-search-{i}.png"))
    assert_local_only(page.visit)
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def test_locate_me_finds_the_grid_here(live: Live, browser: Any) -> None:
    code, x, y = query(
        live.url,
        "SELECT g.code, ST_X(p), ST_Y(p) FROM (SELECT g.code, ST_PointOnSurface(g.geom) p "
        "FROM grids g JOIN plans pl ON pl.id = g.plan_id AND pl.status = 'active' "
        "ORDER BY g.code LIMIT 1 OFFSET 2) g",
    )[0]
    page = open_page(
        browser,
        live.base + "/public",
        viewport=PHONE,
        context={"geolocation": {"longitude": x, "latitude": y}, "permissions": ["geolocation"]},
    )
    page.click("#gg-locate")
    wait_for(page, "!!document.getElementById('gg-results').dataset.found")
    assert page.evaluate("document.body.dataset.selected") == code
    assert "您所在位置的网格" in page.inner_text("#gg-results")
    page.context.close()
    # refused permission: a plain message, no error
    page = open_page(browser, live.base + "/public", viewport=PHONE)
    page.click("#gg-locate")
    wait_for(page, "!!document.querySelector('#gg-results .err')")
    assert "无法获取位置" in page.inner_text("#gg-results")
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def _tiles_around(live: Live, make: Any) -> dict[tuple[int, int, int], bytes]:
    """Tiles covering the town at zooms 11–13 (the public page opens at z12 here)."""
    w, s, e, n = live.app.state.test_area_bounds
    out = {}
    for z in range(11, 14):
        x0, y0 = tile_xy(w - 0.2, n + 0.2, z)
        x1, y1 = tile_xy(e + 0.2, s - 0.2, z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                out[(z, x, y)] = make(z, x, y)
    return out


def _with_basemap(live: Live, browser: Any, path: Path) -> Any:
    before = live.app.state.settings
    live.app.state.settings = before.model_copy(
        update={"basemap": "mbtiles", "basemap_mbtiles": path}
    )
    try:
        return open_page(browser, live.base + "/public", viewport=PHONE)
    finally:
        live.app.state.settings = before


def test_raster_mbtiles_base_map(live: Live, browser: Any, tmp_path: Path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), LAND).save(buf, "PNG")
    png = buf.getvalue()
    path = make_mbtiles(tmp_path / "raster.mbtiles", _tiles_around(live, lambda *a: png), meta=META)
    page = _with_basemap(live, browser, path)
    tiles = [u for u in page.visit.requests if "/basemap/mbtiles/" in u]
    assert tiles, page.visit.requests
    assert page.locator("#gg-nobasemap").count() == 0  # a base map is configured
    img = map_pixels(page, live.shots / "public-mbtiles-raster.png")
    assert count_colour(img, LAND, tol=20) > 10_000, "the raster base map is not drawn"
    assert "本地底图" in page.inner_text(".leaflet-control-attribution")
    assert_local_only(page.visit)
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def test_vector_mbtiles_base_map(live: Live, browser: Any, tmp_path: Path) -> None:
    """Vector tiles made by PostGIS (ST_AsMVT of the villages as 'water'), gzipped as
    MBTiles tools store them."""
    engine = store.make_engine(live.url)

    def make(z: int, x: int, y: int) -> bytes:
        with engine.connect() as conn:
            mvt = conn.execute(
                text(
                    "SELECT ST_AsMVT(t, 'water', 4096, 'geom') FROM (SELECT ST_AsMVTGeom("
                    "ST_Transform(geom, 3857), ST_TileEnvelope(:z, :x, :y)) AS geom "
                    "FROM admin_areas WHERE level = 'village') t"
                ),
                {"z": z, "x": x, "y": y},
            ).scalar_one()
        return gzip.compress(bytes(mvt))

    try:
        path = make_mbtiles(
            tmp_path / "vector.mbtiles", _tiles_around(live, make), fmt="pbf", meta=META
        )
    finally:
        engine.dispose()
    page = _with_basemap(live, browser, path)
    wait_for(page, "document.querySelectorAll('.leaflet-tile-pane canvas').length > 0")
    page.wait_for_load_state("networkidle")
    assert any("/basemap/mbtiles/12/" in u for u in page.visit.requests)
    img = map_pixels(page, live.shots / "public-mbtiles-vector.png")
    water = (0xB3, 0xD4, 0xE6)  # baseStyle('water') in geogrid-map.js
    assert count_colour(img, water, tol=30) > 5_000, "the vector base map is not drawn"
    assert_local_only(page.visit)
    assert not page.visit.errors, page.visit.errors
    page.context.close()
