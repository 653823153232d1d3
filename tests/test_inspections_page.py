"""The leader page's fire-inspection and key-unit toggles in headless Chromium, on a
desktop and a 390×844 phone: off at first, switched on from the layer control, their tiles
requested from this server only, the due-state legend shown, no console errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pages_support import Live, assert_local_only, open_page, wait_for


@pytest.mark.parametrize("viewport", [(1366, 768), (390, 844)], ids=["desktop", "phone"])
def test_leader_page_toggles_inspections_and_key_units(
    live: Live, browser: Any, viewport: tuple[int, int]
) -> None:
    page = open_page(
        browser, live.base + "/leader", session=live.sessions["town_leader"], viewport=viewport
    )
    visit = page.visit
    assert not any("/tiles/inspection_points/" in u for u in visit.requests)  # off at first
    labels = page.eval_on_selector_all(
        ".leaflet-control-layers-overlays label", "ls => ls.map(l => l.textContent.trim())"
    )
    assert "消防检查点（到期状态）" in labels and "重点单位（逾期备案标红）" in labels, labels
    with page.expect_request(lambda r: "/tiles/inspection_points/" in r.url, timeout=15_000):
        page.evaluate("ggLeader.map.addLayer(ggLeader.layers.inspections)")
    with page.expect_request(lambda r: "/tiles/key_units/" in r.url, timeout=15_000):
        page.evaluate("ggLeader.map.addLayer(ggLeader.layers.units)")
    wait_for(page, "!!document.querySelector('#gg-legend section[data-layer=inspections]')")
    legend = page.inner_text("#gg-legend section[data-layer=inspections]")
    assert "已逾期" in legend and "7日内到期" in legend
    page.wait_for_load_state("networkidle")
    assert_local_only(visit)
    assert [e for e in visit.errors if "ERR_FAILED" not in e] == []
