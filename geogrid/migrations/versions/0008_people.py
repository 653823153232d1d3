"""People: household members, special-population records and their follow-ups.

* ``household_members``: one row per person of a household. The ID number is never stored
  in plain text: ``id_hash`` is a keyed hash (HMAC-SHA256, unique per town, for look-ups
  and duplicate checks), ``id_enc`` its AES-256-GCM ciphertext bound to the record id
  (``id_key`` names the key), ``id_masked`` its masked form (``4201**********1234``). The
  phone likewise (``phone_enc``/``phone_key``/``phone_masked``). ``row_hash`` is keyed
  too, so that it reveals nothing about the fields it covers.
* ``special_population`` (特殊人群): a category per member (刑满释放, 社区矫正 …), since
  when, risk level, the responsible worker; ``special_followups`` their visits.
* Scope: every table carries ``village_code``; the grid comes from the household
  (``households.grid_code``, kept in step at plan activation by 0007's code), so the
  scope test is ``coalesce(h.grid_code, h.village_code) LIKE prefix || '%'``, in the
  services' queries and, as a second wall, in row-level security policies (FORCE, so
  the owner is held too unless it is a superuser or sets the scope to ``*``).
  Special-population rows also need ``geogrid.special = 'on'``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
SEXES = ("男", "女")
RESIDENCE = ("户籍", "流动", "外出", "寄住", "其他")
CATEGORIES = (
    "刑满释放",
    "社区矫正",
    "吸毒人员",
    "严重精神障碍",
    "重点青少年",
    "艾滋病危险",
    "其他",
)
RISK = ("低", "中", "高")
TABLES = ("household_members", "special_population", "special_followups")

#: Rows in scope, as uncorrelated sub-queries: PostgreSQL hashes each once per statement
#: (a correlated look-up per row was 3-5x slower on a 35k-member town).
_HOUSEHOLDS_IN_SCOPE = (
    "SELECT h.id FROM households h "
    "WHERE geogrid_scope_allows(coalesce(h.grid_code, h.village_code))"
)
_MEMBERS_IN_SCOPE = (
    "SELECT m.id FROM household_members m JOIN households h ON h.id = m.household_id "
    "WHERE geogrid_scope_allows(coalesce(h.grid_code, h.village_code))"
)
_RECORDS_IN_SCOPE = (
    "SELECT s.id FROM special_population s JOIN household_members m ON m.id = s.member_id "
    "JOIN households h ON h.id = m.household_id "
    "WHERE geogrid_scope_allows(coalesce(h.grid_code, h.village_code))"
)


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _ts() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "household_members",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("household_id", sa.BigInteger(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("name", sa.Text(), nullable=False, comment="personal data"),
        sa.Column("sex", sa.String(1), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True, comment="personal data"),
        sa.Column("id_hash", BYTEA(), nullable=False, comment="HMAC of the ID number"),
        sa.Column("id_enc", BYTEA(), nullable=False, comment="AEAD ciphertext, aad = record id"),
        sa.Column("id_key", sa.Text(), nullable=False, comment="key id of id_enc"),
        sa.Column("id_masked", sa.Text(), nullable=False),
        sa.Column("relation", sa.Text(), nullable=True, comment="与户主关系"),
        sa.Column("phone_enc", BYTEA(), nullable=True),
        sa.Column("phone_key", sa.Text(), nullable=True),
        sa.Column("phone_masked", sa.Text(), nullable=True),
        sa.Column("residence", sa.Text(), nullable=False, server_default="户籍"),
        sa.Column("row_hash", BYTEA(), nullable=False, comment="keyed hash of the row"),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_household_members")),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"], ondelete="CASCADE",
                                name=op.f("fk_household_members_household_id_households")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_household_members_village_code_admin_areas")),
        sa.CheckConstraint(f"sex IN ({_in(SEXES)})", name=op.f("ck_household_members_sex")),
        sa.CheckConstraint(f"residence IN ({_in(RESIDENCE)})",
                           name=op.f("ck_household_members_residence")),
        sa.CheckConstraint("(phone_enc IS NULL) = (phone_key IS NULL)",
                           name=op.f("ck_household_members_phone_key")),
    )  # fmt: skip
    op.create_index("ix_household_members_household_id", "household_members", ["household_id"])
    op.create_index("ix_household_members_village_code", "household_members", ["village_code"])
    op.execute(
        "CREATE UNIQUE INDEX uq_household_members_town_id_hash "
        "ON household_members (left(village_code, 9), id_hash)"
    )

    op.create_table(
        "special_population",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("risk_level", sa.String(1), nullable=False, server_default="低"),
        sa.Column("responsible", sa.Text(), nullable=True, comment="responsible worker"),
        sa.Column("note", sa.Text(), nullable=True, comment="personal data"),
        sa.Column("row_hash", BYTEA(), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_special_population")),
        sa.ForeignKeyConstraint(["member_id"], ["household_members.id"], ondelete="CASCADE",
                                name=op.f("fk_special_population_member_id_household_members")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_special_population_village_code_admin_areas")),
        sa.UniqueConstraint("member_id", "category",
                            name=op.f("uq_special_population_member_id_category")),
        sa.CheckConstraint(f"category IN ({_in(CATEGORIES)})",
                           name=op.f("ck_special_population_category")),
        sa.CheckConstraint(f"risk_level IN ({_in(RISK)})",
                           name=op.f("ck_special_population_risk_level")),
    )  # fmt: skip
    op.create_index("ix_special_population_village_code", "special_population", ["village_code"])

    op.create_table(
        "special_followups",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("followed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=True),
        sa.Column("by_name", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, comment="personal data"),
        sa.Column("next_due", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_special_followups")),
        sa.ForeignKeyConstraint(["record_id"], ["special_population.id"], ondelete="CASCADE",
                                name=op.f("fk_special_followups_record_id_special_population")),
        sa.ForeignKeyConstraint(["by_user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_special_followups_by_user_id_users")),
    )  # fmt: skip
    op.create_index("ix_special_followups_record_id", "special_followups", ["record_id"])

    # -- row-level security: the second wall --------------------------------------------
    policies = {
        "household_members": f"household_id IN ({_HOUSEHOLDS_IN_SCOPE})",
        "special_population": f"geogrid_special_allowed() AND member_id IN ({_MEMBERS_IN_SCOPE})",
        "special_followups": f"geogrid_special_allowed() AND record_id IN ({_RECORDS_IN_SCOPE})",
    }
    for table, expr in policies.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_scope ON {table} USING ({expr}) WITH CHECK ({expr})")
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {WEB_ROLE}")
        op.execute(f"REVOKE DELETE, TRUNCATE ON {table} FROM {WEB_ROLE}")
    op.execute(
        f"GRANT USAGE, SELECT ON household_members_id_seq, special_population_id_seq, "
        f"special_followups_id_seq TO {WEB_ROLE}"
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP POLICY IF EXISTS {table}_scope ON {table}")
        op.drop_table(table)
