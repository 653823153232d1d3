"""The OGC API's HTML answers (conformance class ``html``): the landing page, conformance,
collections, a collection, a page of items (a Leaflet map with the page's features and its
paging links) and one item, asked for with ``f=html`` or by a browser's ``Accept`` header;
Chinese first, linked from every JSON answer (``rel=alternate``, ``text/html``) and back,
served from our own origin only. The pages in headless Chromium at desktop and phone size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from api.routes.ogc_html import HTML_CONFORMANCE
from tests.ogc_support import Served, served_town
from tests.ogc_support import get_json as _get
from tests.pages_support import EXTERNAL_URL, Live, assert_local_only, open_page, wait_for

HTML = "text/html"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PHONE = (390, 844)
#: The resources that are pages too, with the Chinese title each page carries.
PAGES = [
    ("/ogc", "OGC API 地理数据服务"),
    ("/ogc/conformance", "符合性声明"),
    ("/ogc/collections", "数据集"),
    ("/ogc/collections/key_units", "重点单位"),
    ("/ogc/collections/cases/items", "事件：要素"),
    ("/ogc/collections/cases/items/C2025000001", "事件：C2025000001"),
]


@pytest.fixture(scope="module")
def served(pg, _town_template, sample_town, tmp_path_factory, account_maker) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ogc-html")
    with served_town(pg, _town_template, sample_town, tmp, account_maker, public=False) as s:
        yield s


class _Doc(HTMLParser):
    """The parts of a page the tests read: title, links, table rows, script sources."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.links: list[dict[str, str]] = []
        self.rows: list[str] = []
        self.scripts: list[str] = []
        self.data = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("a", "link"):
            self.links.append({"tag": tag, **a})
        if tag == "tr" and "data-id" in a:
            self.rows.append(a["data-id"])
        if tag == "script":
            if "src" in a:
                self.scripts.append(a["src"])
            if a.get("id") == "ogc-data":
                self._in = "data"
        if tag == "title":
            self._in = "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("title", "script"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "data":
            self.data += data


def _page(served: Served, path: str, status: int = 200, **params: Any) -> _Doc:
    r = served.client.get(path, params=params, headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == status, (path, params, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(HTML), r.headers["content-type"]
    doc = _Doc()
    doc.feed(r.text)
    assert not EXTERNAL_URL.search(r.text), "a page links something outside our origin"
    assert all(s.startswith("/assets/") for s in doc.scripts), doc.scripts
    return doc


def _rel(doc: dict[str, Any], rel: str, type_: str) -> list[str]:
    return [x["href"] for x in doc["links"] if x["rel"] == rel and x.get("type") == type_]


def _local(href: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(href)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


@pytest.mark.parametrize(("path", "title"), PAGES)
def test_every_page_in_chinese_by_f_or_by_accept(served: Served, path: str, title: str) -> None:
    by_accept = _page(served, path)
    assert by_accept.title.startswith(title), by_accept.title
    by_f = served.client.get(path, params={"f": "html"})  # TestClient sends Accept: */*
    assert by_f.status_code == 200 and by_f.headers["content-type"].startswith(HTML)
    english = _page(served, path, lang="en")
    assert "中" not in english.title and english.title != by_accept.title
    # the page's JSON twin, and the page again from the JSON's alternate link
    twin = [x["href"] for x in by_accept.links if x.get("type") == "application/json"]
    assert twin
    path_, params = _local(twin[0])
    assert params["f"] == "json"
    r = served.client.get(path_, params=params)
    assert r.status_code == 200 and "json" in r.headers["content-type"]
    pages = _rel(r.json(), "alternate", HTML)
    assert len(pages) == 1, r.json()["links"]
    back = _page(served, _local(pages[0])[0], **_local(pages[0])[1])
    assert back.title == by_accept.title


def test_json_stays_the_default(served: Served) -> None:
    for accept in ("*/*", "application/json", "application/geo+json, text/html;q=0.5", ""):
        for path, _ in PAGES:
            r = served.client.get(path, headers={"Accept": accept})
            assert r.status_code == 200 and "json" in r.headers["content-type"], (path, accept)
            assert "Accept" in r.headers.get("vary", ""), path  # for caches
    items = served.client.get("/ogc/collections/cases/items", headers={"Accept": "*/*"})
    assert 'type="text/html"' in items.headers["link"]  # the page, in the Link header too
    assert "lang=en" not in items.headers["link"]


def test_html_is_a_declared_conformance_class(served: Served) -> None:
    assert HTML_CONFORMANCE in _get(served, "/ogc/conformance")["conformsTo"]
    api = _get(served, "/ogc/api")
    f_values = api["paths"]["/conformance"]["get"]["parameters"][0]["schema"]["enum"]
    assert "html" in f_values
    assert (
        "text/html"
        in api["paths"]["/collections/cases/items"]["get"]["responses"]["200"]["content"]
    )


@pytest.mark.parametrize(
    ("path", "params", "mentions"),
    [
        ("/ogc/api", {"f": "html"}, "f="),  # the API definition is JSON only
        ("/ogc/collections/cases/queryables", {"f": "html"}, "f="),
        ("/ogc/collections", {"f": "xml"}, "f="),
        ("/ogc/collections", {"lang": "en"}, "lang"),  # a page's language, not a parameter
        ("/ogc/collections/cases/items", {"f": "html", "foo": "1"}, "foo"),
        ("/ogc/collections/cases/items", {"f": "html", "limit": "0"}, "limit"),
        ("/ogc/collections/cases/items/C2025000001", {"f": "html", "limit": "1"}, "limit"),
    ],
)
def test_pages_refuse_what_json_refuses(
    served: Served, path: str, params: dict[str, str], mentions: str
) -> None:
    r = served.client.get(path, params=params)
    assert r.status_code == 400, (path, params, r.text[:300])
    assert r.json()["code"] == "InvalidParameterValue" and mentions in r.json()["description"]


def test_items_page_shows_the_json_page_with_its_paging(served: Served) -> None:
    """The same features as the JSON page of the same query; the next link is a page."""
    query = {"filter": "category = '安全隐患'", "limit": "7", "sortby": "-reported_at"}
    page = _page(served, "/ogc/collections/cases/items", f="html", **query)
    fc = _get(served, "/ogc/collections/cases/items", **query)
    assert page.rows == [f["id"] for f in fc["features"]] and len(page.rows) == 7
    drawn = json.loads(page.data)["geojson"]["features"]
    assert [f["id"] for f in drawn] == page.rows
    assert all(f["geometry"]["type"] == "Point" for f in drawn)
    nxt = [x["href"] for x in page.links if x.get("rel") == "next"]
    assert len(nxt) == 1
    path, params = _local(nxt[0])
    assert params["f"] == "html" and "cursor" in params
    second = _page(served, path, **params)
    expected = follow_json(served, fc)
    assert second.rows == expected
    assert [x for x in second.links if x.get("rel") == "prev"]
    # a CRS asked for: the page still draws CRS84 (longitude first, inside the town)
    crs = _page(served, "/ogc/collections/cases/items", f="html", limit="3",
                crs="http://www.opengis.net/def/crs/EPSG/0/4490")  # fmt: skip
    x0, y0, x1, y1 = served.town_bbox
    for f in json.loads(crs.data)["geojson"]["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert x0 <= lon <= x1 and y0 <= lat <= y1


def follow_json(served: Served, fc: dict[str, Any]) -> list[str]:
    """The ids of the JSON page behind ``fc``'s next link."""
    nxt = next(x["href"] for x in fc["links"] if x["rel"] == "next")
    path, params = _local(nxt)
    return [f["id"] for f in _get(served, path, **params)["features"]]


def test_item_page_and_empty_page(served: Served) -> None:
    item = _page(served, "/ogc/collections/key_units/items/" + _first(served, "key_units"))
    assert item.title.startswith("重点单位：")
    empty = _page(served, "/ogc/collections/cases/items", filter="category = '无此类别'")
    assert empty.rows == []
    missing = served.client.get(
        "/ogc/collections/cases/items/NO-SUCH", headers={"Accept": BROWSER_ACCEPT}
    )
    assert missing.status_code == 404


def _first(served: Served, cid: str) -> str:
    return str(_get(served, f"/ogc/collections/{cid}/items", limit=1)["features"][0]["id"])


# -- in the browser -----------------------------------------------------------------------


def _drawn(page: Any) -> int:
    """Features the page's map drew (ogc.js counts them: canvas paths are no DOM nodes)."""
    return int(page.evaluate("Number(document.body.dataset.drawn || -1)"))


def _next_page(page: Any, selector: str) -> None:
    page.click(selector)
    page.wait_for_load_state("load")
    wait_for(page, "document.body.dataset.ready === '1'")


@pytest.mark.parametrize("viewport", [(1366, 768), PHONE], ids=["desktop", "phone"])
def test_pages_in_chromium(live: Live, browser: Any, viewport: tuple[int, int]) -> None:
    """Every page opens without an error and loads nothing but our own origin; the items
    page draws its features, pages forward by its next link, and the item page draws its
    one feature."""
    session = live.sessions["town_leader"]
    name = "desktop" if viewport[0] > 600 else "phone"
    for path in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/cases"):
        page = open_page(browser, live.base + path + "?f=html", session=session, viewport=viewport)
        assert page.visit.errors == [], (path, page.visit.errors)
        assert_local_only(page.visit)
        assert page.locator("h1").inner_text()
        page.context.close()
    url = live.base + "/ogc/collections/cases/items?f=html&limit=25"
    page = open_page(browser, url, session=session, viewport=viewport)
    assert page.visit.errors == [], page.visit.errors
    assert page.locator("#map .leaflet-pane").count() > 0
    rows = page.locator("tr[data-id]").count()
    assert rows == 25 == _drawn(page)
    box = page.locator("#map").bounding_box()
    assert box is not None and box["width"] <= viewport[0] and box["height"] > 150
    page.screenshot(path=str(live.shots / f"ogc-items-{name}.png"), full_page=False)
    first = page.locator("tr[data-id]").first.get_attribute("data-id")
    _next_page(page, "a[rel=next]")
    assert page.locator("tr[data-id]").first.get_attribute("data-id") != first
    assert _drawn(page) == page.locator("tr[data-id]").count() > 0
    assert_local_only(page.visit)
    _next_page(page, "tr[data-id] a")
    assert _drawn(page) == 1
    assert re.search(r"/ogc/collections/cases/items/[^/?]+\?f=html$", page.url), page.url
    assert page.locator("#map .leaflet-pane").count() > 0
    page.screenshot(path=str(live.shots / f"ogc-item-{name}.png"), full_page=False)
    assert page.visit.errors == [], page.visit.errors
    assert_local_only(page.visit)
    page.context.close()
