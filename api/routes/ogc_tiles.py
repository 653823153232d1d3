"""OGC API – Tiles (core, tileset, tilesets-list, geodata-tilesets, MVT) at ``/ogc``.

The vector tiles of :mod:`tiles` (the same cache, ETags and access rules as
``/tiles/{layer}/{z}/{x}/{y}.mvt`` and its TileJSON) under the OGC paths, in the one
tiling scheme they are cut in, ``WebMercatorQuad`` (OGC 2D Tile Matrix Set 2.0):

* ``/tileMatrixSets`` and ``/tileMatrixSets/WebMercatorQuad`` (its definition);
* ``/collections/{id}/tiles`` (the collection's tile sets) and
  ``/collections/{id}/tiles/WebMercatorQuad`` (tile set metadata: template, layers, limits);
* ``/collections/{id}/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}`` (row = y,
  col = x of the XYZ scheme); an empty tile is ``204``, a tile outside the matrix ``404``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.auth import CredentialsDep, allow, check_layer
from api.routes.ogc_router import router
from api.routes.tiles import MVT, _respond
from geogrid.errors import NotFound
from geogrid.features import COLLECTIONS, JSON, get_collection, link
from geogrid.ogcapi import InvalidParameterValue
from geogrid.ogcapi.crs import CRS84, uri
from tiles.layers import LAYERS, MAX_ZOOM
from tiles.params import TileParams
from tiles.service import TileService

__all__ = ["CONFORMANCE", "collection_links", "router", "tile_matrix_set"]


_T = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
#: Conformance classes of OGC API – Tiles and the 2D Tile Matrix Set standard.
CONFORMANCE: Final = (
    f"{_T}core",
    f"{_T}tileset",
    f"{_T}tilesets-list",
    f"{_T}geodata-tilesets",
    f"{_T}mvt",
    f"{_T}oas30",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
)
TMS_ID: Final = "WebMercatorQuad"
TMS_URI: Final = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
_REL: Final = "http://www.opengis.net/def/rel/ogc/1.0/"
#: Half the extent of EPSG:3857 (metres) and the cell size of zoom 0 (256-pixel tiles).
_ORIGIN: Final = 20037508.3427892
_CELL0: Final = 2 * _ORIGIN / 256
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unknown or invalid query parameter."},
    404: {"description": "No such collection, tiling scheme or tile."},
}

TileMatrix = Annotated[str, Path(description="zoom level (0–22)")]
TileIndex = Annotated[int, Path(ge=0, le=2**30 - 1)]


def _no_params(request: Request, where: str) -> None:
    for name in request.query_params:
        if name not in ("f", "embed_token"):
            raise InvalidParameterValue(
                f"unknown query parameter {name!r} for {where}", detail={"parameter": name}
            )


def _tms(tms_id: str) -> None:
    if tms_id != TMS_ID:
        raise NotFound(f"no tile matrix set {tms_id!r}; tile matrix sets: {TMS_ID}")


def _layer(collection_id: str) -> str:
    coll = get_collection(collection_id)  # 404 for an unknown collection
    if coll.id not in LAYERS:
        raise NotFound(f"collection {coll.id!r} has no tiles")
    return coll.id


def tile_matrix_set() -> dict[str, Any]:
    """The WebMercatorQuad tile matrix set (OGC 2D TMS 2.0 JSON), zooms 0–22."""
    matrices = []
    for z in range(MAX_ZOOM + 1):
        cell = _CELL0 / 2**z
        matrices.append(
            {
                "id": str(z),
                "scaleDenominator": cell / 0.00028,
                "cellSize": cell,
                "cornerOfOrigin": "topLeft",
                "pointOfOrigin": [-_ORIGIN, _ORIGIN],
                "tileWidth": 256,
                "tileHeight": 256,
                "matrixWidth": 2**z,
                "matrixHeight": 2**z,
            }
        )
    return {
        "id": TMS_ID,
        "title": "Google Maps Compatible for the World",
        "uri": TMS_URI,
        "crs": uri(3857),
        "orderedAxes": ["X", "Y"],
        "wellKnownScaleSet": "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible",
        "tileMatrices": matrices,
    }


def collection_links(base: str, collection_id: str) -> list[dict[str, str]]:
    """Links from a collection document to its tile sets (none for a layer without tiles)."""
    if collection_id not in LAYERS:
        return []
    tilesets = f"{base}/collections/{collection_id}/tiles"
    return [
        link(tilesets, f"{_REL}tilesets-vector", JSON, "vector tile sets"),
        link(f"{base.removesuffix('/ogc')}/tiles/{collection_id}.json", "describedby", JSON,
             "TileJSON"),
    ]  # fmt: skip


@router.get(
    "/tileMatrixSets",
    dependencies=[Depends(allow("public.read"))],
    summary="Tiling schemes",
    responses=_ERRORS,
)
def tile_matrix_sets(request: Request) -> JSONResponse:
    """The tiling schemes of this API (WebMercatorQuad)."""
    _no_params(request, "tile matrix sets")
    href = f"{str(request.base_url).rstrip('/')}/ogc/tileMatrixSets/{TMS_ID}"
    return JSONResponse(
        {
            "tileMatrixSets": [
                {
                    "id": TMS_ID,
                    "title": "Google Maps Compatible for the World",
                    "uri": TMS_URI,
                    "links": [link(href, "self", JSON, TMS_ID)],
                }
            ]
        }
    )


@router.get(
    "/tileMatrixSets/{tileMatrixSetId}",
    dependencies=[Depends(allow("public.read"))],
    summary="A tiling scheme",
    responses=_ERRORS,
)
def tile_matrix_set_definition(tileMatrixSetId: str, request: Request) -> JSONResponse:  # noqa: N803
    """The definition of a tile matrix set."""
    _tms(tileMatrixSetId)
    _no_params(request, "a tile matrix set")
    return JSONResponse(tile_matrix_set())


def _tileset(base: str, layer: str, bounds: list[float]) -> dict[str, Any]:
    spec = LAYERS[layer]
    href = f"{base}/collections/{layer}/tiles/{TMS_ID}"
    coll = COLLECTIONS[layer]
    return {
        "title": f"{coll.title}: vector tiles",
        "dataType": "vector",
        "crs": uri(3857),
        "tileMatrixSetURI": TMS_URI,
        "boundingBox": {"lowerLeft": bounds[:2], "upperRight": bounds[2:], "crs": CRS84},
        "tileMatrixSetLimits": [
            {"tileMatrix": str(z), **_limits(bounds, z)}
            for z in range(spec.minzoom, spec.maxzoom + 1)
        ],
        "layers": [
            {
                "id": layer,
                "dataType": "vector",
                "geometryDimension": 0 if coll.geometry_type == "Point" else 2,
                "minTileMatrix": str(spec.minzoom),
                "maxTileMatrix": str(spec.maxzoom),
                "propertiesSchema": {
                    "type": "object",
                    "properties": {
                        k: {"type": "number" if v == "Number" else "string"}
                        for k, v in spec.fields.items()
                    },
                },
            }
        ],
        "links": [
            link(href, "self", JSON, "this tile set"),
            link(f"{base}/tileMatrixSets/{TMS_ID}", f"{_REL}tiling-scheme", JSON, TMS_ID),
            link(f"{base}/collections/{layer}", "collection", JSON, coll.title),
            {
                "href": f"{href}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}",
                "rel": "item",
                "type": MVT,
                "templated": True,
                "title": "a vector tile",
            },
        ],
    }


def _limits(bounds: list[float], z: int) -> dict[str, int]:
    from tiles.layers import lonlat_to_tile

    x0, y1 = lonlat_to_tile(bounds[0], bounds[1], z)
    x1, y0 = lonlat_to_tile(bounds[2], bounds[3], z)
    return {"minTileRow": y0, "maxTileRow": y1, "minTileCol": x0, "maxTileCol": x1}


def _service(request: Request) -> TileService:
    svc: TileService = request.app.state.tiles
    return svc


def _ogc_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


@router.get(
    "/collections/{collectionId}/tiles",
    dependencies=[Depends(allow("layer.read"))],
    summary="Tile sets of a collection",
    responses=_ERRORS,
)
def tilesets(collectionId: str, request: Request, creds: CredentialsDep) -> JSONResponse:  # noqa: N803
    """The collection's tile sets (one: vector tiles in WebMercatorQuad)."""
    layer = _layer(collectionId)
    check_layer(request, creds, layer)
    _no_params(request, "tile sets")
    base = _ogc_base(request)
    href = f"{base}/collections/{layer}/tiles/{TMS_ID}"
    entry = {
        "title": f"{COLLECTIONS[layer].title}: vector tiles",
        "dataType": "vector",
        "crs": uri(3857),
        "tileMatrixSetURI": TMS_URI,
        "links": [
            link(href, "self", JSON, "tile set"),
            link(f"{base}/tileMatrixSets/{TMS_ID}", f"{_REL}tiling-scheme", JSON, TMS_ID),
        ],
    }
    return JSONResponse(
        {
            "tilesets": [entry],
            "links": [link(f"{base}/collections/{layer}/tiles", "self", JSON, "tile sets")],
        }
    )


@router.get(
    "/collections/{collectionId}/tiles/{tileMatrixSetId}",
    dependencies=[Depends(allow("layer.read"))],
    summary="A tile set of a collection",
    responses=_ERRORS,
)
def tileset(
    collectionId: str,  # noqa: N803
    tileMatrixSetId: str,  # noqa: N803
    request: Request,
    creds: CredentialsDep,
) -> JSONResponse:
    """Tile set metadata: the URL template of its tiles, its layer and limits."""
    layer = _layer(collectionId)
    check_layer(request, creds, layer)
    _tms(tileMatrixSetId)
    _no_params(request, "a tile set")
    return JSONResponse(_tileset(_ogc_base(request), layer, _service(request).bounds()))


@router.get(
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}",
    dependencies=[Depends(allow("layer.read"))],
    summary="A vector tile",
    response_class=Response,
    responses={
        200: {"content": {MVT: {}}, "description": "a Mapbox vector tile"},
        204: {"description": "an empty tile"},
        **_ERRORS,
    },
)
async def tile(
    collectionId: str,  # noqa: N803
    tileMatrixSetId: str,  # noqa: N803
    tileMatrix: TileMatrix,  # noqa: N803
    tileRow: TileIndex,  # noqa: N803
    tileCol: TileIndex,  # noqa: N803
    request: Request,
    creds: CredentialsDep,
) -> Response:
    """A Mapbox vector tile of the collection (row = y, column = x)."""
    layer = _layer(collectionId)
    _tms(tileMatrixSetId)
    if not tileMatrix.isdigit():
        raise NotFound(f"no tile matrix {tileMatrix!r} in {TMS_ID} (0–{MAX_ZOOM})")
    z = int(tileMatrix)
    svc = _service(request)
    svc.check(layer, z, tileCol, tileRow)
    check_layer(request, creds, layer)
    _no_params(request, "a tile")
    scope = creds.principal.scope.prefix if creds.principal and layer == "cases" else ""
    params = TileParams(scope=scope)
    item = svc.cached(layer, z, tileCol, tileRow, params)
    if item is None:
        item = await run_in_threadpool(svc.tile, layer, z, tileCol, tileRow, params)
    return _respond(request, item, MVT)
