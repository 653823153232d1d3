"""Routes: vector tiles, TileJSON, heat-map GeoJSON and case statistics.

Thin HTTP skin over :class:`tiles.service.TileService` (``app.state.tiles``): parse the
query, answer from the cache without leaving the event loop when possible, else render in
a worker thread; then HTTP caching (ETag / If-None-Match → 304, Cache-Control), gzip when
the client accepts it, ``Vary: Origin, Accept-Encoding`` and CORS for embedding.

An empty tile is answered ``204 No Content`` (with its ETag and caching headers); MapLibre
and Leaflet.VectorGrid both treat it as a tile with no features.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.auth import CredentialsDep, allow, check_layer
from geogrid.access.policy import Principal
from tiles.cache import CachedTile
from tiles.params import CaseStates, TileParams, Window
from tiles.service import CACHE_CONTROL, TileService, parse_bbox

router = APIRouter(tags=["tiles"])

LayerReader = Annotated[Principal | None, Depends(allow("layer.read"))]
HeatReader = Annotated[Principal | None, Depends(allow("heat.read"))]
#: layers whose features are cases (points with descriptions: scoped, never public)
_CASE_LAYERS = frozenset({"cases"})

MVT = "application/vnd.mapbox-vector-tile"

FromQ = Annotated[str | None, Query(alias="from", description="first local day, YYYY-MM-DD")]
ToQ = Annotated[str | None, Query(alias="to", description="last local day (inclusive), YYYY-MM-DD")]
CategoryQ = Annotated[str | None, Query(description="comma-separated case categories")]
PlanQ = Annotated[
    int | None,
    Query(ge=1, le=2**31 - 1, description="plan id (grids layer; default: active plans)"),
]
#: The case-state filters of the cases and heat tiles, /api/heat and the grid statistics:
#: one spelling, one parser (tiles.params.CaseStates.parse).
StatusQ = Annotated[
    str | None,
    Query(max_length=300, description="cases/heat: comma-separated workflow statuses"),
]
OverdueQ = Annotated[str | None, Query(max_length=5, description="cases/heat: true or false")]
TileZ = Annotated[int, Path(ge=0, le=30)]
TileXY = Annotated[int, Path(ge=0, le=2**30 - 1)]


def _service(request: Request) -> TileService:
    svc: TileService = request.app.state.tiles
    return svc


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match or not etag:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in if_none_match.split(","))


def _respond(request: Request, item: CachedTile, media_type: str) -> Response:
    creds = getattr(request.state, "credentials", None)
    if creds is not None and (creds.principal is not None or creds.embed is not None):
        # what a signed-in user or an embed token sees stays in that browser: no shared
        # caches, and cross-origin pages only through the configured CORS origins
        headers = {"Cache-Control": "private, no-cache", "Vary": "Origin, Accept-Encoding"}
    else:
        headers = {
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Origin, Accept-Encoding",
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "ETag",
        }
    if item.etag:
        headers["ETag"] = item.etag
    if _matches(request.headers.get("if-none-match"), item.etag):
        return Response(status_code=304, headers=headers)
    if not item.body:
        return Response(status_code=204, headers=headers)
    body = item.body
    if item.gz is not None and "gzip" in request.headers.get("accept-encoding", "").lower():
        body = item.gz
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)


@router.get(
    "/tiles/{layer}/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile"}},
)
async def tile(
    request: Request,
    creds: CredentialsDep,
    _: LayerReader,
    layer: str,
    z: TileZ,
    x: TileXY,
    y: TileXY,
    plan: PlanQ = None,
    start: FromQ = None,
    end: ToQ = None,
    category: CategoryQ = None,
    status: StatusQ = None,
    overdue: OverdueQ = None,
) -> Response:
    """A Mapbox vector tile of ``layer`` (see ``/tiles/{layer}.json`` for its fields)."""
    svc = _service(request)
    svc.check(layer, z, x, y)  # an unknown layer is a 404 before any access question
    # (the public-layer set is cached: a query at most every few seconds per process)
    check_layer(request, creds, layer)
    scope = creds.principal.scope.prefix if creds.principal and layer in _CASE_LAYERS else ""
    params = TileParams(
        plan=plan, window=Window.parse(start, end, category), scope=scope,
        states=CaseStates.parse(status, overdue),
    )  # fmt: skip
    item = svc.cached(layer, z, x, y, params)
    if item is None:
        item = await run_in_threadpool(svc.tile, layer, z, x, y, params)
    return _respond(request, item, MVT)


@router.get("/tiles/{layer}.json")
def tilejson(request: Request, layer: str, creds: CredentialsDep, _: LayerReader) -> Response:
    """TileJSON 3.0.0 for ``layer``; ``plan``/``from``/``to``/``category`` carry over."""
    check_layer(request, creds, layer)
    doc = _service(request).tilejson(layer, str(request.base_url), request.query_params)
    return JSONResponse(
        doc,
        headers={"Access-Control-Allow-Origin": "*", "Vary": "Origin",
                 "Cache-Control": CACHE_CONTROL},
    )  # fmt: skip


@router.get("/api/heat", response_class=Response)
def heat_geojson(
    request: Request,
    creds: CredentialsDep,
    _: HeatReader,
    bbox: Annotated[str, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84)")],
    z: Annotated[int, Query(ge=0, le=16, description="map zoom; bins are 1/16 of a tile")],
    start: FromQ = None,
    end: ToQ = None,
    category: CategoryQ = None,
    status: StatusQ = None,
    overdue: OverdueQ = None,
) -> Response:
    """Case counts per heat bin inside ``bbox`` as GeoJSON (squares with ``n``);
    ``status``/``overdue`` filter the cases as they filter the heat tiles."""
    check_layer(request, creds, "heat")
    window = Window.parse(start, end, category)
    states = CaseStates.parse(status, overdue)
    item = _service(request).heat_geojson(bbox=parse_bbox(bbox), z=z, window=window, states=states)
    return _respond(request, item, "application/geo+json")


@router.get("/api/stats/cases-by-grid", response_class=Response)
def cases_by_grid(
    request: Request,
    creds: CredentialsDep,
    _: HeatReader,
    start: FromQ = None,
    end: ToQ = None,
    category: CategoryQ = None,
    plan: PlanQ = None,
    geometry: Annotated[
        bool, Query(description="false: every geometry null (counts for grids already drawn)")
    ] = True,
    status: StatusQ = None,
    overdue: OverdueQ = None,
) -> Response:
    """Basic grids of the active plan with case counts, plus per-category ``totals``;
    ``status``/``overdue`` filter the cases counted (as in the heat tiles)."""
    check_layer(request, creds, "heat")
    window = Window.parse(start, end, category)
    states = CaseStates.parse(status, overdue)
    item = _service(request).cases_by_grid(
        window=window, plan=plan, geometry=geometry, states=states
    )
    return _respond(request, item, "application/geo+json")
