"""OGC API – Features (Parts 1, 2 and 3) and OGC API – Tiles at ``/ogc``.

Routes are thin: the query string goes, unparsed, to :mod:`geogrid.ogcapi.query`, which
validates it (an unknown or invalid parameter is a 400 with an OGC exception body
``{"code": "InvalidParameterValue", "description": …}``, not FastAPI's 422), and
:mod:`geogrid.ogcapi.items` builds the pages. The landing page answers at ``/ogc`` and
``/ogc/`` alike (no redirect). The API definition for the ``oas30`` conformance class is
served at ``/ogc/api`` as an OpenAPI **3.0.3** document (:mod:`api.routes.ogc_openapi`)
whose paths are relative to its server URL ``{root}/ogc``. Tiles: :mod:`api.routes.ogc_tiles`.
The landing page, conformance, collections, a collection, items and an item are pages too
(``f=html`` or a browser's ``Accept``; :mod:`api.routes.ogc_html`), and every JSON answer
of theirs links its page (``rel=alternate``, ``text/html``).

Every collection and tile set is a layer of the access rules: ``layer.read`` plus
:func:`api.auth.check_layer` (public layers, embed tokens, signed-in users; cases within
the user's scope).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection

from api.auth import Credentials, CredentialsDep, allow, check_layer, may_see_layer
from api.deps import ConnDep
from api.routes import ogc_html, ogc_tiles
from api.routes.ogc_html import HTML_CONFORMANCE, html_link, strip_lang, wants_html, with_format
from api.routes.ogc_openapi import (
    _ERRORS,
    _F,
    _F_JSON,
    _ITEMS_PARAMS,
    HTML_200,
    OPENAPI_30,
    SCHEMAS,
    build_openapi,
)
from api.routes.ogc_router import router
from geogrid import features
from geogrid.features import COLLECTIONS, CONFORMANCE, GEOJSON, JSON, REL_QUERYABLES, SCHEMA_JSON
from geogrid.i18n import t
from geogrid.ogcapi import items as pages
from geogrid.ogcapi.cql import GEOMETRY
from geogrid.ogcapi.crs import STORAGE, parse_crs
from geogrid.ogcapi.query import HTML_FORMATS, parse_items_query, reject_unknown

__all__ = ["SCHEMAS", "router"]


_OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _base(request: Request) -> str:
    return _root(request) + router.prefix


#: The answers of resources that are pages too depend on ``Accept`` (caches must know).
_VARY = {"Vary": "Accept"}


def _json(content: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(content, media_type=JSON, headers={**_VARY, **(headers or {})})


def _scope(creds: Credentials, collection_id: str, conn: ConnDep) -> str | None:
    """The code prefix that limits a collection of cases to the user's scope. A scoped
    request reads in one snapshot (whether the scope covers everything is asked first)."""
    if collection_id == "cases" and creds.principal is not None:
        if creds.principal.scope.prefix:
            conn.execution_options(isolation_level="REPEATABLE READ")
        return creds.principal.scope.prefix
    return None


def _read(request: Request, conn: Connection, coll: features.Collection, fn: Any) -> Any:
    """``fn(c)`` on a read replica that reached the collection's layer version (read from
    the primary; see :mod:`geogrid.ops.replica_pool`), else on ``conn`` (the primary)."""
    reads = getattr(request.app.state, "reads", None)
    if reads is None:
        return fn(conn)
    version = request.app.state.tiles.watcher.current().versions.get(coll.layer, 0)
    return reads.run(fn, needs={coll.layer: version}, primary=conn)


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
            html_link(base),
        ],
    }


_LANDING = {
    "dependencies": [Depends(allow("public.read"))],
    "openapi_extra": {"parameters": [_F], "responses": {**HTML_200, **_ERRORS}},
    "response_class": JSONResponse,
}


def _page_params(request: Request, where: str) -> tuple[bool, list[tuple[str, str]]]:
    """(whether to answer a page, the query string) of a resource that is a page too:
    ``lang`` is the page's language there, not a parameter; anything else unknown is a 400."""
    html = wants_html(request)
    params = strip_lang(_params(request), html)
    reject_unknown(params, ["f"], where, HTML_FORMATS)
    return html, params


@router.get("", summary="Landing page", **_LANDING)  # type: ignore[arg-type]
def landing(request: Request) -> Response:
    """The landing page: links to the API definition, conformance and collections."""
    html, _ = _page_params(request, "the landing page")
    if html:
        base = _base(request)
        return ogc_html.page(
            request, "ogc_landing.html", title_key="ogc.title",
            json_href=with_format(base, [], "json"),
        )  # fmt: skip
    return _json(_landing_doc(request))


@router.get("/", summary="Landing page", include_in_schema=False, **_LANDING)  # type: ignore[arg-type]
def landing_slash(request: Request) -> Response:
    """The landing page at ``/ogc/`` too (a client that does not follow redirects)."""
    return landing(request)


@router.get(
    "/api",
    dependencies=[Depends(allow("public.read"))],
    summary="API definition (OpenAPI 3.0)",
    openapi_extra={
        "parameters": [_F_JSON],
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
    openapi_extra={"parameters": [_F], "responses": {**HTML_200, **_ERRORS}},
    response_class=JSONResponse,
)
def conformance(request: Request) -> Response:
    """The conformance classes this API implements."""
    html, _ = _page_params(request, "conformance")
    classes = [*CONFORMANCE, HTML_CONFORMANCE, *ogc_tiles.CONFORMANCE]
    href = f"{_base(request)}/conformance"
    if html:
        return ogc_html.page(
            request, "ogc_conformance.html", title_key="ogc.nav.conformance",
            json_href=with_format(href, [], "json"), classes=classes,
        )  # fmt: skip
    links = [features.link(href, "self", JSON, "this document"), html_link(href)]
    return _json({"conformsTo": classes, "links": links})


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
    doc["links"].append(html_link(f"{base}/collections/{coll.id}"))
    return doc


@router.get(
    "/collections",
    dependencies=[Depends(allow("public.read"))],
    summary="Feature collections",
    openapi_extra={"parameters": [_F], "responses": {**HTML_200, **_ERRORS}},
    response_class=JSONResponse,
)
def collections(request: Request, conn: ConnDep, creds: CredentialsDep) -> Response:
    """Every collection the request may see, with its extent and links."""
    html, _ = _page_params(request, "collections")
    base = _base(request)
    docs = [
        _collection_doc(request, conn, c)
        for c in COLLECTIONS.values()
        if may_see_layer(request, creds, c.id)
    ]
    href = f"{base}/collections"
    if html:
        return ogc_html.page(
            request, "ogc_collections.html", title_key="ogc.nav.collections",
            json_href=with_format(href, [], "json"), collections=docs,
        )  # fmt: skip
    links = [features.link(href, "self", JSON, "this document"), html_link(href)]
    return _json({"links": links, "collections": docs})


@router.get(
    "/collections/{collectionId}",
    dependencies=[Depends(allow("layer.read"))],
    summary="A feature collection",
    openapi_extra={"parameters": [_F], "responses": {**HTML_200, **_ERRORS}},
    response_class=JSONResponse,
)
def collection(
    collectionId: str,  # noqa: N803
    request: Request,
    conn: ConnDep,
    creds: CredentialsDep,
) -> Response:
    """One collection: extent (CRS84 bbox, temporal interval), CRS list, item type, links."""
    coll = features.get_collection(collectionId)
    check_layer(request, creds, coll.id)
    html, _ = _page_params(request, f"collection {coll.id!r}")
    doc = _collection_doc(request, conn, coll)
    if html:
        return _collection_page(request, doc)
    return _json(doc)


def _collection_page(request: Request, doc: dict[str, Any]) -> Response:
    lang = ogc_html.lang_of(request)
    interval = doc["extent"].get("temporal", {}).get("interval", [[]])[0]
    open_ = t("ogc.collection.open", lang)
    return ogc_html.page(
        request, "ogc_collection.html",
        title_key="", title=t(f"ogc.collection.{doc['id']}", lang),
        json_href=with_format(f"{_base(request)}/collections/{doc['id']}", [], "json"),
        doc=doc,
        bbox=", ".join(f"{v:.6f}" for v in doc["extent"]["spatial"]["bbox"][0]),
        interval=" – ".join(v or open_ for v in interval) if interval else "",
    )  # fmt: skip


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
        "parameters": [_F_JSON],
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
                    GEOJSON: {"schema": {"$ref": "#/components/schemas/featureCollection"}},
                    ogc_html.HTML: {"schema": {"type": "string"}},
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
    html = wants_html(request)
    params = strip_lang(_params(request), html)
    query = parse_items_query(coll, params)
    base = _base(request)
    if html:  # the map draws CRS84
        query = dataclasses.replace(query, crs=STORAGE)
    scope = _scope(creds, coll.id, conn)
    body = _read(request, conn, coll, lambda c: pages.items_page(c, coll, query, base=base,
                                                                 scope_prefix=scope))  # fmt: skip
    if html:
        return _items_page(request, coll, query, params, json.loads(body))
    href = f"{base}/collections/{coll.id}"
    head = [
        features.link(f"{href}/items", "self", GEOJSON, "this collection's items"),
        features.link(f"{href}/items?f=json", "alternate", JSON, "as JSON"),
        html_link(f"{href}/items"),
        features.link(f"{href}/queryables", REL_QUERYABLES, SCHEMA_JSON, "queryables"),
    ]
    headers = {"Content-Crs": f"<{query.crs.uri}>", "Link": _link_header(head), **_VARY}
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
                "content": {
                    GEOJSON: {"schema": {"$ref": "#/components/schemas/feature"}},
                    ogc_html.HTML: {"schema": {"type": "string"}},
                },
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
    html = wants_html(request)
    params = strip_lang(_params(request), html)
    reject_unknown(params, ["f", "crs"], f"feature {featureId!r}", HTML_FORMATS)
    crs = parse_crs(dict(params)["crs"], "crs") if "crs" in dict(params) and not html else STORAGE
    scope, base = _scope(creds, coll.id, conn), _base(request)
    body = _read(request, conn, coll, lambda c: pages.get_feature(
        c, coll, featureId, base=base, crs=crs, scope_prefix=scope))  # fmt: skip
    if html:
        return _item_page(request, coll, json.loads(body))
    return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{crs.uri}>", **_VARY})


def _value(v: Any) -> str:
    return "—" if v is None else str(v)


def _as_page(href: str) -> str:
    """A paging link of the JSON page, as the page's own link (``f=html``)."""
    parts = urlsplit(href)
    return ogc_html.local(with_format(href.split("?", 1)[0], parse_qsl(parts.query), "html"))


def _items_page(
    request: Request,
    coll: features.Collection,
    query: Any,
    params: list[tuple[str, str]],
    fc: dict[str, Any],
) -> Response:
    """A page of items: its features on a map and in a table, with its paging links."""
    lang = ogc_html.lang_of(request)
    base = _base(request)
    href = f"{base}/collections/{coll.id}/items"
    item = ogc_html.local(f"{href}/{{id}}?f=html")
    links = {x["rel"]: x["href"] for x in fc["links"]}
    chosen = query.properties
    names = [p.name for p in coll.properties if chosen is None or p.name in chosen]
    rows = [
        {
            "id": f["id"],
            "href": item.replace("{id}", str(f["id"])),
            "values": [_value(f["properties"].get(n)) for n in names],
        }
        for f in fc["features"]
    ]
    first = query.offset + 1 if query.cursor is None else None
    if not rows:
        summary = t("ogc.items.none", lang)
    elif "numberMatched" in fc and first is not None:
        summary = t(
            "ogc.items.summary", lang, matched=fc["numberMatched"], first=first,
            last=first + len(rows) - 1,
        )  # fmt: skip
    else:
        start = first if first is not None else "…"
        summary = t("ogc.items.summary_open", lang, first=start, last="…")
    title = t("ogc.items.title", lang, collection=t(f"ogc.collection.{coll.id}", lang))
    data = {
        "geojson": {"type": "FeatureCollection", "features": fc["features"]},
        "itemHref": item,
    }
    return ogc_html.page(
        request, "ogc_items.html", title_key="", title=title, data=data,
        json_href=with_format(href, params, "json"), props=names, rows=rows,
        summary=summary,
        next_href=_as_page(links["next"]) if "next" in links else None,
        prev_href=_as_page(links["prev"]) if "prev" in links else None,
    )  # fmt: skip


def _item_page(request: Request, coll: features.Collection, feature: dict[str, Any]) -> Response:
    """One feature: on a map, with its properties."""
    lang = ogc_html.lang_of(request)
    href = f"{_base(request)}/collections/{coll.id}/items/{feature['id']}"
    title = t(
        "ogc.item.title", lang, collection=t(f"ogc.collection.{coll.id}", lang), id=feature["id"]
    )
    data = {"geojson": {k: v for k, v in feature.items() if k != "links"}, "itemHref": None}
    return ogc_html.page(
        request, "ogc_item.html", title_key="", title=title, data=data,
        json_href=with_format(href, [], "json"), feature=feature, collection_id=coll.id,
        props=[(k, _value(v)) for k, v in feature["properties"].items()],
    )  # fmt: skip
