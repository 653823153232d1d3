"""ORM mirrors of the people tables (migration 0008); a test checks that they agree.

The services use SQL; these classes document the schema and keep ``Base.metadata`` whole.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

SEXES = ("男", "女")
RESIDENCE = ("户籍", "流动", "外出", "寄住", "其他")
#: Special-population categories, as stored.
CATEGORIES = (
    "刑满释放", "社区矫正", "吸毒人员", "严重精神障碍", "重点青少年", "艾滋病危险", "其他",
)  # fmt: skip
RISK_LEVELS = ("低", "中", "高")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class HouseholdMember(Base):
    """A person of a household; the ID number and phone only hashed, encrypted, masked."""

    __tablename__ = "household_members"
    __table_args__ = (
        CheckConstraint(_in("sex", SEXES), name="sex"),
        CheckConstraint(_in("residence", RESIDENCE), name="residence"),
        CheckConstraint("(phone_enc IS NULL) = (phone_key IS NULL)", name="phone_key"),
        Index("ix_household_members_household_id", "household_id"),
        Index("ix_household_members_village_code", "village_code"),
        Index(
            "uq_household_members_town_id_hash",
            text("left(village_code, 9)"),
            "id_hash",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    village_code: Mapped[str] = mapped_column(String(12), ForeignKey("admin_areas.code"))
    name: Mapped[str] = mapped_column(Text, comment="personal data")
    sex: Mapped[str | None] = mapped_column(String(1))
    birth_date: Mapped[date | None] = mapped_column(Date, comment="personal data")
    id_hash: Mapped[bytes] = mapped_column(LargeBinary, comment="HMAC of the ID number")
    id_enc: Mapped[bytes] = mapped_column(LargeBinary, comment="AEAD ciphertext, aad = record id")
    id_key: Mapped[str] = mapped_column(Text, comment="key id of id_enc")
    id_masked: Mapped[str] = mapped_column(Text)
    relation: Mapped[str | None] = mapped_column(Text, comment="与户主关系")
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_key: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(Text)
    residence: Mapped[str] = mapped_column(Text, server_default="户籍")
    row_hash: Mapped[bytes] = mapped_column(LargeBinary, comment="keyed hash of the row")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class SpecialRecord(Base):
    """A special-population record (特殊人群) of one member and category."""

    __tablename__ = "special_population"
    __table_args__ = (
        UniqueConstraint("member_id", "category"),
        CheckConstraint(_in("category", CATEGORIES), name="category"),
        CheckConstraint(_in("risk_level", RISK_LEVELS), name="risk_level"),
        Index("ix_special_population_village_code", "village_code"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("household_members.id", ondelete="CASCADE"))
    village_code: Mapped[str] = mapped_column(String(12), ForeignKey("admin_areas.code"))
    category: Mapped[str] = mapped_column(Text)
    since: Mapped[date | None] = mapped_column(Date)
    risk_level: Mapped[str] = mapped_column(String(1), server_default="低")
    responsible: Mapped[str | None] = mapped_column(Text, comment="responsible worker")
    note: Mapped[str | None] = mapped_column(Text, comment="personal data")
    row_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class SpecialFollowup(Base):
    """A follow-up (visit, talk, check) of a special-population record."""

    __tablename__ = "special_followups"
    __table_args__ = (Index("ix_special_followups_record_id", "record_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("special_population.id", ondelete="CASCADE"))
    village_code: Mapped[str] = mapped_column(String(12))
    followed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    by_user_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL")
    )
    by_name: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, comment="personal data")
    next_due: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _now()
