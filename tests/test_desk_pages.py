"""The complaint page and the case desk in a real headless Chromium (Debian's chromium,
driven by Playwright), desktop 1440×900 and phone 390×844.

The real app runs with uvicorn on a free 127.0.0.1 port against a copy of the sample town
with an active plan. A resident submits a complaint with a photo on the phone page ("locate
me" by the browser's geolocation) and follows it on the status page; then, through the desk
UI only, a grid worker reports a case and accepts it, the town leader registers and
dispatches it, the grid worker starts and handles it (with a photo), the town leader checks,
evaluates and closes it. Every page: no console error, no request leaving 127.0.0.1, no
horizontal overflow; screenshots go to the ``artifact_dir`` (``$GEOGRID_ARTIFACTS`` when set).
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from geogrid import store
from geogrid.plans import activate_plan, create_plan

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
LOCAL = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:)")


@dataclass
class Live:
    base: str
    url: str
    shots: Path
    lon: float
    lat: float
    grid: str
    sessions: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(
    pg, _town_template, sample_town, tmp_path_factory, account_maker, artifact_dir
) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    import httpx
    import uvicorn

    from api import create_app
    from geogrid.settings import Settings

    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        plan = create_plan(engine, sample_town.town_code, name="现行方案", jobs=1)
        activate_plan(engine, plan)
        with engine.connect() as conn:
            grid, lon, lat = conn.execute(
                text(
                    "SELECT code, ST_X(p), ST_Y(p) FROM (SELECT code, ST_PointOnSurface(geom) "
                    "AS p FROM grids WHERE plan_id = :p AND level = 3 ORDER BY households DESC, "
                    "code LIMIT 1) q"
                ),
                {"p": plan},
            ).one()
    finally:
        engine.dispose()
    app = create_app(Settings(home=tmp_path_factory.mktemp("desk")), database_url=url)
    app.state.open311_limits = (100_000, 3600)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    shots = Path(artifact_dir)
    sessions = {}
    accounts = {"grid_worker": grid, "town_leader": sample_town.town_code}
    with httpx.Client(base_url=base, timeout=30) as client:
        for role, scope in accounts.items():
            acct = account_maker(url, role, scope)
            r = client.post("/login", data={"username": acct.username, "password": acct.password})
            assert r.status_code == 303, r.text
            sessions[role] = r.cookies["gg_session"]
            client.cookies.clear()
    try:
        yield Live(base, url, shots, float(lon), float(lat), str(grid), sessions)
    finally:
        server.should_exit = True
        thread.join(10)
        pg.drop_database(name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/setup.sh"
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_for(page: Any, expression: str, arg: Any = None, *, timeout: float = 20_000) -> None:
    """Poll ``expression`` through the debugger protocol (the pages' CSP forbids eval)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} ms for {expression}")
        page.wait_for_timeout(100)


class Visit:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.pending = 0  # requests under way

    def settle(self, page: Any, quiet_ms: int = 300, timeout: float = 20.0) -> None:
        """Wait until no request has been under way for ``quiet_ms`` (Playwright's
        "networkidle" is a page-load state: once reached, waiting for it returns at once)."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            if self.pending <= 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_ms / 1000:
                    return
            else:
                quiet_since = None
            page.wait_for_timeout(50)
        raise TimeoutError(f"{self.pending} requests still under way")


def open_page(
    browser: Any,
    url: str,
    *,
    viewport: dict[str, int],
    session: str | None = None,
    geolocation: dict[str, float] | None = None,
) -> Any:
    """Open ``url`` recording requests and console errors; wait for ``data-ready``."""
    extra: dict[str, Any] = {}
    if geolocation:
        extra = {"geolocation": geolocation, "permissions": ["geolocation"]}
    ctx = browser.new_context(
        viewport=viewport,
        service_workers="block",
        is_mobile=viewport is PHONE,
        has_touch=viewport is PHONE,
        **extra,
    )
    if session:
        ctx.add_cookies([{"name": "gg_session", "value": session, "url": url}])
    page = ctx.new_page()
    visit = Visit()
    page.on(
        "request",
        lambda r: (visit.requests.append(r.url), setattr(visit, "pending", visit.pending + 1)),
    )
    page.on("requestfinished", lambda r: setattr(visit, "pending", visit.pending - 1))
    page.on("requestfailed", lambda r: setattr(visit, "pending", visit.pending - 1))
    page.on("console", lambda m: visit.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.errors.append(f"page error: {e}"))
    page.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]|data:|blob:).*"), lambda r: r.abort())
    page.goto(url, wait_until="load")
    wait_for(page, "document.body.dataset.ready !== undefined")
    assert page.evaluate("document.body.dataset.ready") == "1", visit.errors
    page.visit = visit  # type: ignore[attr-defined]
    return page


def check_page(page: Any, shot: Path, *, expected_errors: re.Pattern[str] | None = None) -> None:
    """No horizontal overflow, no request outside 127.0.0.1, no console error; screenshot."""
    page.visit.settle(page)
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{shot.name}: {overflow}px of horizontal overflow"
    outside = [u for u in page.visit.requests if not LOCAL.match(u)]
    assert not outside, f"requests left 127.0.0.1: {outside}"
    errors = [e for e in page.visit.errors if not (expected_errors and expected_errors.search(e))]
    assert errors == [], errors
    page.screenshot(path=str(shot), full_page=False)


def _jpeg() -> bytes:
    from PIL import Image

    img = Image.new("RGB", (2400, 1800), (60, 140, 90))
    for x in range(0, 2400, 200):
        for y in range(0, 1800, 200):
            img.paste((200, 60, 60), (x, y, x + 100, y + 100))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


# --------------------------------------------------------------------------- the resident


def test_resident_complains_on_the_phone_and_follows_it(live: Live, browser: Any) -> None:
    page = open_page(
        browser,
        live.base + "/complain",
        viewport=PHONE,
        geolocation={"latitude": live.lat, "longitude": live.lon},
    )
    assert "居民投诉" in page.title()
    options = page.eval_on_selector_all("#gg-c-category option", "os => os.map(o => o.value)")
    code = next(v for v in options if len(v) == 4)
    # a submission without a place is refused by the page, in Chinese
    page.select_option("#gg-c-category", code)
    page.fill("#gg-c-description", "小区门口的路灯坏了一个星期")
    wait_for(page, "!document.getElementById('gg-c-questions').hidden")  # the service's questions
    page.select_option("#gg-c-attr-urgency", "urgent")
    page.click("#gg-c-submit")
    assert "请在地图上选择问题位置" in page.inner_text("#gg-c-errors")
    page.click("#gg-c-locate")
    wait_for(page, "document.getElementById('gg-c-where').textContent.includes('已选位置')")
    page.set_input_files(
        "#gg-c-photo", files=[{"name": "IMG_2041.jpg", "mimeType": "image/jpeg", "buffer": _jpeg()}]
    )
    wait_for(page, "!document.getElementById('gg-c-preview').hidden")
    page.fill("#gg-c-phone", "13700001111")
    check_page(page, live.shots / "complain-form-phone.png")
    with page.expect_response(lambda r: "/open311/v2/requests.json" in r.url) as posted:
        page.click("#gg-c-submit")
    assert posted.value.status == 200, posted.value.text()
    wait_for(page, "document.body.dataset.submitted !== undefined")
    rid = page.inner_text("#gg-c-id")
    token = page.inner_text("#gg-c-token")
    assert rid.isdigit() and re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", token)
    assert page.inner_text("#gg-c-expected") != "—"
    check_page(page, live.shots / "complain-done-phone.png")
    # the status page takes the token from the session (never from the URL)
    page.click("#gg-c-track")
    page.wait_for_url(re.compile(r"/complain/status\?id=" + rid))
    assert token not in page.url
    wait_for(page, "document.body.dataset.found !== undefined")
    assert page.evaluate("document.body.dataset.found") == rid
    assert "办理中" in page.inner_text("#gg-s-state")
    assert "路灯" in page.inner_text("#gg-s-description")
    wait_for(
        page,
        "document.querySelectorAll('#gg-s-photos img').length === 1 && "
        "document.querySelector('#gg-s-photos img').complete",
    )
    assert page.evaluate("document.querySelector('#gg-s-photos img').naturalWidth") > 0
    check_page(page, live.shots / "complain-status-phone.png")
    # a wrong token is refused (403 in the console is the expected refusal)
    page.fill("#gg-s-token", "AAAA-BBBB-CCCC")
    page.click("#gg-s-form button[type=submit]")
    wait_for(page, "document.body.dataset.found === 'none'")
    assert "不正确" in page.inner_text("#gg-s-error")
    assert page.is_hidden("#gg-s-result")
    page.context.close()
    # nothing of the resident in the public list
    import httpx

    public = httpx.get(live.base + "/open311/v2/requests.json", timeout=30).text
    assert "13700001111" not in public and rid in public
    own = httpx.get(
        f"{live.base}/open311/v2/requests/{rid}.json",
        headers={"X-Open311-Token": token},
        timeout=30,
    ).json()[0]
    assert own["attributes"] == {"urgency": "urgent"} and len(own["media_urls"]) == 1


def test_complaint_page_on_the_desktop(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/complain?lang=en", viewport=DESKTOP)
    assert "Report a problem" in page.inner_text("body")
    page.click("#gg-c-submit")  # nothing filled in: every rule said in English
    text_ = page.inner_text("#gg-c-errors")
    assert "Choose a kind of problem" in text_ and "Describe the problem" in text_
    check_page(page, live.shots / "complain-errors-desktop.png")
    page.context.close()


# --------------------------------------------------------------------------- the desk


def _act(page: Any, action: str, note: str = "", photo: bool = False) -> None:
    """Press the case's button for ``action`` (with a note), confirm its fields if any."""
    page.evaluate("delete document.body.dataset.lastAction")
    if note:
        page.fill("#gg-d-note", note)
    if photo:
        page.set_input_files(
            "#gg-d-photos",
            files=[{"name": "after.jpg", "mimeType": "image/jpeg", "buffer": _jpeg()}],
        )
    page.click(f'#gg-d-actions [data-action="{action}"]')
    if page.locator(f'#gg-d-fields [data-confirm="{action}"]').count():
        page.click(f'#gg-d-fields [data-confirm="{action}"]')
    wait_for(page, "a => document.body.dataset.lastAction === a", action)
    assert "gg-result ok" in page.get_attribute("#gg-d-result", "class")


def _open(page: Any, case_id: int, phone: bool) -> None:
    """Find the case in the inbox (else the full list) and open it by clicking it."""
    if phone:
        page.click('.gg-d-tabs [data-view="list"]')
    item = f'#gg-d-cases li[data-id="{case_id}"]'
    page.wait_for_load_state("networkidle")
    if not page.locator(item).count():
        page.click('#gg-d-queues [data-queue="all"]')
        page.wait_for_selector(item)
    page.click(item)
    wait_for(page, "id => document.body.dataset.caseId === String(id)", case_id)
    page.wait_for_selector("#gg-d-actions [data-action]")


def _desk(browser: Any, live: Live, role: str, viewport: dict[str, int]) -> Any:
    return open_page(browser, live.base + "/desk", viewport=viewport, session=live.sessions[role])


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_case_through_the_desk(live: Live, browser: Any, size: str) -> None:
    viewport, phone = (PHONE, True) if size == "phone" else (DESKTOP, False)
    shots = live.shots
    # the grid worker reports a case on the map and accepts it (首问负责)
    worker = _desk(browser, live, "grid_worker", viewport)
    check_page(worker, shots / f"desk-worker-inbox-{size}.png")
    worker.click("#gg-d-report-open")
    cats = worker.eval_on_selector_all("#gg-d-r-category option", "os => os.map(o => o.value)")
    worker.select_option("#gg-d-r-category", next(v for v in cats if len(v) == 4))
    worker.fill("#gg-d-r-description", f"巡查发现：路面塌陷约一平方米（{size}）")
    if phone:
        worker.click("#gg-d-r-pick")
        wait_for(worker, "ggDesk.map.getSize().x > 300")  # the map tab is shown and resized
        worker.wait_for_timeout(300)
    xy = worker.evaluate(
        "([x, y]) => { const p = ggDesk.map.latLngToContainerPoint(GG.toLatLng(x, y));"
        " return [p.x, p.y]; }",
        [live.lon, live.lat],
    )
    size_ = worker.evaluate("(() => { const s = ggDesk.map.getSize(); return [s.x, s.y]; })()")
    assert 0 < xy[0] < size_[0] and 0 < xy[1] < size_[1], (xy, size_)
    worker.locator("#map").click(position={"x": xy[0], "y": xy[1]})
    wait_for(worker, "document.getElementById('gg-d-r-point').textContent.includes(',')")
    worker.click("#gg-d-r-submit")
    try:
        wait_for(worker, "document.body.dataset.reported !== undefined")
    except TimeoutError:
        pytest.fail(f"not reported: {worker.inner_text('#gg-d-r-result')} {worker.visit.errors}")
    case_id = int(worker.evaluate("document.body.dataset.reported"))
    assert worker.evaluate("ggDesk.state.current.status") == "reported"
    _act(worker, "accept", "已到现场确认")
    check_page(worker, shots / f"desk-worker-accepted-{size}.png")
    # the service centre registers and dispatches it
    leader = _desk(browser, live, "town_leader", viewport)
    _open(leader, case_id, phone)
    _act(leader, "register", "予以立案")
    _act(leader, "dispatch", "请网格员处置")
    assert leader.evaluate("ggDesk.state.current.status") == "dispatched"
    if not phone:  # the map shows the case and its grid
        assert leader.evaluate("ggDesk.state.current.grid_code") == live.grid
    check_page(leader, shots / f"desk-leader-dispatched-{size}.png")
    # the grid worker at the post handles it, with a photo
    worker.reload()
    wait_for(worker, "document.body.dataset.ready === '1'")
    _open(worker, case_id, phone)
    _act(worker, "start")
    _act(worker, "handle", "已回填修复，附照片", photo=True)
    timeline = worker.inner_text("#gg-d-timeline")
    assert "已回填修复" in timeline
    wait_for(
        worker,
        "document.querySelector('#gg-d-timeline img') !== null && "
        "document.querySelector('#gg-d-timeline img').complete",
    )
    assert worker.evaluate("document.querySelector('#gg-d-timeline img').naturalWidth") > 0
    check_page(worker, shots / f"desk-worker-handled-{size}.png")
    # the centre checks, evaluates and closes it
    leader.reload()
    wait_for(leader, "document.body.dataset.ready === '1'")
    _open(leader, case_id, phone)
    _act(leader, "check_pass", "核查通过")
    _act(leader, "evaluate")
    _act(leader, "close", "结案")
    assert leader.evaluate("ggDesk.state.current.status") == "closed"
    events = leader.evaluate("ggDesk.state.current.events.map(e => e.action)")
    assert events == [
        "report",
        "accept",
        "register",
        "dispatch",
        "start",
        "handle",
        "check_pass",
        "evaluate",
        "close",
    ]
    assert leader.locator("#gg-d-actions [data-action]").count() <= 2  # archive/comment at most
    check_page(leader, shots / f"desk-leader-closed-{size}.png")
    if not phone:  # filters: grid, category, status, period
        code = leader.evaluate("ggDesk.state.current.category_code")
        leader.click(".gg-d-filters summary")
        leader.fill("#gg-d-grid", live.grid)
        leader.select_option("#gg-d-category", code)
        leader.select_option("#gg-d-status", "closed")
        with leader.expect_response(
            lambda r: "/api/cases?" in r.url and "grid=" in r.url
        ) as listed:
            leader.click("#gg-d-filters button[type=submit]")
        for part in (f"grid={live.grid}", f"category={code}", "status=closed"):
            assert part in listed.value.url
        leader.wait_for_selector(f'#gg-d-cases li[data-id="{case_id}"]')
        # the desk reads a day in China (as cases are dated): tomorrow there, not in UTC
        china = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        tomorrow = (china + timedelta(days=1)).isoformat()
        leader.fill("#gg-d-from", tomorrow)
        leader.click("#gg-d-filters button[type=submit]")
        wait_for(leader, "!document.querySelector('#gg-d-cases li[data-id]')")
        assert "没有符合条件的事件" in leader.inner_text("#gg-d-cases")
    # a stale page is told so and reloads the case (412 in the console is expected)
    stale = _desk(browser, live, "town_leader", viewport)
    _open(stale, case_id, phone)
    stale.evaluate("ggDesk.state.etag = '\"case-0-v0\"'")
    stale.fill("#gg-d-note", "旧页面上的操作")
    first = stale.get_attribute("#gg-d-actions [data-action]", "data-action")
    stale.click(f'#gg-d-actions [data-action="{first}"]')
    if stale.locator(f'#gg-d-fields [data-confirm="{first}"]').count():
        stale.click(f'#gg-d-fields [data-confirm="{first}"]')
    wait_for(stale, "!document.getElementById('gg-d-result').hidden")
    assert "已被他人更新" in stale.inner_text("#gg-d-result")
    check_page(stale, shots / f"desk-stale-{size}.png", expected_errors=re.compile(r"\b412\b"))
    for p in (worker, leader, stale):
        p.context.close()


# --------------------------------------------------------------------------- unmask, due flags


def _page_session(live: Live, account: Any) -> str:
    """A page-session cookie of ``account``, signed in through /login."""
    import httpx

    with httpx.Client(base_url=live.base, timeout=30) as client:
        r = client.post("/login", data={"username": account.username, "password": account.password})
        assert r.status_code == 303, r.text
        return str(r.cookies["gg_session"])


def _resident_report(live: Live, phone: str) -> int:
    """A resident's Open311 report with a name and phone at the test grid; its case id."""
    import httpx

    with httpx.Client(base_url=live.base, timeout=30) as client:
        services = client.get("/open311/v2/services.json").json()
        code = next(
            s["service_code"]
            for s in services
            if not any(
                a["required"]
                for a in client.get(f"/open311/v2/services/{s['service_code']}.json").json()[
                    "attributes"
                ]
            )
        )
        r = client.post(
            "/open311/v2/requests.json",
            json={"service_code": code, "lat": live.lat, "long": live.lon,
                  "description": "楼道堆放杂物堵塞消防通道", "first_name": "建国",
                  "last_name": "欧阳", "phone": phone},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        return int(r.json()[0]["service_request_id"])


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_unmask_reporter_on_the_desk(
    live: Live, browser: Any, account_maker: Any, sample_town: Any, size: str
) -> None:
    viewport, phone = (PHONE, True) if size == "phone" else (DESKTOP, False)
    number = "1390000" + ("1111" if phone else "2222")
    case_id = _resident_report(live, number)
    holder = account_maker(live.url, "town_leader", sample_town.town_code, ("unmask",))
    page = open_page(browser, live.base + "/desk", viewport=viewport,
                     session=_page_session(live, holder))  # fmt: skip
    _open(page, case_id, phone)
    facts = page.inner_text("#gg-d-facts")
    assert number not in facts and "****" in facts  # masked by default
    assert page.is_visible("#gg-d-unmask") and "查看上报人完整信息" in page.inner_text(
        "#gg-d-unmask"
    )
    page.click("#gg-d-unmask")
    # no reason: refused by the page, nothing sent
    page.click("#gg-d-unmask-form [type=submit]")
    page.visit.settle(page)
    assert not [u for u in page.visit.requests if "/reporter/unmask" in u]
    assert "请填写查看事由" in page.inner_text("#gg-d-unmask-result")
    page.fill("#gg-d-unmask-reason", "电话回访核实堆放位置")
    with page.expect_response(lambda r: "/reporter/unmask" in r.url) as answered:
        page.click("#gg-d-unmask-form [type=submit]")
    assert answered.value.status == 200, answered.value.text()
    wait_for(page, "id => document.body.dataset.unmasked === String(id)", case_id)
    shown = page.inner_text("#gg-d-unmasked")
    assert number in shown and "欧阳建国" in shown
    assert "审计" in page.inner_text("#gg-d-unmask-result")
    check_page(page, live.shots / f"desk-unmask-{size}.png")
    # the case opened again (or another one): the full contact is not kept on the page
    page.evaluate("id => ggDesk.openCase(id)", case_id)
    wait_for(page, "document.getElementById('gg-d-unmasked').hidden")
    assert number not in page.inner_text("#gg-d-detail")
    page.context.close()
    # audited, with the reason
    engine = store.make_engine(live.url)
    try:
        with engine.connect() as conn:
            audited = conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE action = 'case.unmask' "
                    "AND :id = ANY(target_ids) AND detail->>'reason' = '电话回访核实堆放位置'"
                ),
                {"id": str(case_id)},
            ).scalar_one()
    finally:
        engine.dispose()
    assert audited == 1
    # without the permission: no button at all, the contact stays masked
    other = open_page(browser, live.base + "/desk", viewport=viewport,
                      session=live.sessions["town_leader"])  # fmt: skip
    _open(other, case_id, phone)
    assert other.locator("#gg-d-unmask").count() == 0
    assert other.locator("#gg-d-unmask-box").count() == 0
    assert number not in other.inner_text("body")
    check_page(other, live.shots / f"desk-no-unmask-{size}.png")
    other.context.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_overdue_and_soon_due_grids_are_flagged_on_the_desk_map(
    live: Live, browser: Any, size: str
) -> None:
    viewport, phone = (PHONE, True) if size == "phone" else (DESKTOP, False)
    case_id = _resident_report(live, "13900003333")
    engine = store.make_engine(live.url)
    try:
        with engine.begin() as conn:  # its accept step is late by an hour
            conn.execute(
                text("UPDATE cases SET due_at = now() - interval '1 hour' WHERE id = :i"),
                {"i": case_id},
            )
    finally:
        engine.dispose()
    page = open_page(browser, live.base + "/desk", viewport=viewport,
                     session=live.sessions["town_leader"])  # fmt: skip
    page.visit.settle(page)
    wait_for(page, "g => ggDesk.gridLayer(g) !== undefined && ggDesk.dueByGrid()[g] !== undefined",
             live.grid)  # fmt: skip
    due = page.evaluate("g => ggDesk.dueByGrid()[g]", live.grid)
    assert due["overdue"] >= 1
    assert page.evaluate("g => ggDesk.gridLayer(g).options.color", live.grid) == "#c62828"
    if phone:
        page.click('.gg-d-tabs [data-view="map"]')
        wait_for(page, "ggDesk.map.getSize().x > 300")
    legend = page.inner_text("#gg-legend")
    assert "网格办理时限" in legend and "有超期事件" in legend
    tip = page.evaluate(
        "g => { const l = ggDesk.gridLayer(g); l.openTooltip(); return l.getTooltip().getContent()"
        "(l); }",
        live.grid,
    )
    assert f"超期 {due['overdue']} 件" in tip
    # opening a case outlines its grid and keeps the flags of the others
    _open(page, case_id, phone)
    assert page.evaluate("g => ggDesk.gridLayer(g).options.weight", live.grid) == 3
    check_page(page, live.shots / f"desk-due-flags-{size}.png")
    page.context.close()
