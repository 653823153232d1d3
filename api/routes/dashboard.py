"""Routes: the leader's dashboard page ``/leader/dashboard`` and its data ``/api/dashboard``.

The page draws its charts with ECharts (``/assets/npm/echarts``) from
``/api/dashboard/cases`` (this module: counts computed in SQL by
:mod:`geogrid.archives.dashboard`), A's ``/api/assessment/indicators`` and
``/api/grid-teams`` (五个一 completeness). ``/api/dashboard/export.xlsx`` answers a chart's
data as an Excel sheet (every chart's with ``chart=all``).
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.auth import allow, principal_of, require
from api.deps import ConnDep
from api.reads import read
from api.routes.auth import csrf_for
from api.routes.pages import LangDep, SettingsDep, _html, _who
from geogrid.access.policy import Principal, check
from geogrid.archives import dashboard as dash
from geogrid.archives.workbook import write_table
from geogrid.i18n import t
from tiles import pages as tp

router = APIRouter(tags=["dashboard"])

ReadDep = Annotated[Principal | None, Depends(allow("dashboard.read"))]
AreaQ = Annotated[
    str | None,
    Query(pattern=r"^(\d{12}|\d{15})$", description="town, village or grid code (default: own)"),
]
FromQ = Annotated[
    dt.date | None, Query(alias="from", description="first day (default: 90 days ago)")
]
ToQ = Annotated[dt.date | None, Query(alias="to", description="last day (default: today)")]
CategoryQ = Annotated[str | None, Query(min_length=1, max_length=40, description="category")]
Chart = Literal[
    "all", "trend_week", "trend_month", "category", "status", "children", "workers", "totals"
]
#: How often the large-screen layout reloads its data (seconds).
REFRESH_SECONDS = 60


def _default_area(conn: Any, principal: Principal) -> str:
    if principal.scope.kind != "all":
        return principal.scope.code
    from sqlalchemy import text

    code = conn.execute(
        text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
    ).scalar()
    return str(code or "")


def _data(conn: Any, principal: Principal, area: str | None, start: Any, end: Any,
          category: str | None) -> dict[str, Any]:  # fmt: skip
    code = area or _default_area(conn, principal)
    check(principal, "dashboard.read", code)
    return dash.dashboard(conn, dash.area_of(conn, code), dash.period(start, end),
                          category=category)  # fmt: skip


@router.get(
    "/leader/dashboard",
    dependencies=[Depends(allow("page.leader", page=True))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Leader's dashboard",
)
def dashboard_page(
    request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep,
    screen: Annotated[bool, Query(description="large-screen (大屏) layout, 1920×1080")] = False,
) -> HTMLResponse:  # fmt: skip
    """领导驾驶舱: trends, categories, statuses, overdue, rankings, drill-down; 大屏 layout."""
    p = principal_of(request)
    config = tp.page_config(
        ms,
        "dashboard",
        csrf=csrf_for(request),
        screen=screen,
        refresh=REFRESH_SECONDS,
        area=_default_area(conn, p) if p else "",
        role=str(p.role) if p else None,
        categories=tp.case_categories(conn),
    )
    return _html(
        tp.render_page(
            "dashboard.html",
            config=config,
            title=t("dashboard.title", lang),
            lang=lang,
            screen=screen,
            **_who(request),
        )
    )


@router.get("/api/dashboard/cases", summary="Dashboard figures")
def dashboard_cases(
    request: Request, principal: ReadDep, conn: ConnDep, area: AreaQ = None,
    start: FromQ = None, end: ToQ = None, category: CategoryQ = None,
) -> dict[str, Any]:  # fmt: skip
    """Totals (this period, the previous one, overdue now), by week, month, category,
    status, the area's children and workers — counts only, within your scope."""
    who = require(principal)  # read replicas: see api.reads
    return read(request, conn, lambda c: _data(c, who, area, start, end, category))


#: chart → (sheet name, rows key path, columns)
_SHEETS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "trend_week": ("按周趋势", [("week", "周"), ("start", "起始日"), ("cases", "事件数"),
                               ("closed", "已结案")]),
    "trend_month": ("按月趋势", [("month", "月份"), ("cases", "事件数"), ("closed", "已结案")]),
    "category": ("按类别", [("name", "类别"), ("cases", "本期"), ("previous", "上期")]),
    "status": ("按状态", [("label", "状态"), ("cases", "事件数")]),
    "children": ("下级排名", [("name", "名称"), ("code", "编码"), ("cases", "本期事件"),
                             ("previous", "上期事件"), ("closed", "已结案"),
                             ("closure_rate", "结案率"), ("overdue", "超期未办结")]),
    "workers": ("人员排名", [("name", "人员"), ("handled", "处置数"), ("closed", "已结案")]),
}  # fmt: skip
_ROWS = {"trend_week": "by_week", "trend_month": "by_month", "category": "by_category",
         "status": "by_status", "children": "children", "workers": "workers"}  # fmt: skip


@router.get(
    "/api/dashboard/export.xlsx",
    response_class=Response,
    responses={200: {"description": "Excel workbook", "content": {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}},
    summary="A chart's data as Excel",
)  # fmt: skip
def dashboard_export(
    request: Request, principal: ReadDep, conn: ConnDep, chart: Chart = "all",
    area: AreaQ = None, start: FromQ = None, end: ToQ = None, category: CategoryQ = None,
) -> Response:  # fmt: skip
    """The data of one chart (or of all, one sheet each) with the area and period."""
    import xlsxwriter

    who = require(principal)  # read replicas: see api.reads
    d = read(request, conn, lambda c: _data(c, who, area, start, end, category))
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False})
    per = d["period"]
    info = [
        {"k": "区域", "v": f"{d['area']['name']}（{d['area']['code']}）"},
        {"k": "本期", "v": f"{per['from']} 至 {per['to']}"},
        {"k": "上期", "v": f"{per['prev_from']} 至 {per['prev_to']}"},
        {"k": "类别", "v": category or "全部"},
        {"k": "本期事件", "v": d["totals"]["current"]["cases"]},
        {"k": "上期事件", "v": d["totals"]["previous"]["cases"]},
        {"k": "当前超期未办结", "v": d["totals"]["overdue_now"]},
    ]
    write_table(book, "概况", [("k", "项目"), ("v", "内容")], info)
    for key, (sheet, cols) in _SHEETS.items():
        if chart in ("all", key):
            write_table(book, sheet, cols, d[_ROWS[key]])
    book.close()
    name = f"dashboard-{chart}-{d['area']['code']}-{per['from']}-{per['to']}.xlsx"
    return Response(
        buf.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip
