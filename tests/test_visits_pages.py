"""The leader page's visit-coverage toggle in headless Chromium (desktop and 390×844): off at
first, fetched when switched on, grids coloured by coverage class with a legend saying
what each colour means, nothing personal in what the page received, only 127.0.0.1."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text

from geogrid import store
from tests.pages_support import Live, assert_local_only, map_pixels, open_page, wait_for


@pytest.fixture(scope="module")
def visited(live: Live) -> str:
    """Households placed in the active plan's grids and every household of the first grid
    visited today; returns that grid's code."""
    engine = store.make_engine(live.url)
    try:
        with engine.begin() as conn:
            conn.execute(  # the seed draws the active plan by SQL: place the households
                text(
                    "UPDATE households h SET grid_code = g.code FROM grids g "
                    "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                    "WHERE g.level = 3 AND ST_Intersects(g.geom, h.geom)"
                )
            )
            grid = conn.execute(
                text(
                    "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                    "WHERE p.status = 'active' AND g.level = 3 AND EXISTS (SELECT 1 FROM "
                    "households h WHERE h.grid_code = g.code) ORDER BY g.code LIMIT 1"
                )
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO visits (household_id, village_code, visited_on, worker_name, "
                    "people_met, notes) SELECT h.id, h.village_code, :d, 'page-test', "
                    "ARRAY['欧阳明华'], '走访' FROM households h WHERE h.grid_code = :g"
                ),
                {"g": grid, "d": dt.date.today()},
            )
    finally:
        engine.dispose()
    return grid


@pytest.mark.parametrize("viewport", [(1366, 768), (390, 844)], ids=["desktop", "phone"])
def test_leader_coverage_toggle(
    live: Live, browser: Any, visited: str, viewport: tuple[int, int]
) -> None:
    page = open_page(
        browser, live.base + "/leader", session=live.sessions["town_leader"], viewport=viewport
    )
    visit = page.visit
    assert not any("/api/visits/coverage/layer" in u for u in visit.requests)  # off at first
    assert "走访覆盖率" in page.content()  # the toggle is in the layer control
    with page.expect_response(lambda r: "/api/visits/coverage/layer" in r.url) as got:
        page.evaluate("ggLeader.map.addLayer(ggLeader.layers.coverage)")
    body = got.value.text()
    assert "欧阳明华" not in body and "register_no" not in body and "page-test" not in body
    wait_for(page, "!!document.querySelector('#gg-legend section[data-layer=coverage]')")
    legend = page.inner_text("#gg-legend section[data-layer=coverage]")
    for words in ("走访覆盖率", "90% 及以上", "不足 30%", "无住户"):
        assert words in legend, legend
    colours = page.evaluate(
        "(() => { const out = []; ggLeader.layers.coverage.eachLayer(g => g.eachLayer(l => "
        "out.push([l.feature.properties.code, l.options.fillColor]))); return out; })()"
    )
    by_code = dict(colours)
    assert by_code[visited] == "#1a9850"  # every household visited: the ≥ 90% class
    assert len(set(by_code.values())) >= 2
    map_pixels(page, live.shots / f"leader-coverage-{viewport[0]}.png")
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()
