"""OGC API – Features (Parts 1, 2 and 3) and OGC API – Tiles at ``/ogc``.

Routes are thin: the query string goes, unparsed, to :mod:`geogrid.ogcapi.query`, which
validates it (an unknown or invalid parameter is a 400 with an OGC exception body
``{"code": "InvalidParameterValue", "description": …}``, not FastAPI's 422), and
:mod:`geogrid.ogcapi.items` builds the pages. The landing page answers at ``/ogc`` and
``/ogc/`` alike (no redirect). The API definition for the ``oas30`` conformance class is
served at ``/ogc/api`` as an OpenAPI **3.0.3** document (:mod:`api.routes.ogc_openapi`)
whose paths are relative to its server URL ``{root}/ogc``. Tiles: :mod:`api.routes.ogc_tiles`.

Every collection and tile set is a layer of the access rules: ``layer.read`` plus
:func:`api.auth.check_layer` (public layers, embed tokens, signed-in users; cases within
the user's scope).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from api.auth import Credentials, CredentialsDep, allow, check_layer, may_see_layer
from api.deps import ConnDep
from api.routes import ogc_tiles
from api.routes.ogc_openapi import _ERRORS, _F, _ITEMS_PARAMS, OPENAPI_30, SCHEMAS, build_openapi
from api.routes.ogc_router import router
from geogrid import features
from geogrid.features import COLLECTIONS, CONFORMANCE, GEOJSON, JSON, REL_QUERYABLES, SCHEMA_JSON
from geogrid.ogcapi import items as pages
from geogrid.ogcapi.cql import GEOMETRY
from geogrid.ogcapi.crs import STORAGE, parse_crs
from geogrid.ogcapi.query import parse_items_query, reject_unknown

__all__ = ["SCHEMAS", "router"]


_OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _base(request: Request) -> str:
    return _root(request) + router.prefix


def _json(content: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(content, media_type=JSON, headers=headers)


def _scope(creds: Credentials, collection_id: str, conn: ConnDep) -> str | None:
    """The code prefix that limits a collection of cases to the user's scope. A scoped
    request reads in one snapshot (whether the scope covers everything is asked first)."""
    if collection_id == "cases" and creds.principal is not None:
        if creds.principal.scope.prefix:
            conn.execution_options(isolation_level="REPEATABLE READ")
        return creds.principal.scope.prefix
    return None


def _params(request: Request) -> list[tuple[str, str]]:
    """The query string, less the embed token (a credential, not a query parameter)."""
    return [(k, v) for k, v in request.query_params.multi_items() if k != "embed_token"]


def _link_header(links: list[dict[str, str]]) -> str:
    """RFC 8288 ``Link`` header of a document's links (relation types unquoted, as the
    RFC 5988 grammar allows for URIs; hrefs carry no commas: query values are encoded)."""
    return ", ".join(f'<{x["href"]}>; rel={x["rel"]}; type="{x["type"]}"' for x in links)


def _landing_doc(request: Request) -> dict[str, Any]:
    base = _base(request)
    link = features.link
    return {
        "title": "geogrid OGC API – Features",
        "description": (
            "Public map layers of township grid management: towns, villages, villager "
            "groups, grids of the active plans, cases, key units, fire inspection points."
        ),
        "links": [
            link(base, "self", JSON, "this document"),
            link(f"{base}/api", "service-desc", OPENAPI_30, "the API definition (OpenAPI 3.0)"),
            link(f"{_root(request)}/docs", "service-doc", "text/html", "the API documentation"),
            link(f"{base}/conformance", "conformance", JSON, "conformance classes"),
            link(f"{base}/conformance", f"{_OGC_REL}conformance", JSON, "conformance classes"),
            link(f"{base}/collections", "data", JSON, "collections"),
            link(f"{base}/collections", f"{_OGC_REL}data", JSON, "collections"),
            link(f"{base}/tileMatrixSets", f"{_OGC_REL}tiling-schemes", JSON, "tiling schemes"),
        ],
    }


_LANDING = {
    "dependencies": [Depends(allow("public.read"))],
    "openapi_extra": {"parameters": [_F], "responses": _ERRORS},
    "response_class": JSONResponse,
}


@router.get("", summary="Landing page", **_LANDING)  # type: ignore[arg-type]
def landing(request: Request) -> JSONResponse:
    """The landing page: links to the API definition, conformance and collections."""
    reject_unknown(_params(request), ["f"], "the landing page")
    return _json(_landing_doc(request))


@router.get("/", summary="Landing page", include_in_schema=False, **_LANDING)  # type: ignore[arg-type]
def landing_slash(request: Request) -> JSONResponse:
    """The landing page at ``/ogc/`` too (a client that does not follow redirects)."""
    return landing(request)


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
    reject_unknown(_params(request), ["f"], "the API definition")
    state = request.app.state
    doc = getattr(state, "ogc_openapi", None)
    if doc is None:
        doc = state.ogc_openapi = build_openapi(router.routes, router.prefix)
    out = copy.copy(doc)
    out["servers"] = [{"url": _base(request)}]
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
    reject_unknown(_params(request), ["f"], "conformance")
    return _json({"conformsTo": [*CONFORMANCE, *ogc_tiles.CONFORMANCE]})


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


def _collection_doc(request: Request, conn: ConnDep, coll: features.Collection) -> dict[str, Any]:
    base = _base(request)
    doc = features.collection_document(conn, coll, base=base, extent=_extent(request, conn, coll))
    doc["links"].extend(ogc_tiles.collection_links(base, coll.id))
    return doc


@router.get(
    "/collections",
    dependencies=[Depends(allow("public.read"))],
    summary="Feature collections",
    openapi_extra={"parameters": [_F], "responses": _ERRORS},
    response_class=JSONResponse,
)
def collections(request: Request, conn: ConnDep, creds: CredentialsDep) -> JSONResponse:
    """Every collection the request may see, with its extent and links."""
    reject_unknown(_params(request), ["f"], "collections")
    base = _base(request)
    docs = [
        _collection_doc(request, conn, c)
        for c in COLLECTIONS.values()
        if may_see_layer(request, creds, c.id)
    ]
    return _json(
        {
            "links": [features.link(f"{base}/collections", "self", JSON, "this document")],
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
    """One collection: extent (CRS84 bbox, temporal interval), CRS list, item type, links."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    reject_unknown(_params(request), ["f"], f"collection {coll.id!r}")
    return _json(_collection_doc(request, conn, coll))


_GEOMETRY_FORMAT = {
    "Point": "geometry-point",
    "MultiPolygon": "geometry-multipolygon",
    "Polygon": "geometry-polygon",
}


def queryables_document(coll: features.Collection, url: str) -> dict[str, Any]:
    """JSON Schema of a collection's queryables: its public properties and ``geometry``."""
    props: dict[str, Any] = {
        GEOMETRY: {
            "title": "geometry",
            "format": _GEOMETRY_FORMAT.get(coll.geometry_type, "geometry-any"),
            "x-ogc-role": "primary-geometry",
        }
    }
    for p in coll.properties:
        kind = p.type if p.type in ("integer", "number", "boolean") else "string"
        schema: dict[str, Any] = {"title": p.name, "type": kind}
        if p.type in ("date-time", "date"):
            schema["format"] = p.type
        if p.description:
            schema["description"] = p.description
        props[p.name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": f"{coll.title}: queryables",
        "properties": props,
        "additionalProperties": False,
    }


@router.get(
    "/collections/{collectionId}/queryables",
    dependencies=[Depends(allow("layer.read"))],
    summary="Queryables of a collection (JSON Schema)",
    openapi_extra={
        "parameters": [_F],
        "responses": {
            "200": {
                "description": "The queryable properties (JSON Schema).",
                "content": {SCHEMA_JSON: {"schema": {"$ref": "#/components/schemas/queryables"}}},
            },
            **_ERRORS,
        },
    },
    response_class=JSONResponse,
)
def queryables(
    collectionId: str,  # noqa: N803
    request: Request,
    creds: CredentialsDep,
) -> JSONResponse:
    """The properties a filter (and ``?name=value``) may use, as a JSON Schema."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    reject_unknown(_params(request), ["f"], f"queryables of {coll.id!r}")
    url = f"{_base(request)}/collections/{coll.id}/queryables"
    return JSONResponse(queryables_document(coll, url), media_type=SCHEMA_JSON)


@router.get(
    "/collections/{collectionId}/items",
    dependencies=[Depends(allow("layer.read"))],
    summary="Features of a collection",
    openapi_extra={
        "parameters": _ITEMS_PARAMS,
        "responses": {
            "200": {
                "description": "A page of features (GeoJSON), in the CRS of Content-Crs.",
                "headers": {"Content-Crs": {"schema": {"type": "string"}}},
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
    """Features filtered by bbox, datetime, properties and CQL2, sorted, paged by cursor."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    query = parse_items_query(coll, _params(request))
    base = _base(request)
    body = pages.items_page(conn, coll, query, base=base, scope_prefix=_scope(creds, coll.id, conn))
    href = f"{base}/collections/{coll.id}"
    head = [
        features.link(f"{href}/items", "self", GEOJSON, "this collection's items"),
        features.link(f"{href}/items?f=json", "alternate", JSON, "as JSON"),
        features.link(f"{href}/queryables", REL_QUERYABLES, SCHEMA_JSON, "queryables"),
    ]
    headers = {"Content-Crs": f"<{query.crs.uri}>", "Link": _link_header(head)}
    return Response(body, media_type=GEOJSON, headers=headers)


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    dependencies=[Depends(allow("layer.read"))],
    summary="One feature",
    openapi_extra={
        "parameters": [p for p in _ITEMS_PARAMS if p["name"] == "crs"] + [_F],
        "responses": {
            "200": {
                "description": "The feature (GeoJSON), in the CRS of Content-Crs.",
                "headers": {"Content-Crs": {"schema": {"type": "string"}}},
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
    params = _params(request)
    reject_unknown(params, ["f", "crs"], f"feature {featureId!r}")
    crs = parse_crs(dict(params)["crs"], "crs") if "crs" in dict(params) else STORAGE
    body = pages.get_feature(
        conn,
        coll,
        featureId,
        base=_base(request),
        crs=crs,
        scope_prefix=_scope(creds, coll.id, conn),
    )
    return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{crs.uri}>"})
