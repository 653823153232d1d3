"""``geogrid map export``: one self-contained offline HTML file, checked in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geogrid.cli import build_app
from geogrid.mapexport import external_urls
from tests.test_pages import CHROMIUM, CHROMIUM_ARGS, GRID_STROKE, assert_drawn, seed_overlays


def test_export_is_self_contained_and_draws_offline(
    town_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed_overlays(town_url)
    monkeypatch.setenv("GEOGRID_DATABASE_URL", town_url)
    out = tmp_path / "map.html"
    result = CliRunner().invoke(
        build_app(), ["map", "export", "--plan", str(ids["active"]), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert external_urls(page) == []
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!data:|#|tel:)[a-z]+:""", page, re.I)
    assert "L.map(" in page or "L.map (" in page
    assert "420117" in page and "Polsby" in page  # grid codes and metric popups

    missing = CliRunner().invoke(build_app(), ["map", "export", "--plan", "999", "-o", str(out)])
    assert missing.exit_code == 1 and "does not exist" in str(missing.exception)

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/setup.sh"
    import io

    import numpy as np
    from PIL import Image
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page_ = browser.new_page(viewport={"width": 1366, "height": 768})
            requests: list[str] = []
            errors: list[str] = []
            page_.on("request", lambda r: requests.append(r.url))
            page_.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page_.on("pageerror", lambda e: errors.append(str(e)))
            page_.route(re.compile(r"^(?!file:|data:|blob:).*"), lambda route: route.abort())
            page_.goto(out.as_uri(), wait_until="load")
            page_.wait_for_selector(
                ".leaflet-overlay-pane canvas, .leaflet-overlay-pane path", state="attached"
            )
            png = page_.screenshot(path=str(tmp_path / "export.png"))
            img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        finally:
            browser.close()
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert errors == []
    assert_drawn(img, stroke=GRID_STROKE)
