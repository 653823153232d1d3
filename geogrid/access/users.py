"""User accounts: add, list, disable, enable, reset passwords, grant permissions; sign-in
with slowdown and temporary lockout after repeated failures.

Service functions take a connection in a transaction (the caller commits) and never return
password hashes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from geogrid.access.passwords import (
    check_password,
    dummy_verify,
    generate_password,
    hash_password,
    verify_password,
)
from geogrid.access.policy import PERMISSIONS, Principal, Role
from geogrid.access.scope import Scope
from geogrid.errors import Conflict, InvalidInput, NotFound, Unauthenticated

#: Failed sign-ins in a row before each further attempt is slowed down.
SLOWDOWN_AFTER = 3
SLOWDOWN_STEP = 0.5
SLOWDOWN_MAX = 3.0


@dataclass(frozen=True)
class User:
    """An account as administrators see it (no password hash)."""

    id: int
    username: str
    display_name: str | None
    role: Role
    scope: Scope
    permissions: tuple[str, ...]
    must_change_password: bool
    disabled: bool
    locked_until: datetime | None
    last_login_at: datetime | None

    def principal(self, **kw: object) -> Principal:
        return Principal(
            user_id=self.id,
            username=self.username,
            role=self.role,
            scope=self.scope,
            permissions=frozenset(self.permissions),
            must_change_password=self.must_change_password,
            **kw,  # type: ignore[arg-type]
        )


_COLS = (
    "id, username, display_name, role, scope_kind, scope_code, permissions, "
    "must_change_password, disabled, locked_until, last_login_at"
)


def _user(row: object) -> User:
    return user_from(row._mapping)  # type: ignore[attr-defined]


def user_from(r: Mapping[str, Any]) -> User:
    """The account of a row of :data:`_COLS` (a mapping: a SQLAlchemy row's or a driver's)."""
    return User(
        id=r["id"],
        username=r["username"],
        display_name=r["display_name"],
        role=Role(r["role"]),
        scope=Scope(r["scope_kind"], r["scope_code"]),
        permissions=tuple(r["permissions"]),
        must_change_password=r["must_change_password"],
        disabled=r["disabled"],
        locked_until=r["locked_until"],
        last_login_at=r["last_login_at"],
    )


def _check_role_scope(role: Role, scope: Scope) -> None:
    if role in (Role.sysadmin, Role.secadmin, Role.auditor) and scope.kind != "all":
        raise InvalidInput(f"role {role} works on the whole system: its scope must be 'all'")
    if role == Role.town_leader and scope.kind not in ("town", "all"):
        raise InvalidInput("a town leader's scope is a town (or all)")
    if role == Role.village_leader and scope.kind != "village":
        raise InvalidInput("a village leader's scope is a village code")
    if role == Role.grid_worker and scope.kind != "grid":
        raise InvalidInput("a grid worker's scope is a 15-digit grid code")


def get_user(conn: Connection, *, username: str | None = None, user_id: int | None = None) -> User:
    """One account by name or id (:class:`NotFound` otherwise)."""
    row = conn.execute(
        text(f"SELECT {_COLS} FROM users WHERE username = :u OR id = :i"),
        {"u": username, "i": user_id},
    ).first()
    if row is None:
        raise NotFound(f"no user {username or user_id!r}")
    return _user(row)


def list_users(conn: Connection) -> list[User]:
    """Every account, by user name."""
    return [_user(r) for r in conn.execute(text(f"SELECT {_COLS} FROM users ORDER BY username"))]


def add_user(
    conn: Connection,
    *,
    username: str,
    role: Role | str,
    scope: Scope,
    password: str | None = None,
    display_name: str | None = None,
    must_change_password: bool = True,
) -> tuple[User, str]:
    """Create an account; returns it with its password (generated when not given).

    A user holds exactly one role, so the three administrator roles stay separate.
    """
    role = Role(role)
    _check_role_scope(role, scope)
    password = password or generate_password()
    check_password(password, username=username)
    try:
        with conn.begin_nested():
            row = conn.execute(
                text(
                    "INSERT INTO users (username, display_name, role, scope_kind, scope_code, "
                    "password_hash, must_change_password) VALUES (:u, :d, :r, :k, :c, :h, :m) "
                    f"RETURNING {_COLS}"
                ),
                {
                    "u": username,
                    "d": display_name,
                    "r": str(role),
                    "k": scope.kind,
                    "c": scope.code,
                    "h": hash_password(password),
                    "m": must_change_password,
                },
            ).one()
    except IntegrityError as exc:
        if "uq_users_username" in str(exc.orig):
            raise Conflict(f"user {username!r} exists already") from None
        raise InvalidInput(
            f"user name {username!r} is not allowed: 3-64 letters, digits or _ . @ -"
        ) from None
    return _user(row), password


def set_disabled(conn: Connection, *, username: str, disabled: bool) -> User:
    """Disable (every session and token stops working) or enable an account."""
    user = get_user(conn, username=username)
    conn.execute(
        text(
            "UPDATE users SET disabled = :d, failed_logins = 0, locked_until = NULL, "
            "updated_at = now() WHERE id = :i"
        ),
        {"d": disabled, "i": user.id},
    )
    if disabled:
        revoke_all(conn, user_id=user.id)
    return get_user(conn, user_id=user.id)


def revoke_all(conn: Connection, *, user_id: int) -> None:
    """End every page session and refresh-token family of a user."""
    conn.execute(
        text(
            "UPDATE web_sessions SET revoked_at = now() WHERE user_id = :i AND revoked_at IS NULL"
        ),
        {"i": user_id},
    )
    conn.execute(
        text(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = :i AND revoked_at IS NULL"
        ),
        {"i": user_id},
    )


def reset_password(conn: Connection, *, username: str) -> str:
    """A new generated password the user must change at the next sign-in."""
    user = get_user(conn, username=username)
    password = generate_password()
    conn.execute(
        text(
            "UPDATE users SET password_hash = :h, must_change_password = true, "
            "failed_logins = 0, locked_until = NULL, updated_at = now() WHERE id = :i"
        ),
        {"h": hash_password(password), "i": user.id},
    )
    revoke_all(conn, user_id=user.id)
    return password


def change_password(conn: Connection, *, user_id: int, old: str, new: str) -> None:
    """The user's own change: the old password must match, the new one meet the rules."""
    row = conn.execute(
        text("SELECT username, password_hash FROM users WHERE id = :i AND NOT disabled"),
        {"i": user_id},
    ).first()
    if row is None or not verify_password(old, row.password_hash):
        raise InvalidInput(
            "当前密码不正确 (the current password is wrong)", detail={"reasons": ["wrong_current"]}
        )
    if old == new:
        raise InvalidInput(
            "新密码不能与旧密码相同 (the new password must differ from the old one)",
            detail={"reasons": ["same_as_old"]},
        )
    check_password(new, username=row.username)
    conn.execute(
        text(
            "UPDATE users SET password_hash = :h, must_change_password = false, "
            "password_changed_at = now(), updated_at = now() WHERE id = :i"
        ),
        {"h": hash_password(new), "i": user_id},
    )


def set_permissions(
    conn: Connection, *, username: str, grant: list[str], revoke: list[str]
) -> User:
    """Grant or revoke the extra permissions (``special``, ``unmask``)."""
    unknown = sorted(set(grant + revoke) - set(PERMISSIONS))
    if unknown:
        raise InvalidInput(f"unknown permission(s) {unknown}; known: {sorted(PERMISSIONS)}")
    user = get_user(conn, username=username)
    perms = (set(user.permissions) | set(grant)) - set(revoke)
    conn.execute(
        text("UPDATE users SET permissions = :p, updated_at = now() WHERE id = :i"),
        {"p": sorted(perms), "i": user.id},
    )
    return get_user(conn, user_id=user.id)


#: Every refusal says the same thing, whether the name is unknown, the password wrong, the
#: account disabled or locked, so that it reveals nothing to a guesser.
SIGNIN_REFUSED = (
    "用户名或密码错误，或账号已锁定 (wrong user name or password, or the account is locked)"
)


def signin_refused() -> Unauthenticated:
    return Unauthenticated(SIGNIN_REFUSED)


def authenticate(
    conn: Connection, *, username: str, password: str, max_failures: int, lock_minutes: int
) -> User | None:
    """Check a sign-in; count failures, slow down after a few and lock after ``max_failures``.

    Returns the user, or ``None`` when refused: the caller commits (the failure count must
    survive the refusal) and then raises :func:`signin_refused`.
    """
    row = conn.execute(
        text(
            "SELECT id, password_hash, disabled, failed_logins, "
            "locked_until > now() AS locked FROM users WHERE username = :u FOR UPDATE"
        ),
        {"u": username},
    ).first()
    if row is None:
        dummy_verify(password)
        return None
    if row.failed_logins >= SLOWDOWN_AFTER:
        time.sleep(min(SLOWDOWN_MAX, SLOWDOWN_STEP * (row.failed_logins - SLOWDOWN_AFTER + 1)))
    ok = verify_password(password, row.password_hash)
    if row.locked or row.disabled or not ok:
        if not row.locked:
            conn.execute(
                text(
                    "UPDATE users SET failed_logins = failed_logins + 1, locked_until = "
                    "CASE WHEN failed_logins + 1 >= :n THEN now() + make_interval(mins => :m) "
                    "END WHERE id = :i"
                ),
                {"n": max_failures, "m": lock_minutes, "i": row.id},
            )
        return None
    conn.execute(
        text(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = now() "
            "WHERE id = :i"
        ),
        {"i": row.id},
    )
    return get_user(conn, user_id=row.id)
