"""Embed tokens for other portals: signed (JWT), read-only, limited to named public layers
and allowed origins, with an expiry; revocable (the token's id is checked in the database)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import Connection, text

from geogrid.access.tokens import ALGORITHM, ISSUER
from geogrid.errors import Forbidden, InvalidInput, Unauthenticated

AUDIENCE = "geogrid-embed"
#: Layers an embed may show: no personal data, cases only aggregated.
EMBEDDABLE = ("towns", "villages", "groups", "grids", "key_units", "inspection_points", "heat")
#: Layers the security administrator may make public (households only as counts; visit
#: coverage only as counts and shares per grid).
PUBLISHABLE = (*EMBEDDABLE, "households", "visit_coverage")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


@dataclass(frozen=True)
class EmbedGrant:
    id: str
    name: str
    layers: tuple[str, ...]
    origins: tuple[str, ...]
    expires_at: datetime


def issue(
    conn: Connection,
    secret: bytes,
    *,
    name: str,
    layers: list[str],
    origins: list[str],
    days: int,
    issued_by: str | None,
) -> tuple[EmbedGrant, str]:
    """Store and sign a new embed token; returns the grant and the token."""
    bad = sorted(set(layers) - set(EMBEDDABLE))
    if not layers or bad:
        raise InvalidInput(f"embeddable layers are {', '.join(EMBEDDABLE)}; got {bad or 'none'}")
    wrong = [o for o in origins if not _ORIGIN.match(o)]
    if not origins or wrong:
        raise InvalidInput(
            f"origins must be scheme://host[:port] (e.g. http://portal.example.gov.cn); got "
            f"{wrong or 'none'}"
        )
    if not 1 <= days <= 3660:
        raise InvalidInput("an embed token lasts 1 to 3660 days")
    tid = secrets.token_hex(16)
    expires = datetime.now(UTC) + timedelta(days=days)
    conn.execute(
        text(
            "INSERT INTO embed_tokens (id, name, layers, origins, expires_at, issued_by) "
            "VALUES (:id, :n, :l, :o, :e, :b)"
        ),
        {"id": tid, "n": name, "l": layers, "o": origins, "e": expires, "b": issued_by},
    )
    token = jwt.encode(
        {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": tid,
            "exp": expires,
            "typ": "embed",
            "layers": layers,
            "origins": origins,
        },
        secret,
        algorithm=ALGORITHM,
    )
    return EmbedGrant(tid, name, tuple(layers), tuple(origins), expires), token


def revoke(conn: Connection, token_id: str) -> None:
    n = conn.execute(
        text("UPDATE embed_tokens SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"),
        {"id": token_id},
    ).rowcount
    if not n:
        raise InvalidInput(f"no live embed token {token_id!r}")


def list_grants(conn: Connection) -> list[tuple[EmbedGrant, bool]]:
    rows = conn.execute(
        text(
            "SELECT id, name, layers, origins, expires_at, revoked_at IS NULL AND "
            "expires_at > now() AS live FROM embed_tokens ORDER BY created_at"
        )
    )
    return [
        (EmbedGrant(r.id, r.name, tuple(r.layers), tuple(r.origins), r.expires_at), r.live)
        for r in rows
    ]


def read(conn: Connection, secret: bytes, token: str) -> EmbedGrant:
    """The grant of a valid, live token; :class:`Unauthenticated` otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "jti"]},
        )
    except jwt.PyJWTError:
        raise Unauthenticated("the embed token is not valid or has expired") from None
    row = conn.execute(
        text(
            "SELECT id, name, layers, origins, expires_at FROM embed_tokens "
            "WHERE id = :id AND revoked_at IS NULL AND expires_at > now()"
        ),
        {"id": str(claims.get("jti"))},
    ).first()
    if row is None or claims.get("typ") != "embed":
        raise Unauthenticated("the embed token was revoked")
    return EmbedGrant(row.id, row.name, tuple(row.layers), tuple(row.origins), row.expires_at)


def check_layer(grant: EmbedGrant, layer: str) -> None:
    if layer not in grant.layers:
        raise Forbidden(f"this embed token does not cover layer {layer!r}")


def public_layers(conn: Connection) -> set[str]:
    """Layers anonymous users may see (set by the security administrator)."""
    return {r[0] for r in conn.execute(text("SELECT layer FROM public_layers WHERE public"))}


def set_public(conn: Connection, *, layer: str, public: bool, by: str | None) -> None:
    if layer not in PUBLISHABLE:
        raise InvalidInput(f"unknown layer {layer!r}; layers: {', '.join(PUBLISHABLE)}")
    conn.execute(
        text(
            "INSERT INTO public_layers (layer, public, changed_by) VALUES (:l, :p, :b) "
            "ON CONFLICT (layer) DO UPDATE SET public = :p, changed_by = :b, changed_at = now()"
        ),
        {"l": layer, "p": public, "b": by},
    )
