"""ORM mirror of the planner's edit log (migration 0013); a test checks that they agree.

The services use SQL; this class documents the schema and keeps ``Base.metadata`` whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

#: What an edit of a draft plan can be.
EDIT_KINDS = ("move", "rename", "lock", "unlock", "rerun", "undo", "redo")


class PlanEdit(Base):
    """One edit of a plan, with the snapshots of the village before and after it."""

    __tablename__ = "plan_edits"
    __table_args__ = (
        UniqueConstraint("plan_id", "seq"),
        CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in EDIT_KINDS) + ")", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    village_code: Mapped[str | None] = mapped_column(String(12))
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()
    target_seq: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    author: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
