"""The OGC API definition (``/ogc/api``): an OpenAPI **3.0.3** document for ``oas30``.

FastAPI emits OpenAPI 3.1; :func:`build_openapi` takes FastAPI's document of the ``/ogc``
router, converts it (:func:`openapi_30`), drops FastAPI's 422 answers, defines every
schema its responses refer to (:data:`SCHEMAS`), adds one ``items`` path per collection
listing that collection's parameters, and writes paths relative to the server URL
``{root}/ogc`` (the landing page is ``/``).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi.openapi.utils import get_openapi

from geogrid import __version__, features
from geogrid.features import COLLECTIONS, JSON
from geogrid.ogcapi.cql import LANGS
from geogrid.ogcapi.crs import CRS84, SUPPORTED
from geogrid.ogcapi.query import MAX_OFFSET

OPENAPI_30 = "application/vnd.oai.openapi+json;version=3.0"

_F = {
    "name": "f",
    "in": "query",
    "required": False,
    "description": (
        "Response format: json (GeoJSON for features) or html (a page; also chosen by an "
        "Accept header preferring text/html). Anything else is a 400."
    ),
    "schema": {"type": "string", "enum": ["json", "geojson", "html"]},
    "style": "form",
    "explode": False,
}
#: ``f`` of the resources that are not pages (the API definition, queryables).
_F_JSON = {
    **_F,
    "description": "Response format: json. Anything else is a 400.",
    "schema": {"type": "string", "enum": ["json", "geojson"]},
}
#: The page variant of a 200 answer (merged into the JSON one).
HTML_200 = {"200": {"content": {"text/html": {"schema": {"type": "string"}}}}}
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
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
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
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": (
            "Where a page starts (keyset paging): follow the next/prev links, which carry "
            "it. With a cursor, offset only numbers the page (nothing is skipped)."
        ),
        "schema": {"type": "string"},
        "style": "form",
        "explode": False,
    },
    {
        "name": "bbox-crs",
        "in": "query",
        "required": False,
        "description": "CRS of bbox (axis order of that CRS; default CRS84).",
        "schema": {"type": "string", "format": "uri", "enum": list(SUPPORTED)},
        "style": "form",
        "explode": False,
    },
    {
        "name": "crs",
        "in": "query",
        "required": False,
        "description": "CRS of the geometries in the answer (see Content-Crs).",
        "schema": {"type": "string", "format": "uri", "enum": list(SUPPORTED), "default": CRS84},
        "style": "form",
        "explode": False,
    },
    {
        "name": "filter",
        "in": "query",
        "required": False,
        "description": "A CQL2 filter over the collection's queryables (see /queryables).",
        "schema": {"type": "string"},
        "style": "form",
        "explode": False,
    },
    {
        "name": "filter-lang",
        "in": "query",
        "required": False,
        "description": "Language of filter (cql-text: CQL2 text under its draft name).",
        "schema": {"type": "string", "enum": list(LANGS), "default": "cql2-text"},
        "style": "form",
        "explode": False,
    },
    {
        "name": "filter-crs",
        "in": "query",
        "required": False,
        "description": "CRS of the geometry literals in filter (default CRS84).",
        "schema": {"type": "string", "format": "uri", "enum": list(SUPPORTED)},
        "style": "form",
        "explode": False,
    },
    {
        "name": "sortby",
        "in": "query",
        "required": False,
        "description": "Comma-separated properties, '-' before a name sorts descending.",
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": False,
    },
    {
        "name": "properties",
        "in": "query",
        "required": False,
        "description": "Comma-separated properties to include (default: all).",
        "schema": {"type": "array", "items": {"type": "string"}},
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

_QUERYABLES_SCHEMA = {
    "type": "object",
    "required": ["$schema", "type", "properties"],
    "properties": {
        "$schema": {"type": "string"},
        "$id": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
        "properties": {"type": "object"},
        "additionalProperties": {"type": "boolean"},
    },
}

#: Schemas the responses above refer to (added to this document and to the app's).
SCHEMAS: dict[str, dict[str, Any]] = {
    "exception": _EXCEPTION_SCHEMA,
    "queryables": _QUERYABLES_SCHEMA,
    "featureCollection": _FC_SCHEMA,
    "feature": _FEATURE_SCHEMA,
    "link": _LINK_SCHEMA,
}


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
    if prop.type in ("integer", "number", "boolean"):
        return {"type": prop.type}
    if prop.type in ("date-time", "date"):
        return {"type": "string", "format": prop.type}
    return {"type": "string"}


def build_openapi(routes: list[Any], prefix: str) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the ``/ogc`` endpoints (``routes`` under ``prefix``).

    Paths are relative to the server URL ``{root}{prefix}``. One
    ``/collections/{id}/items`` path per collection documents that collection's filter
    parameters (each queryable property) and says whether ``datetime`` applies.
    """
    doc = get_openapi(
        title="geogrid OGC API – Features",
        version=__version__,
        openapi_version="3.0.3",
        description=(
            "OGC API – Features – Part 1 (core, GeoJSON, OpenAPI 3.0), Part 2 (CRS: CRS84, "
            "EPSG:4326, EPSG:4490, EPSG:3857, CGCS2000 Gauss-Krüger zones), Part 3 (CQL2 "
            "text and JSON filters, queryables) and OGC API – Tiles (WebMercatorQuad "
            "vector tiles). Unknown or invalid query parameters are answered 400."
        ),
        routes=routes,
    )
    doc = openapi_30(doc)
    doc["paths"] = {
        (path[len(prefix) :] or "/"): item
        for path, item in doc["paths"].items()
        if path.startswith(prefix)
    }
    for path in doc["paths"].values():
        for op in path.values():
            op.get("responses", {}).pop("422", None)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    generic = doc["paths"]["/collections/{collectionId}/items"]["get"]
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
        doc["paths"][f"/collections/{coll.id}/items"] = {"get": op}
    return dict(doc)
