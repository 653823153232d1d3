"""Web security around the app: request guards, CORS and browser-security headers.

:func:`install` adds three ASGI middlewares (outermost first):

:class:`SecurityHeaders`
    On every response: ``Content-Security-Policy`` (own assets only, plus the configured
    base map; scripts also by a per-request nonce, ``request.state.csp_nonce``),
    ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``,
    ``Strict-Transport-Security`` over HTTPS, and
    ``frame-ancestors 'self'`` unless the route set ``request.state.frame_ancestors`` (a list
    of origins, e.g. an embed token's). An ``Access-Control-Allow-Origin`` a route set for an
    origin that is not configured is removed: CORS answers only configured origins.
:class:`ErrorShapedCORS`
    Starlette's CORS for ``Settings.cors_origins`` (none by default); a refused preflight
    gets the error shape.
:class:`RequestGuard`
    Refuses, before any route runs: a NUL byte in the path, query or a header (400), a
    cross-site unsafe request (403: ``Origin``, or absent that ``Referer``, is neither this
    server nor configured; requests with neither header, such as curl, pass), a body over
    ``Settings.max_body_bytes`` (413, counted as it arrives, chunked too) and a NUL inside a
    JSON or form body (400). An exception no handler took becomes a clean 500, logged
    without its message (which may hold SQL parameters, i.e. personal data).

Every refusal has the :class:`api.schemas.ErrorPublic` shape ``{code, description}``.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geogrid.errors import ConfigurationError, log_summary
from geogrid.settings import Settings
from tiles.pages import basemap_config

__all__ = [
    "ErrorShapedCORS",
    "RequestGuard",
    "RequestRejected",
    "SecurityHeaders",
    "content_security_policy",
    "install",
]

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: A plain origin, the only thing accepted into ``frame-ancestors``.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?")
#: An unescaped ``\u0000`` in JSON text (an even number of backslashes before it).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class RequestRejected(HTTPException):
    """A request refused by a guard; rendered as ``{code, description}`` by :mod:`api.errors`.

    An ``HTTPException`` so that FastAPI passes it through untouched when it is raised
    while the body is being read.
    """

    def __init__(self, status_code: int, code: str, description: str) -> None:
        super().__init__(status_code=status_code, detail=description)
        self.code = code


#: Paths whose clients expect GeoReport v2 error arrays (Open311), even from the guards.
GEOREPORT_PREFIX = "/open311/"
#: GeoReport ``rule`` names of the guards' refusals (pages translate rules).
_GEOREPORT_RULES = {"PayloadTooLarge": "body_too_large"}


def error_response(
    status: int, code: str, description: str, *, path: str = "", **headers: str
) -> JSONResponse:
    """An error answer in the documented shape (a GeoReport error array under /open311/)."""
    if path.startswith(GEOREPORT_PREFIX):
        rule = _GEOREPORT_RULES.get(code, "request_refused")
        return JSONResponse(
            [{"code": status, "description": description, "rule": rule}],
            status_code=status,
            headers=headers,
        )
    return JSONResponse(
        {"code": code, "description": description}, status_code=status, headers=headers
    )


def install(app: FastAPI, settings: Settings) -> None:
    """Add the guards, CORS and security headers to ``app`` (call once, in the factory)."""
    allowed = {*settings.cors_origins, *settings.trusted_origins}
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        allowed_origins=allowed,
    )
    if settings.cors_origins:
        app.add_middleware(
            ErrorShapedCORS,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Match"],
            expose_headers=["ETag", "Location"],
            max_age=600,
        )
    app.add_middleware(
        SecurityHeaders,
        extra_sources=basemap_sources(settings),
        cors_origins=frozenset(settings.cors_origins),
    )


# -- request guard -----------------------------------------------------------------------


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` (lower case, default port dropped), else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port and port != default else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    return f"{parts.scheme}://{host}{suffix}".lower()


def _same_host(origin: str, host: str) -> bool:
    """Whether ``origin`` names the server reached through the ``Host`` header ``host``.

    The scheme is not compared: behind a TLS-terminating proxy the browser's origin is
    ``https`` while the app sees ``http``.

    >>> _same_host("https://grid.example", "grid.example")
    True
    >>> _same_host("http://127.0.0.1:8000", "127.0.0.1:8000")
    True
    >>> _same_host("http://evil.example", "grid.example")
    False
    >>> _same_host(_origin("http://[::1]:8000/planner") or "", "[::1]:8000")
    True
    """
    target = origin.split("://", 1)[1]
    host = host.strip().lower()
    for default in (":80", ":443"):
        host = host.removesuffix(default)
    return target == host


class RequestGuard:
    """Refuse malformed, oversized and cross-site requests; turn crashes into clean 500s.

    Parameters
    ----------
    app
        The wrapped ASGI application.
    max_body_bytes
        Largest body accepted.
    max_upload_bytes
        Largest ``multipart/form-data`` body accepted (file uploads).
    allowed_origins
        Origins besides the server's own whose unsafe requests are accepted.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        allowed_origins: Iterable[str],
        max_upload_bytes: int | None = None,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max(max_upload_bytes or 0, max_body_bytes)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            self.check_request(scope)
            await self.app(scope, self._receive(scope, receive), send_started)
        except HTTPException as exc:  # a guard, or a route outside the exception handlers
            if started:
                raise
            code = getattr(exc, "code", "HTTPError")
            response = error_response(
                exc.status_code, code, str(exc.detail), path=scope.get("path", "")
            )
            await response(scope, receive, send)
        except Exception as exc:
            ref = uuid.uuid4().hex[:12]
            log.error(
                "unhandled error %s on %s %s: %s",
                ref, scope.get("method"), scope.get("path"), log_summary(exc),
            )  # fmt: skip
            if started:
                raise
            response = error_response(
                500,
                "InternalError",
                f"an unexpected error occurred (reference {ref})",
                path=scope.get("path", ""),
            )
            await response(scope, receive, send)

    def check_request(self, scope: Scope) -> None:
        """Raise :class:`RequestRejected` for a NUL byte, a cross-site or oversized request."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        query: bytes = scope.get("query_string", b"")
        if any(b"\x00" in part or b"%00" in part for part in (raw_path, query)) or (
            "\x00" in scope["path"]
        ):
            raise RequestRejected(400, "InvalidInput", "NUL bytes are not allowed in a URL")
        headers = Headers(scope=scope)
        if any("\x00" in v for v in headers.values()):
            raise RequestRejected(400, "InvalidInput", "NUL bytes are not allowed in a header")
        if scope["method"] in UNSAFE_METHODS:
            self.check_origin(headers)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestRejected(400, "InvalidInput", "Content-Length must be a number")
            limit = self.body_limit(headers)
            if int(length) > limit:
                raise self.too_large(limit)

    def check_origin(self, headers: Headers) -> None:
        """Refuse an unsafe request sent from another site's page.

        Browsers send ``Origin`` with every cross-site POST; some older ones only a
        ``Referer``. A request with neither comes from a program (curl, a script with an
        API token), which a page on another site cannot make a browser send.
        """
        claimed = headers.get("origin")
        if claimed is None and "referer" in headers:
            claimed = headers["referer"]
        if claimed is None:
            return
        origin = _origin(claimed)
        host = headers.get("host", "")
        if origin is not None and (origin in self.allowed_origins or _same_host(origin, host)):
            return
        shown = origin or "null"
        raise RequestRejected(
            403,
            "Forbidden",
            f"cross-site request refused: a page from {shown} may not change data here",
        )

    def body_limit(self, headers: Headers) -> int:
        """The body limit of a request: uploads (multipart) get the larger one."""
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            return self.max_upload_bytes
        return self.max_body_bytes

    def too_large(self, limit: int) -> RequestRejected:
        return RequestRejected(413, "PayloadTooLarge", f"the request body exceeds {limit} bytes")

    def _receive(self, scope: Scope, receive: Receive) -> Receive:
        content_type = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        # no Content-Type: FastAPI may read the body as JSON (strict_content_type=False)
        is_json = content_type in ("", "application/json") or content_type.endswith("+json")
        is_form = content_type == "application/x-www-form-urlencoded"
        limit = self.body_limit(Headers(scope=scope))
        received = 0
        kept: list[bytes] = []

        async def guarded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise self.too_large(limit)
            if is_json or is_form:
                kept.append(chunk)
                if not message.get("more_body", False):
                    body = b"".join(kept)
                    if b"\x00" in body or (_JSON_NUL.search(body) if is_json else b"%00" in body):
                        raise RequestRejected(
                            400, "InvalidInput", "NUL characters are not allowed in text"
                        )
            return message

        return guarded


# -- CORS ----------------------------------------------------------------------------------


class ErrorShapedCORS(CORSMiddleware):
    """Starlette's CORS middleware whose refused preflight answers in the error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
        }
        return JSONResponse(
            {"code": "Forbidden", "description": bytes(response.body).decode()},
            status_code=403,
            headers=headers,
        )


# -- security headers ----------------------------------------------------------------------


def basemap_sources(settings: Settings) -> list[str]:
    """CSP sources for the configured external base map (none for local or no base map).

    >>> basemap_sources(Settings(basemap="tianditu", tianditu_key="k"))
    ['https://*.tianditu.gov.cn']
    >>> basemap_sources(Settings(basemap="xyz", basemap_url="http://{s}.tiles.lan/{z}/{x}/{y}.png"))
    ['http://*.tiles.lan']
    >>> basemap_sources(Settings(basemap="none"))
    []
    """
    try:
        layers = basemap_config(settings)["layers"]
    except ConfigurationError:  # reported by the pages themselves
        return []
    sources: list[str] = []
    for layer in layers:
        url = str(layer["url"])
        parts = urlsplit(url.replace("{s}", "SUB"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            continue  # served by ourselves
        labels = parts.netloc.split(".")
        if "SUB" in labels[0]:
            labels[0] = "*"
        elif "SUB" in parts.netloc:
            sources.append(f"{parts.scheme}:")  # a subdomain pattern CSP cannot express
            continue
        source = f"{parts.scheme}://{'.'.join(labels)}"
        if source not in sources:
            sources.append(source)
    return sources


def content_security_policy(
    nonce: str, *, extra_sources: Iterable[str] = (), frame_ancestors: Iterable[str] = ()
) -> str:
    """The ``Content-Security-Policy`` of a response.

    Only our own assets; images also ``data:`` (Leaflet and swagger-ui icons) and the
    base map's origin; scripts also by ``nonce``; no plugins, no ``<base>``, forms only to
    ourselves; framed only by ourselves and ``frame_ancestors``.

    ``frame_ancestors`` entries that are not plain origins (``scheme://host[:port]``) are
    dropped, so that no value can smuggle another directive into the header.

    >>> "frame-ancestors 'self' https://portal.example" in content_security_policy(
    ...     "n", frame_ancestors=["https://portal.example"])
    True
    >>> content_security_policy("n", frame_ancestors=["https://a; script-src *"]).endswith(
    ...     "frame-ancestors 'self'")
    True
    """
    extra = " ".join(extra_sources)
    ancestors = " ".join(["'self'", *(a for a in frame_ancestors if _ORIGIN.fullmatch(a))])
    directives = [
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self'",
        f"img-src 'self' data: blob: {extra}".rstrip(),
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {ancestors}",
    ]
    return "; ".join(directives)


class SecurityHeaders:
    """Add the browser-security headers to every response (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, extra_sources: Iterable[str], cors_origins: frozenset[str]
    ) -> None:
        self.app = app
        self.extra_sources = tuple(extra_sources)
        self.cors_origins = cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        state = scope.setdefault("state", {})
        state["csp_nonce"] = nonce
        origin = Headers(scope=scope).get("origin", "").rstrip("/").lower()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                ancestors = state.get("frame_ancestors") or ()
                headers.setdefault(
                    "Content-Security-Policy",
                    content_security_policy(
                        nonce, extra_sources=self.extra_sources, frame_ancestors=ancestors
                    ),
                )
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if scope.get("scheme") == "https":  # served over TLS: keep browsers on it
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
                allowed = headers.get("access-control-allow-origin")
                if allowed is not None and (
                    origin not in self.cors_origins or allowed not in (origin, "*")
                ):
                    del headers["access-control-allow-origin"]
                    for name in (
                        "access-control-expose-headers",
                        "access-control-allow-credentials",
                    ):
                        if name in headers:
                            del headers[name]
                elif allowed == "*":
                    headers["access-control-allow-origin"] = origin
            await send(message)

        await self.app(scope, receive, send_with_headers)
