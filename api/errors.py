"""One table from domain errors to HTTP status codes; one JSON error body.

Every error answer has the :class:`api.schemas.ErrorPublic` shape ``{code, description}``:
domain errors, request validation (400, not FastAPI's 422), Starlette's own 404/405 and the
guards of :mod:`api.security`. :func:`document` makes the OpenAPI document say so.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.routes import ogc
from api.schemas import ErrorPublic
from geogrid.errors import (
    ConfigurationError,
    Conflict,
    Forbidden,
    GeogridError,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from geogrid.plans import StaleVersion

log = logging.getLogger(__name__)

#: Domain error → HTTP status. The most specific class wins (checked in MRO order).
STATUS: dict[type[GeogridError], int] = {
    InvalidInput: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    StaleVersion: 412,  # If-Match names an older version of a plan
    IllegalTransition: 409,
    ConfigurationError: 503,
    GeogridError: 400,
}


def status_for(exc: GeogridError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


#: Codes of the HTTP errors Starlette raises itself (unknown route, wrong method...).
HTTP_CODES: dict[int, str] = {
    400: "InvalidInput",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` and make its OpenAPI document list the errors."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or HTTP_CODES.get(exc.status_code, "HTTPError")
        description = str(exc.detail)
        if exc.status_code == 404 and description == "Not Found":
            description = f"no such resource: {request.url.path}"
        elif exc.status_code == 405:
            description = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            status_code=exc.status_code,
            content={"code": code, "description": description},
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(GeogridError)
    async def _domain(request: Request, exc: GeogridError) -> JSONResponse:
        return JSONResponse(
            status_code=status_for(exc),
            content={"code": type(exc).__name__, "description": exc.message, **exc.detail},
        )

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # the server is down, restarting or refusing connections: say so, and retry later
        # (the driver's message names hosts and ports, so it goes to the log only)
        log.warning("database unavailable for %s: %s", request.url.path,
                    str(exc.orig or exc).strip().splitlines()[0])  # fmt: skip
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "5"},
            content={"code": "DatabaseUnavailable",
                     "description": "the database is not reachable; try again shortly"},
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in err.get("loc", ())), "what": err.get("msg")}
            for err in exc.errors()
        ]
        text = "; ".join(f"{p['where']}: {p['what']}" for p in problems)
        return JSONResponse(
            status_code=400,
            content={"code": "InvalidParameterValue", "description": text, "errors": problems},
        )

    document(app)


# -- OpenAPI -------------------------------------------------------------------------------

_ERROR_REF = {"$ref": "#/components/schemas/ErrorPublic"}

#: Statuses any route may answer, whatever it does (see :mod:`api.security`).
COMMON_ERRORS: dict[str, str] = {
    "400": "Bad input (a parameter, a NUL byte, malformed JSON); the body says what and where.",
    "413": "The request body is larger than the configured limit (GEOGRID_MAX_BODY_BYTES).",
    "500": "An unexpected error; logged with the reference given in the description.",
    "503": "The database is not reachable; retry later.",
}
#: Statuses of requests that change data.
UNSAFE_ERRORS: dict[str, str] = {
    "403": "Refused: a cross-site request (Origin or Referer of another site), or not allowed.",
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def complete_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """List the error statuses every operation really answers, all with ``ErrorPublic``.

    FastAPI's 422 goes (validation errors are 400 here); 400, 413, 500 and 503 are added to
    every operation, 403 to those that change data, 404 to those with path parameters;
    every error status a route documents gets the ``ErrorPublic`` schema.
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.setdefault("ErrorPublic", ErrorPublic.model_json_schema())
    for name, schema in ogc.SCHEMAS.items():  # referred to by the OGC routes' responses
        schemas.setdefault(name, schema)
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses: dict[str, Any] = op["responses"]
            responses.pop("422", None)
            wanted = dict(COMMON_ERRORS)
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
                wanted.update(UNSAFE_ERRORS)
            if "{" in path:
                wanted["404"] = "No such resource."
            for status, description in wanted.items():
                responses.setdefault(status, _error_response(description))
            for status, response in responses.items():
                if status[0] in "45":  # every error body has this one shape
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
    return doc


def document(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document completed by :func:`complete_openapi`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return complete_openapi(generate())  # in place, idempotent: FastAPI caches the dict

    app.openapi = openapi  # type: ignore[method-assign]
