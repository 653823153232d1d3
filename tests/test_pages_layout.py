"""Every page at a phone, a tablet and a desktop size in headless Chromium: no horizontal
overflow, the map at least 90% of the width on phones, Chinese by default with no English
from the server, English after the switch (remembered), the no-base-map notice, keyboard
access, no console error and nothing requested outside 127.0.0.1. Screenshots of each page
and size go to ``$GEOGRID_ARTIFACTS`` when set."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.pages_support import (
    Live,
    active_grid,
    assert_local_only,
    open_page,
)

VIEWPORTS = {"phone": (390, 844), "tablet": (1024, 768), "desktop": (1440, 900)}
#: (name, path, signed in as, has a map)
PAGES = [
    ("index", "/", None, False),
    ("planner", "/planner", "planner", True),
    ("leader", "/leader", "town_leader", True),
    ("public", "/public", None, True),
    ("public-grid", "/public/grid/{grid}", None, True),
    ("embed", "/embed/grids?embed_token={token}", None, True),
    ("embed-doc", "/embed", None, False),
]
#: Latin words a Chinese page may show: the product's name, units, file formats, web terms.
ALLOWED_LATIN = {"geogrid", "km", "iframe", "postMessage", "CSV", "Excel", "GeoPackage", "PDF"}
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def _open(live: Live, browser: Any, path: str, who: str | None, size: str, **kw: Any) -> Any:
    url = live.base + path.format(grid=active_grid(live.url, last=True), token=live.embed_token)
    session = live.sessions[who] if who else None
    return open_page(browser, url, session=session, viewport=VIEWPORTS[size], **kw)


def _latin_words(page: Any, selector: str = "body") -> set[str]:
    """Latin words visible in ``selector`` (code samples, the user name and the switch to
    English excluded)."""
    text_ = page.evaluate(
        """sel => [...document.querySelectorAll(sel)].map(el => {
             const c = el.cloneNode(true);
             c.querySelectorAll("pre, code, script, [hidden], .gg-user, .gg-lang")
              .forEach(e => e.remove());
             return c.innerText; }).join(" ")""",
        selector,
    )
    return set(LATIN_WORD.findall(text_)) - ALLOWED_LATIN


@pytest.mark.parametrize("size", sorted(VIEWPORTS))
@pytest.mark.parametrize(("name", "path", "who", "has_map"), PAGES, ids=[p[0] for p in PAGES])
def test_page_fits_every_screen(
    live: Live, browser: Any, name: str, path: str, who: str | None, has_map: bool, size: str
) -> None:
    page = _open(live, browser, path, who, size, ready="" if name == "index" else "1")
    visit = page.visit
    width = page.evaluate("window.innerWidth")
    scroll = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    assert scroll <= width, f"{name} overflows at {size}: {scroll} > {width}"
    if has_map:
        box = page.locator("#map").bounding_box()
        assert box and box["height"] > 150, box
        if size == "phone":
            assert box["width"] >= 0.9 * width, f"{name}: map {box['width']} of {width} px"
    page.screenshot(path=str(live.shots / f"{name}-{size}.png"))
    # Chinese by default; nothing English from the server on a Chinese page
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    # (the embed snippet page documents parameter names: its prose and headings are checked)
    where = "h1, h2, h3, main > p:first-of-type" if name == "embed-doc" else "body"
    assert not _latin_words(page, where), _latin_words(page, where)
    assert_local_only(visit)
    assert not visit.errors, visit.errors
    page.context.close()


def test_language_switch_is_remembered(live: Live, browser: Any) -> None:
    page = _open(live, browser, "/public", None, "phone")
    assert "查找" in page.inner_text("#gg-find")
    with page.expect_navigation():
        page.click(".gg-lang")
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert "Find" in page.inner_text("#gg-find")
    assert "No base map is configured" in page.inner_text("#gg-nobasemap")
    assert not re.search(r"[\u4e00-\u9fff]", page.inner_text("#gg-find"))
    # another page opened without ?lang= follows the choice
    page.goto(live.base + "/", wait_until="load")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert "Grid map" in page.inner_text("main")
    assert not page.visit.errors, page.visit.errors
    page.context.close()


def test_no_basemap_notice_and_keyboard(live: Live, browser: Any) -> None:
    page = _open(live, browser, "/public", None, "desktop")
    note = page.inner_text("#gg-nobasemap")
    assert "未配置底图" in note
    # keyboard: the skip link comes first and leads to the map; the search is reachable
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "gg-skip"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#map"
    page.focus("#gg-address")
    page.keyboard.type("一个不存在的村3组")
    page.keyboard.press("Enter")
    page.wait_for_selector("#gg-results .gg-empty")
    assert "没有找到" in page.inner_text("#gg-results")
    # the notice can be closed
    page.click("#gg-nobasemap button")
    assert page.locator("#gg-nobasemap").count() == 0
    assert not page.visit.errors, page.visit.errors
    page.context.close()
