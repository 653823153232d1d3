"""ORM mirror of the assessment tables (migrations 0026 and 0029).

The assessment code queries with SQL text; these models keep ``Base.metadata`` whole so the
schema test and ``db check`` compare the migrations with the code.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
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
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class AssessmentScheme(Base):
    """A named scheme for one level of an area ('' = everywhere), grade thresholds A–D."""

    __tablename__ = "assessment_schemes"
    __table_args__ = (
        CheckConstraint("level IN ('town', 'village', 'grid', 'staff')", name="level"),
        CheckConstraint("area_code ~ '^([0-9]{9}000)?$'", name="area_code"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(String(8))
    area_code: Mapped[str] = mapped_column(String(12), server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class AssessmentSchemeItem(Base):
    """A weighted item of a scheme: an indicator or a manual item (self, mutual, spot)."""

    __tablename__ = "assessment_scheme_items"
    __table_args__ = (
        CheckConstraint("kind IN ('indicator', 'self', 'mutual', 'spot')", name="kind"),
        CheckConstraint("weight > 0 AND weight <= 100", name="weight"),
    )

    scheme_id: Mapped[int] = mapped_column(
        ForeignKey("assessment_schemes.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(Text)
    weight: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    sort: Mapped[int] = mapped_column(SmallInteger, server_default="0")


class AssessmentRound(Base):
    """A monthly, quarterly or year-end round of a scheme; frozen when published."""

    __tablename__ = "assessment_rounds"
    __table_args__ = (
        UniqueConstraint(
            "scheme_id", "area_code", "period_start", "period_end",
            name="uq_assessment_rounds_scheme_period",
        ),
        CheckConstraint("kind IN ('monthly', 'quarterly', 'yearly')", name="kind"),
        CheckConstraint("status IN ('draft', 'published')", name="status"),
        CheckConstraint("period_end >= period_start", name="period"),
        CheckConstraint("(status = 'published') = (published_at IS NOT NULL)", name="published"),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("assessment_schemes.id"))
    kind: Mapped[str] = mapped_column(String(10))
    area_code: Mapped[str] = mapped_column(String(12), server_default="")
    label: Mapped[str] = mapped_column(Text)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), server_default="draft")
    scheme_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_by: Mapped[str | None] = mapped_column(Text)
    published_by: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class AssessmentManualScore(Base):
    """A manual item's score of a round for one target, with its checker and notes."""

    __tablename__ = "assessment_manual_scores"
    __table_args__ = (CheckConstraint("score >= 0 AND score <= 100", name="score"),)

    round_id: Mapped[int] = mapped_column(
        ForeignKey("assessment_rounds.id", ondelete="CASCADE"), primary_key=True
    )
    item_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    target_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    score: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    checker: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, server_default="")
    entered_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class AssessmentResult(Base):
    """A published round's frozen row for one target (never rewritten)."""

    __tablename__ = "assessment_results"
    __table_args__ = (
        CheckConstraint("grade IS NULL OR grade IN ('A', 'B', 'C', 'D', 'E')", name="grade"),
        Index("ix_assessment_results_target_code", "target_code", "round_id"),
    )

    round_id: Mapped[int] = mapped_column(
        ForeignKey("assessment_rounds.id", ondelete="CASCADE"), primary_key=True
    )
    target_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    level: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(Text)
    households: Mapped[int | None] = mapped_column(Integer)
    indicator_values: Mapped[dict[str, Any]] = mapped_column(JSONB)
    item_scores: Mapped[dict[str, Any]] = mapped_column(JSONB)
    score: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    grade: Mapped[str | None] = mapped_column(String(1))
    rank: Mapped[int | None] = mapped_column(Integer)


_OPEN = "status NOT IN ('rejected', 'voided', 'closed', 'archived', 'merged', 'suspended')"


class AssessmentCaseFacts(Base):
    """One case's history folded into what the case indicators add up (kept by a trigger on
    ``case_events``; :mod:`geogrid.assessment.facts`)."""

    __tablename__ = "assessment_case_facts"
    __table_args__ = (
        Index("ix_assessment_case_facts_code_last_at", "code", "last_at"),
        Index(
            "ix_assessment_case_facts_span", "code", text("tstzrange(first_at, last_at, '(]')"),
            postgresql_using="gist",
        ),
        Index("ix_assessment_case_facts_open", "code", postgresql_where=text(_OPEN)),
        {"comment": "derived from case_events by a trigger: one row per case, what the "
                    "indicators sum"},
    )  # fmt: skip

    case_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(Text(collation="C"))
    village_code: Mapped[str] = mapped_column(String(12))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    events: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    reported: Mapped[bool] = mapped_column(Boolean)
    registered: Mapped[bool] = mapped_column(Boolean)
    closed: Mapped[bool] = mapped_column(Boolean)
    late: Mapped[bool] = mapped_column(Boolean)
    accept_timed: Mapped[int] = mapped_column(Integer)
    accept_ok: Mapped[int] = mapped_column(Integer)
    dispatches: Mapped[int] = mapped_column(Integer)
    dispatch_timed: Mapped[int] = mapped_column(Integer)
    dispatch_ok: Mapped[int] = mapped_column(Integer)
    returns: Mapped[int] = mapped_column(Integer)
    handles: Mapped[int] = mapped_column(Integer)
    handle_timed: Mapped[int] = mapped_column(Integer)
    handle_ok: Mapped[int] = mapped_column(Integer)
    reworks: Mapped[int] = mapped_column(Integer)
    extensions: Mapped[int] = mapped_column(Integer)
    rated: Mapped[int] = mapped_column(Integer)
    satisfied: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handler: Mapped[int | None] = mapped_column(Integer)


class AssessmentCaseRollup(Base):
    """The case facts' contributions per area and (local day of the first event, of the last
    event or report), appended on every change and compacted by
    :func:`geogrid.assessment.facts.compact`."""

    __tablename__ = "assessment_case_rollup"
    __table_args__ = (
        Index("ix_assessment_case_rollup_code_first_day", "code", "first_day"),
        {"comment": "derived from assessment_case_facts: contributions per area and "
                    "(first, last) local day, appended"},
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(Text(collation="C"))
    village_code: Mapped[str] = mapped_column(String(12))
    grid_code: Mapped[str] = mapped_column(String(15))
    first_day: Mapped[date] = mapped_column(Date)
    end_day: Mapped[date] = mapped_column(Date)
    cases: Mapped[int] = mapped_column(Integer)
    reported: Mapped[int] = mapped_column(Integer)
    reported_registered: Mapped[int] = mapped_column(Integer)
    registered: Mapped[int] = mapped_column(Integer)
    registered_active: Mapped[int] = mapped_column(Integer)
    registered_closed: Mapped[int] = mapped_column(Integer)
    closed: Mapped[int] = mapped_column(Integer)
    closed_ok: Mapped[int] = mapped_column(Integer)
    accept_timed: Mapped[int] = mapped_column(Integer)
    accept_ok: Mapped[int] = mapped_column(Integer)
    dispatches: Mapped[int] = mapped_column(Integer)
    dispatch_timed: Mapped[int] = mapped_column(Integer)
    dispatch_ok: Mapped[int] = mapped_column(Integer)
    returns: Mapped[int] = mapped_column(Integer)
    handles: Mapped[int] = mapped_column(Integer)
    handle_timed: Mapped[int] = mapped_column(Integer)
    handle_ok: Mapped[int] = mapped_column(Integer)
    reworks: Mapped[int] = mapped_column(Integer)
    extensions: Mapped[int] = mapped_column(Integer)
    rated: Mapped[int] = mapped_column(Integer)
    satisfied: Mapped[int] = mapped_column(Integer)
