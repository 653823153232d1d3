"""Routes: administration, split three ways (三员分立) — accounts (system administrator),
permissions, public layers and embed tokens (security administrator), the audit log
(auditor). Every call is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import allow, audited, require, secret_of
from api.deps import get_engine as _engine
from api.routes.auth import csrf_for
from api.schemas import ErrorPublic
from geogrid.access import audit, users
from geogrid.access import embed as embeds
from geogrid.access.policy import ROLE_NAMES, Principal, Role
from geogrid.access.scope import Scope
from tiles import pages as tp

router = APIRouter(tags=["admin"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorPublic, "description": "Bad input."},
    401: {"model": ErrorPublic, "description": "Not signed in."},
    403: {"model": ErrorPublic, "description": "Not this role's job."},
    404: {"model": ErrorPublic, "description": "No such user or token."},
    409: {"model": ErrorPublic, "description": "The user exists already."},
}
Username = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.@-]{3,64}$")]


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str | None
    role: str
    role_name: str
    scope: str
    permissions: list[str]
    must_change_password: bool
    disabled: bool
    locked_until: datetime | None
    last_login_at: datetime | None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{3,64}$")
    display_name: str | None = Field(default=None, max_length=100)
    role: Role
    scope: str = Field(
        pattern=r"^(all|\d{12}|\d{15})$",
        description="all, or a town, village (12 digits) or grid code (15 digits)",
    )


class UserCreated(BaseModel):
    user: UserPublic
    password: str = Field(description="Generated; shown once. Must be changed at first sign-in.")


class PermissionsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grant: list[Literal["special", "unmask"]] = Field(default_factory=list, max_length=2)
    revoke: list[Literal["special", "unmask"]] = Field(default_factory=list, max_length=2)


class LayerPublicity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: bool


class EmbedCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    layers: list[str] = Field(min_length=1, max_length=10)
    origins: list[str] = Field(min_length=1, max_length=20)
    days: int = Field(default=365, ge=1, le=3660)


class EmbedPublic(BaseModel):
    id: str
    name: str
    layers: list[str]
    origins: list[str]
    expires_at: datetime
    live: bool = True
    token: str | None = Field(default=None, description="Only when issued.")


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: str | None
    actor_role: str | None
    ip: str | None
    action: str
    outcome: str
    target_type: str | None
    target_ids: list[str]
    detail: dict[str, object]


class AuditPage(BaseModel):
    total: int
    entries: list[AuditEntryPublic]


def _public(u: users.User) -> UserPublic:
    return UserPublic(
        id=u.id,
        username=u.username,
        display_name=u.display_name,
        role=str(u.role),
        role_name=ROLE_NAMES[u.role],
        scope=str(u.scope),
        permissions=list(u.permissions),
        must_change_password=u.must_change_password,
        disabled=u.disabled,
        locked_until=u.locked_until,
        last_login_at=u.last_login_at,
    )


UserAdmin = Annotated[Principal | None, Depends(allow("user.manage"))]
SecAdmin = Annotated[Principal | None, Depends(allow("layer.publish"))]


# --------------------------------------------------------------------------- accounts


@router.get("/api/users", response_model=list[UserPublic], responses=_ERRORS)
def list_users(request: Request, principal: UserAdmin) -> list[UserPublic]:
    """Every account (system administrator)."""
    with _engine(request).begin() as conn:
        found = users.list_users(conn)
        audited(request, conn, principal, action="user.list", target_type="user")
    return [_public(u) for u in found]


@router.post("/api/users", response_model=UserCreated, status_code=201, responses=_ERRORS)
def add_user(request: Request, body: UserCreate, principal: UserAdmin) -> UserCreated:
    """Create an account with a generated password (shown once)."""
    with _engine(request).begin() as conn:
        user, password = users.add_user(
            conn,
            username=body.username,
            role=body.role,
            scope=Scope.parse(body.scope),
            display_name=body.display_name,
        )
        audited(
            request,
            conn,
            principal,
            action="user.add",
            target_type="user",
            target_ids=[user.username],
            detail={"role": str(user.role), "scope": str(user.scope)},
        )
    return UserCreated(user=_public(user), password=password)


@router.post("/api/users/{username}/disable", response_model=UserPublic, responses=_ERRORS)
def disable_user(request: Request, username: Username, principal: UserAdmin) -> UserPublic:
    """Disable an account: its sessions and tokens stop working at once."""
    return _set_disabled(request, username, principal, True)


@router.post("/api/users/{username}/enable", response_model=UserPublic, responses=_ERRORS)
def enable_user(request: Request, username: Username, principal: UserAdmin) -> UserPublic:
    """Enable an account (and clear a lockout)."""
    return _set_disabled(request, username, principal, False)


def _set_disabled(
    request: Request, username: str, principal: Principal | None, disabled: bool
) -> UserPublic:
    with _engine(request).begin() as conn:
        user = users.set_disabled(conn, username=username, disabled=disabled)
        audited(
            request,
            conn,
            principal,
            action="user.disable" if disabled else "user.enable",
            target_type="user",
            target_ids=[username],
        )
    return _public(user)


@router.post("/api/users/{username}/reset-password", response_model=UserCreated, responses=_ERRORS)
def reset_password(request: Request, username: Username, principal: UserAdmin) -> UserCreated:
    """A new generated password, to be changed at the next sign-in."""
    with _engine(request).begin() as conn:
        password = users.reset_password(conn, username=username)
        user = users.get_user(conn, username=username)
        audited(
            request,
            conn,
            principal,
            action="user.reset_password",
            target_type="user",
            target_ids=[username],
        )
    return UserCreated(user=_public(user), password=password)


@router.post("/api/users/{username}/permissions", response_model=UserPublic, responses=_ERRORS)
def set_permissions(
    request: Request,
    username: Username,
    body: PermissionsChange,
    principal: Annotated[Principal | None, Depends(allow("user.grant"))],
) -> UserPublic:
    """Grant or revoke ``special`` and ``unmask`` (security administrator)."""
    with _engine(request).begin() as conn:
        user = users.set_permissions(
            conn, username=username, grant=list(body.grant), revoke=list(body.revoke)
        )
        audited(
            request,
            conn,
            principal,
            action="user.grant",
            target_type="user",
            target_ids=[username],
            detail={"grant": body.grant, "revoke": body.revoke},
        )
    return _public(user)


# --------------------------------------------------------------------------- layers, embeds


@router.get("/api/layers/public", response_model=dict[str, bool], responses=_ERRORS)
def public_layers(request: Request, principal: SecAdmin) -> dict[str, bool]:
    """Which layers anonymous users see."""
    shown = _public_set(request)
    return {layer: layer in shown for layer in embeds.PUBLISHABLE}


def _public_set(request: Request) -> set[str]:
    with _engine(request).connect() as conn:
        return embeds.public_layers(conn)


@router.put("/api/layers/public/{layer}", response_model=dict[str, bool], responses=_ERRORS)
def set_layer_public(
    request: Request,
    layer: Annotated[str, Path(pattern=r"^[a-z_]{1,40}$")],
    body: LayerPublicity,
    principal: SecAdmin,
) -> dict[str, bool]:
    """Mark a layer public (anonymous users see it) or not. Cases are never public."""
    with _engine(request).begin() as conn:
        embeds.set_public(
            conn, layer=layer, public=body.public, by=principal.username if principal else None
        )
        audited(
            request,
            conn,
            principal,
            action="layer.publish",
            target_type="layer",
            target_ids=[layer],
            detail={"public": body.public},
        )
    return public_layers(request, principal)


def _embed_public(
    g: embeds.EmbedGrant, *, live: bool = True, token: str | None = None
) -> EmbedPublic:
    return EmbedPublic(
        id=g.id,
        name=g.name,
        layers=list(g.layers),
        origins=list(g.origins),
        expires_at=g.expires_at,
        live=live,
        token=token,
    )


@router.get("/api/embed-tokens", response_model=list[EmbedPublic], responses=_ERRORS)
def list_embed_tokens(request: Request, principal: SecAdmin) -> list[EmbedPublic]:
    """Embed tokens issued so far (without the tokens themselves)."""
    with _engine(request).connect() as conn:
        grants = embeds.list_grants(conn)
    return [_embed_public(g, live=live) for g, live in grants]


@router.post("/api/embed-tokens", response_model=EmbedPublic, status_code=201, responses=_ERRORS)
def issue_embed_token(request: Request, body: EmbedCreate, principal: SecAdmin) -> EmbedPublic:
    """Issue a signed, read-only token for named layers, origins and a lifetime."""
    p = require(principal)
    with _engine(request).begin() as conn:
        grant, token = embeds.issue(
            conn,
            secret_of(request),
            name=body.name,
            layers=body.layers,
            origins=body.origins,
            days=body.days,
            issued_by=p.username,
        )
        audited(
            request,
            conn,
            p,
            action="embed.issue",
            target_type="embed_token",
            target_ids=[grant.id],
            detail={"layers": body.layers, "origins": body.origins},
        )
    return _embed_public(grant, token=token)


@router.delete("/api/embed-tokens/{token_id}", status_code=204, responses=_ERRORS)
def revoke_embed_token(
    request: Request,
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    principal: SecAdmin,
) -> None:
    """Revoke an embed token at once."""
    with _engine(request).begin() as conn:
        embeds.revoke(conn, token_id)
        audited(
            request,
            conn,
            principal,
            action="embed.revoke",
            target_type="embed_token",
            target_ids=[token_id],
        )


# --------------------------------------------------------------------------- audit


AuditReader = Annotated[Principal | None, Depends(allow("audit.read"))]


_Text = Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00]*$")]


@dataclass(frozen=True)
class AuditFilters:
    """The filters the audit API and the audit page share (query parameters)."""

    actor: _Text = None
    action: _Text = None
    outcome: Annotated[Literal["ok", "refused", "failed"] | None, Query()] = None
    target: _Text = None
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0


AuditFiltersDep = Annotated[AuditFilters, Depends()]


def _search(
    request: Request,
    principal: Principal | None,
    f: AuditFilters,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> AuditPage:
    with _engine(request).begin() as conn:
        entries, total = audit.search(
            conn,
            actor=f.actor,
            action=f.action,
            outcome=f.outcome,
            target=f.target,
            since=since,
            until=until,
            limit=limit,
            offset=f.offset,
        )
        audited(
            request,
            conn,
            principal,
            action="audit.read",
            target_type="audit_log",
            detail={"actor": f.actor, "action": f.action, "target": f.target},
        )
    return AuditPage(
        total=total, entries=[AuditEntryPublic.model_validate(e.__dict__) for e in entries]
    )


@router.get("/api/audit", response_model=AuditPage, responses=_ERRORS)
def search_audit(
    request: Request,
    principal: AuditReader,
    filters: AuditFiltersDep,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Search the audit log (auditor): newest first."""
    return _search(request, principal, filters, since=since, until=until, limit=limit)


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    principal: Annotated[Principal | None, Depends(allow("audit.read", page=True))],
    filters: AuditFiltersDep,
) -> HTMLResponse:
    """The auditor's page: search form and results (审计日志)."""
    page = _search(request, principal, filters)
    p = require(principal)
    config = tp.page_config(request.app.state.settings, "audit")
    return HTMLResponse(
        tp.render_page(
            "audit.html",
            config=config,
            title="审计日志 Audit log",
            page=page,
            filters={
                "actor": filters.actor or "",
                "action": filters.action or "",
                "outcome": filters.outcome or "",
                "target": filters.target or "",
            },
            offset=filters.offset,
            session_user=p.username,
            csrf=csrf_for(request),
        ),
        headers={"Cache-Control": "no-store"},
    )
