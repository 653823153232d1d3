"""Routes: sign-in for the API (OAuth2 password flow, refresh, sign-out, password change)
and for the pages (a Chinese sign-in page, a server-side session cookie, sign-out).

Every sign-in, refusal and password change is audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from api.auth import allow, client_ip, principal_of, require, secret_of
from api.deps import get_engine as _engine
from api.deps import get_settings as _settings
from api.schemas import ErrorPublic
from geogrid.access import audit, sessions, tokens, users
from geogrid.access.policy import ROLE_NAMES, Principal
from geogrid.errors import InvalidInput, Unauthenticated
from geogrid.i18n import pick_lang, t
from tiles import pages as tp

router = APIRouter(tags=["auth"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorPublic, "description": "Bad input."},
    401: {"model": ErrorPublic, "description": "Not signed in, or bad credentials."},
    403: {"model": ErrorPublic, "description": "Refused (role, scope or CSRF)."},
}


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_token: str = Field(description="Use once at /api/auth/refresh; rotates.")
    must_change_password: bool


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=10, max_length=200)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


class MePublic(BaseModel):
    username: str
    role: str
    role_name: str
    scope: str
    permissions: list[str]
    must_change_password: bool


def _signin(request: Request, username: str, password: str) -> users.User:
    """Check a sign-in, auditing it; the failure count is committed before refusing."""
    s = _settings(request)
    with _engine(request).begin() as conn:
        user = users.authenticate(
            conn,
            username=username,
            password=password,
            max_failures=s.login_max_failures,
            lock_minutes=s.login_lock_minutes,
        )
        audit.record(
            conn,
            actor=user.principal() if user else None,
            action="auth.signin",
            outcome="ok" if user else "refused",
            ip=client_ip(request),
            detail={} if user else {"username": username[:64]},
        )
    if user is None:
        raise users.signin_refused()
    return user


# --------------------------------------------------------------------------- API


@router.post("/api/auth/token", response_model=TokenPublic, responses=_ERRORS)
def token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    _: Annotated[Principal | None, Depends(allow("auth.signin"))],
) -> TokenPublic:
    """OAuth2 password flow: an access token (short-lived) and a refresh token."""
    user = _signin(request, form.username, form.password)
    s = _settings(request)
    access, ttl = tokens.issue_access_token(
        secret_of(request), user_id=user.id, minutes=s.access_token_minutes
    )
    with _engine(request).begin() as conn:
        refresh = tokens.issue_refresh_token(conn, user_id=user.id, days=s.refresh_token_days)
    return TokenPublic(
        access_token=access,
        expires_in=ttl,
        refresh_token=refresh,
        must_change_password=user.must_change_password,
    )


@router.post("/api/auth/refresh", response_model=TokenPublic, responses=_ERRORS)
def refresh(
    request: Request,
    body: RefreshIn,
    _: Annotated[Principal | None, Depends(allow("auth.signin"))],
) -> TokenPublic:
    """Exchange a refresh token (once) for a new access token and refresh token."""
    s = _settings(request)
    with _engine(request).begin() as conn:
        result = tokens.rotate_refresh_token(conn, body.refresh_token, days=s.refresh_token_days)
        if result[0] < 0:
            audit.record(
                conn,
                actor=None,
                action="auth.refresh",
                outcome="refused",
                ip=client_ip(request),
                detail={"reason": result[1]},
            )
    user_id, new_refresh = tokens.check_rotation(result)
    access, ttl = tokens.issue_access_token(
        secret_of(request), user_id=user_id, minutes=s.access_token_minutes
    )
    with _engine(request).connect() as conn:
        user = users.get_user(conn, user_id=user_id)
    return TokenPublic(
        access_token=access,
        expires_in=ttl,
        refresh_token=new_refresh,
        must_change_password=user.must_change_password,
    )


@router.post(
    "/api/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ERRORS,
)
def logout_api(
    request: Request,
    body: RefreshIn,
    _: Annotated[Principal | None, Depends(allow("auth.signin"))],
) -> Response:
    """Sign an API client out: its refresh token (and its family) is revoked."""
    with _engine(request).begin() as conn:
        tokens.revoke_refresh_token(conn, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/auth/me", response_model=MePublic, responses=_ERRORS)
def me(principal: Annotated[Principal | None, Depends(allow("auth.self"))]) -> MePublic:
    """Who am I: role, scope and permissions."""
    p = require(principal)
    return MePublic(
        username=p.username,
        role=str(p.role),
        role_name=ROLE_NAMES[p.role],
        scope=str(p.scope),
        permissions=sorted(p.permissions),
        must_change_password=p.must_change_password,
    )


@router.post(
    "/api/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ERRORS,
)
def change_password(
    request: Request,
    body: PasswordChange,
    principal: Annotated[Principal | None, Depends(allow("auth.self"))],
) -> Response:
    """Change one's own password (required after the first sign-in)."""
    _change(request, require(principal), body.old_password, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _change(request: Request, p: Principal, old: str, new: str) -> None:
    with _engine(request).begin() as conn:
        users.change_password(conn, user_id=p.user_id, old=old, new=new)
        audit.record(conn, actor=p, action="auth.password", ip=client_ip(request))


# --------------------------------------------------------------------------- pages


def _safe_next(target: str | None) -> str:
    """Only a local path (never ``//host`` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _lang(request: Request) -> str:
    """The page's language: ``?lang=``, then the visitor's remembered choice."""
    return pick_lang(request.query_params.get("lang"), request.cookies.get("gg_lang"))


def _page(request: Request, template: str, title_key: str, **context: object) -> HTMLResponse:
    lang = _lang(request)
    config = tp.page_config(_settings(request), "auth")
    return HTMLResponse(
        tp.render_page(template, config=config, title=t(title_key, lang), lang=lang, **context),
        headers={"Cache-Control": "no-store"},
    )


def _reasons(request: Request, exc: InvalidInput) -> str:
    """The page's own words for a refused password change (never the server's English)."""
    lang = _lang(request)
    codes = exc.detail.get("reasons") or ["invalid"]
    return " ".join(t(f"common.auth.reason.{code}", lang) for code in codes)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(
    request: Request,
    _: Annotated[Principal | None, Depends(allow("public.read"))],
    next: str | None = None,
) -> HTMLResponse:
    """The sign-in page (登录)."""
    return _page(request, "login.html", "common.auth.title", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(
    request: Request,
    _: Annotated[Principal | None, Depends(allow("auth.signin"))],
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the form; on success set the session cookie and go on."""
    try:
        user = _signin(request, username, password)
    except Unauthenticated:  # one message for every refusal: it reveals nothing
        refused = t("common.auth.refused", _lang(request))
        page = _page(
            request, "login.html", "common.auth.title", next=_safe_next(next), error=refused
        )
        page.status_code = 401
        return page
    s = _settings(request)
    with _engine(request).begin() as conn:
        value, _sid = sessions.create_session(
            conn, user_id=user.id, max_hours=s.session_max_hours, ip=client_ip(request)
        )
    target = "/account/password" if user.must_change_password else _safe_next(next)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        value,
        max_age=s.session_max_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
def logout_page(
    request: Request, principal: Annotated[Principal | None, Depends(allow("auth.self"))]
) -> Response:
    """End the page session."""
    p = require(principal)
    if p.session_id:
        with _engine(request).begin() as conn:
            sessions.end_session(conn, p.session_id)
            audit.record(conn, actor=p, action="auth.signout", ip=client_ip(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.get("/account/password", response_class=HTMLResponse, include_in_schema=False)
def password_page(
    request: Request,
    principal: Annotated[Principal | None, Depends(allow("auth.self", page=True))],
) -> HTMLResponse:
    """Change one's password (forced after the first sign-in)."""
    p = require(principal)
    return _page(
        request,
        "password.html",
        "common.auth.change_title",
        user=p,
        error=None,
        csrf=_csrf(request, p),
    )


@router.post("/account/password", response_class=HTMLResponse, include_in_schema=False)
def password_form(
    request: Request,
    principal: Annotated[Principal | None, Depends(allow("auth.self", page=True))],
    old_password: Annotated[str, Form(max_length=200)],
    new_password: Annotated[str, Form(max_length=200)],
) -> Response:
    p = require(principal)
    try:
        _change(request, p, old_password, new_password)
    except InvalidInput as exc:
        page = _page(
            request,
            "password.html",
            "common.auth.change_title",
            user=p,
            error=_reasons(request, exc),
            csrf=_csrf(request, p),
        )
        page.status_code = 400
        return page
    return RedirectResponse("/", status_code=303)


def _csrf(request: Request, p: Principal) -> str:
    return sessions.csrf_token(secret_of(request), p.session_id) if p.session_id else ""


def csrf_for(request: Request) -> str:
    """The CSRF token of the request's page session ("" without one), for page configs."""
    p = principal_of(request)
    return _csrf(request, p) if p else ""
