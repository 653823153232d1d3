"""Who is asking, and may they: credentials → :class:`~geogrid.access.policy.Principal`,
and :func:`allow`, the one dependency every route declares.

Credentials, in order: ``Authorization: Bearer <access token>`` (API clients), the
``gg_session`` cookie (pages; state-changing requests must echo the session's CSRF token),
an embed token (``embed_token`` query parameter or ``X-Embed-Token`` header: read-only,
named layers only). None of them: anonymous.

Every route names one action of :data:`geogrid.access.policy.POLICY` through
``allow(action)``; :func:`policy_of` finds it on a route, :func:`check_routes` refuses to
start an app with a route that has none, and the tests walk the same table.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi import routing as fastapi_routing
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import Connection, Engine, text
from starlette.routing import Mount

from geogrid import store
from geogrid.access import audit, rls, sessions, tokens, users
from geogrid.access import embed as embeds
from geogrid.access.keys import server_secret
from geogrid.access.policy import POLICY, Principal, Role, check
from geogrid.errors import ConfigurationError, Forbidden, GeogridError, Unauthenticated
from geogrid.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Actions a user who must change the password may still do.
BEFORE_PASSWORD_CHANGE = frozenset({"public.read", "auth.signin", "auth.self"})


class LoginRequired(Unauthenticated):
    """A page needs a signed-in user: the browser is sent to the sign-in page."""


class PasswordChangeRequired(Forbidden):
    """A page for a user who must change the password first: sent to the change page."""


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def secret_of(request: Request) -> bytes:
    key: bytes | None = getattr(request.app.state, "secret", None)
    if key is None:
        key = request.app.state.secret = server_secret(request.app.state.settings)
    return key


@dataclass
class Credentials:
    """What a request presented, resolved once per request."""

    principal: Principal | None
    embed: embeds.EmbedGrant | None = None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Authorization must be 'Bearer <access token>'")
    return value.strip()


async def get_credentials(request: Request) -> AsyncIterator[Credentials]:
    """Resolve the request's credentials (cached on the request).

    A bearer token on a route that works on :func:`get_scoped_conn` has its account read
    on that connection, in the statement that sets the row-level scope (see
    :func:`_open_for_token`): one connection and one round trip instead of two and three.
    A connection opened so and never taken (a refusal, say) is closed when the request ends.
    """
    cached: Credentials | None = getattr(request.state, "credentials", None)
    if cached is not None:
        yield cached
        return
    presented = request.headers.get(sessions.CSRF_HEADER)
    ctype = request.headers.get("content-type", "")
    if (
        presented is None
        and request.method not in SAFE_METHODS
        and (
            ctype.startswith("application/x-www-form-urlencoded")
            or ctype.startswith("multipart/form-data")
        )
    ):
        form = await request.form()  # FastAPI read (and cached) the body already
        value = form.get(sessions.CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    creds = await anyio.to_thread.run_sync(_resolve, request, presented)
    request.state.credentials = creds
    try:
        yield creds
    finally:
        left = _take_conn(request)
        if left is not None:
            await anyio.to_thread.run_sync(left.close)


def _resolve(request: Request, presented: str | None) -> Credentials:
    settings: Settings = request.app.state.settings
    engine: Engine = request.app.state.engine
    creds = Credentials(None)
    token = _bearer(request)
    cookie = request.cookies.get(sessions.COOKIE)
    embed_token = request.query_params.get("embed_token") or request.headers.get("x-embed-token")
    if token:
        user_id = tokens.read_access_token(secret_of(request), token)
        if _uses_scoped_conn(request):
            conn, principal = _open_for_token(engine, user_id)
            request.state.scoped_conn = conn
            return Credentials(principal)
        with engine.connect() as conn:
            user = _live_user(conn, user_id)
        creds = Credentials(user.principal(via="token"))
    elif cookie:
        with engine.begin() as conn:
            found = sessions.session_user(conn, cookie, idle_minutes=settings.session_idle_minutes)
            session_user = _live_user(conn, found[0]) if found else None
        if found and session_user:
            creds = Credentials(session_user.principal(via="session", session_id=found[1]))
            if request.method not in SAFE_METHODS and not sessions.csrf_ok(
                secret_of(request), found[1], presented
            ):
                raise Forbidden(
                    "missing or wrong CSRF token: send the page's token in the "
                    f"{sessions.CSRF_HEADER} header"
                )
    elif embed_token:
        with engine.connect() as conn:
            grant = embeds.read(conn, secret_of(request), embed_token)
        creds = Credentials(None, grant)
    return creds


def _live_user(conn: Connection, user_id: int) -> users.User:
    try:
        user = users.get_user(conn, user_id=user_id)
    except GeogridError:
        raise Unauthenticated("the account no longer exists") from None
    if user.disabled:
        raise Unauthenticated("the account is disabled")
    return user


def _scope_settings(principal: Principal) -> tuple[str, str]:
    """The values :func:`geogrid.access.rls.apply` sets for ``principal``."""
    return principal.scope.sql_value, "on" if "special" in principal.permissions else "off"


#: The row-level settings each user had last time (a guess, checked on every use).
_LAST_SETTINGS: dict[int, tuple[str, str]] = {}
_TOKEN_USER_SQL = text(
    "SELECT set_config('geogrid.scope', :s, true) AS _scope, "
    "set_config('geogrid.special', :p, true) AS _special, "
    f"{users._COLS} FROM users WHERE id = :id"
)
_TOKEN_USER_DRIVER = store.driver_sql(_TOKEN_USER_SQL)
#: the same, and the transaction's statements planned once per connection (generic plans,
#: ``plan_cache_mode = force_generic_plan``; ``auto`` kept planning most of them per call,
#: pg_stat_statements showed) instead of per execution as the web server's connections do
#: (store.SERVING_OPTIONS: for tiles and bounding boxes, whose plan depends on the bounds):
#: for the case lane, whose statements are lookups by key whatever the values
_TOKEN_USER_GENERIC_DRIVER = store.driver_sql(
    text(
        "SELECT set_config('plan_cache_mode', 'force_generic_plan', true) AS _plans, "
        + str(_TOKEN_USER_SQL).removeprefix("SELECT ")
    )
)


def _open_for_token(
    engine: Engine, user_id: int, *, generic_plans: bool = False
) -> tuple[Connection, Principal]:
    """A connection whose transaction carries the scope of bearer-token user ``user_id``,
    and the principal, read in that same transaction (never cached: a disabled account or
    a changed role counts at once).

    The account is read in the statement that sets the row-level scope, with the scope the
    user had last time; when it is not the scope the row gives now, it is set again before
    the connection is used (a second statement, once per change). ``generic_plans``: the
    transaction's statements may run on plans made once per connection (see
    :data:`_TOKEN_USER_GENERIC_DRIVER`).
    """
    conn = engine.connect()
    try:
        guess = _LAST_SETTINGS.get(user_id, ("", "off"))
        # on the driver (store.direct_rows): every signed-in request of the API runs it
        rows = store.direct_rows(
            conn,
            _TOKEN_USER_GENERIC_DRIVER if generic_plans else _TOKEN_USER_DRIVER,
            {"s": guess[0], "p": guess[1], "id": user_id},
        )
        if not rows:
            raise Unauthenticated("the account no longer exists")
        user = users.user_from(rows[0])
        if user.disabled:
            raise Unauthenticated("the account is disabled")
        principal = user.principal(via="token")
        actual = _scope_settings(principal)
        if actual != guess:
            rls.apply(conn, principal)
            _LAST_SETTINGS[user_id] = actual
    except BaseException:
        conn.close()
        raise
    return conn, principal


#: Routes (by identity) that work on :func:`get_scoped_conn`.
_SCOPED_ROUTES: dict[int, bool] = {}


def _uses_scoped_conn(request: Request) -> bool:
    """Does the request's route take :data:`ScopedConnDep`?"""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return False
    known = _SCOPED_ROUTES.get(id(route))
    if known is None:
        stack, known = [route.dependant], False
        while stack and not known:
            dep = stack.pop()
            known = dep.call is get_scoped_conn
            stack.extend(dep.dependencies)
        _SCOPED_ROUTES[id(route)] = known
    return known


CredentialsDep = Annotated[Credentials, Depends(get_credentials)]


class Allow:
    """The dependency ``allow(action)`` returns: checks the policy, returns the principal."""

    def __init__(self, action: str, *, page: bool = False) -> None:
        if action not in POLICY:
            raise ConfigurationError(f"action {action!r} is not in the policy table")
        self.action = action
        self.page = page

    async def __call__(self, request: Request, creds: CredentialsDep) -> Principal | None:
        # async: no thread of its own for a check in memory (a refusal's audit is written
        # in a thread)
        principal = creds.principal
        request.state.action = self.action
        try:
            enforce(principal, self.action, page=self.page)
        except (Forbidden, Unauthenticated):
            if principal is not None and POLICY[self.action].audited:
                await anyio.to_thread.run_sync(_audit_refusal, request, principal, self.action)
            raise
        return principal

    def __repr__(self) -> str:
        return f"allow({self.action!r})"


def enforce(principal: Principal | None, action: str, *, page: bool = False) -> None:
    """Refuse ``principal`` doing ``action`` when the policy does not allow it, or when the
    account must change its password first (what :class:`Allow` checks; the caller audits
    a refusal)."""
    if page and principal is None:
        raise LoginRequired("sign in first (请先登录)")
    check(principal, action)
    if (
        principal is not None
        and principal.must_change_password
        and action not in BEFORE_PASSWORD_CHANGE
    ):
        if page:
            raise PasswordChangeRequired("change your password first")
        raise Forbidden(
            "change your password first (首次登录请先修改密码): POST /api/auth/password",
            detail={"password_change_required": True},
        )


def allow(action: str, *, page: bool = False) -> Allow:
    """The dependency for a route doing ``action`` (``page``: redirect to sign-in).

    Use as ``principal: Annotated[Principal | None, Depends(allow("plan.read"))]`` or in
    ``dependencies=[Depends(allow(...))]``.
    """
    return Allow(action, page=page)


def _audit_refusal(request: Request, principal: Principal, action: str) -> None:
    engine: Engine = request.app.state.engine
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=principal,
            action=action,
            outcome="refused",
            ip=client_ip(request),
            detail={"path": request.url.path, "method": request.method},
        )


def principal_of(request: Request) -> Principal | None:
    creds: Credentials | None = getattr(request.state, "credentials", None)
    return creds.principal if creds else None


def require(principal: Principal | None) -> Principal:
    """The principal of a route whose action anonymous users may not do."""
    if principal is None:  # pragma: no cover - allow() refused already
        raise Unauthenticated("sign in first")
    return principal


# --------------------------------------------------------------------------- connections


async def get_scoped_conn(request: Request, creds: CredentialsDep) -> AsyncIterator[Connection]:
    """A connection whose transaction carries the principal's scope (row-level security).

    The one :func:`get_credentials` opened for a bearer token when there is one; closed at
    the end (in a thread only when a transaction is still open: a committed connection
    goes back to the pool without a round trip).
    """
    conn = _take_conn(request)
    if conn is None:
        conn = await anyio.to_thread.run_sync(_open_scoped, request.app.state.engine, creds)
    try:
        yield conn
    finally:
        if conn.in_transaction():
            await anyio.to_thread.run_sync(conn.close)
        else:
            conn.close()


def _take_conn(request: Request) -> Connection | None:
    """The connection :func:`get_credentials` opened for this request, handed over once."""
    conn: Connection | None = getattr(request.state, "scoped_conn", None)
    if conn is not None:
        del request.state.scoped_conn
    return conn


def _open_scoped(engine: Engine, creds: Credentials) -> Connection:
    conn = engine.connect()
    try:
        rls.apply(conn, creds.principal)
    except BaseException:
        conn.close()
        raise
    return conn


ScopedConnDep = Annotated[Connection, Depends(get_scoped_conn)]


def audited(
    request: Request,
    conn: Connection,
    principal: Principal | None,
    *,
    action: str,
    target_type: str | None = None,
    target_ids: list[str] | tuple[str, ...] = (),
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a successful audited action in ``conn``'s transaction."""
    audit.record(
        conn,
        actor=principal,
        action=action,
        target_type=target_type,
        target_ids=target_ids,
        ip=client_ip(request),
        detail=detail,
    )


# --------------------------------------------------------------------------- layers


#: How long the set of public layers is cached (the security administrator's change shows
#: within this time on every worker).
PUBLIC_LAYERS_TTL = 5.0
CASE_ROLES = frozenset({Role.town_leader, Role.village_leader, Role.grid_worker})


def public_layer_set(request: Request) -> frozenset[str]:
    """Layers anonymous users may see (cached for :data:`PUBLIC_LAYERS_TTL` seconds)."""
    state = request.app.state
    cached: tuple[float, frozenset[str]] | None = getattr(state, "public_layers", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > PUBLIC_LAYERS_TTL:
        engine: Engine = state.engine
        with engine.connect() as conn:
            cached = (now, frozenset(embeds.public_layers(conn)))
        state.public_layers = cached
    return cached[1]


def may_see_layer(request: Request, creds: Credentials, layer: str) -> bool:
    """Can this request see ``layer``? Signed-in users see every layer without personal
    data, and cases' points with ``case.read`` (within their scope); embeds their named
    layers; anonymous users the layers the security administrator marked public. Cases'
    points are never public ("heat" stands for cases aggregated)."""
    if creds.principal is not None:
        return layer != "cases" or creds.principal.role in CASE_ROLES
    if layer == "cases":
        return False
    if creds.embed is not None:
        return layer in creds.embed.layers
    return layer in public_layer_set(request)


def check_layer(request: Request, creds: Credentials, layer: str) -> None:
    """Raise unless the request may see ``layer`` (401 for anonymous, else 403)."""
    if not may_see_layer(request, creds, layer):
        if creds.principal is None and creds.embed is None:
            raise Unauthenticated(f"layer {layer!r} is not public: sign in to see it")
        raise Forbidden(f"layer {layer!r} is not available to you")


# --------------------------------------------------------------------------- the app


def policy_of(route: Any) -> str | None:
    """The action a route declared through :func:`allow` (None: none)."""
    if not isinstance(route, APIRoute):
        return None
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Allow):
            return dep.call.action
        stack.extend(dep.dependencies)
    return None


def all_routes(app: FastAPI) -> list[Any]:
    """Every route of ``app`` with its full path (included routers flattened)."""
    flatten = getattr(fastapi_routing, "_iter_included_route_candidates", None)
    return list(flatten(app.routes)) if flatten else list(app.routes)


def check_routes(app: FastAPI) -> None:
    """Refuse an app with a route whose rule is not declared (``allow``)."""
    missing = [
        f"{sorted(getattr(r, 'methods', None) or [])} {getattr(r, 'path', r)}"
        for r in all_routes(app)
        if (isinstance(r, APIRoute) and policy_of(r) is None) or isinstance(r, Mount)
    ]
    if missing:
        raise ConfigurationError(f"routes without an access rule: {missing}")


def document_access(app: FastAPI) -> None:
    """Add each route's access answers to the OpenAPI document: 401 and 403 where the
    route's action is not open to everyone, with the policy's description."""
    base = app.openapi
    error_ref = {"$ref": "#/components/schemas/ErrorPublic"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        paths = schema.get("paths", {})
        for route in all_routes(app):
            action = policy_of(route)
            if action is None or not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            rule = POLICY[action]
            for method in route.methods or ():
                op = paths.get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                op.setdefault("x-geogrid-action", action)
                responses = op.setdefault("responses", {})
                content = {"application/json": {"schema": error_ref}}
                if "anonymous" not in rule.roles or action in ("layer.read", "heat.read"):
                    responses.setdefault(
                        "401",
                        {"description": "Not signed in, or bad credentials.", "content": content},
                    )
                if action not in ("public.read", "auth.signin"):
                    responses.setdefault(
                        "403",
                        {"description": f"Refused: {rule.description}.", "content": content},
                    )
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "ErrorPublic",
            {
                "type": "object",
                "required": ["code", "description"],
                "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
            },
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def install(app: FastAPI) -> None:
    """Error handlers for sign-in: 401 with ``WWW-Authenticate``, pages to /login."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(request)

    @app.exception_handler(PasswordChangeRequired)
    async def _password(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/account/password", status_code=303)

    @app.exception_handler(Unauthenticated)
    async def _unauth(request: Request, exc: Unauthenticated) -> Response:
        return JSONResponse(
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="geogrid"'},
            content={"code": "Unauthenticated", "description": exc.message},
        )
