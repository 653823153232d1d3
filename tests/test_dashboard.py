"""The leader's dashboard: /api/dashboard figures checked against counts made here in Python
from the raw rows, its guards, the role matrix (allowed and refused; tests/test_access_api.py
leaves /api/dashboard and /leader/dashboard to this file), the Excel export read back, and the
page in headless Chromium at 1440×900 and in the 1920×1080 大屏 layout: charts drawn (canvas
pixels), no console error, no outside request, the empty state, drill-down to a grid's cases,
a chart saved as PNG; screenshots in the artifacts folder."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
from sqlalchemy import text

from api.auth import all_routes, policy_of
from geogrid import store
from tests.pages_support import Live, assert_local_only, live_server, open_page, wait_for

ROUTES = {
    ("GET", "/leader/dashboard"): "page.leader",
    ("GET", "/api/dashboard/cases"): "dashboard.read",
    ("GET", "/api/dashboard/export.xlsx"): "dashboard.read",
}
CST = ZoneInfo("Asia/Shanghai")
PASSWORD_ROLES = ("town_leader", "village_leader", "planner", "viewer", "grid_worker", "sysadmin")


@pytest.fixture(scope="module")
def live(pg, _town_template, tmp_path_factory) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    for lv in live_server(pg, _town_template, tmp_path_factory):
        engine = store.make_engine(lv.url)
        try:
            with engine.begin() as conn:  # some closed, suspended and overdue cases
                conn.execute(text("UPDATE cases SET status = 'closed', closed_at = reported_at "
                                  "+ interval '2 days' WHERE id % 4 = 0"))  # fmt: skip
                conn.execute(text("UPDATE cases SET status = 'suspended' WHERE id % 7 = 3"))
                conn.execute(text("UPDATE cases SET due_at = now() - interval '1 day' "
                                  "WHERE id % 5 = 1 AND status = 'reported'"))  # fmt: skip
        finally:
            engine.dispose()
        yield lv


@pytest.fixture(scope="module")
def codes(live: Live) -> dict[str, str]:
    engine = store.make_engine(live.url)
    try:
        with engine.connect() as conn:
            village, grid = conn.execute(
                text("SELECT village_code, min(grid_code) FROM cases WHERE grid_code IS NOT NULL "
                     "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
            ).one()  # fmt: skip
    finally:
        engine.dispose()
    return {"town": live.ids["town"], "village": village, "grid": grid,
            "other_village": live.ids["town"][:9] + "999"}  # fmt: skip


@pytest.fixture(scope="module")
def tokens(live: Live, codes: dict[str, str], account_maker) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    scopes = {"town_leader": codes["town"], "village_leader": codes["village"],
              "planner": codes["town"], "viewer": codes["town"], "grid_worker": codes["grid"],
              "sysadmin": "all"}  # fmt: skip
    out: dict[str, dict[str, str]] = {"anonymous": {}}
    with httpx.Client(base_url=live.base, timeout=60) as client:
        for role in PASSWORD_ROLES:
            acc = account_maker(live.url, role, scopes[role])
            out[role] = acc.headers(client)
    return out


def _get(live: Live, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(live.base + path, headers=headers, params=params, timeout=60,
                     follow_redirects=False)  # fmt: skip


def test_every_route_is_listed(live: Live) -> None:
    found = {
        (m, r.path): policy_of(r)
        for r in all_routes(live.app)
        if r.path.startswith(("/api/dashboard", "/leader/dashboard"))
        for m in getattr(r, "methods", ())
        if m != "HEAD"
    }
    assert found == ROUTES


def test_figures_match_a_count_made_here(live: Live, codes: dict[str, str], tokens: Any) -> None:
    today = dt.datetime.now(CST).date()
    start, end = today - dt.timedelta(days=59), today
    d = _get(live, "/api/dashboard/cases", tokens["town_leader"], area=codes["town"],
             **{"from": start.isoformat(), "to": end.isoformat()}).json()  # fmt: skip
    engine = store.make_engine(live.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT category, status, reported_at, due_at, village_code "
                                     "FROM cases")).all()  # fmt: skip
    finally:
        engine.dispose()
    prev_start, prev_end = start - dt.timedelta(days=60), start - dt.timedelta(days=1)

    def local(r: Any) -> dt.date:
        return r.reported_at.astimezone(CST).date()

    cur = [r for r in rows if start <= local(r) <= end]
    prev = [r for r in rows if prev_start <= local(r) <= prev_end]
    assert d["period"]["prev_from"] == prev_start.isoformat()
    assert d["totals"]["current"] == {
        "cases": len(cur),
        "closed": sum(r.status == "closed" for r in cur),
        "suspended": sum(r.status == "suspended" for r in cur),
    }
    assert d["totals"]["previous"]["cases"] == len(prev)
    now = dt.datetime.now(dt.UTC)
    assert d["totals"]["overdue_now"] == sum(
        r.due_at is not None and r.due_at < now and r.status not in ("closed", "suspended")
        for r in rows
    )
    assert {c["name"]: (c["cases"], c["previous"]) for c in d["by_category"]} == {
        k: (Counter(r.category for r in cur)[k], Counter(r.category for r in prev)[k])
        for k in {r.category for r in cur + prev}
    }
    assert {s["status"]: s["cases"] for s in d["by_status"]} == dict(Counter(r.status for r in cur))
    weeks = Counter(f"{local(r).isocalendar()[0]}-W{local(r).isocalendar()[1]:02d}" for r in cur)
    assert {w["week"]: w["cases"] for w in d["by_week"]} == dict(weeks)
    assert len(d["by_month"]) == 12 and sum(m["cases"] for m in d["by_month"]) >= len(cur)
    kids = {c["code"]: c["cases"] for c in d["children"]}
    assert {k: v for k, v in kids.items() if v} == dict(Counter(r.village_code for r in cur))
    assert all(c["level"] == "village" for c in d["children"])
    # a village lists its grids; a grid has no children
    v = _get(live, "/api/dashboard/cases", tokens["town_leader"], area=codes["village"]).json()
    assert v["area"]["level"] == "village" and all(c["level"] == "grid" for c in v["children"])
    g = _get(live, "/api/dashboard/cases", tokens["town_leader"], area=codes["grid"]).json()
    assert g["area"]["level"] == "grid" and g["children"] == []


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"area": "42011710"}, 400),  # not a 12/15-digit code
        ({"from": "2026-03-02", "to": "2026-03-01"}, 400),  # from after to
        ({"from": "2020-01-01", "to": "2026-01-01"}, 400),  # longer than MAX_DAYS
        ({"from": "2026-02-30"}, 400),  # not a date
        ({"area": "unknown"}, 404),  # a village code inside the town that does not exist
        ({"category": "x" * 41}, 400),  # category too long
        ({"chart": "pie"}, 400),  # unknown chart (export only)
    ],
    ids=["area", "order", "length", "date", "unknown", "category", "chart"],
)
def test_guards(
    live: Live, codes: dict[str, str], tokens: Any, params: dict[str, str], status: int
) -> None:
    path = "/api/dashboard/export.xlsx" if "chart" in params else "/api/dashboard/cases"
    if params.get("area") == "unknown":
        params = {"area": codes["other_village"]}
    r = _get(live, path, tokens["town_leader"], **params)
    assert r.status_code == status, r.text
    assert r.json()["code"]


def test_role_matrix(live: Live, codes: dict[str, str], tokens: Any) -> None:
    allowed = {"town_leader", "village_leader", "planner", "viewer"}
    for subject, headers in tokens.items():
        for path in ("/api/dashboard/cases", "/api/dashboard/export.xlsx"):
            area = codes["village"] if subject == "village_leader" else codes["town"]
            r = _get(live, path, headers, area=area)
            want = 401 if subject == "anonymous" else (200 if subject in allowed else 403)
            assert r.status_code == want, (subject, path, r.text[:200])
        # outside the scope: a village leader asking for the town, anyone for another village
        if subject in allowed:
            other = codes["town"] if subject == "village_leader" else codes["other_village"]
            r = _get(live, "/api/dashboard/cases", headers, area=other)
            assert r.status_code in (403, 404) and r.status_code == (
                403 if subject == "village_leader" else 404
            ), (subject, r.text)
    page = httpx.get(live.base + "/leader/dashboard", follow_redirects=False)
    assert page.status_code in (303, 307, 401)


def test_excel_export_reads_back(live: Live, codes: dict[str, str], tokens: Any) -> None:
    r = _get(live, "/api/dashboard/export.xlsx", tokens["town_leader"], area=codes["town"])
    assert r.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == [
        "概况",
        "按周趋势",
        "按月趋势",
        "按类别",
        "按状态",
        "下级排名",
        "人员排名",
    ]
    assert (
        wb["概况"]["A1"].value == "项目" and "（" + codes["town"] + "）" in wb["概况"]["B2"].value
    )
    one = _get(live, "/api/dashboard/export.xlsx", tokens["town_leader"], chart="category")
    assert openpyxl.load_workbook(io.BytesIO(one.content)).sheetnames == ["概况", "按类别"]


def _signed_in(live: Live, role: str) -> dict[str, Any]:
    """Browser-context options carrying the page-session cookie for the whole site (the
    helper's ``session=`` scopes it to the page's folder, ``/leader/`` here)."""
    cookie = {"name": "gg_session", "value": live.sessions[role], "domain": "127.0.0.1",
              "path": "/", "expires": -1, "httpOnly": True, "secure": False,
              "sameSite": "Lax"}  # fmt: skip
    return {"storage_state": {"cookies": [cookie], "origins": []}}


CANVAS_INK = """key => {
  const c = document.querySelector('#gg-chart-' + key + ' canvas');
  if (!c) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


def _drawn(page: Any, keys: tuple[str, ...]) -> None:
    page.wait_for_timeout(800)  # the charts' short animation
    for key in keys:
        assert page.evaluate(CANVAS_INK, key) > 2000, f"chart {key} is blank"


def test_page_draws_charts_and_drills_down(live: Live, browser: Any, codes: dict[str, str]) -> None:
    page = open_page(browser, live.base + "/leader/dashboard",
                     context=_signed_in(live, "town_leader"), viewport=(1440, 900))  # fmt: skip
    try:
        assert page.evaluate("document.body.dataset.level") == "town"
        _drawn(page, ("trend_week", "trend_month", "category", "status", "children"))
        # the legend names what each colour means: this period, the previous one
        opt = "window.ggDashboard.charts.category.getOption()"
        assert page.evaluate(opt + ".legend[0].show") is not False
        assert page.evaluate(opt + ".series.map(s => s.name)") == ["本期", "上期"]
        page.screenshot(path=str(live.shots / "dashboard-1440.png"), full_page=True)
        # PNG export of a chart
        with page.expect_download() as dl:
            page.click("button.gg-png[data-chart='category']")
        assert dl.value.suggested_filename.endswith(".png")
        # drill-down: town → village → grid → the grid's cases
        page.evaluate("code => window.ggDashboard.drill(code)", codes["village"])
        wait_for(page, "document.body.dataset.ready === '1'")
        assert page.evaluate("document.body.dataset.level") == "village"
        page.evaluate("code => window.ggDashboard.drill(code)", codes["grid"])
        wait_for(page, "document.body.dataset.ready === '1'")
        assert page.evaluate("document.body.dataset.level") == "grid"
        wait_for(page, "document.getElementById('gg-dash-cases').dataset.rows !== undefined")
        assert int(page.evaluate("document.getElementById('gg-dash-cases').dataset.rows")) > 0
        page.click("#gg-dash-up")
        wait_for(page, "document.body.dataset.ready === '1'")
        assert page.evaluate("document.body.dataset.level") == "village"
        # empty state: a period without cases
        page.fill("#gg-dash-from", "2001-01-01")
        page.fill("#gg-dash-to", "2001-01-31")
        page.click("#gg-dash-filters button[type=submit]")
        wait_for(page, "document.body.dataset.ready === '1'")
        assert page.evaluate("document.body.dataset.empty") == "1"
        assert page.is_visible("#gg-dash-empty")
        assert page.is_visible("#gg-card-category .gg-chart-empty")
        page.screenshot(path=str(live.shots / "dashboard-empty.png"))
        assert_local_only(page.visit)
        assert not page.visit.errors, page.visit.errors
    finally:
        page.context.close()


def test_large_screen_layout(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/leader/dashboard?screen=1",
                     context=_signed_in(live, "planner"), viewport=(1920, 1080))  # fmt: skip
    try:
        assert page.evaluate("document.body.classList.contains('gg-dash-screen')")
        assert (
            page.evaluate("JSON.parse(document.getElementById('gg-config').textContent).refresh")
            > 0
        )
        _drawn(page, ("trend_week", "category", "status", "children"))
        # everything on one 1920×1080 screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 1920
        page.screenshot(path=str(live.shots / "dashboard-screen-1920.png"))
        assert_local_only(page.visit)
        assert not page.visit.errors, page.visit.errors
    finally:
        page.context.close()


def test_leader_page_links_to_the_dashboard(live: Live, browser: Any) -> None:
    page = open_page(browser, live.base + "/leader", session=live.sessions["town_leader"])
    try:
        assert page.get_attribute("#gg-dashboard-link", "href") == "/leader/dashboard"
    finally:
        page.context.close()


def test_first_paint_mark(live: Live, browser: Any) -> None:
    """bench/bench_dashboard.py times navigation → the mark ``gg-dashboard-drawn``: the page
    sets it once, after its first charts hold ink, and a reload of the data sets no other."""
    page = open_page(browser, live.base + "/leader/dashboard",
                     context=_signed_in(live, "town_leader"), viewport=(1440, 900))  # fmt: skip
    marks = "performance.getEntriesByName('gg-dashboard-drawn').map(m => m.startTime)"
    try:
        wait_for(page, "document.body.dataset.drawn === '1'")
        first = page.evaluate(marks)
        assert len(first) == 1 and first[0] > 0
        assert page.evaluate(CANVAS_INK, "trend_week") > 0
        page.click("#gg-dash-filters button[type=submit]")
        wait_for(page, "document.body.dataset.ready === '1'")
        assert page.evaluate(marks) == first
    finally:
        page.context.close()
