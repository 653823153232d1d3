"""One table from domain errors to HTTP status codes; one JSON error body."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

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


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

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
