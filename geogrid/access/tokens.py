"""API credentials: short-lived signed access tokens (JWT, HS256) and rotating, revocable
refresh tokens (opaque; only their SHA-256 is stored).

A refresh token is used once: using it returns a new access token and a new refresh token of
the same *family*. Presenting a used token again (a replay: it was stolen, or the client is
confused) revokes the whole family, so the thief's copy dies with the owner's.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Connection, text

from geogrid.errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "geogrid"
AUDIENCE = "geogrid-api"


def sha256(value: str) -> str:
    """Hex SHA-256 of a token (what the database keeps)."""
    return hashlib.sha256(value.encode()).hexdigest()


def issue_access_token(secret: bytes, *, user_id: int, minutes: int) -> tuple[str, int]:
    """A signed access token for ``user_id`` and its lifetime in seconds."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=minutes),
        "jti": secrets.token_hex(8),
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), minutes * 60


def read_access_token(secret: bytes, token: str) -> int:
    """The user id of a valid access token; :class:`Unauthenticated` for anything else
    (malformed, bad signature, another algorithm, expired, not yet valid, wrong audience).

    A token's signature and claims are checked once (:func:`_verified`, remembered for
    the last :data:`VERIFIED_KEPT` tokens: a client sends the same token with every request
    until it expires); its expiry is checked on every use."""
    user_id, expires = _verified(secret, token)
    if time.time() >= expires:
        raise Unauthenticated("the access token has expired; refresh it or sign in again")
    return user_id


#: How many verified access tokens are remembered (per process).
VERIFIED_KEPT = 4096


@functools.lru_cache(maxsize=VERIFIED_KEPT)
def _verified(secret: bytes, token: str) -> tuple[int, float]:
    """(user id, expiry) of a token whose signature and claims are valid now; raises (and
    so remembers nothing) otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired; refresh it or sign in again") from None
    except jwt.PyJWTError:
        raise Unauthenticated("the access token is not valid") from None
    if claims.get("typ") != "access" or not str(claims.get("sub", "")).isdigit():
        raise Unauthenticated("the access token is not valid")
    return int(claims["sub"]), float(claims["exp"])


def issue_refresh_token(
    conn: Connection, *, user_id: int, days: int, family: str | None = None
) -> str:
    """A new refresh token (a new family unless ``family`` is given)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        text(
            "INSERT INTO refresh_tokens (id, user_id, family, expires_at) "
            "VALUES (:id, :u, :f, now() + make_interval(days => :d))"
        ),
        {"id": sha256(token), "u": user_id, "f": family or secrets.token_hex(16), "d": days},
    )
    return token


def rotate_refresh_token(conn: Connection, token: str, *, days: int) -> tuple[int, str]:
    """Use a refresh token once: (user id, its successor). A replay revokes the family.

    The caller commits even when this raises (a replay's revocation must stick): it
    returns normally with the revocation written and raises afterwards through
    :func:`check_rotation`.
    """
    row = conn.execute(
        text(
            "SELECT r.user_id, r.family, r.used_at IS NOT NULL AS used, "
            "r.revoked_at IS NOT NULL AS revoked, r.expires_at < now() AS expired, "
            "u.disabled FROM refresh_tokens r JOIN users u ON u.id = r.user_id "
            "WHERE r.id = :id FOR UPDATE OF r"
        ),
        {"id": sha256(token)},
    ).first()
    if row is None:
        raise Unauthenticated("the refresh token is not valid")
    if row.used or row.revoked:
        conn.execute(
            text(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE family = :f AND revoked_at IS NULL"
            ),
            {"f": row.family},
        )
        return -1, "replayed" if row.used else "revoked"
    if row.expired or row.disabled:
        return -1, "expired" if row.expired else "disabled"
    conn.execute(
        text("UPDATE refresh_tokens SET used_at = now() WHERE id = :id"), {"id": sha256(token)}
    )
    return row.user_id, issue_refresh_token(conn, user_id=row.user_id, days=days, family=row.family)


def check_rotation(result: tuple[int, str]) -> tuple[int, str]:
    """Raise for a refused rotation (after the caller committed the revocation)."""
    user_id, value = result
    if user_id < 0:
        reasons = {
            "replayed": "this refresh token was used before: its whole family is revoked; "
            "sign in again",
            "revoked": "the refresh token was revoked; sign in again",
            "expired": "the refresh token has expired; sign in again",
            "disabled": "the account is disabled",
        }
        raise Unauthenticated(reasons[value])
    return result


def revoke_refresh_token(conn: Connection, token: str) -> None:
    """Sign out an API client: its refresh token's family is revoked."""
    conn.execute(
        text(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND family = "
            "(SELECT family FROM refresh_tokens WHERE id = :id)"
        ),
        {"id": sha256(token)},
    )
