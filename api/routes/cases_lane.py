"""Lanes for the case workflow's hot calls with a bearer token, each in one worker thread:
a transition (``POST /api/cases/{id}/transitions``) and a read of one case
(``GET /api/cases/{id}``).

Through FastAPI a transition crossed from the event loop to a worker thread twice (the
account read that sets the row-level scope, then the route) and went through the
dependency machinery (seven parameters, two generator dependencies with their exit
stacks) and the route's wrappers: on the cases bench the web server spent ~2 ms of CPU on
a transition, of which the action itself (its two statements on the driver) was a
quarter. A lane, a route placed before the API's routes, takes such a request and does in
one worker thread what the route's dependencies and the route do, with the same functions:

* the token (:func:`api.auth._bearer`, :func:`geogrid.access.tokens.read_access_token`),
  the account read in the statement that sets the scope (:func:`api.auth._open_for_token`);
* the policy (:func:`api.auth.enforce` of the route's own action, read from the route;
  a refusal audited as :class:`api.auth.Allow` audits it);
* the body (the route's :class:`TransitionCreate`; a refusal is FastAPI's
  ``RequestValidationError``, so the usual 400) and the answer
  (:func:`api.routes.cases.transition_answer`, :func:`api.routes.cases.case_answer`,
  which the routes call too).

Its transaction's statements are lookups by key, planned once per connection (the web
server's connections plan every statement, for tiles: see :data:`geogrid.store.SERVING_OPTIONS`);
the read of one case spent 0.75 ms planning and 0.4 ms running.

Everything else (the request id, metrics and access line, the security headers, the
error handlers and their one shape) is the app's, as for any route. Requests a lane does
not take go to the route: no bearer token (a page's session, with its CSRF check), another
content type, a case id or ``Prefer`` header the route's validation would refuse.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from api import auth
from api.routes import cases
from geogrid.access import tokens
from geogrid.access.policy import POLICY, Principal
from geogrid.errors import ConfigurationError, Forbidden, Unauthenticated

#: a lane's answer: (connection in the principal's scope, principal, case id, request,
#: body) -> the route's answer
Answer = Callable[[Connection, Principal, int, Request, bytes], Response]
_MAX_ID = 2**62
_BEARER = re.compile(rb"^\s*bearer\s+\S", re.IGNORECASE)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class Lane(BaseRoute):
    """The lane in front of ``route``, a route of one case (see the module docs).

    Parameters
    ----------
    route
        The API's route: its path, its access rule, its endpoint (in metrics and logs).
    method
        The one method the lane takes.
    answer
        What the route does once its dependencies are solved.
    json_body
        The request has a JSON body (only ``application/json`` takes the lane).
    """

    def __init__(self, route: APIRoute, method: str, answer: Answer, *, json_body: bool) -> None:
        self.route = route
        self.method = method
        self.answer = answer
        self.json_body = json_body
        self.action = auth.policy_of(route)
        if self.action is None or self.action not in POLICY:
            raise ConfigurationError(f"the route {route.path} declares no access rule")
        self.path = route.path
        self.path_format = route.path_format

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != self.method:
            return Match.NONE, {}
        found = self.route.path_regex.match(scope["path"])
        if found is None:
            return Match.NONE, {}
        raw_id = found.group("case_id")
        if not raw_id.isascii() or not raw_id.isdigit() or not 1 <= int(raw_id) <= _MAX_ID:
            return Match.NONE, {}  # another route (/inbox), or the route's own 400
        authorization = _header(scope, b"authorization")
        if authorization is None or not _BEARER.match(authorization):
            return Match.NONE, {}  # sessions (CSRF), embeds, anonymous: the route
        if self.json_body:
            ctype = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
            if ctype != b"application/json":
                return Match.NONE, {}
        prefer = _header(scope, b"prefer")
        if prefer is not None and len(prefer) > cases.PREFER_MAX:
            return Match.NONE, {}
        return Match.FULL, {
            "endpoint": self.route.endpoint,
            "route": self.route,  # the route's template in metrics and the access line
            "path_params": {"case_id": int(raw_id)},
        }

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body() if self.json_body else b""
        answer = await anyio.to_thread.run_sync(self._work, request, body)
        await answer(scope, receive, send)

    def _work(self, request: Request, body: bytes) -> Response:
        """The route's dependencies and the route, in this one thread."""
        assert self.action is not None
        token = auth._bearer(request)
        assert token is not None  # matches() saw one
        user_id = tokens.read_access_token(auth.secret_of(request), token)
        # its statements are lookups by key: planned once per connection, not per call
        conn, principal = auth._open_for_token(
            request.app.state.engine, user_id, generic_plans=True
        )
        try:
            request.state.credentials = auth.Credentials(principal)
            request.state.action = self.action
            try:
                auth.enforce(principal, self.action)
            except (Forbidden, Unauthenticated):
                if POLICY[self.action].audited:
                    auth._audit_refusal(request, principal, self.action)
                raise
            return self.answer(conn, principal, int(request.path_params["case_id"]), request, body)
        finally:
            conn.close()  # committed: back to the pool; else rolled back


def _transition(
    conn: Connection, principal: Principal, case_id: int, request: Request, body: bytes
) -> Response:
    try:  # after the credentials and the policy, as FastAPI checks them
        model = cases.TransitionCreate.model_validate_json(body)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [
            {**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None
    return cases.transition_answer(
        conn,
        principal,
        case_id,
        model,
        request.headers.get("if-match"),
        request.headers.get("prefer"),
        auth.client_ip(request),
    )


def _read(
    conn: Connection, principal: Principal, case_id: int, request: Request, body: bytes
) -> Response:
    return cases.case_answer(conn, principal, case_id, request.headers.get("if-none-match"))


#: (method, path, answer, JSON body) of the lanes
LANES: tuple[tuple[str, str, Answer, bool], ...] = (
    ("POST", "/api/cases/{case_id}/transitions", _transition, True),
    ("GET", "/api/cases/{case_id}", _read, False),
)


def install(app: FastAPI) -> list[Lane]:
    """Put the lanes in front of their routes (after the routes are in)."""
    routes = {
        (method, r.path): r
        for r in auth.all_routes(app)
        if isinstance(r, APIRoute)
        for method in (r.methods or ())
    }
    lanes = []
    for method, path, answer, json_body in LANES:
        route = routes.get((method, path))
        if route is None:
            raise ConfigurationError(f"no route {method} {path} to put a lane in front of")
        lanes.append(Lane(route, method, answer, json_body=json_body))
    app.router.routes[:0] = lanes
    return lanes
