"""Routes: Open311 GeoReport v2 at ``/open311/v2`` (JSON, and XML by the ``.xml`` suffix),
and its Service Discovery document at ``/open311/discovery.{json,xml}``.

``services.{fmt}``, ``services/{code}.{fmt}``, ``requests.{fmt}`` (POST: JSON,
``application/x-www-form-urlencoded`` or ``multipart/form-data`` with photos in ``media``;
GET: the public list), ``requests/{id}.{fmt}`` (a resident's token — ``?token=`` or the
``X-Open311-Token`` header — shows their own request in more detail; a wrong one is
refused), ``tokens/{token}.{fmt}`` (the request a token belongs to) and
``media/{id}/{sha}.jpg`` (public thumbnails of a request's photos).

Every error under this prefix is a GeoReport error array ``[{code, description, rule}]``
in the requested format (:class:`Open311Route`); ``rule`` names the rule for the
complaint page's translation. Validation and mapping live in :mod:`geogrid.cases.open311`
and :mod:`geogrid.cases.open311_input`, store access in :mod:`geogrid.cases.open311_store`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import Connection, Engine
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import allow, client_ip, secret_of
from api.errors import status_for
from geogrid.cases import open311_feedback as feedback
from geogrid.cases import open311_store as store
from geogrid.cases.open311 import (
    discovery_document,
    format_datetime,
    hash_token,
    new_token,
    rate_key,
    request_private,
    request_public,
    service_definition,
    service_entry,
    to_xml,
)
from geogrid.cases.open311_input import (
    Open311Invalid,
    Problem,
    fields_from_json,
    parse_query,
    parse_submission,
)
from geogrid.errors import Forbidden, GeogridError, NotFound, Unauthenticated
from geogrid.files import file_path
from geogrid.i18n import pick_lang, t

FORMATS = ("json", "xml")
#: Largest JSON or form body without photos (bytes); photos: the server's body limit.
MAX_FORM_BYTES = 64 * 1024
MAX_PHOTOS = 3
TOKEN_HEADER = "X-Open311-Token"

_RULES: dict[type[GeogridError], str] = {
    store.RateLimited: "rate_limited",
    NotFound: "not_found",
    Forbidden: "forbidden",
    Unauthenticated: "unauthenticated",
}


def _format(request: Request) -> str:
    tail = request.url.path.rsplit("/", 1)[-1]
    fmt = tail.rsplit(".", 1)[-1] if "." in tail else "json"
    return fmt if fmt in FORMATS else "json"


def respond(request: Request, root: str, payload: Any, status: int = 200) -> Response:
    """``payload`` as JSON, or as GeoReport XML under ``root`` for a ``.xml`` path."""
    headers = {"Cache-Control": "no-cache"}
    if _format(request) == "xml":
        return Response(
            to_xml(root, payload),
            status_code=status,
            media_type="text/xml; charset=utf-8",
            headers=headers,
        )
    return JSONResponse(
        payload, status_code=status, headers=headers, media_type="application/json; charset=utf-8"
    )


def _errors(request: Request, problems: Sequence[Problem], status: int) -> Response:
    body = [{**p.as_dict(), "code": p.code if p.code != 400 else status} for p in problems]
    response = respond(request, "errors", body, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="geogrid"'
    return response


def _rule(exc: GeogridError) -> str:
    given = exc.detail.get("rule") if isinstance(exc.detail, dict) else None
    if isinstance(given, str):
        return given
    for cls in type(exc).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return "invalid_input" if status_for(exc) == 400 else "error"


class Open311Route(APIRoute):
    """A route whose errors are GeoReport error arrays (domain, validation, HTTP)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Open311Invalid as exc:
                codes = {p.code for p in exc.problems}
                return _errors(request, exc.problems, codes.pop() if len(codes) == 1 else 400)
            except RequestValidationError as exc:
                problems = [
                    Problem(
                        "parameter_invalid",
                        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}",
                    )
                    for e in exc.errors()
                ]
                return _errors(request, problems, 400)
            except GeogridError as exc:
                status = 429 if isinstance(exc, store.RateLimited) else status_for(exc)
                if isinstance(exc, Unauthenticated):
                    status = 401
                return _errors(request, [Problem(_rule(exc), exc.message, status)], status)
            except StarletteHTTPException as exc:
                rule = "body_too_large" if exc.status_code == 413 else "http_error"
                problem = Problem(rule, str(exc.detail), exc.status_code)
                return _errors(request, [problem], exc.status_code)

        return handler


#: Open311: service discovery at ``/open311/discovery.{fmt}``, GeoReport v2 under :data:`V2`.
router = APIRouter(prefix="/open311", tags=["open311"], route_class=Open311Route)
V2 = "/v2"

#: The GeoReport error array, as documented in the OpenAPI document.
ERRORS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {
            "code": {"type": "integer", "description": "HTTP status of the answer"},
            "description": {"type": "string"},
            "rule": {"type": "string", "description": "The rule broken (for translation)"},
        },
    },
}
_XML = {"text/xml": {"schema": {"type": "string"}}}
_POST_ERRORS = {
    "413": "The body is too large (64 KiB without photos).",
    "415": "Not JSON, form-encoded or multipart.",
    "429": "Too many submissions from this client: try again later.",
}


def document(app: FastAPI) -> None:
    """Say in the app's OpenAPI document what these routes answer: GeoReport error arrays
    (JSON or XML) instead of the ``{code, description}`` object of the other routes, and
    XML beside JSON. Call it after every other document hook (it edits their result)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        doc = generate()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("GeoReportErrors", ERRORS_SCHEMA)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/GeoReportErrors"}}}
        for path, operations in doc.get("paths", {}).items():
            if not path.startswith(router.prefix + "/"):
                continue
            for method, op in operations.items():
                responses = op.get("responses", {})
                if method == "post":
                    for status, text_ in _POST_ERRORS.items():
                        responses.setdefault(status, {"description": text_})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = {**error, **_XML}
                    elif status == "200" and "/media/" not in path:
                        response.setdefault("content", {}).update(_XML)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


Fmt = Annotated[str, Path(description="Response format: json or xml.")]
READ = [Depends(allow("open311.read"))]
ERRORS_400: dict[int | str, dict[str, Any]] = {
    400: {"description": "GeoReport error array: [{code, description, rule}]."},
}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise Open311Invalid([Problem("format_unsupported", "formats are json and xml", 400)])


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _base(request: Request) -> str:
    return str(request.base_url)


def _public_base(request: Request) -> str:
    """Where residents and clients reach geogrid: ``GEOGRID_PUBLIC_BASE_URL``, else the
    address of this request; with a trailing slash."""
    configured = request.app.state.settings.public_base_url
    return (configured or str(request.base_url)).rstrip("/") + "/"


def _services(conn: Connection) -> dict[str, Any]:
    return store.load_services(conn)


# --------------------------------------------------------------------------- discovery


@router.get("/discovery.{fmt}", dependencies=READ, summary="Service discovery")
def discovery(
    request: Request,
    fmt: Fmt,
    lang: Annotated[str | None, Query(max_length=10, description="zh (default) or en")] = None,
) -> Response:
    """Open311 Service Discovery: ``changeset`` (when the service list or definitions last
    changed), ``contact``, ``key_service`` and the GeoReport v2 ``production`` endpoint
    (``GEOGRID_PUBLIC_BASE_URL`` or this request's address) with its formats."""
    _check_format(fmt)
    with _engine(request).connect() as conn:
        changed = store.services_changed_at(conn)
    base, language = _public_base(request), pick_lang(lang)
    endpoint = base + (router.prefix + V2).lstrip("/")
    limit, window = getattr(request.app.state, "open311_limits", None) or (
        store.SUBMIT_LIMIT,
        store.SUBMIT_WINDOW_S,
    )
    doc = discovery_document(
        endpoint_url=endpoint,
        changeset=changed,
        contact=t("open311.discovery.contact", language, complain=base + "complain",
                  endpoint=endpoint),
        key_service=t("open311.discovery.key_service", language, limit=limit,
                      hours=max(1, round(window / 3600))),
    )  # fmt: skip
    return respond(request, "discovery", doc)


# --------------------------------------------------------------------------- services


@router.get(V2 + "/services.{fmt}", dependencies=READ, summary="Services (case categories)")
def services(request: Request, fmt: Fmt) -> Response:
    """GeoReport ``GET services``: every category residents may report."""
    _check_format(fmt)
    with _engine(request).connect() as conn:
        found = _services(conn)
    return respond(request, "services", [service_entry(s) for s in found.values()])


@router.get(V2 + "/services/{service_code}.{fmt}", dependencies=READ, summary="Service definition")
def service_detail(
    request: Request, fmt: Fmt, service_code: Annotated[str, Path(max_length=40)]
) -> Response:
    """GeoReport ``GET services/{code}``: the service's attributes (questions)."""
    _check_format(fmt)
    with _engine(request).connect() as conn:
        found = _services(conn).get(service_code)
    if found is None:
        raise NotFound(f"no service {service_code!r}")
    return respond(request, "service_definition", service_definition(found))


# --------------------------------------------------------------------------- requests


def _count_client(request: Request, kind: str = "") -> None:
    """Count one submission (``kind`` ``""``) or rating (``"feedback:"``) of this client, in a
    transaction of its own: a refused one counts too, so hammering does not help
    (:class:`store.RateLimited` past the limit)."""
    limit, window_s = getattr(request.app.state, "open311_limits", None) or (
        store.SUBMIT_LIMIT,
        store.SUBMIT_WINDOW_S,
    )
    key = kind + rate_key(secret_of(request), client_ip(request))
    with _engine(request).begin() as conn:
        store.check_rate(conn, key, limit=limit, window_s=window_s)


async def _submission_fields(request: Request) -> tuple[dict[str, list[str]], list[Any]]:
    """The submission's fields and uploaded photos, by content type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=MAX_PHOTOS, max_fields=100)
        fields: dict[str, list[str]] = {}
        files = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "media":
                    raise Open311Invalid([Problem("media_invalid", f"unexpected file {key!r}")])
                files.append((value.filename or "photo.jpg", await value.read()))
            else:
                fields.setdefault(key, []).append(value)
        return fields, files
    too_large = Problem("body_too_large", f"at most {MAX_FORM_BYTES} bytes without photos", 413)
    if ctype == "application/x-www-form-urlencoded":
        form = await request.form()  # the sign-in check may have read (and cached) it already
        out: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            out.setdefault(key, []).append(str(value))
        if sum(len(k) + sum(len(v.encode()) for v in vs) for k, vs in out.items()) > MAX_FORM_BYTES:
            raise Open311Invalid([too_large])
        return out, []
    if ctype == "application/json":
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise Open311Invalid([too_large])
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise Open311Invalid([Problem("body_invalid", "the body is not JSON")]) from None
        return fields_from_json(data), []
    raise Open311Invalid(
        [
            Problem(
                "content_type_unsupported",
                "send application/json, application/x-www-form-urlencoded or multipart/form-data",
                415,
            )
        ]
    )


@router.post(
    V2 + "/requests.{fmt}",
    dependencies=[Depends(allow("open311.submit"))],
    summary="Submit a service request",
    responses=ERRORS_400,
)
async def create_request(request: Request, fmt: Fmt) -> Response:
    """GeoReport ``POST requests``: a resident reports a problem (no account needed).

    Returns ``[{service_request_id, token, service_notice, account_id,
    expected_datetime}]``: keep the **token**, shown only now, to follow the request
    (``GET requests/{id}?token=``). At most a few submissions per client and hour.
    """
    _check_format(fmt)
    fields, media = await _submission_fields(request)
    if len(media) > MAX_PHOTOS:
        raise Open311Invalid([Problem("media_invalid", f"at most {MAX_PHOTOS} photos")])
    secret = secret_of(request)
    ip = client_ip(request)

    def work() -> store.Submitted:
        engine = _engine(request)
        _count_client(request)
        with engine.begin() as conn:
            sub = parse_submission(fields, _services(conn))
            return store.submit(
                conn,
                sub,
                secret=secret,
                token=new_token(),
                home=request.app.state.settings.home,
                media=media,
                ip=ip,
            )

    done = await anyio.to_thread.run_sync(work)

    body = [
        {
            "service_request_id": done.service_request_id,
            "token": done.token,
            "service_notice": done.service_notice,
            "account_id": None,
            "expected_datetime": format_datetime(done.expected),
        }
    ]
    return respond(request, "service_requests", body)


@router.get(V2 + "/requests.{fmt}", dependencies=READ, summary="Service requests")
def list_requests(request: Request, fmt: Fmt) -> Response:
    """GeoReport ``GET requests``: public requests, newest first.

    Query: ``start_date``, ``end_date`` (ISO 8601; default the last 90 days), ``status``
    (``open``/``closed``), ``service_code`` (comma-separated), ``service_request_id``
    (comma-separated), ``page`` and ``page_size`` (≤ 1000). No personal data.
    """
    _check_format(fmt)
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    with _engine(request).connect() as conn:
        found = _services(conn)
        query = parse_query(params, found)
        records = store.list_requests(conn, query, found, base_url=_base(request))
    return respond(request, "service_requests", [request_public(r) for r in records])


@router.get(V2 + "/requests/{request_id}.{fmt}", dependencies=READ, summary="One service request")
def get_request(
    request: Request,
    fmt: Fmt,
    request_id: Annotated[str, Path(max_length=20)],
    token: Annotated[str | None, Query(max_length=40, description="The resident's token.")] = None,
    x_open311_token: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """GeoReport ``GET requests/{id}``; with the resident's token (``?token=`` or the
    ``X-Open311-Token`` header) also the attribute answers, all photos, the case's step and
    its public history. A wrong token is refused with 403."""
    _check_format(fmt)
    given = token or x_open311_token
    token_hash = None if given is None else _token_hash(request, given)
    with _engine(request).connect() as conn:
        try:
            record, own = store.get_request(
                conn, request_id, _services(conn), base_url=_base(request), token_hash=token_hash
            )
        except Forbidden:
            raise Forbidden(
                "wrong token for this request", detail={"rule": "token_invalid"}
            ) from None
        rated = feedback.get_feedback(conn, int(record.service_request_id)) if own else None
    body = request_private(record) if own else request_public(record)
    if own:
        body["feedback"] = _feedback_body(rated)
    return respond(request, "service_requests", [body])


def _feedback_body(rated: feedback.Feedback | None) -> dict[str, Any] | None:
    if rated is None:
        return None
    return {"rating": rated.rating, "comment": rated.comment, "rated_at": format_datetime(rated.at)}


def _token_hash(request: Request, given: str | None) -> str:
    """The keyed hash of a resident's token; a missing or malformed one is refused (403)."""
    try:
        if not given:
            raise Forbidden("this request's token is needed")
        return hash_token(secret_of(request), given)
    except Forbidden:
        raise Forbidden("wrong token for this request", detail={"rule": "token_invalid"}) from None


@router.post(
    V2 + "/requests/{request_id}/feedback.{fmt}",
    dependencies=[Depends(allow("open311.feedback"))],
    summary="Rate one's own ended request (extension)",
    responses=ERRORS_400,
)
async def rate_request(
    request: Request,
    fmt: Fmt,
    request_id: Annotated[str, Path(max_length=20)],
    x_open311_token: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """An extension of GeoReport v2 (群众满意度回访): the resident rates how an ended request
    (closed, or rejected as not a case) was handled — ``rating`` ``satisfied``, ``basic`` or
    ``unsatisfied``, an optional ``comment`` (≤ 500 characters) — with the request's
    ``token`` (a body field or the ``X-Open311-Token`` header). Rating again replaces the
    earlier rating. 403 for a wrong token, 409 (rule ``not_ended``) before the request has
    ended, 429 past the client's limit. Returns ``[{service_request_id, rating, comment,
    rated_at}]``."""
    _check_format(fmt)
    fields, media = await _submission_fields(request)
    if media:
        raise Open311Invalid([Problem("media_invalid", "a rating takes no photos")])
    given = x_open311_token or next(iter(fields.pop("token", [])), None)
    rating, comment = feedback.parse(fields)
    token_hash = _token_hash(request, given)
    ip = client_ip(request)

    def work() -> feedback.Feedback:
        _count_client(request, "feedback:")
        with _engine(request).begin() as conn:
            return feedback.rate(
                conn, request_id, token_hash=token_hash, rating=rating, comment=comment, ip=ip
            )

    rated = await anyio.to_thread.run_sync(work)
    body = {"service_request_id": request_id, **(_feedback_body(rated) or {})}
    return respond(request, "service_requests", [body])


@router.get(V2 + "/tokens/{token}.{fmt}", dependencies=READ, summary="Request of a token")
def token_request(
    request: Request, fmt: Fmt, token: Annotated[str, Path(max_length=40)]
) -> Response:
    """GeoReport ``GET tokens/{token}``: the request id a resident's token belongs to; an
    unknown (or malformed) token is "not found" (404), as the specification says."""
    _check_format(fmt)
    try:
        token_hash = hash_token(secret_of(request), token)
        with _engine(request).connect() as conn:
            request_id = store.request_for_token(conn, token_hash)
    except (Forbidden, NotFound):
        raise NotFound("no request has this token", detail={"rule": "token_invalid"}) from None
    return respond(
        request, "service_requests", [{"service_request_id": request_id, "token": token}]
    )


@router.get(
    V2 + "/media/{request_id}/{sha256}.jpg",
    dependencies=READ,
    summary="Photo of a request (thumbnail)",
    responses={200: {"description": "JPEG thumbnail.", "content": {"image/jpeg": {}}}},
)
def media(
    request: Request,
    request_id: Annotated[str, Path(max_length=20)],
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
) -> Response:
    """A public thumbnail (metadata stripped) of one of a request's photos."""
    if not request_id.isdigit():
        raise NotFound(f"no service request {request_id!r}")
    with _engine(request).connect() as conn:
        pc = store.public_case(conn, int(request_id))
    if sha256 not in (pc.media or []):
        raise NotFound("no such photo of this request")
    path = file_path(request.app.state.settings.home, sha256, thumb=True)
    if not path.is_file():
        raise NotFound("no such photo of this request")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
