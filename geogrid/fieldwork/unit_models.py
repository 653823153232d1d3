"""ORM mirror of the key-unit and fire-inspection tables (migration 0017).

The services query with SQL text; these models let the schema test compare the migration
with the code. Personal columns carry ``info={"personal": True}``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

FILING_KINDS = ("staff_change", "maintenance", "self_assessment")
_KINDS = "kind IN ('staff_change', 'maintenance', 'self_assessment')"


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class KeyUnitType(Base):
    """An entry of the key-unit type dictionary."""

    __tablename__ = "key_unit_types"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    name_en: Mapped[str | None] = mapped_column(Text)
    sort: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class KeyUnitContact(Base):
    """A unit's responsible person or safety manager (personal; row-level security)."""

    __tablename__ = "key_unit_contacts"
    __table_args__ = (
        CheckConstraint("role IN ('responsible', 'safety')", name="role"),
        CheckConstraint("(phone_enc IS NULL) = (phone_key IS NULL)", name="phone_key"),
    )

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("key_units.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(Text, info={"personal": True}, comment="personal data")
    phone_enc: Mapped[bytes | None] = mapped_column(
        LargeBinary, info={"personal": True}, comment="AEAD ciphertext, aad = unit id"
    )
    phone_key: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(Text)
    since: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class KeyUnitFiling(Base):
    """One filing (备案) of a key unit's file."""

    __tablename__ = "key_unit_filings"
    __table_args__ = (
        CheckConstraint(_KINDS, name="kind"),
        Index("ix_key_unit_filings_unit_id_kind", "unit_id", "kind", "event_date"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("key_units.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    event_date: Mapped[date] = mapped_column(
        Date, comment="the staff change, maintenance or self-assessment date"
    )
    filed_at: Mapped[datetime] = _now()
    note: Mapped[str | None] = mapped_column(Text)
    photos: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    by_name: Mapped[str] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date, comment="the due date it answered")
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class KeyUnitDue(Base):
    """The next due date of one kind of filing of one unit."""

    __tablename__ = "key_unit_dues"
    __table_args__ = (
        CheckConstraint(_KINDS, name="kind"),
        Index("ix_key_unit_dues_due_date", "due_date", "unit_id"),
    )

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("key_units.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    basis: Mapped[date | None] = mapped_column(Date, comment="the date the due date counts from")
    due_date: Mapped[date | None] = mapped_column(Date)
    due_problem: Mapped[str | None] = mapped_column(Text)
    due_cal: Mapped[int | None] = mapped_column(
        BigInteger, comment="calendar version the due date was computed with"
    )


class InspectionTemplate(Base):
    """A configurable checklist."""

    __tablename__ = "inspection_templates"
    __table_args__ = (CheckConstraint("code ~ '^[a-z][a-z0-9_]{0,31}$'", name="code"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    items: Mapped[Any] = mapped_column(JSONB)
    unit_types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


class InspectionRecord(Base):
    """One inspection of a point with its checklist results."""

    __tablename__ = "inspection_records"
    __table_args__ = (
        Index("ix_inspection_records_point_id", "point_id", "inspected_at"),
        Index("ix_inspection_records_due_date", "due_date"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("inspection_points.id", ondelete="CASCADE"))
    inspected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    by_name: Mapped[str] = mapped_column(Text)
    template_code: Mapped[str] = mapped_column(String(32))
    template_version: Mapped[int] = mapped_column(Integer)
    results: Mapped[Any] = mapped_column(JSONB)
    photos: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    signature: Mapped[str | None] = mapped_column(
        String(64), comment="sha256 of the unit manager's signature image"
    )
    note: Mapped[str | None] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date, comment="the due date it answered")
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _now()


class InspectionCaseLink(Base):
    """A failed checklist item and the case it opened; resolved by a passed re-check."""

    __tablename__ = "inspection_case_links"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
        CheckConstraint("(status = 'resolved') = (resolved_at IS NOT NULL)", name="resolved"),
        Index(
            "uq_inspection_case_links_open",
            "point_id",
            "item_code",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_inspection_case_links_case_id", "case_id"),
        Index("ix_inspection_case_links_record_id", "record_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("inspection_records.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("inspection_points.id", ondelete="CASCADE"))
    item_code: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(8), server_default="open")
    resolved_record_id: Mapped[int | None] = mapped_column(
        ForeignKey("inspection_records.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
