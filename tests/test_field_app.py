"""The field app (/field/) in headless Chromium at 390×844, against the real server: it
installs its service worker, goes offline, records a visit and a case with a photo, reloads
offline (it opens from the cache), comes back online and sends its outbox, and the server
holds each record exactly once; an outbox whose answer was lost is sent again and nothing
is created twice; an offline edit of a visit that changed on the server is shown as a
conflict, side by side, and kept only when the worker says so; nothing is loaded from
anywhere but 127.0.0.1.

The service worker's own requests are routed (and cut off when offline) with Playwright's
service-worker network events (``PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS``), so
"offline" holds for the worker as well as for the page.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import text

from geogrid import store
from tests.pages_support import CHROMIUM, CHROMIUM_ARGS, Live, live_server, query, wait_for

PASSWORD = "Field-test-2026!"
PHONE = {"width": 390, "height": 844}
VISIT_NOTES = "离线走访：老人独居，需要关注"
LOCAL = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:)")


@dataclass
class Field:
    live: Live
    cookie: str
    grid: str
    household: int
    lon: float
    lat: float


def place_households(url: str) -> None:
    """Put the households in the active plan's grids (what activating a plan does)."""
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE households h SET grid_code = g.code FROM grids g "
                    "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                    "WHERE g.level = 3 AND ST_Intersects(g.geom, h.geom)"
                )
            )
    finally:
        engine.dispose()


def worker_session(url: str, base: str, grid: str, name: str = "field-worker") -> str:
    """A grid worker of ``grid`` signed in through /login: the page-session cookie."""
    import httpx

    from geogrid.access import users
    from geogrid.access.scope import Scope

    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            users.add_user(
                conn, username=name, role="grid_worker", scope=Scope.parse(grid),
                password=PASSWORD, must_change_password=False,
            )  # fmt: skip
    finally:
        engine.dispose()
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/login", data={"username": name, "password": PASSWORD})
        assert r.status_code == 303, r.text
        return str(r.cookies["gg_session"])


@pytest.fixture(scope="module")
def field(pg, _town_template, tmp_path_factory) -> Iterator[Field]:  # type: ignore[no-untyped-def]
    for live in live_server(pg, _town_template, tmp_path_factory):
        place_households(live.url)
        grid, hh, lon, lat = query(
            live.url,
            "SELECT h.grid_code, h.id, ST_X(h.geom), ST_Y(h.geom) FROM households h "
            "WHERE h.grid_code IS NOT NULL ORDER BY h.grid_code, h.id LIMIT 1",
        )[0]
        cookie = worker_session(live.url, live.base, grid)
        yield Field(live, cookie, grid, int(hh), float(lon), float(lat))


@pytest.fixture(scope="module")
def sw_browser() -> Iterator[Any]:
    """Chromium whose service workers' requests Playwright sees (and can cut off)."""
    os.environ["PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS"] = "1"
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Phone:
    """A 390×844 browser context with the worker signed in; records every request, and
    goes offline for the page and its service worker alike."""

    def __init__(self, browser: Any, f: Field) -> None:
        self.f = f
        self.ctx = browser.new_context(
            viewport=PHONE, service_workers="allow", geolocation={"latitude": f.lat,
            "longitude": f.lon, "accuracy": 8}, permissions=["geolocation"], locale="zh-CN",
        )  # fmt: skip
        self.ctx.add_cookies([{"name": "gg_session", "value": f.cookie, "url": f.live.base}])
        self.requests: list[str] = []
        self.offline_requests: list[str] = []
        self.errors: list[str] = []
        self.offline = False
        self.ctx.on("request", lambda r: self.requests.append(r.url))
        self.ctx.route("**/*", self._route)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # failed requests while cut off are the point of the test; anything else is a bug
        if message.type == "error" and "net::ERR_" not in message.text:
            self.errors.append(message.text)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if not LOCAL.match(url):
            route.abort()  # nothing leaves the machine (recorded in self.requests)
        elif self.offline:
            self.offline_requests.append(url)
            route.abort("internetdisconnected")
        else:
            route.fallback()

    def go_offline(self) -> None:
        self.offline = True
        self.ctx.set_offline(True)

    def go_online(self) -> None:
        self.offline = False
        self.ctx.set_offline(False)

    def open(self) -> float:
        start = time.monotonic()
        self.page.goto(f"{self.f.live.base}/field/", wait_until="domcontentloaded")
        wait_for(self.page, "document.body.dataset.ready === '1'", timeout=30_000, polling=20)
        return time.monotonic() - start

    def data(self, key: str) -> Any:
        return self.page.evaluate(f"document.body.dataset[{key!r}]")

    def close(self) -> None:
        self.ctx.close()


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (2400, 1800)) -> dict[str, Any]:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=90)
    return {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": out.getvalue()}


def shown(page: Any, selector: str) -> int:
    return int(page.evaluate("s => document.querySelectorAll(s).length", selector))


def count(f: Field, sql: str, **params: Any) -> int:
    return int(query(f.live.url, sql, **params)[0][0])


def record_visit(page: Any, household: int, notes: str, photo: dict[str, Any] | None) -> None:
    page.click("#nav-visit")
    page.select_option("#ff-visit select[name=household_id]", str(household))
    page.fill("#ff-visit textarea[name=notes]", notes)
    page.fill("#ff-visit input[name=people_met]", "欧阳娜娜，李四")
    if photo:
        page.set_input_files("#ff-visit input[name=photos]", files=[photo])
        wait_for(page, "document.querySelector('#ff-visit [data-thumbs]').dataset.count === '1'")
    page.click("#ff-visit button[type=submit]")


def record_case(page: Any, description: str, photo: dict[str, Any]) -> None:
    page.click("#nav-report")
    wait_for(page, "document.querySelector('#ff-case .ff-pos').dataset.pos === 'gps'")
    page.select_option("#ff-case select[name=category]", "0401")
    page.fill("#ff-case textarea[name=description]", description)
    page.set_input_files("#ff-case input[name=photos]", files=[photo])
    wait_for(page, "document.querySelector('#ff-case [data-thumbs]').dataset.count === '1'")
    page.click("#ff-case button[type=submit]")


def test_offline_record_reload_and_sync_once(field: Field, sw_browser: Any) -> None:
    f = field
    phone = Phone(sw_browser, f)
    try:
        page = phone.page
        phone.open()
        assert phone.data("bundle") == "network"
        wait_for(page, "document.body.dataset.sw === 'active'", timeout=30_000)
        total = count(f, "SELECT count(*) FROM households WHERE grid_code = :g", g=f.grid)
        assert page.evaluate("JSON.parse(document.getElementById('ff-households').children.length)")
        assert f"共 {total} 户" in page.inner_text("#ff-hh-count")

        phone.go_offline()
        wait_for(page, "document.getElementById('ff-net').dataset.online === '0'")
        record_visit(page, f.household, VISIT_NOTES, jpeg((200, 30, 30)))
        wait_for(page, "document.body.dataset.outbox === '1'")
        record_case(page, "离线上报：路灯损坏", jpeg((30, 30, 200)))
        wait_for(page, "document.body.dataset.outbox === '2'")
        assert count(f, "SELECT count(*) FROM cases WHERE description = '离线上报：路灯损坏'") == 0

        # reload while offline: the shell comes from the service worker, the data from IndexedDB
        took = phone.open()
        assert phone.data("bundle") == "cache" and took < 5
        assert phone.data("outbox") == "2"
        assert (
            page.evaluate("document.querySelectorAll('#ff-outbox li[data-status=waiting]').length")
            == 2
        )
        assert phone.offline_requests, "the reload should have tried (and failed) the network"
        page.screenshot(path=str(f.live.shots / "field-offline-outbox.png"))

        phone.go_online()
        page.evaluate("window.dispatchEvent(new Event('online'))")
        wait_for(page, "document.body.dataset.outbox === '0'", timeout=30_000)
        assert count(f, "SELECT count(*) FROM cases WHERE description = '离线上报：路灯损坏'") == 1
        assert count(f, "SELECT count(*) FROM visits WHERE notes = :n", n=VISIT_NOTES) == 1
        assert count(
            f, "SELECT count(*) FROM case_files cf JOIN cases c ON c.id = cf.case_id "
            "WHERE c.description = '离线上报：路灯损坏'"
        ) == 1  # fmt: skip
        assert count(
            f, "SELECT count(*) FROM visit_photos p JOIN visits v ON v.id = p.visit_id "
            "WHERE v.notes = :n", n=VISIT_NOTES,
        ) == 1  # fmt: skip
        # the photo was downscaled on the phone before it was sent
        w, h = query(f.live.url, "SELECT s.width, s.height FROM stored_files s JOIN case_files cf "
                     "ON cf.sha256 = s.sha256 JOIN cases c ON c.id = cf.case_id "
                     "WHERE c.description = '离线上报：路灯损坏'")[0]  # fmt: skip
        assert max(w, h) <= 1600
        assert (
            page.evaluate("document.querySelectorAll('#ff-sent li[data-status=created]').length")
            == 2
        )
        page.screenshot(path=str(f.live.shots / "field-sent.png"))
        assert not [u for u in phone.requests if not LOCAL.match(u)]
        assert not phone.errors, phone.errors
    finally:
        phone.close()


def test_lost_answer_sent_again_creates_nothing_twice(field: Field, sw_browser: Any) -> None:
    f = field
    phone = Phone(sw_browser, f)
    lost: list[int] = []

    def lose_first_answer(route: Any) -> None:
        if lost:
            route.fallback()
            return
        response = route.fetch()  # the server does the work ...
        lost.append(response.status)
        route.abort("connectionreset")  # ... and the answer never reaches the phone

    try:
        page = phone.page
        phone.open()
        page.route("**/api/field/sync", lose_first_answer)
        record_visit(page, f.household, "答复丢失的走访", None)
        deadline = time.monotonic() + 20
        while not lost and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert lost == [200]
        wait_for(page, "!document.body.dataset.sending || document.body.dataset.sending === '0'")
        assert phone.data("outbox") == "1"  # still waiting: the phone never heard back
        assert count(f, "SELECT count(*) FROM visits WHERE notes = '答复丢失的走访'") == 1
        page.click("#nav-outbox")
        page.click("#ff-send")
        wait_for(page, "document.body.dataset.outbox === '0'", timeout=20_000)
        assert count(f, "SELECT count(*) FROM visits WHERE notes = '答复丢失的走访'") == 1
        assert (
            page.evaluate(
                "document.querySelectorAll('#ff-sent li[data-status=\"already-there\"]').length"
            )
            == 1
        )
    finally:
        phone.close()


def test_a_conflicting_edit_is_shown_side_by_side(field: Field, sw_browser: Any) -> None:
    f = field
    phone = Phone(sw_browser, f)
    try:
        page = phone.page
        phone.open()
        record_visit(page, f.household, "冲突测试原始记录", None)
        # queued (the outbox reads 0 before the record joins it), then sent: on a busy
        # machine the first sending can take many seconds
        wait_for(page, "document.body.dataset.outbox !== '0' || !!document.querySelector("
                       "'#ff-sent li')", timeout=20_000)  # fmt: skip
        wait_for(page, "document.body.dataset.outbox === '0'", timeout=90_000)
        vid = count(f, "SELECT id FROM visits WHERE notes = '冲突测试原始记录'")
        first = count(f, "SELECT version FROM visits WHERE id = :v", v=vid)
        wait_for(page, f"!!document.querySelector('#ff-my-visits li[data-visit=\"{vid}\"]')",
                 timeout=20_000)  # fmt: skip
        phone.go_offline()
        # meanwhile the record changes on the server (the office edits it)
        engine = store.make_engine(f.live.url)
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE visits SET notes = '办公室补充了情况', "
                                  "version = version + 1 WHERE id = :v"), {"v": vid})  # fmt: skip
        finally:
            engine.dispose()
        page.click("#nav-visit")
        page.click(f'#ff-my-visits li[data-visit="{vid}"] button')
        page.fill("#ff-edit textarea[name=notes]", "手机上离线修改的记录")
        page.click("#ff-edit button[value=save]")
        wait_for(page, "document.body.dataset.outbox === '1'")
        phone.go_online()
        page.evaluate("window.dispatchEvent(new Event('online'))")
        wait_for(page, "!!document.querySelector('#ff-outbox li[data-status=conflict]')",
                 timeout=20_000)  # fmt: skip
        # nothing was overwritten
        assert count(f, "SELECT count(*) FROM visits WHERE id = :v AND notes = '办公室补充了情况'",
                     v=vid) == 1  # fmt: skip
        page.click("#ff-outbox li[data-status=conflict] button")
        mine = page.inner_text("#ff-conflict [data-side=mine]")
        theirs = page.inner_text("#ff-conflict [data-side=theirs]")
        assert "手机上离线修改的记录" in mine and "办公室补充了情况" in theirs
        page.screenshot(path=str(f.live.shots / "field-conflict.png"))
        page.click("#ff-conflict [data-act=keep-mine]")
        wait_for(page, "document.body.dataset.outbox === '0'", timeout=20_000)
        row = query(f.live.url, "SELECT notes, version FROM visits WHERE id = :v", v=vid)[0]
        assert row.notes == "手机上离线修改的记录" and row.version == first + 2
        assert not [u for u in phone.requests if not LOCAL.match(u)]
    finally:
        phone.close()
