"""Routes: map pages, their page data, local web assets and the OpenAPI docs page.

Pages: ``/`` (index), ``/planner``, ``/leader``, ``/embed/{layer}``, ``/public``
(网格化图谱) and ``/docs`` (Swagger UI from local assets). Assets: ``/assets/npm/...``
(allow-listed npm packages from ``node_modules``) and ``/assets/static/...`` (our own
scripts and styles); ``/basemap/{z}/{x}/{y}.png`` serves a local XYZ tile folder.
Rendering and SQL live in :mod:`tiles.pages`; this module only wires HTTP.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from api.auth import allow, check_layer, principal_of
from api.deps import ConnDep
from api.routes.auth import csrf_for
from api.schemas import DbId
from geogrid.errors import NotFound
from geogrid.settings import Settings
from tiles import pages as tp
from tiles.i18n import pick_lang, t

router = APIRouter()

_ASSET_CACHE = "public, max-age=3600"
TileZ = Annotated[int, Path(ge=0, le=30)]
TileXY = Annotated[int, Path(ge=0, le=2**30 - 1)]
TownQuery = Annotated[str | None, Query(pattern=r"^\d{12}$", description="Town code.")]
GEOJSON_200: dict[int | str, dict[str, Any]] = {
    200: {"description": "GeoJSON.", "content": {"application/geo+json": {}}}
}
PHOTO_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The photo, or an SVG avatar when none is on file.",
        "content": {f"image/{t}": {} for t in ("svg+xml", "jpeg", "png", "webp", "gif")},
    }
}


def get_settings(request: Request) -> Settings:
    """The app's settings (``create_app(settings)``; the environment by default)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def page_lang(request: Request) -> str:
    """The page's language: ``?lang=`` first, then the remembered choice (``gg_lang``
    cookie, set by ``i18n.js``), else Chinese."""
    return pick_lang(request.query_params.get("lang"), request.cookies.get("gg_lang"))


LangDep = Annotated[str, Depends(page_lang)]


def _html(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


@router.get(
    "/",
    dependencies=[Depends(allow("public.read"))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Index of map pages",
)
def index(ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """List the map pages and say whether the web assets are installed."""
    config = tp.page_config(ms, "index")
    return _html(
        tp.render_page(
            "index.html",
            config=config,
            title=t("common.app", lang),
            lang=lang,
            missing=tp.missing_assets(ms),
        )
    )


@router.get(
    "/planner",
    dependencies=[Depends(allow("page.planner", page=True))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Planner page",
)
def planner(
    request: Request,
    conn: ConnDep,
    ms: SettingsDep,
    lang: LangDep,
    plan: Annotated[DbId | None, Query()] = None,
) -> HTMLResponse:
    """Draft vs active plan, grid metrics on click, move a group between grids."""
    config = tp.page_config(
        ms, "planner", plan=plan, bounds=tp.area_bounds(conn), csrf=csrf_for(request)
    )
    return _html(
        tp.render_page(
            "planner.html",
            config=config,
            title=t("common.nav.planner", lang),
            lang=lang,
            **_who(request),
        )
    )


def _who(request: Request) -> dict[str, Any]:
    """Template variables of the signed-in user: name and sign-out CSRF token."""
    p = principal_of(request)
    return {"session_user": p.username, "csrf": csrf_for(request)} if p else {}


@router.get(
    "/leader",
    dependencies=[Depends(allow("page.leader", page=True))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Leader page",
)
def leader(request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """Heat map with time and category filters, case counts per grid."""
    config = tp.page_config(
        ms,
        "leader",
        bounds=tp.area_bounds(conn),
        categories=tp.case_categories(conn),
        csrf=csrf_for(request),
    )
    return _html(
        tp.render_page(
            "leader.html",
            config=config,
            title=t("common.nav.leader", lang),
            lang=lang,
            **_who(request),
        )
    )


@router.get(
    "/public",
    dependencies=[Depends(allow("public.read"))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Public grid map",
)
def public(conn: ConnDep, ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """网格化图谱: each grid with its responsible staff; no resident data."""
    config = tp.page_config(ms, "public", bounds=tp.area_bounds(conn))
    return _html(
        tp.render_page("public.html", config=config, title=t("common.nav.public", lang), lang=lang)
    )


@router.get(
    "/embed/{layer}",
    dependencies=[Depends(allow("public.read"))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Embed map",
)
def embed(
    request: Request, conn: ConnDep, ms: SettingsDep, layer: Annotated[str, Path()]
) -> HTMLResponse:
    """A minimal map of one layer for iframes in other portals.

    With ``?embed_token=…`` the layer must be one the token names, and only the token's
    origins may frame the page; without one, the layer must be public.
    """
    if layer not in tp.EMBED_LAYERS:
        raise NotFound(f"no embeddable layer {layer!r}; choose one of {', '.join(tp.EMBED_LAYERS)}")
    creds = request.state.credentials
    check_layer(request, creds, layer)
    token = None
    if creds.embed is not None:
        request.state.frame_ancestors = list(creds.embed.origins)
        token = request.query_params.get("embed_token")
    config = tp.page_config(
        ms,
        "embed",
        layer=layer,
        label=tp.EMBED_LAYERS[layer],
        bounds=tp.area_bounds(conn),
        embed_token=token,
    )
    return _html(tp.render_page("embed.html", config=config, title=tp.EMBED_LAYERS[layer]))


# -- page data -----------------------------------------------------------------------------


@router.get(
    "/public/grids.geojson",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Public grids with staff",
    responses=GEOJSON_200,
)
def public_grids(conn: ConnDep, town: TownQuery = None) -> JSONResponse:
    """Grids of the active plan with their staff (no resident data)."""
    return JSONResponse(
        tp.public_grids(conn, town_code=town),
        media_type="application/geo+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get(
    "/public/photos/{staff_id}",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Staff photo",
    responses=PHOTO_200,
)
def staff_photo(conn: ConnDep, ms: SettingsDep, staff_id: Annotated[DbId, Path()]) -> Response:
    """The staff member's photo, or a placeholder avatar when none is on file."""
    name, photo = tp.staff_photo_name(conn, staff_id)
    if photo:
        try:
            return FileResponse(tp.staff_photo(ms, photo), headers={"Cache-Control": _ASSET_CACHE})
        except NotFound:
            pass  # a missing file falls back to the placeholder, like no photo at all
    return Response(tp.placeholder_photo(name), media_type="image/svg+xml")


@router.get(
    "/planner/plans/{plan_id}/groups.geojson",
    dependencies=[Depends(allow("plan.read"))],
    tags=["pages"],
    summary="Plan groups",
    responses=GEOJSON_200,
)
def planner_groups(conn: ConnDep, plan_id: Annotated[DbId, Path()]) -> JSONResponse:
    """Villager groups of a plan with the grid each belongs to (household counts only)."""
    return JSONResponse(
        tp.plan_groups(conn, plan_id),
        media_type="application/geo+json",
        headers={"Cache-Control": "no-cache"},
    )


# -- assets --------------------------------------------------------------------------------


@router.get(
    "/assets/npm/{package}/{path:path}",
    dependencies=[Depends(allow("public.read"))],
    include_in_schema=False,
)
def npm_asset(ms: SettingsDep, package: str, path: str) -> FileResponse:
    """A file of an allow-listed npm package (Leaflet, VectorGrid, swagger-ui)."""
    return FileResponse(tp.npm_asset(package, path, ms), headers={"Cache-Control": _ASSET_CACHE})


@router.get(
    "/assets/static/{path:path}",
    dependencies=[Depends(allow("public.read"))],
    include_in_schema=False,
)
def static_asset(path: str) -> FileResponse:
    """One of geogrid's own page scripts or styles."""
    return FileResponse(tp.static_asset(path), headers={"Cache-Control": "no-cache"})


@router.get(
    "/assets",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Installed web assets",
)
def asset_listing(ms: SettingsDep) -> dict[str, Any]:
    """Which web assets the pages use and whether any are missing."""
    a = tp.ASSETS
    return {
        "assets": [
            a.leaflet_js,
            a.leaflet_css,
            a.vectorgrid_js,
            a.swagger_js,
            a.swagger_css,
            f"{a.static}/geogrid-map.js",
            f"{a.static}/geogrid.css",
        ],
        "missing": tp.missing_assets(ms),
        "basemap": tp.basemap_config(ms)["kind"],
    }


@router.get(
    "/basemap/{z}/{x}/{y}.png",
    dependencies=[Depends(allow("public.read"))],
    include_in_schema=False,
)
def basemap_tile(ms: SettingsDep, z: TileZ, x: TileXY, y: TileXY) -> FileResponse:
    """A tile of the local XYZ base-map folder (``GEOGRID_BASEMAP_DIR``)."""
    return FileResponse(tp.basemap_tile(ms, z, x, y), headers={"Cache-Control": _ASSET_CACHE})


@router.get("/docs", dependencies=[Depends(allow("public.read"))], include_in_schema=False)
def docs(request: Request, ms: SettingsDep) -> HTMLResponse:
    """Swagger UI for the OpenAPI document, loaded from local assets only."""
    tp.npm_asset("swagger-ui-dist", "swagger-ui-bundle.js", ms)  # clear error if missing
    a = tp.ASSETS
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} — 接口文档 API docs",
        swagger_js_url=a.swagger_js,
        swagger_css_url=a.swagger_css,
        swagger_favicon_url=a.swagger_favicon,
        # No online validator badge (its default is an https URL).
        swagger_ui_parameters={"validatorUrl": None},
    )
    # its inline start-up script runs under the CSP by the response's nonce (api.security)
    nonce = getattr(request.state, "csp_nonce", "")
    html = bytes(page.body).decode().replace("<script", f'<script nonce="{nonce}"')
    return HTMLResponse(html)
