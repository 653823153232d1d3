"""The planner page in a real headless Chromium at 1440×900 and 1024×768: a planner takes a
draft through move (the band warning shown, then confirmed) → undo → diff → activate, with
the metrics, table and history following every step; no console error, no horizontal
overflow, no request leaving 127.0.0.1. Screenshots go to the artefact folder.

The real app runs with uvicorn on a free 127.0.0.1 port against a copy of the sample town
with an active plan and a draft (a redraw of it) made by the partitioner.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from geogrid import plans, store
from geogrid.planner import edits

CHROMIUM = "/usr/bin/chromium"
TOWN = "420117105000"
PASSWORD = "Planner-ui-2026!"
LOCAL = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:|about:)")


@dataclass
class Server:
    base: str
    engine: Engine
    active: int
    session: str


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(pg, _town_template: str, tmp_path_factory) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    import httpx
    import uvicorn

    from api import create_app
    from geogrid.access import users
    from geogrid.access.scope import Scope
    from geogrid.settings import Settings

    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    active = plans.create_plan(engine, TOWN, name="现行方案", jobs=1)
    plans.activate_plan(engine, active)
    with engine.begin() as conn:
        users.add_user(conn, username="ui-planner", role="planner", scope=Scope.parse(TOWN),
                       password=PASSWORD, must_change_password=False)  # fmt: skip
    app = create_app(Settings(home=tmp_path_factory.mktemp("home")), database_url=url)
    port = _port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base) as client:
        r = client.post("/login", data={"username": "ui-planner", "password": PASSWORD})
        assert r.status_code == 303, r.text
        session = r.cookies["gg_session"]
    try:
        yield Server(base, engine, active, session)
    finally:
        srv.should_exit = True
        thread.join(10)
        engine.dispose()
        pg.drop_database(name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/setup.sh"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update"],
        )  # fmt: skip
        try:
            yield b
        finally:
            b.close()


def until(page: Any, expression: str, arg: Any = None, timeout: float = 30) -> None:
    """Poll ``page.evaluate`` (the CSP forbids the eval of ``wait_for_function``)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {expression}")
        page.wait_for_timeout(100)


def band_move(engine: Engine, plan_id: int) -> tuple[str, int, str, dict[str, Any]]:
    """(source grid, group id, target grid, preview) of a move the band warning guards."""
    with engine.connect() as conn:
        plan = plans.load_plan(conn, plan_id)
        ids = {
            (str(v), int(g)): int(i)
            for v, g, i in conn.execute(
                text("SELECT village_code, group_no, id FROM villager_groups")
            )
        }
        for u in plan.assignment.itertuples():
            if not str(u.unit).isdigit():
                continue
            same = plan.grids.loc[plan.grids["village_code"] == u.village_code, "code"]
            for to in sorted(set(same) - {u.grid_code}):
                p = edits.preview_move(conn, plan_id, group=f"{u.village_code}/{u.unit}",
                                       to_grid_code=to)  # fmt: skip
                if p.needs_confirmation:
                    return str(u.grid_code), ids[(u.village_code, int(u.unit))], to, p.__dict__
    raise AssertionError("the sample town offers no move that leaves the band")


def households(page: Any, code: str) -> int:
    return int(page.evaluate("c => ggPlanner.state.grids[c].households", code))


@pytest.mark.parametrize("viewport", [(1440, 900), (1024, 768)], ids=["1440x900", "1024x768"])
def test_draft_move_undo_diff_activate(
    server: Server, browser: Any, artifact_dir: Path, viewport: tuple[int, int]
) -> None:
    e = server.engine
    with e.connect() as conn:
        active = conn.execute(text("SELECT id FROM plans WHERE status = 'active'")).scalar_one()
    draft = plans.create_plan(e, TOWN, name=f"草案{viewport[0]}", redraw_from=active, jobs=1)
    src, group_id, dst, preview = band_move(e, draft)
    w, h = viewport
    ctx = browser.new_context(viewport={"width": w, "height": h}, service_workers="block")
    ctx.add_cookies([{"name": "gg_session", "value": server.session, "url": server.base}])
    page = ctx.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda x: errors.append(f"page error: {x}"))
    page.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]|data:|blob:).*"), lambda r: r.abort())
    shot = f"planner-{w}x{h}"
    page.goto(f"{server.base}/planner?lang=zh", wait_until="load")
    until(page, "document.body.dataset.ready !== undefined")
    assert page.evaluate("document.body.dataset.ready") == "1", errors
    assert page.evaluate("ggPlanner.state.draft") == draft
    page.wait_for_load_state("networkidle")
    # Chinese first, flags in words, labels on the map, the table with the village bound
    assert page.inner_text("#gg-summary").startswith("方案指标")
    assert "forced_imbalance" not in page.inner_text("body")
    assert page.locator(".gg-grid-label").count() >= page.locator("#gg-table tbody tr").count() > 5
    page.click("#gg-table th[data-key=households] button")
    first = page.locator("#gg-table tbody tr").first.get_attribute("data-code")
    assert households(page, first or "") == min(
        page.evaluate("Object.values(ggPlanner.state.grids).map(g => g.households)")
    )
    page.screenshot(path=str(artifact_dir / f"{shot}-1-draft.png"))

    # move by keyboard: grid row → group → target → the band warning, then confirm
    before_src, before_dst = households(page, src), households(page, dst)
    row = page.locator(f"#gg-table tbody tr[data-code='{src}']")
    row.focus()
    page.keyboard.press("Enter")
    until(page, "c => ggPlanner.state.selected === c", src)
    page.select_option("#gg-move-group", str(group_id))
    page.select_option("#gg-move-to", dst)
    # someone else's edit meanwhile: refused with the reason, the draft reloaded
    page.evaluate("ggPlanner.state.etag = '\"stale\"'")
    page.click("#gg-move-go")
    until(page, "ggPlanner.state.etag !== '\"stale\"'")
    assert page.inner_text("#gg-move-result").startswith("未调整（412）：方案已被他人修改")
    page.select_option("#gg-move-to", dst)
    page.click("#gg-move-go")
    page.wait_for_selector("#gg-move-warning", timeout=20_000)
    warning = page.inner_text("#gg-move-warning")
    assert "超出目标区间" in warning and f"{preview['warnings'][0]['after']} 户" in warning
    page.screenshot(path=str(artifact_dir / f"{shot}-2-band-warning.png"))
    version = page.evaluate("ggPlanner.state.info.version")
    page.click("#gg-move-confirm")
    until(page, "v => ggPlanner.state.info.version === v + 1", version)
    assert page.inner_text("#gg-move-result").startswith("已将")
    moved = preview["households"]
    assert (
        households(page, src) == before_src - moved and households(page, dst) == before_dst + moved
    )
    assert page.inner_text("#gg-summary dd[data-key=version]") == str(version + 1)
    assert "移至" in page.inner_text("#gg-history-list li:first-child")
    row_dst = page.locator(f"#gg-table tbody tr[data-code='{dst}'] td").nth(3).inner_text()
    assert int(row_dst) == before_dst + moved  # the table follows

    # undo
    page.click("#gg-undo")
    until(page, "v => ggPlanner.state.info.version === v + 2", version)
    assert households(page, src) == before_src and households(page, dst) == before_dst
    assert page.inner_text("#gg-history-list li:first-child").startswith("撤销第 1 步")
    assert not page.is_disabled("#gg-redo")

    # diff, then activate through the confirmation dialog
    page.click("#gg-diff-show")
    page.wait_for_selector("#gg-dialog[open]")
    assert page.inner_text("#gg-dialog-title") == "与现行方案对比"
    page.keyboard.press("Escape")
    until(page, "!document.getElementById('gg-dialog').open")
    page.click("#gg-activate")
    page.wait_for_selector("#gg-dialog[open]")
    body = page.inner_text("#gg-dialog")
    assert "现行方案将归档" in body and ("小组调整" in body or "相同" in body)
    page.screenshot(path=str(artifact_dir / f"{shot}-3-activate.png"))
    page.click("#gg-dialog-ok")
    until(page, "document.getElementById('gg-status').textContent.indexOf('已激活') >= 0")
    with e.connect() as conn:
        assert (
            conn.execute(text("SELECT status FROM plans WHERE id = :p"), {"p": draft}).scalar()
            == "active"
        )
    until(page, "ggPlanner.state.info && ggPlanner.state.info.status === 'active'")
    assert page.is_disabled("#gg-activate") and page.is_disabled("#gg-undo")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifact_dir / f"{shot}-4-active.png"))

    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"horizontal overflow of {overflow}px"
    outside = [u for u in requests if not LOCAL.match(u)]
    assert outside == [], f"requests left 127.0.0.1: {outside}"
    assert errors == [], errors
    ctx.close()


def test_grid_edits_staff_and_side_by_side(
    server: Server, browser: Any, artifact_dir: Path
) -> None:
    """Rename, lock and re-run a village, put a staff member with a photo, compare side by
    side, in English: every text from the catalogue, the table and history following."""
    import io

    from PIL import Image

    e = server.engine
    with e.connect() as conn:
        active = conn.execute(text("SELECT id FROM plans WHERE status = 'active'")).scalar_one()
    plans.create_plan(e, TOWN, name="edits", redraw_from=active, jobs=1)
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, service_workers="block")
    ctx.add_cookies([{"name": "gg_session", "value": server.session, "url": server.base}])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda x: errors.append(f"page error: {x}"))
    page.goto(f"{server.base}/planner?lang=en", wait_until="load")
    until(page, "document.body.dataset.ready === '1'")
    assert page.inner_text("#gg-summary").startswith("Plan metrics")
    code = page.locator("#gg-table tbody tr").first.get_attribute("data-code") or ""
    village = code[:12]
    page.locator("#gg-table tbody tr").first.click()
    until(page, "c => ggPlanner.state.selected === c", code)
    version = page.evaluate("ggPlanner.state.info.version")
    page.fill("#gg-rename-input", "East grid")
    page.click("#gg-rename button[type=submit]")
    until(page, "v => ggPlanner.state.info.version === v + 1", version)
    assert page.evaluate("c => ggPlanner.state.grids[c].name", code) == "East grid"
    assert "Renamed grid" in page.inner_text("#gg-history-list li:first-child")
    page.click("#gg-lock")
    until(page, "c => ggPlanner.state.grids[c].locked", code)
    assert page.inner_text("#gg-lock") == "Unlock"
    n = page.evaluate(
        "v => Object.values(ggPlanner.state.grids).filter(g => g.village_code === v).length",
        village,
    )
    page.fill("#gg-rerun-grids", str(n + 1))
    page.click("#gg-rerun button[type=submit]")
    until(page, "document.getElementById('gg-edit-result').textContent.indexOf('…') < 0")
    after = page.evaluate("ggPlanner.state.info.version")
    assert after == version + 3, page.inner_text("#gg-edit-result")
    mine = "v => Object.values(ggPlanner.state.grids).filter(g => g.village_code === v)"
    grids = page.evaluate(mine + ".map(g => [g.code, g.locked])", village)
    assert len(grids) == n + 1 and [code, True] in grids
    assert "Re-partitioned" in page.inner_text("#gg-history-list li:first-child")
    # staff with a photo (a planner may not assign staff: the refusal is shown in English)
    buf = io.BytesIO()
    Image.new("RGB", (30, 40), (10, 120, 200)).save(buf, "PNG")
    page.select_option("#gg-staff-form select[name=role]", "guide")
    page.fill("#gg-staff-form input[name=name]", "Li")
    photo = {"name": "li.png", "mimeType": "image/png", "buffer": buf.getvalue()}
    page.set_input_files("#gg-staff-form input[name=photo]", files=[photo])
    assert page.inner_text("#gg-photo-name") == "li.png"
    page.click("#gg-staff-form button[type=submit]")
    until(page, "document.querySelector('#gg-staff-result.err:not([hidden])') !== null")
    assert page.inner_text("#gg-staff-result") == "You are not allowed to do this."
    # side by side: the active plan on a second map, drawn
    page.check("input[name=gg-view][value=side]")
    page.wait_for_selector(
        "#map-active:not([hidden]) .leaflet-tooltip.gg-grid-label", state="attached"
    )
    box1, box2 = page.locator("#map").bounding_box(), page.locator("#map-active").bounding_box()
    assert box1 and box2 and abs(box1["width"] - box2["width"]) < 4 and box2["x"] > box1["x"]
    page.screenshot(path=str(artifact_dir / "planner-1440x900-5-side-by-side-en.png"))
    # the page's own texts are English (names of villages, grids and plans are data)
    chrome = page.evaluate(
        "[...document.querySelectorAll('h2, dt, button, legend, th, .gg-legend')]"
        ".map(e => e.innerText).join(' ')"
    )
    assert not re.search(r"[\u4e00-\u9fff]", chrome), chrome
    # undo three times (re-run, lock, rename) with the keyboard
    page.locator("#gg-table tbody tr").first.focus()
    for _ in range(3):
        v = page.evaluate("ggPlanner.state.info.version")
        page.keyboard.press("Control+z")
        until(page, "v => ggPlanner.state.info.version === v + 1", v, timeout=60)
    assert page.evaluate("c => ggPlanner.state.grids[c].name", code) != "East grid"
    assert errors == [e for e in errors if "status of 403" in e], errors
    ctx.close()
