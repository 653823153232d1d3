"""ORM mirrors of the access tables (migration 0007); a test checks that they agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

_ROLES = (
    "sysadmin",
    "secadmin",
    "auditor",
    "planner",
    "town_leader",
    "village_leader",
    "grid_worker",
    "viewer",
)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    """An account: one role (三员分立), a scope, Argon2 hash, lockout state."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in _ROLES)})", name="role"),
        CheckConstraint(
            "(scope_kind = 'all' AND scope_code = '') OR "
            "(scope_kind IN ('town', 'village') AND scope_code ~ '^[0-9]{12}$') OR "
            "(scope_kind = 'grid' AND scope_code ~ '^[0-9]{15}$')",
            name="scope",
        ),
        CheckConstraint("username ~ '^[A-Za-z0-9_.@-]{3,64}$'", name="username"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    scope_kind: Mapped[str] = mapped_column(String(8))
    scope_code: Mapped[str] = mapped_column(String(15), server_default="")
    permissions: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    password_hash: Mapped[str] = mapped_column(Text)
    must_change_password: Mapped[bool] = mapped_column(Boolean, server_default="true")
    disabled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    failed_logins: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebSession(Base):
    """A page session; ``id`` is the SHA-256 of the cookie value."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="sha256 of the cookie value"
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ip: Mapped[str | None] = mapped_column(Text)


class RefreshToken(Base):
    """A refresh token (its SHA-256), used once; a family shares one sign-in."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_family", "family"),
        Index("ix_refresh_tokens_user_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, comment="sha256 of the token")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EmbedToken(Base):
    """An embed token's grant (the token itself is signed, not stored)."""

    __tablename__ = "embed_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    layers: Mapped[list[str]] = mapped_column(ARRAY(Text))
    origins: Mapped[list[str]] = mapped_column(ARRAY(Text))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    issued_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class PublicLayer(Base):
    """Whether anonymous users see a layer."""

    __tablename__ = "public_layers"

    layer: Mapped[str] = mapped_column(Text, primary_key=True)
    public: Mapped[bool] = mapped_column(Boolean)
    changed_by: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = _now()


class AuditEntry(Base):
    """The audit log (partitioned by month on ``at``; append-only; hash-chained)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint("outcome IN ('ok', 'refused', 'failed')", name="audit_log_outcome_check"),
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor", "at"),
        {"postgresql_partition_by": "RANGE (at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.clock_timestamp()
    )
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(Text)
    actor_role: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str | None] = mapped_column(Text)
    target_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    prev_hash: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(Text)
