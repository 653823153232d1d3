"""Routes: printed 网格化图谱 posters and household contact cards (PDF).

Both need a signed-in work role whose scope overlaps the code (``print.read``); the
household query of the cards binds the reader's scope too. The QR codes point to
``GEOGRID_PUBLIC_BASE_URL`` or, when unset, to the address the request came in at.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.auth import allow, require
from api.deps import ConnDep, SettingsDep
from api.schemas import ErrorPublic
from geogrid.access.policy import Principal, check
from geogrid.printing import check_grid_code, parse_code, render_cards, render_poster
from geogrid.settings import Settings

router = APIRouter(prefix="/print", tags=["printing"])

Printer = Annotated[Principal | None, Depends(allow("print.read"))]

_PDF: dict[int | str, dict[str, Any]] = {
    200: {"description": "The PDF.", "content": {"application/pdf": {}}},
    400: {"model": ErrorPublic, "description": "Bad code, paper or language."},
    404: {"model": ErrorPublic, "description": "No grid with this code in the plan."},
}

Lang = Annotated[str, Query(max_length=8, description="zh (default) or en.")]


def _base_url(request: Request, settings: Settings) -> str:
    return settings.public_base_url or str(request.base_url)


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/poster.pdf", response_class=Response, responses=_PDF)
def poster(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    principal: Printer,
    code: Annotated[
        str, Query(max_length=20, description="15-digit grid, 12-digit village or town code.")
    ],
    paper: Annotated[str, Query(max_length=4, description="A3 (default) or A4.")] = "A3",
    lang: Lang = "zh",
    plan: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Plan id (default: the active plan).")
    ] = None,
) -> Response:
    """The 网格化图谱 poster of a grid, village or town: map, legend, staff, QR code."""
    p = require(principal)
    parse_code(code)  # a malformed code is a bad request, not a scope question
    check(p, "print.read", code)
    printed = render_poster(conn, code, paper=paper, lang=lang, plan_id=plan,
                            base_url=_base_url(request, settings), settings=settings)  # fmt: skip
    return _pdf(printed.pdf, f"poster-{code}.pdf")


@router.get("/cards.pdf", response_class=Response, responses=_PDF)
def cards(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    principal: Printer,
    grid: Annotated[str, Query(max_length=20, description="15-digit grid code.")],
    lang: Lang = "zh",
) -> Response:
    """Contact cards for every household of a grid: the grid's staff and the house number."""
    p = require(principal)
    check_grid_code(grid)
    check(p, "print.read", grid)
    printed = render_cards(conn, grid, lang=lang, base_url=_base_url(request, settings),
                           scope_prefix=p.scope.prefix)  # fmt: skip
    return _pdf(printed.pdf, f"cards-{grid}.pdf")
