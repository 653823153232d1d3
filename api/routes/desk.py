"""Routes: the case desk (``/desk``) and the residents' complaint pages (``/complain``,
``/complain/status``).

The pages only render a shell; their scripts call the APIs themselves: the desk calls
``/api/cases`` (lists, one case with its allowed actions, transitions with ``If-Match``,
attachments) and the complaint pages call Open311 (``/open311/v2``), exactly as any other
client would.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from api.auth import allow, principal_of
from api.deps import ConnDep
from api.routes.auth import csrf_for
from api.routes.pages import LangDep, SettingsDep, _html, _who  # the pages' own helpers, shared
from geogrid.i18n import t
from tiles import pages as tp

router = APIRouter(tags=["pages"])


@router.get(
    "/desk",
    dependencies=[Depends(allow("page.desk", page=True))],
    response_class=HTMLResponse,
    summary="Case desk",
)
def desk(request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """受理台: inbox and queues by status (overdue first), a case's timeline with photos, its
    allowed transitions as buttons, the case and its grid on a map, filters."""
    p = principal_of(request)
    config = tp.page_config(
        ms,
        "desk",
        bounds=tp.area_bounds(conn),
        csrf=csrf_for(request),
        user={"username": p.username, "role": str(p.role), "scope": str(p.scope)} if p else None,
    )
    return _html(
        tp.render_page(
            "desk.html", config=config, title=t("desk.title", lang), lang=lang, **_who(request)
        )
    )


@router.get(
    "/complain",
    dependencies=[Depends(allow("open311.read"))],
    response_class=HTMLResponse,
    summary="Complaint page (居民投诉)",
)
def complain(request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """A phone-first form: category, description, photo, place (map or "locate me"),
    contact optional; submits through Open311 and shows the request number and token."""
    config = tp.page_config(ms, "complain", bounds=tp.area_bounds(conn), csrf=csrf_for(request))
    return _html(
        tp.render_page(
            "complain.html",
            config=config,
            title=t("complaint.title", lang),
            lang=lang,
            **_who(request),
        )
    )


@router.get(
    "/complain/status",
    dependencies=[Depends(allow("open311.read"))],
    response_class=HTMLResponse,
    summary="Complaint status page",
)
def complain_status(
    request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep
) -> HTMLResponse:
    """A resident follows a request with its number and token (the token never goes into
    the page's URL: it is typed, or handed over in the page's session storage)."""
    config = tp.page_config(ms, "complain_status", bounds=tp.area_bounds(conn))
    return _html(
        tp.render_page(
            "complain_status.html",
            config=config,
            title=t("complaint.status_title", lang),
            lang=lang,
            **_who(request),
        )
    )
