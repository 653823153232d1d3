"""ORM mirrors of the Open311 tables (migration 0016); a test checks that they agree.

The Open311 code uses SQL; these classes document the schema and keep ``Base.metadata``
whole.
"""

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
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")


class Open311Request(Base):
    """A case a resident submitted through Open311: the keyed hash of the resident's token
    (the token is shown once and never stored), the address id and the attribute answers."""

    __tablename__ = "open311_requests"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        CheckConstraint("length(token_hash) = 64", name="token_hash"),
    )

    case_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(Text)  # HMAC-SHA256 of the resident token
    address_id: Mapped[int | None] = mapped_column(BigInteger)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Open311Attribute(Base):
    """A question a service asks (GeoReport ``attributes``); no service code: every service."""

    __tablename__ = "open311_attributes"
    __table_args__ = (
        CheckConstraint(
            "datatype IN (" + ", ".join(f"'{d}'" for d in DATATYPES) + ")", name="datatype"
        ),
        CheckConstraint("code ~ '^[A-Za-z0-9_.-]{1,64}$'", name="code"),
        Index(
            "uq_open311_attributes_service_code",
            text("coalesce(service_code, '')"),
            "code",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    service_code: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text)
    datatype: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    required: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    sort: Mapped[int] = mapped_column(Integer, server_default="0")
    values: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class Open311Rate(Base):
    """Submissions per client key (a keyed hash of the address) and time window."""

    __tablename__ = "open311_rate"
    __table_args__ = (Index("ix_open311_rate_window_start", "window_start"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, server_default="0")


FEEDBACK_SOURCES = ("open311", "hotline", "visit")


class CaseFeedback(Base):
    """A resident's rating of how a case was handled (migration 0030): one per case and
    source (the resident through Open311, a follow-up call, a visit); a later rating by
    the same source replaces it. Ratings as the evaluation step's (``machine.RATINGS``)."""

    __tablename__ = "case_feedback"
    __table_args__ = (
        UniqueConstraint("case_id", "source", name="uq_case_feedback_case_id"),
        CheckConstraint("source IN ('open311', 'hotline', 'visit')", name="source"),
        CheckConstraint("rating IN ('satisfied', 'basic', 'unsatisfied')", name="rating"),
        CheckConstraint("char_length(comment) <= 500", name="comment"),
        Index("ix_case_feedback_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cases.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    rating: Mapped[str] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
