"""ORM mirrors of the visit tables (migrations 0018, 0025); a test checks that they agree.

The services use SQL; these classes document the schema and keep ``Base.metadata`` whole.
"""

from __future__ import annotations

from datetime import date, datetime

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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class VisitTag(Base):
    """A need tag of the dictionary (低保, 残疾, 就业 …)."""

    __tablename__ = "visit_tags"
    __table_args__ = (CheckConstraint("length(code) BETWEEN 1 AND 8", name="code"),)

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name_en: Mapped[str] = mapped_column(Text)
    sort: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")


class Visit(Base):
    """A visit (民情日志) to one household or key unit."""

    __tablename__ = "visits"
    __table_args__ = (
        CheckConstraint("num_nonnulls(household_id, key_unit_id) = 1", name="one_target"),
        CheckConstraint("follow_up OR follow_up_due IS NULL", name="due_needs_follow_up"),
        CheckConstraint(
            "follow_up_due IS NULL OR follow_up_due >= visited_on", name="due_after_visit"
        ),
        CheckConstraint(
            "cardinality(people_met) <= 20 AND cardinality(tags) <= 20", name="list_sizes"
        ),
        CheckConstraint("version >= 1", name="version"),
        Index("ix_visits_household_id_visited_on", "household_id", "visited_on"),
        Index("ix_visits_key_unit_id", "key_unit_id"),
        Index("ix_visits_visited_on", "visited_on"),
        Index("ix_visits_worker_id_visited_on", "worker_id", "visited_on"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    household_id: Mapped[int | None] = mapped_column(
        ForeignKey("households.id", ondelete="CASCADE")
    )
    key_unit_id: Mapped[int | None] = mapped_column(ForeignKey("key_units.id", ondelete="CASCADE"))
    village_code: Mapped[str | None] = mapped_column(String(12), ForeignKey("admin_areas.code"))
    visited_on: Mapped[date] = mapped_column(Date)
    worker_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL")
    )
    worker_name: Mapped[str] = mapped_column(Text)
    people_met: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default="{}", comment="personal data"
    )
    notes: Mapped[str] = mapped_column(Text, server_default="", comment="personal data")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    follow_up: Mapped[bool] = mapped_column(Boolean, server_default="false")
    follow_up_due: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class VisitPhoto(Base):
    """A photo of a visit, by SHA-256 in the file store."""

    __tablename__ = "visit_photos"

    visit_id: Mapped[int] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("stored_files.sha256"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, server_default="0")


class VisitRule(Base):
    """A visit-plan rule: one visit at least every ``period_months`` months."""

    __tablename__ = "visit_rules"
    __table_args__ = (
        UniqueConstraint("prefix", "kind"),
        CheckConstraint("kind IN ('household', 'special')", name="kind"),
        CheckConstraint("period_months IN (1, 2, 3, 4, 6, 12)", name="period_months"),
        CheckConstraint("prefix ~ '^([0-9]{9}|[0-9]{12}|[0-9]{15})?$'", name="prefix"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    prefix: Mapped[str] = mapped_column(
        String(15),
        server_default="",
        comment="'' everywhere, else a town (9 digits), village or grid prefix",
    )
    kind: Mapped[str] = mapped_column(String(12))
    period_months: Mapped[int] = mapped_column(SmallInteger)
    updated_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


class FollowupRule(Base):
    """The follow-up interval of a risk level, in working days."""

    __tablename__ = "followup_rules"
    __table_args__ = (
        CheckConstraint("risk_level IN ('低', '中', '高')", name="risk_level"),
        CheckConstraint("working_days BETWEEN 1 AND 250", name="working_days"),
    )

    risk_level: Mapped[str] = mapped_column(String(1), primary_key=True)
    working_days: Mapped[int] = mapped_column(SmallInteger)
    updated_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


class VisitAreaState(Base):
    """An area's version (raised by its visits' changes); ``'*'``: the global version."""

    __tablename__ = "visit_area_state"

    area: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, server_default="1")
    listed: Mapped[int] = mapped_column(BigInteger, server_default="0")


class VisitCoverageCache(Base):
    """Coverage figures of an area for a period, stamped with the versions they match."""

    __tablename__ = "visit_coverage_cache"

    area: Mapped[str] = mapped_column(Text, primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    period_end: Mapped[date] = mapped_column(Date, primary_key=True)
    special: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    global_version: Mapped[int] = mapped_column(BigInteger)
    households: Mapped[int] = mapped_column(Integer)
    visited: Mapped[int] = mapped_column(Integer)
    due: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = _now()


class VisitListCache(Base):
    """Per-area figures of a county visit list (0025), stamped like the coverage cache."""

    __tablename__ = "visit_list_cache"
    __table_args__ = (
        CheckConstraint("list IN ('ever', 'due', 'workers')", name="ck_visit_list_cache_list"),
    )

    area: Mapped[str] = mapped_column(Text, primary_key=True)
    list: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(
        Text,
        primary_key=True,
        server_default="",
        comment="the list's argument: '' (ever), a day (due), a period (workers)",
    )
    special: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    global_version: Mapped[int] = mapped_column(BigInteger)
    figures: Mapped[dict[str, object]] = mapped_column(JSONB)
    computed_at: Mapped[datetime] = _now()
