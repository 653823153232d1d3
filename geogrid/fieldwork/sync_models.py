"""ORM mirror of the field sync table (migration 0019); a test checks that they agree.

The sync code uses SQL; this class documents the schema and keeps ``Base.metadata`` whole.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base


class ClientRecord(Base):
    """An idempotency key: the client-made UUID of a record, who sent it, its kind and id
    (``record_id`` is NULL only inside the transaction that claims the key)."""

    __tablename__ = "client_records"
    __table_args__ = (
        CheckConstraint("kind ~ '^[a-z_]{1,32}$'", name="kind"),
        Index("ix_client_records_user_id", "user_id"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(Text)
    record_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
