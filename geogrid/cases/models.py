"""ORM models of the case tables (migration 0014); the ``cases`` row itself is
:class:`geogrid.models.Case`."""

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
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

STEPS = ("accept", "verify", "register", "dispatch", "handle", "check", "evaluate", "close")
POST_KINDS = ("centre", "grid", "village", "department")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class CaseCategory(Base):
    """The category dictionary: 2-digit classes and 4-digit subclasses."""

    __tablename__ = "case_categories"
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{2}([0-9]{2})?$'", name="code"),
        CheckConstraint(
            "(length(code) = 2 AND parent_code IS NULL) "
            "OR (length(code) = 4 AND parent_code = left(code, 2))",
            name="parent",
        ),
    )

    code: Mapped[str] = mapped_column(String(4), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(String(2), ForeignKey("case_categories.code"))
    name: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    sort: Mapped[int] = mapped_column(Integer, server_default="0")


class CaseTimeLimit(Base):
    """The time limit of one step for one category, in working hours or days."""

    __tablename__ = "case_time_limits"
    __table_args__ = (
        CheckConstraint(_in("step", STEPS), name="step"),
        CheckConstraint("unit IN ('hours', 'days')", name="unit"),
        CheckConstraint("amount > 0 AND amount <= 10000", name="amount"),
    )

    category_code: Mapped[str] = mapped_column(
        String(4), ForeignKey("case_categories.code", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[str] = mapped_column(String(10), primary_key=True)
    amount: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(5))


class CaseEvent(Base):
    """One transition of a case (append-only)."""

    __tablename__ = "case_events"
    __table_args__ = (
        UniqueConstraint("case_id", "seq", "at"),  # partitioned by month of at (0023)
        CheckConstraint("seq > 0", name="seq"),
        Index("ix_case_events_at", "at"),
        {"comment": "append-only: one row per transition of a case"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(24))
    from_status: Mapped[str | None] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(Text)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, server_default="")
    public: Mapped[bool] = mapped_column(Boolean, server_default="false")
    attachments: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    data: Mapped[dict[str, Any]] = mapped_column(server_default="{}")


class CaseReporter(Base):
    """Who reported a case (personal; row-level security by the case's scope)."""

    __tablename__ = "case_reporters"
    __table_args__ = (Index("ix_case_reporters_case_id", "case_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(Text, info={"personal": True}, comment="personal data")
    phone: Mapped[str | None] = mapped_column(
        Text, info={"personal": True}, comment="personal data"
    )
    user_id: Mapped[int | None] = mapped_column(Integer)
    merged_from: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()


class CaseDepartment(Base):
    """A town department cases can be dispatched to."""

    __tablename__ = "case_departments"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    town_code: Mapped[str] = mapped_column(String(12), ForeignKey("admin_areas.code"))
    name: Mapped[str] = mapped_column(Text)


class CaseDepartmentMember(Base):
    """A user working a department's cases."""

    __tablename__ = "case_department_members"

    department_code: Mapped[str] = mapped_column(
        String(20), ForeignKey("case_departments.code", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class CaseRoute(Base):
    """(area, category) → post: where a new case is sent."""

    __tablename__ = "case_routes"
    __table_args__ = (
        CheckConstraint(_in("post_kind", POST_KINDS), name="post_kind"),
        CheckConstraint("area_code ~ '^([0-9]{12}|[0-9]{15})?$'", name="area_code"),
        Index(
            "uq_case_routes_area_code_category_code",
            "area_code",
            "category_code",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    area_code: Mapped[str] = mapped_column(
        String(15), comment="town, village or grid code; '' everywhere"
    )
    category_code: Mapped[str | None] = mapped_column(
        String(4),
        ForeignKey("case_categories.code", ondelete="CASCADE"),
        comment="NULL: any category",
    )
    post_kind: Mapped[str] = mapped_column(String(10))
    post_code: Mapped[str | None] = mapped_column(
        Text, comment="NULL: the case's own grid / village / town"
    )


class StoredFileRow(Base):
    """A file of the content-addressed store (:mod:`geogrid.files`)."""

    __tablename__ = "stored_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    uploaded_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()


class CaseFile(Base):
    """A stored file attached to a case by one of its events."""

    __tablename__ = "case_files"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("stored_files.sha256"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer)


class CaseSetting(Base):
    """Tunable numbers: duplicate radius and window, the soon-due horizon."""

    __tablename__ = "case_settings"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB)
