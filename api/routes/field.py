"""Routes: the offline field app for grid workers (``/field/``) and its two APIs.

Page (``page.field``, a public shell: its data comes from the APIs, so it opens offline
from the service worker's cache): ``/field`` (→ ``/field/``), ``/field/`` (the app),
``/field/sw.js`` (the service worker, scope ``/field/``, with the list of shell files and
their content hashes written in, so a changed file changes the worker and it updates), and
``/field/manifest.webmanifest`` (installable: name, icons, start URL).

APIs: ``GET /api/field/bundle`` (``field.bundle``: the signed-in worker's own area for
offline use, see :mod:`geogrid.fieldwork.bundle`) and ``POST /api/field/sync``
(``field.sync``: the outbox, each record created once, see :mod:`geogrid.fieldwork.sync`).
Photos go through the case file upload (``POST /api/cases/files``) first.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ScopedConnDep, allow, client_ip, require
from api.routes.auth import csrf_for
from api.routes.pages import LangDep, SettingsDep
from geogrid import i18n
from geogrid.access.policy import Principal
from geogrid.errors import ConfigurationError
from geogrid.fieldwork import bundle as field_bundle
from geogrid.fieldwork import sync as field_sync
from geogrid.settings import Settings
from tiles import pages as tp

router = APIRouter(tags=["field"])

FIELD_STATIC = tp.STATIC_DIR / "field"
#: The service worker's source; ``/*SHELL*/`` is replaced by the shell list.
SW_SOURCE = FIELD_STATIC / "sw.js"
#: Our own files of the shell (under /assets/static/field/) and the npm files it needs.
OWN_FILES = ("app.js", "field.css", "icon-192.png", "icon-512.png")
NPM_FILES = (
    "leaflet/dist/leaflet.js",
    "leaflet/dist/leaflet.css",
    "idb/build/umd.js",
)
#: Message namespaces the app needs (not the whole catalogue: the first load stays small).
NAMESPACES = ("field.", "errors.")
#: Base-map tiles cached for offline use: zoom levels, at most this many tiles.
BASEMAP_ZOOMS = range(12, 18)
BASEMAP_MAX_TILES = 400

BundleDep = Annotated[Principal | None, Depends(allow("field.bundle"))]
SyncDep = Annotated[Principal | None, Depends(allow("field.sync"))]
_NO_STORE = {"Cache-Control": "no-store"}


class SyncIn(BaseModel):
    """The outbox, or part of it."""

    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Any]] = Field(max_length=field_sync.MAX_BATCH)


class SyncOut(BaseModel):
    results: list[field_sync.RecordResult]


# -- the shell ---------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@lru_cache(maxsize=8)
def _versions(stamp: tuple[tuple[str, int, int], ...], node_modules: str) -> dict[str, str]:
    """URL → content hash of every shell file (cached per file stamps)."""
    out = {f"{tp.ASSETS.static}/field/{name}": _digest(FIELD_STATIC / name) for name in OWN_FILES}
    for rel in NPM_FILES:
        out[f"/assets/npm/{rel}"] = _digest(Path(node_modules) / rel)
    return out


def shell_files(settings: Settings) -> dict[str, str]:
    """The shell's URLs, each with ``?v=<content hash>`` (what the page links and the
    service worker caches), keyed by the plain URL."""
    from geogrid.assets import find_node_modules

    nm = find_node_modules(settings.node_modules)
    paths = [FIELD_STATIC / n for n in OWN_FILES] + [nm / r for r in NPM_FILES]
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    return {url: f"{url}?v={v}" for url, v in _versions(stamp, str(nm)).items()}


def field_messages(lang: str) -> dict[str, str]:
    """The app's part of the catalogue in ``lang``."""
    return {k: v for k, v in i18n.messages(lang).items() if k.startswith(NAMESPACES)}


def _script_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


@router.get(
    "/field",
    dependencies=[Depends(allow("page.field"))],
    include_in_schema=False,
)
def field_redirect(request: Request) -> RedirectResponse:
    """The app lives at ``/field/`` (the service worker's scope)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/field/{query}", status_code=308)


@router.get(
    "/field/",
    dependencies=[Depends(allow("page.field"))],
    response_class=HTMLResponse,
    tags=["pages"],
    summary="Field app (网格员外勤)",
)
def field_page(ms: SettingsDep, lang: LangDep) -> HTMLResponse:
    """The offline field app: a shell that reads the worker's bundle and keeps an outbox."""
    files = shell_files(ms)
    config = {"sw": "/field/sw.js", "scope": "/field/", "login": "/login?next=%2Ffield%2F"}
    body = tp.render_page(
        "field.html",
        config=tp.page_config(ms, "field", **config),
        title=i18n.t("field.title", lang),
        lang=lang,
        files=files,
        field_messages_json=_script_json(field_messages(lang)),
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


@router.get(
    "/field/sw.js",
    dependencies=[Depends(allow("page.field"))],
    include_in_schema=False,
)
def service_worker(ms: SettingsDep) -> Response:
    """The service worker with the shell list written in (a new list: a new worker)."""
    files = shell_files(ms)
    shell = ["/field/", "/field/manifest.webmanifest", *files.values()]
    source = SW_SOURCE.read_text(encoding="utf-8")
    version = hashlib.sha256(
        (source + json.dumps(shell) + json.dumps(_message_stamp())).encode()
    ).hexdigest()[:12]
    text = source.replace("/*SHELL*/[]", json.dumps(shell)).replace("/*VERSION*/''", f"'{version}'")
    return Response(
        text,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


def _message_stamp() -> list[tuple[str, int]]:
    stamps = sorted((p.name, p.stat().st_mtime_ns) for p in i18n.MESSAGES_DIR.glob("*.json"))
    return [*stamps, ("field.html", (tp.TEMPLATE_DIR / "field.html").stat().st_mtime_ns)]


@router.get(
    "/field/manifest.webmanifest",
    dependencies=[Depends(allow("page.field"))],
    include_in_schema=False,
)
def manifest(ms: SettingsDep, lang: LangDep) -> JSONResponse:
    """The web app manifest: installable, opening at /field/ standalone."""
    files = shell_files(ms)
    icons = [
        {"src": files[f"{tp.ASSETS.static}/field/icon-{n}.png"], "sizes": f"{n}x{n}",
         "type": "image/png", "purpose": "any maskable"}
        for n in (192, 512)
    ]  # fmt: skip
    body = {
        "name": i18n.t("field.app_name", lang),
        "short_name": i18n.t("field.short_name", lang),
        "lang": "zh-CN" if lang == "zh" else "en",
        "start_url": "/field/",
        "scope": "/field/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f4e9c",
        "icons": icons,
    }
    return JSONResponse(
        body, media_type="application/manifest+json", headers={"Cache-Control": "no-cache"}
    )


# -- the APIs -----------------------------------------------------------------------------


def _tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def basemap_package(settings: Settings, bbox: list[float] | None) -> dict[str, Any] | None:
    """The local raster base map's tiles around ``bbox`` for offline use (None: no local
    raster base map configured, or no area)."""
    try:
        config = tp.basemap_config(settings)
    except ConfigurationError:
        return None
    layers = [
        la for la in config["layers"] if str(la["url"]).startswith("/") and not la.get("vector")
    ]
    if not layers or bbox is None:
        return None
    layer = layers[0]
    template = str(layer["url"])
    tiles: list[str] = []
    for z in BASEMAP_ZOOMS:
        x0, y1 = _tile_xy(bbox[0], bbox[1], z)
        x1, y0 = _tile_xy(bbox[2], bbox[3], z)
        count = (x1 - x0 + 1) * (y1 - y0 + 1)
        if len(tiles) + count > BASEMAP_MAX_TILES:
            break
        tiles += [
            template.format(z=z, x=x, y=y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)
        ]
    return {
        "url": template,
        "attribution": layer.get("attribution", ""),
        "max_zoom": layer.get("maxZoom", 18),
        "tiles": tiles,
    }


@router.get("/api/field/bundle", summary="The field app's offline bundle")
def get_bundle(
    request: Request, principal: BundleDep, conn: ScopedConnDep, ms: SettingsDep
) -> JSONResponse:
    """The signed-in worker's own area (grid boundary, households with masked personal data,
    key units, due inspections, assigned cases, own recent visits), for offline use; the
    read is audited. ``csrf`` is the page session's token for the app's writes."""
    data = field_bundle.build_bundle(conn, principal=require(principal), ip=client_ip(request))
    conn.commit()
    data["csrf"] = csrf_for(request)
    data["basemap"] = basemap_package(ms, data["bbox"])
    return JSONResponse(data, headers=_NO_STORE)


@router.post("/api/field/sync", response_model=SyncOut, summary="Send the field outbox")
def sync(request: Request, body: SyncIn, principal: SyncDep, conn: ScopedConnDep) -> SyncOut:
    """Each record in a transaction of its own, created once per ``client_id``: the answer
    says per record ``created``, ``already-there``, ``updated``, ``conflict`` (with the
    record as it is now in ``current``) or ``error`` (``code``, ``reason``)."""
    results = field_sync.sync_records(
        conn, principal=require(principal), records=body.records, ip=client_ip(request)
    )
    return SyncOut(results=results)
