"""OGC API – Features (Part 1: Core, GeoJSON, OpenAPI 3.0) at ``/ogc``.

Routes are thin: the query string goes, unparsed, to :mod:`geogrid.features`, which
validates it (an unknown or invalid parameter is a 400 with an OGC exception body
``{"code": "InvalidParameterValue", "description": …}``, not FastAPI's 422) and builds the
documents. The API definition for the ``oas30`` conformance class is served at
``/ogc/api`` as an OpenAPI **3.0.3** document: FastAPI's own (3.1) document of this
router, converted (:func:`openapi_30`) and completed with one ``items`` path per
collection listing its filter parameters.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from api.auth import Credentials, CredentialsDep, allow, check_layer, may_see_layer
from api.deps import ConnDep
from geogrid import __version__, features
from geogrid.features import COLLECTIONS, CONFORMANCE, GEOJSON, JSON

router = APIRouter(prefix="/ogc", tags=["OGC API – Features"])

OPENAPI_30 = "application/vnd.oai.openapi+json;version=3.0"

_F = {
    "name": "f",
    "in": "query",
    "required": False,
    "description": "Response format: json (GeoJSON for features). Anything else is a 400.",
    "schema": {"type": "string", "enum": ["json", "geojson"]},
    "style": "form",
    "explode": False,
}
_ITEMS_PARAMS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": (
            f"Page size (default {features.DEFAULT_LIMIT}); values above "
            f"{features.MAX_LIMIT} are treated as {features.MAX_LIMIT}."
        ),
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": features.MAX_LIMIT,
            "default": features.DEFAULT_LIMIT,
        },
        "style": "form",
        "explode": False,
    },
    {
        "name": "offset",
        "in": "query",
        "required": False,
        "description": "Number of features to skip (follow the next/prev links).",
        "schema": {"type": "integer", "minimum": 0, "maximum": features.MAX_OFFSET, "default": 0},
        "style": "form",
        "explode": False,
    },
    {
        "name": "bbox",
        "in": "query",
        "required": False,
        "description": "minlon,minlat,maxlon,maxlat in CRS84 (longitude first).",
        "schema": {
            "type": "array",
            "minItems": 4,
            "maxItems": 6,
            "items": {"type": "number"},
        },
        "style": "form",
        "explode": False,
    },
    {
        "name": "datetime",
        "in": "query",
        "required": False,
        "description": (
            "An RFC 3339 instant or interval (open ends '..'), e.g. ../2025-06-30; dates are "
            "whole days in China Standard Time. Only on collections with a temporal property."
        ),
        "schema": {"type": "string"},
        "style": "form",
        "explode": False,
    },
    _F,
]

_EXCEPTION_SCHEMA = {
    "type": "object",
    "required": ["code"],
    "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
}
_ERRORS = {
    "400": {
        "description": "Unknown or invalid query parameter.",
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/exception"}}},
    },
    "404": {
        "description": "No such collection or feature.",
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/exception"}}},
    },
}
_FC_SCHEMA = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {"type": "array", "items": {"$ref": "#/components/schemas/feature"}},
        "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
        "timeStamp": {"type": "string", "format": "date-time"},
        "numberMatched": {"type": "integer", "minimum": 0},
        "numberReturned": {"type": "integer", "minimum": 0},
    },
}
_FEATURE_SCHEMA = {
    "type": "object",
    "required": ["type", "geometry", "properties"],
    "properties": {
        "type": {"type": "string", "enum": ["Feature"]},
        "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "geometry": {"type": "object", "nullable": True},
        "properties": {"type": "object", "nullable": True},
        "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
    },
}
_LINK_SCHEMA = {
    "type": "object",
    "required": ["href", "rel"],
    "properties": {
        "href": {"type": "string"},
        "rel": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
    },
}

#: Schemas the responses above refer to (added to this document and to the app's).
SCHEMAS: dict[str, dict[str, Any]] = {
    "exception": _EXCEPTION_SCHEMA,
    "featureCollection": _FC_SCHEMA,
    "feature": _FEATURE_SCHEMA,
    "link": _LINK_SCHEMA,
}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _json(content: Any) -> JSONResponse:
    return JSONResponse(content, media_type=JSON)


def _scope(creds: Credentials, collection_id: str, conn: ConnDep) -> str | None:
    """The code prefix that limits a collection of cases to the user's scope. A scoped
    request reads in one snapshot (whether the scope covers everything is asked first)."""
    if collection_id == "cases" and creds.principal is not None:
        if creds.principal.scope.prefix:
            conn.execution_options(isolation_level="REPEATABLE READ")
        return creds.principal.scope.prefix
    return None


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


@router.get(
    "",
    dependencies=[Depends(allow("public.read"))],
    summary="Landing page",
    openapi_extra={"parameters": [_F], "responses": _ERRORS},
    response_class=JSONResponse,
)
def landing(request: Request) -> JSONResponse:
    """The landing page: links to the API definition, conformance and collections."""
    features.reject_unknown(_params(request), ["f"], "the landing page")
    base = _base(request)
    return _json(
        {
            "title": "geogrid OGC API – Features",
            "description": (
                "Public map layers of township grid management: towns, villages, villager "
                "groups, grids of the active plans, cases, key units, fire inspection points."
            ),
            "links": [
                {"href": base, "rel": "self", "type": JSON, "title": "this document"},
                {
                    "href": f"{base}/api",
                    "rel": "service-desc",
                    "type": OPENAPI_30,
                    "title": "the API definition (OpenAPI 3.0)",
                },
                {
                    "href": str(request.base_url).rstrip("/") + "/docs",
                    "rel": "service-doc",
                    "type": "text/html",
                    "title": "the API documentation",
                },
                {
                    "href": f"{base}/conformance",
                    "rel": "conformance",
                    "type": JSON,
                    "title": "conformance classes",
                },
                {
                    "href": f"{base}/conformance",
                    "rel": "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                    "type": JSON,
                    "title": "conformance classes",
                },
                {
                    "href": f"{base}/collections",
                    "rel": "data",
                    "type": JSON,
                    "title": "collections",
                },
                {
                    "href": f"{base}/collections",
                    "rel": "http://www.opengis.net/def/rel/ogc/1.0/data",
                    "type": JSON,
                    "title": "collections",
                },
            ],
        }
    )


@router.get(
    "/api",
    dependencies=[Depends(allow("public.read"))],
    summary="API definition (OpenAPI 3.0)",
    openapi_extra={
        "parameters": [_F],
        "responses": {
            "200": {
                "description": "The OpenAPI 3.0 document.",
                "content": {OPENAPI_30: {"schema": {"type": "object"}}},
            },
            **_ERRORS,
        },
    },
    response_class=JSONResponse,
)
def api_definition(request: Request) -> JSONResponse:
    """This API's definition as an OpenAPI 3.0.3 document."""
    features.reject_unknown(_params(request), ["f"], "the API definition")
    state = request.app.state
    doc = getattr(state, "ogc_openapi", None)
    if doc is None:
        doc = state.ogc_openapi = build_openapi()
    out = copy.copy(doc)
    out["servers"] = [{"url": str(request.base_url).rstrip("/")}]
    return JSONResponse(out, media_type=OPENAPI_30)


@router.get(
    "/conformance",
    dependencies=[Depends(allow("public.read"))],
    summary="Conformance classes",
    openapi_extra={"parameters": [_F], "responses": _ERRORS},
    response_class=JSONResponse,
)
def conformance(request: Request) -> JSONResponse:
    """The conformance classes this API implements."""
    features.reject_unknown(_params(request), ["f"], "conformance")
    return _json({"conformsTo": list(CONFORMANCE)})


def _extent(request: Request, conn: ConnDep, coll: features.Collection) -> dict[str, Any]:
    """The collection's extent, cached per layer data version."""
    state = request.app.state
    cache: dict[tuple[str, int], dict[str, Any]] | None = getattr(state, "ogc_extents", None)
    if cache is None:
        cache = state.ogc_extents = {}
    version = features.layer_versions(conn).get(coll.layer, 0)
    key = (coll.id, version)
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        cache[key] = features.collection_extent(conn, coll)
    return cache[key]


@router.get(
    "/collections",
    dependencies=[Depends(allow("public.read"))],
    summary="Feature collections",
    openapi_extra={"parameters": [_F], "responses": _ERRORS},
    response_class=JSONResponse,
)
def collections(request: Request, conn: ConnDep, creds: CredentialsDep) -> JSONResponse:
    """Every collection the request may see, with its extent and links."""
    features.reject_unknown(_params(request), ["f"], "collections")
    base = _base(request)
    docs = [
        features.collection_document(conn, c, base=base, extent=_extent(request, conn, c))
        for c in COLLECTIONS.values()
        if may_see_layer(request, creds, c.id)
    ]
    return _json(
        {
            "links": [
                {"href": f"{base}/collections", "rel": "self", "type": JSON, "title": "this"}
            ],
            "collections": docs,
        }
    )


@router.get(
    "/collections/{collectionId}",
    dependencies=[Depends(allow("layer.read"))],
    summary="A feature collection",
    openapi_extra={"parameters": [_F], "responses": _ERRORS},
    response_class=JSONResponse,
)
def collection(
    collectionId: str,  # noqa: N803
    request: Request,
    conn: ConnDep,
    creds: CredentialsDep,
) -> JSONResponse:
    """One collection: extent (CRS84 bbox, temporal interval), item type, links."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    features.reject_unknown(_params(request), ["f"], f"collection {coll.id!r}")
    doc = features.collection_document(
        conn, coll, base=_base(request), extent=_extent(request, conn, coll)
    )
    return _json(doc)


@router.get(
    "/collections/{collectionId}/items",
    dependencies=[Depends(allow("layer.read"))],
    summary="Features of a collection",
    openapi_extra={
        "parameters": _ITEMS_PARAMS,
        "responses": {
            "200": {
                "description": "A page of features (GeoJSON).",
                "content": {
                    GEOJSON: {"schema": {"$ref": "#/components/schemas/featureCollection"}}
                },
            },
            **_ERRORS,
        },
    },
    response_class=Response,
)
def items(
    collectionId: str,  # noqa: N803
    request: Request,
    conn: ConnDep,
    creds: CredentialsDep,
) -> Response:
    """Features filtered by bbox, datetime and properties, paged by limit/offset."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    query = features.parse_items_query(coll, _params(request))
    body = features.items_page(
        conn, coll, query, base=_base(request), scope_prefix=_scope(creds, coll.id, conn)
    )
    return Response(body, media_type=GEOJSON)


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    dependencies=[Depends(allow("layer.read"))],
    summary="One feature",
    openapi_extra={
        "parameters": [_F],
        "responses": {
            "200": {
                "description": "The feature (GeoJSON).",
                "content": {GEOJSON: {"schema": {"$ref": "#/components/schemas/feature"}}},
            },
            **_ERRORS,
        },
    },
    response_class=Response,
)
def item(
    collectionId: str,  # noqa: N803
    featureId: str,  # noqa: N803
    request: Request,
    conn: ConnDep,
    creds: CredentialsDep,
) -> Response:
    """One feature by id (404 when absent)."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    features.reject_unknown(_params(request), ["f"], f"feature {featureId!r}")
    body = features.get_feature(
        conn, coll, featureId, base=_base(request), scope_prefix=_scope(creds, coll.id, conn)
    )
    return Response(body, media_type=GEOJSON)


# ---------------------------------------------------------------------------
# OpenAPI 3.0
# ---------------------------------------------------------------------------


def openapi_30(node: Any) -> Any:
    """Convert an OpenAPI 3.1 (JSON Schema 2020-12) fragment to OpenAPI 3.0.

    Type arrays and ``anyOf`` with ``{"type": "null"}`` become ``nullable``; ``const``
    becomes a one-value ``enum``; ``examples`` becomes ``example``; numeric
    ``exclusiveMinimum``/``exclusiveMaximum`` become booleans with ``minimum``/``maximum``.

    >>> openapi_30({"anyOf": [{"type": "string"}, {"type": "null"}], "title": "T"})
    {'nullable': True, 'type': 'string', 'title': 'T'}
    >>> openapi_30({"type": ["integer", "null"], "exclusiveMinimum": 0})
    {'nullable': True, 'type': 'integer', 'minimum': 0, 'exclusiveMinimum': True}
    """
    if isinstance(node, list):
        return [openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("anyOf", "oneOf") and isinstance(value, list):
            kept = [v for v in value if v != {"type": "null"}]
            if len(kept) < len(value):
                out["nullable"] = True
            if len(kept) == 1:
                out.update(openapi_30(kept[0]))
            else:
                out[key] = openapi_30(kept)
        elif key == "type" and isinstance(value, list):
            kinds = [v for v in value if v != "null"]
            if len(kinds) < len(value):
                out["nullable"] = True
            if len(kinds) == 1:
                out["type"] = kinds[0]
            else:
                out["oneOf"] = [{"type": k} for k in kinds]
        elif key == "const":
            out["enum"] = [value]
        elif key == "examples" and isinstance(value, list) and "schema" not in node:
            if value:
                out["example"] = openapi_30(value[0])
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key in ("$schema", "contentMediaType", "contentEncoding", "prefixItems"):
            continue
        else:
            out[key] = openapi_30(value)
    return out


def _prop_schema(prop: features.Property) -> dict[str, Any]:
    if prop.type == "integer":
        return {"type": "integer"}
    if prop.type in ("date-time", "date"):
        return {"type": "string", "format": prop.type}
    return {"type": "string"}


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the ``/ogc`` endpoints.

    One ``/ogc/collections/{id}/items`` path per collection documents that collection's
    filter parameters (each queryable property) and says whether ``datetime`` applies.
    """
    doc = get_openapi(
        title="geogrid OGC API – Features",
        version=__version__,
        openapi_version="3.0.3",
        description=(
            "OGC API – Features – Part 1: Core, GeoJSON, OpenAPI 3.0. Coordinates are CRS84 "
            "(longitude, latitude). Unknown or invalid query parameters are answered 400."
        ),
        routes=router.routes,
    )
    doc = openapi_30(doc)
    for path in doc["paths"].values():
        for op in path.values():
            op.get("responses", {}).pop("422", None)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    generic = doc["paths"][f"{router.prefix}/collections/{{collectionId}}/items"]["get"]
    for coll in COLLECTIONS.values():
        params = [p for p in _ITEMS_PARAMS if coll.time is not None or p["name"] != "datetime"]
        params = [copy.deepcopy(p) for p in params]
        for prop in coll.queryables.values():
            params.append(
                {
                    "name": prop.name,
                    "in": "query",
                    "required": False,
                    "description": f"Only features whose {prop.name} equals this value.",
                    "schema": _prop_schema(prop),
                    "style": "form",
                    "explode": False,
                }
            )
        op = copy.deepcopy(generic)
        op["operationId"] = f"items_{coll.id}"
        op["summary"] = f"{coll.title}: features"
        op["parameters"] = params
        doc["paths"][f"{router.prefix}/collections/{coll.id}/items"] = {"get": op}
    return dict(doc)
