"""Page sessions: a random cookie value (only its SHA-256 is stored), idle and absolute
expiry, and a CSRF token derived from it (HMAC with the server key), which every
state-changing request made with the cookie must echo (header ``X-CSRF-Token`` or form
field ``csrf_token``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Connection, text

from geogrid.access.tokens import sha256

COOKIE = "gg_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def create_session(
    conn: Connection, *, user_id: int, max_hours: int, ip: str | None
) -> tuple[str, str]:
    """A new session: (cookie value, its id as stored)."""
    value = secrets.token_urlsafe(32)
    sid = sha256(value)
    conn.execute(
        text(
            "INSERT INTO web_sessions (id, user_id, expires_at, ip) "
            "VALUES (:id, :u, now() + make_interval(hours => :h), :ip)"
        ),
        {"id": sid, "u": user_id, "h": max_hours, "ip": ip},
    )
    return value, sid


#: A session's last use is written at most this often (not at every request).
TOUCH_SECONDS = 30


def session_user(conn: Connection, value: str, *, idle_minutes: int) -> tuple[int, str] | None:
    """(user id, session id) of a live session cookie, else None.

    The last use is recorded when it is older than :data:`TOUCH_SECONDS`, so a busy page
    does not write a row at every tile it loads.
    """
    sid = sha256(value)
    row = conn.execute(
        text(
            "WITH s AS (SELECT id, user_id, last_seen_at FROM web_sessions WHERE id = :id "
            "AND revoked_at IS NULL AND expires_at > now() "
            "AND last_seen_at > now() - make_interval(mins => :m)), "
            "touch AS (UPDATE web_sessions w SET last_seen_at = now() FROM s "
            "WHERE w.id = s.id AND s.last_seen_at < now() - make_interval(secs => :t)) "
            "SELECT user_id FROM s"
        ),
        {"id": sid, "m": idle_minutes, "t": TOUCH_SECONDS},
    ).first()
    return None if row is None else (int(row.user_id), sid)


def end_session(conn: Connection, session_id: str) -> None:
    conn.execute(
        text("UPDATE web_sessions SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"),
        {"id": session_id},
    )


def csrf_token(secret: bytes, session_id: str) -> str:
    """The CSRF token of a session (stable for the session's life)."""
    return hmac.new(secret, b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session_id: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, session_id), presented or "")
