"""ORM mirror of the grid-team tables (migration 0027, 五个一同步).

The services use SQL (:mod:`geogrid.archives.teams`); these classes document the schema and
keep ``Base.metadata`` whole, so ``geogrid db check`` and the schema test compare them.
"""

from __future__ import annotations

from datetime import datetime

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base


class GridTeam(Base):
    """A basic grid's party organisation and its archive box (one row per grid code)."""

    __tablename__ = "grid_teams"
    __table_args__ = (
        CheckConstraint("grid_code ~ '^[0-9]{15}$'", name="code"),
        CheckConstraint("party_org_kind IN ('group', 'branch')", name="party_kind"),
    )

    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    party_org_kind: Mapped[str | None] = mapped_column(String(8))
    party_org_name: Mapped[str | None] = mapped_column(Text)
    archive_no: Mapped[str | None] = mapped_column(Text)
    archive_place: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    version: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class GridTeamMember(Base):
    """A member of a grid's party group or service team (public fields only: no resident)."""

    __tablename__ = "grid_team_members"
    __table_args__ = (Index("ix_grid_team_members_grid", "grid_code", "sort"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    grid_code: Mapped[str] = mapped_column(
        String(15), ForeignKey("grid_teams.grid_code", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    office_phone: Mapped[str | None] = mapped_column(Text)
    staff_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("staff.id", ondelete="SET NULL")
    )
    public: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    sort: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
