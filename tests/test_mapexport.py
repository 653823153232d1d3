"""``geogrid map export`` and ``geogrid plan report``: self-contained offline HTML files in
Chinese (English switch) with a title, named grids, a legend and a metric scale bar, checked
in headless Chromium."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from geogrid import store
from geogrid.cli import build_app
from geogrid.mapexport import external_urls
from tests.pages_support import CHROMIUM, CHROMIUM_ARGS, GRID_STROKE, assert_drawn, seed_overlays


def _open(path: Path, shot: Path) -> dict[str, Any]:
    """Open ``path`` offline in Chromium: what the page shows, its requests and errors."""
    import numpy as np
    from PIL import Image
    from playwright import sync_api

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/setup.sh"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route(re.compile(r"^(?!file:|data:|blob:).*"), lambda route: route.abort())
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_selector(
                ".leaflet-overlay-pane canvas, .leaflet-overlay-pane path", state="attached"
            )
            seen = {
                "title": page.inner_text(".gg-title"),
                "legend": page.inner_text(".gg-legend"),
                "scale": page.inner_text(".leaflet-control-scale"),
                "attribution": page.locator(".leaflet-control-attribution").count(),
                "html_lang": page.get_attribute("html", "lang"),
                "text": page.inner_text("body"),
            }
            png = page.screenshot(path=str(shot))
            seen["img"] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        finally:
            browser.close()
    seen["external"] = [u for u in requests if not u.startswith(("file:", "data:"))]
    seen["errors"] = errors
    return seen


def _has(page: str, text_: str) -> bool:
    """``text_`` is in the page as it is or as a JSON string (``\\uXXXX`` escapes)."""
    return text_ in page or json.dumps(text_)[1:-1] in page


def _metric_scale(text_: str) -> None:
    lines = [x.strip() for x in text_.split("\n") if x.strip()]
    assert len(lines) == 1 and re.fullmatch(r"\d+ (m|km)", lines[0]), lines  # no miles or feet


def test_export_is_chinese_titled_with_legend_and_metric_scale(
    town_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifact_dir: Path
) -> None:
    ids = seed_overlays(town_url)
    engine = store.make_engine(town_url)
    with engine.connect() as conn:
        name, plan_name = conn.execute(
            text(
                "SELECT g.name, p.name FROM grids g JOIN plans p ON p.id = g.plan_id "
                "WHERE p.id = :p AND g.level = 3 ORDER BY g.code LIMIT 1"
            ),
            {"p": ids["active"]},
        ).one()
    engine.dispose()
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
    assert "420117" in page and _has(page, name)  # codes and names in the popups
    assert _has(page, "紧凑度") and _has(page, "户数")  # Chinese popup labels

    seen = _open(out, artifact_dir / "export-zh.png")
    assert seen["external"] == [] and seen["errors"] == [] and seen["html_lang"] == "zh-CN"
    assert plan_name in seen["title"] and "网格方案" in seen["title"] and "生效" in seen["title"]
    assert "图例" in seen["legend"] and "户数在区间内" in seen["legend"]
    assert "超出区间" in seen["legend"] and "接近区间边界" in seen["legend"]
    _metric_scale(seen["scale"])
    assert seen["attribution"] == 0  # no "Leaflet |" prefix, no third-party attribution
    assert "Leaflet" not in seen["text"]
    assert_drawn(seen["img"], stroke=GRID_STROKE)

    en = tmp_path / "map-en.html"
    args = ["map", "export", "--plan", str(ids["active"]), "-o", str(en), "--lang", "en"]
    assert CliRunner().invoke(build_app(), args).exit_code == 0
    seen = _open(en, artifact_dir / "export-en.png")
    assert "grid plan" in seen["title"] and "active" in seen["title"]
    assert "Legend" in seen["legend"] and "Within the band" in seen["legend"]
    assert "Polsby" in en.read_text(encoding="utf-8")

    r = CliRunner().invoke(build_app(), ["map", "export", "--plan", "999", "-o", str(out)])
    assert r.exit_code == 1 and "does not exist" in str(r.exception)
    args = ["map", "export", "--plan", str(ids["active"]), "-o", str(out), "--lang", "fr"]
    r = CliRunner().invoke(build_app(), args)
    assert r.exit_code == 1 and "unknown language" in str(r.exception)


def test_plan_report_is_chinese_with_names_legend_and_scale(
    town_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifact_dir: Path
) -> None:
    from geogrid.plans import create_plan, params_from_options

    engine = store.make_engine(town_url)
    with engine.connect() as conn:
        town = conn.execute(text("SELECT code FROM admin_areas WHERE level = 'town'")).scalar_one()
    plan = create_plan(engine, town, name="报告方案", jobs=1,
                       params=params_from_options(exact_seconds=0))  # fmt: skip
    with engine.begin() as conn:  # a planner's name for one grid shows in the report
        code = conn.execute(
            text("UPDATE grids SET name = '桥头网格' WHERE id = (SELECT min(id) FROM grids "
                 "WHERE plan_id = :p AND level = 3) RETURNING code"), {"p": plan}
        ).scalar_one()  # fmt: skip
        default_name = conn.execute(
            text("SELECT name FROM grids WHERE plan_id = :p AND level = 3 AND code <> :c LIMIT 1"),
            {"p": plan, "c": code},
        ).scalar_one()
    engine.dispose()
    monkeypatch.setenv("GEOGRID_DATABASE_URL", town_url)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(build_app(), ["plan", "report", str(plan), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "网格划分质量报告" in page and "网格名称" in page and "户数" in page
    assert "桥头网格" in page and default_name in page
    assert not re.search(r"""<(script|link|img)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""",
                         page, re.I)  # fmt: skip
    seen = _open(out, artifact_dir / "report-zh.png")
    assert seen["external"] == [] and seen["errors"] == []
    assert "报告方案" in seen["title"] and seen["html_lang"] == "zh-CN"
    assert "图例" in seen["legend"] and "户数在区间内" in seen["legend"]
    _metric_scale(seen["scale"])
    assert seen["attribution"] == 0

    en = tmp_path / "report-en.html"
    args = ["plan", "report", str(plan), "-o", str(en), "--lang", "en"]
    assert CliRunner().invoke(build_app(), args).exit_code == 0
    page = en.read_text(encoding="utf-8")
    assert "Grid plan quality report" in page and "Households" in page and "桥头网格" in page
    assert "网格划分质量报告" not in page
