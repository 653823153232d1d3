"""Routes: map pages, their page data, local web assets and the OpenAPI docs page.

Pages: ``/`` (index), ``/planner``, ``/leader``, ``/embed/{layer}``, ``/public``
(网格化图谱) and ``/docs`` (Swagger UI from local assets). Assets: ``/assets/npm/...``
(allow-listed npm packages from ``node_modules``) and ``/assets/static/...`` (our own
scripts and styles); ``/basemap/{z}/{x}/{y}.png`` serves a local XYZ tile folder.
Rendering and SQL live in :mod:`tiles.pages`; this module only wires HTTP.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.assets import asset_response
from api.auth import allow, check_layer, principal_of, secret_of
from api.deps import ConnDep
from api.reads import read
from api.routes.auth import csrf_for
from api.schemas import DbId
from geogrid import i18n
from geogrid.access import embed as embeds
from geogrid.access.tokens import ALGORITHM, ISSUER
from geogrid.errors import GeogridError, NotFound, Unauthenticated
from geogrid.i18n import pick_lang, t
from geogrid.planner import photos
from geogrid.settings import Settings
from tiles import pages as tp
from tiles import public as tpub

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
def public(request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """网格化图谱: each grid with its responsible staff; no resident data."""
    config = tp.page_config(ms, "public", bounds=read(request, conn, tp.area_bounds))
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
    origins may frame the page (and talk to it by ``postMessage``); without one, the layer
    must be public and only geogrid's own pages may frame it. URL options (``lang``,
    ``plan``, ``center``/``zoom`` or ``bbox``, ``from``/``to``/``category``, ``village``,
    ``legend``, ``basemap``) are read by ``embed.js``; see ``/embed`` for the snippet.
    """
    lang = pick_lang(request.query_params.get("lang"))
    if layer not in tp.EMBED_LAYERS:
        raise NotFound(f"no embeddable layer {layer!r}; choose one of {', '.join(tp.EMBED_LAYERS)}")
    creds = request.state.credentials
    check_layer(request, creds, layer)
    token = None
    origins: list[str] = []  # besides this site's own (added by embed.js)
    if creds.embed is not None:
        request.state.frame_ancestors = list(creds.embed.origins)
        token = request.query_params.get("embed_token")
        origins = sorted(creds.embed.origins)
    label = t(f"common.layer.{layer}", lang)
    config = tp.page_config(
        ms,
        "embed",
        layer=layer,
        label=label,
        bounds=tp.area_bounds(conn),
        embed_token=token,
        origins=origins,
    )
    return _html(
        tp.render_page("embed.html", config=config, title=label, lang=lang, lang_persist=False)
    )


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


@router.get(
    "/embed",
    dependencies=[Depends(allow("public.read"))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Embed snippets",
)
def embed_snippets(request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """How a portal embeds a map: URL options, the postMessage interface, a live example."""
    config = tp.page_config(ms, "embed-doc", bounds=tp.area_bounds(conn))
    return _html(
        tp.render_page(
            "embed_doc.html",
            config=config,
            title=t("embed.doc.title", lang),
            lang=lang,
            layers=list(tp.EMBED_LAYERS),
            base=_own_origin(request),
        )
    )


@router.get(
    "/public/grid/{code}",
    dependencies=[Depends(allow("public.read"))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Public page of one grid",
)
def public_grid_page(
    request: Request, conn: ConnDep, ms: SettingsDep, lang: LangDep, code: Annotated[str, Path()]
) -> HTMLResponse:
    """One grid's staff card on its map (the page the printed QR codes point to)."""
    card, bounds = read(request, conn, lambda c: (tpub.grid_by_code(c, code), tp.area_bounds(c)))
    config = tp.page_config(ms, "public", bounds=bounds, grid=card["code"])
    return _html(tp.render_page("public.html", config=config, title=card["name"], lang=lang))


# -- page data -----------------------------------------------------------------------------


@router.get(
    "/public/grids.geojson",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Public grids with staff",
    responses=GEOJSON_200,
)
def public_grids(request: Request, conn: ConnDep, town: TownQuery = None) -> JSONResponse:
    """Grids of the active plan with their staff (no resident data)."""
    return JSONResponse(
        read(request, conn, lambda c: tp.public_grids(c, town_code=town)),
        media_type="application/geo+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get(
    "/public/find",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Find the grid of an address",
)
def public_find(
    request: Request,
    conn: ConnDep,
    address: Annotated[str, Query(min_length=1, max_length=tpub.MAX_ADDRESS)],
) -> dict[str, Any]:
    """The grid(s) serving an address (village, group, house number); public data only."""
    return read(request, conn, lambda c: tpub.find_by_address(c, address))


@router.get(
    "/public/at",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Find the grid at a place",
)
def public_at(
    request: Request,
    conn: ConnDep,
    lng: Annotated[float, Query(ge=-180, le=180)],
    lat: Annotated[float, Query(ge=-90, le=90)],
) -> dict[str, Any]:
    """The grid covering a WGS84 point (the resident's location); public data only."""
    return read(request, conn, lambda c: tpub.find_by_point(c, lng, lat))


@router.get(
    "/public/photos/{staff_id}",
    dependencies=[Depends(allow("public.read"))],
    tags=["pages"],
    summary="Staff photo",
    responses=PHOTO_200,
)
def staff_photo(
    request: Request, conn: ConnDep, ms: SettingsDep, staff_id: Annotated[DbId, Path()]
) -> Response:
    """The staff member's photo, or a placeholder avatar when none is on file."""
    name, photo = read(request, conn, lambda c: tp.staff_photo_name(c, staff_id))
    path = photos.photo_path(ms, photo)  # a missing file gets the placeholder, like no photo
    if path is not None:
        return FileResponse(
            path, media_type=photos.photo_type(path), headers={"Cache-Control": _ASSET_CACHE}
        )
    return Response(photos.placeholder_photo(name), media_type="image/svg+xml")


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
def npm_asset(request: Request, ms: SettingsDep, package: str, path: str) -> Response:
    """A file of an allow-listed npm package (Leaflet, VectorGrid, swagger-ui), gzipped
    when the client accepts it (:mod:`api.assets`)."""
    return asset_response(request, tp.npm_asset(package, path, ms), _ASSET_CACHE)


@router.get(
    "/assets/static/{path:path}",
    dependencies=[Depends(allow("public.read"))],
    include_in_schema=False,
)
def static_asset(request: Request, path: str) -> Response:
    """One of geogrid's own page scripts or styles, gzipped when the client accepts it."""
    return asset_response(request, tp.static_asset(path), "no-cache")


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


@router.get(
    "/basemap/mbtiles/{z}/{x}/{y}",
    dependencies=[Depends(allow("public.read"))],
    include_in_schema=False,
)
def basemap_mbtiles(ms: SettingsDep, z: TileZ, x: TileXY, y: TileXY) -> Response:
    """A tile of the MBTiles base map (``GEOGRID_BASEMAP_MBTILES``); 204 where it has none."""
    tile = tp.mbtiles_tile(ms, z, x, y)
    if tile is None:
        return Response(status_code=204, headers={"Cache-Control": _ASSET_CACHE})
    headers = {"Cache-Control": _ASSET_CACHE}
    if tile.encoding:
        headers["Content-Encoding"] = tile.encoding
    return Response(tile.data, media_type=tile.media_type, headers=headers)


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


# -- error panels ----------------------------------------------------------------------------

#: Pages whose errors a browser shows as a panel in the page's language, not as JSON.
_PANEL_PATHS = re.compile(r"^/(?:embed(?:/[^/]+)?|public(?:/grid/[^/]+)?|leader|planner)?$")


def _wants_panel(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in accept
        and _PANEL_PATHS.fullmatch(request.url.path) is not None
    )


def _token_origins(request: Request) -> list[str]:
    """The origins named in a correctly signed embed token, even an expired or revoked one:
    its portal may frame the error panel that says so (it shows no data)."""
    token = request.query_params.get("embed_token")
    if not token:
        return []
    try:
        claims = jwt.decode(
            token,
            secret_of(request),
            algorithms=[ALGORITHM],
            audience=embeds.AUDIENCE,
            issuer=ISSUER,
            options={"verify_exp": False},
        )
    except jwt.PyJWTError:
        return []
    origins = claims.get("origins")
    return [str(o) for o in origins] if isinstance(origins, list) else []


def _panel(request: Request, response: Response) -> Response:
    try:
        code = str(json.loads(bytes(response.body)).get("code") or "")
    except (ValueError, AttributeError):
        code = ""
    lang = pick_lang(request.query_params.get("lang"), request.cookies.get("gg_lang"))
    embed = request.url.path.startswith("/embed/")
    if embed:
        request.state.frame_ancestors = _token_origins(request)
    key = f"errors.{code}" if f"errors.{code}" in i18n.catalogue() else "errors.unknown"
    if embed and response.status_code == 401:
        key = "embed.error.token"
    elif embed and response.status_code == 403:
        key = "embed.error.layer"
    body = tp.render_page(
        "error.html",
        config={"page": "error", "code": code, "status": response.status_code},
        title=t("common.error_title", lang),
        lang=lang,
        lang_persist=not embed,
        message=t(key, lang),
        embed=embed,
        status=response.status_code,
    )
    headers = {k: v for k, v in response.headers.items() if k.lower() == "www-authenticate"}
    return HTMLResponse(body, status_code=response.status_code, headers=headers)


def install(app: FastAPI) -> None:
    """Show errors of page requests from a browser as a panel in the page's language.

    Wraps the JSON error handlers already installed (:mod:`api.errors`, :mod:`api.auth`):
    the status code stays, API clients (no ``text/html`` in ``Accept``) still get
    ``{code, description}``, and the English description is never shown on the page.
    Call after ``errors.install`` and ``auth.install``.
    """
    for exc_class in (
        GeogridError,
        Unauthenticated,
        StarletteHTTPException,
        RequestValidationError,
    ):
        inner = app.exception_handlers.get(exc_class)
        if inner is not None:
            app.add_exception_handler(exc_class, _wrap(inner))


def _wrap(inner: Any) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        response: Response = await inner(request, exc)
        if response.status_code >= 400 and _wants_panel(request):
            return _panel(request, response)
        return response

    return handler
