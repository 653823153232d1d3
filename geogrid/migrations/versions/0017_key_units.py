"""Key units, their filings, fire-inspection points, templates and records.

* ``key_unit_types``: the dictionary of key-unit types (学校, 医院, 养老院, 九小场所 …); the
  types already in ``key_units`` are added so that existing rows stay valid.
* ``key_units`` gains ``registered_on`` (the start of its filing cycles), ``version``
  (ETags) and ``scope_key`` (``coalesce(grid_code, village_code)``, stored, for prefix
  scope tests).
* ``key_unit_contacts``: the unit's responsible person and safety manager (personal data:
  names, phones encrypted as in 0008 with a masked copy). Row-level security (FORCE) by the
  unit's scope, like the household tables; never read by layers.
* ``key_unit_filings`` (户籍化 filings: staff change, equipment maintenance, quarterly
  self-assessment) and ``key_unit_dues``, one row per unit and kind with the next due date
  on the working calendar (``due_problem`` when the calendar lacks the year).
* ``inspection_points`` gains ``next_due`` (and what it was computed from), a template,
  ``version``, ``registered_on`` and ``scope_key``.
* ``inspection_templates`` (checklists), ``inspection_records`` and
  ``inspection_case_links`` (a failed item's case; at most one open link per point and item).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"

#: (name, English name, sort order)
UNIT_TYPES: tuple[tuple[str, str], ...] = (
    ("学校", "School"), ("幼儿园", "Kindergarten"), ("医院", "Hospital"),
    ("卫生院", "Township health centre"), ("卫生室", "Village clinic"),
    ("养老院", "Nursing home"), ("集贸市场", "Market"), ("超市", "Supermarket"),
    ("工厂", "Factory"), ("仓库", "Warehouse"), ("加油站", "Petrol station"),
    ("液化气站", "LPG station"), ("宾馆", "Hotel"), ("网吧", "Internet café"),
    ("公共娱乐场所", "Public entertainment venue"), ("宗教场所", "Place of worship"),
    ("九小场所", "Small premises (九小场所)"), ("村委会", "Village committee"),
    ("其他", "Other"),
)  # fmt: skip

#: The seeded checklist: (code, label, English label, case category code).
GENERAL_ITEMS: tuple[tuple[str, str, str, str], ...] = (
    ("extinguishers", "灭火器配置齐全且在有效期内", "Extinguishers present and in date", "0304"),
    ("exits", "安全出口、疏散通道畅通", "Exits and escape routes clear", "0301"),
    ("lighting", "应急照明、疏散指示标志完好", "Emergency lights and exit signs work", "0304"),
    ("wiring", "电气线路无私拉乱接、无老化", "Wiring safe, no improvised cables", "0302"),
    ("gas", "燃气使用规范、无泄漏", "Gas used safely, no leaks", "03"),
    ("storage", "易燃易爆物品存放规范", "Flammables stored safely", "0303"),
    ("facilities", "消防设施器材完好有效", "Fire equipment in working order", "0304"),
)
SMALL_ITEMS: tuple[tuple[str, str, str, str], ...] = (
    *GENERAL_ITEMS[:6],
    ("living", "无“三合一”违规住人", "Nobody sleeping in shop or workshop", "03"),
)


def _items(rows: Sequence[tuple[str, str, str, str]]) -> list[dict[str, str]]:
    return [{"code": c, "label": lb, "label_en": en, "case_category": k} for c, lb, en, k in rows]


def _ts() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]  # fmt: skip


_UNITS_IN_SCOPE = (
    "(SELECT geogrid_scope_covers_all()) OR unit_id IN (SELECT u.id FROM key_units u "
    "WHERE u.scope_key LIKE (SELECT geogrid_scope_pattern()))"
)


def upgrade() -> None:
    # -- the type dictionary ------------------------------------------------------------------
    op.create_table(
        "key_unit_types",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("sort", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_key_unit_types")),
    )
    op.bulk_insert(
        sa.table("key_unit_types", sa.column("name"), sa.column("name_en"), sa.column("sort")),
        [{"name": n, "name_en": e, "sort": i} for i, (n, e) in enumerate(UNIT_TYPES, 1)],
    )
    op.execute(
        "INSERT INTO key_unit_types (name, sort) SELECT DISTINCT unit_type, 100 FROM key_units "
        "ON CONFLICT DO NOTHING"
    )

    # -- key units: registration date, version, scope key -------------------------------------
    op.add_column("key_units", sa.Column("registered_on", sa.Date(), nullable=True))
    op.execute(
        "UPDATE key_units SET registered_on = (created_at AT TIME ZONE 'Asia/Shanghai')::date"
    )
    op.alter_column("key_units", "registered_on", nullable=False,
                    server_default=sa.text("CURRENT_DATE"))  # fmt: skip
    op.add_column("key_units", sa.Column("version", sa.Integer(), nullable=False,
                                         server_default="0"))  # fmt: skip
    op.add_column(
        "key_units",
        sa.Column("scope_key", sa.Text(), sa.Computed("coalesce(grid_code, village_code)",
                                                      persisted=True)),
    )  # fmt: skip
    op.execute("CREATE INDEX ix_key_units_scope_key ON key_units (scope_key text_pattern_ops)")

    op.create_table(
        "key_unit_contacts",
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(12), nullable=False),
        sa.Column("name", sa.Text(), nullable=False, comment="personal data"),
        sa.Column("phone_enc", BYTEA(), nullable=True, comment="AEAD ciphertext, aad = unit id"),
        sa.Column("phone_key", sa.Text(), nullable=True),
        sa.Column("phone_masked", sa.Text(), nullable=True),
        sa.Column("since", sa.Date(), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("unit_id", "role", name=op.f("pk_key_unit_contacts")),
        sa.ForeignKeyConstraint(["unit_id"], ["key_units.id"], ondelete="CASCADE",
                                name=op.f("fk_key_unit_contacts_unit_id_key_units")),
        sa.CheckConstraint("role IN ('responsible', 'safety')",
                           name=op.f("ck_key_unit_contacts_role")),
        sa.CheckConstraint("(phone_enc IS NULL) = (phone_key IS NULL)",
                           name=op.f("ck_key_unit_contacts_phone_key")),
    )  # fmt: skip

    op.create_table(
        "key_unit_filings",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False,
                  comment="the staff change, maintenance or self-assessment date"),
        sa.Column("filed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("photos", ARRAY(sa.String(64)), server_default="{}", nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=True),
        sa.Column("by_name", sa.Text(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True, comment="the due date it answered"),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_unit_filings")),
        sa.ForeignKeyConstraint(["unit_id"], ["key_units.id"], ondelete="CASCADE",
                                name=op.f("fk_key_unit_filings_unit_id_key_units")),
        sa.ForeignKeyConstraint(["by_user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_key_unit_filings_by_user_id_users")),
        sa.CheckConstraint("kind IN ('staff_change', 'maintenance', 'self_assessment')",
                           name=op.f("ck_key_unit_filings_kind")),
    )  # fmt: skip
    op.create_index("ix_key_unit_filings_unit_id_kind", "key_unit_filings",
                    ["unit_id", "kind", "event_date"])  # fmt: skip

    op.create_table(
        "key_unit_dues",
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("basis", sa.Date(), nullable=True,
                  comment="the date the due date counts from"),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("due_problem", sa.Text(), nullable=True),
        sa.Column("due_cal", sa.BigInteger(), nullable=True,
                  comment="calendar version the due date was computed with"),
        sa.PrimaryKeyConstraint("unit_id", "kind", name=op.f("pk_key_unit_dues")),
        sa.ForeignKeyConstraint(["unit_id"], ["key_units.id"], ondelete="CASCADE",
                                name=op.f("fk_key_unit_dues_unit_id_key_units")),
        sa.CheckConstraint("kind IN ('staff_change', 'maintenance', 'self_assessment')",
                           name=op.f("ck_key_unit_dues_kind")),
    )  # fmt: skip
    op.create_index("ix_key_unit_dues_due_date", "key_unit_dues", ["due_date", "unit_id"])

    # -- inspection points: due state, template, version, scope key ---------------------------
    op.create_table(
        "inspection_templates",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("items", JSONB(), nullable=False),
        sa.Column("unit_types", ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_inspection_templates")),
        sa.CheckConstraint("code ~ '^[a-z][a-z0-9_]{0,31}$'",
                           name=op.f("ck_inspection_templates_code")),
    )  # fmt: skip
    templates = sa.table(
        "inspection_templates", sa.column("code"), sa.column("name"),
        sa.column("items", JSONB()), sa.column("unit_types", ARRAY(sa.Text())),
    )  # fmt: skip
    op.bulk_insert(
        templates,
        [
            {"code": "general", "name": "通用消防安全检查", "items": _items(GENERAL_ITEMS),
             "unit_types": []},
            {"code": "small_premises", "name": "九小场所消防安全检查",
             "items": _items(SMALL_ITEMS), "unit_types": ["九小场所"]},
        ],
    )  # fmt: skip

    for col in (
        sa.Column("template_code", sa.String(32), nullable=True),
        sa.Column("next_due", sa.Date(), nullable=True),
        sa.Column("due_problem", sa.Text(), nullable=True),
        sa.Column("due_cal", sa.BigInteger(), nullable=True),
        sa.Column("due_basis", sa.Date(), nullable=True),
        sa.Column("due_schedule", sa.String(12), nullable=True),
        sa.Column("registered_on", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    ):
        op.add_column("inspection_points", col)
    op.execute(
        "UPDATE inspection_points SET "
        "registered_on = (created_at AT TIME ZONE 'Asia/Shanghai')::date"
    )
    op.alter_column("inspection_points", "registered_on", nullable=False,
                    server_default=sa.text("CURRENT_DATE"))  # fmt: skip
    op.add_column(
        "inspection_points",
        sa.Column("scope_key", sa.Text(), sa.Computed("coalesce(grid_code, village_code)",
                                                      persisted=True)),
    )  # fmt: skip
    op.create_foreign_key(
        op.f("fk_inspection_points_template_code_inspection_templates"), "inspection_points",
        "inspection_templates", ["template_code"], ["code"],
    )  # fmt: skip
    op.execute(
        "CREATE INDEX ix_inspection_points_scope_key ON inspection_points "
        "(scope_key text_pattern_ops)"
    )
    op.create_index("ix_inspection_points_next_due", "inspection_points", ["next_due"])

    op.create_table(
        "inspection_records",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("point_id", sa.BigInteger(), nullable=False),
        sa.Column("inspected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=True),
        sa.Column("by_name", sa.Text(), nullable=False),
        sa.Column("template_code", sa.String(32), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("results", JSONB(), nullable=False),
        sa.Column("photos", ARRAY(sa.String(64)), server_default="{}", nullable=False),
        sa.Column("signature", sa.String(64), nullable=True,
                  comment="sha256 of the unit manager's signature image"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True, comment="the due date it answered"),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_records")),
        sa.ForeignKeyConstraint(["point_id"], ["inspection_points.id"], ondelete="CASCADE",
                                name=op.f("fk_inspection_records_point_id_inspection_points")),
        sa.ForeignKeyConstraint(["by_user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_inspection_records_by_user_id_users")),
    )  # fmt: skip
    op.create_index("ix_inspection_records_point_id", "inspection_records",
                    ["point_id", "inspected_at"])  # fmt: skip
    op.create_index("ix_inspection_records_due_date", "inspection_records", ["due_date"])

    op.create_table(
        "inspection_case_links",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("point_id", sa.BigInteger(), nullable=False),
        sa.Column("item_code", sa.String(32), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False, server_default="open"),
        sa.Column("resolved_record_id", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_case_links")),
        sa.ForeignKeyConstraint(["record_id"], ["inspection_records.id"], ondelete="CASCADE",
                                name=op.f("fk_inspection_case_links_record_id_inspection_records")),
        sa.ForeignKeyConstraint(["point_id"], ["inspection_points.id"], ondelete="CASCADE",
                                name=op.f("fk_inspection_case_links_point_id_inspection_points")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE",
                                name=op.f("fk_inspection_case_links_case_id_cases")),
        sa.ForeignKeyConstraint(["resolved_record_id"], ["inspection_records.id"],
                                ondelete="SET NULL",
                                name=op.f("fk_inspection_case_links_resolved_record_id_"
                                          "inspection_records")),
        sa.CheckConstraint("status IN ('open', 'resolved')",
                           name=op.f("ck_inspection_case_links_status")),
        sa.CheckConstraint("(status = 'resolved') = (resolved_at IS NOT NULL)",
                           name=op.f("ck_inspection_case_links_resolved")),
    )  # fmt: skip
    op.execute(
        "CREATE UNIQUE INDEX uq_inspection_case_links_open ON inspection_case_links "
        "(point_id, item_code) WHERE status = 'open'"
    )
    op.create_index("ix_inspection_case_links_case_id", "inspection_case_links", ["case_id"])
    op.create_index("ix_inspection_case_links_record_id", "inspection_case_links",
                    ["record_id"])  # fmt: skip

    # -- layer versions: filings change the key-unit layer's overdue flag -----------------------
    for event, which in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")):
        op.execute(
            f"CREATE TRIGGER trg_key_unit_dues_layer_version_{event} AFTER {event.upper()} "
            f"ON key_unit_dues REFERENCING {which} TABLE AS changed_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION geogrid_bump_layer_version_if_changed('key_units')"
        )

    # -- row-level security on the personal table; grants --------------------------------------
    op.execute("ALTER TABLE key_unit_contacts ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE key_unit_contacts FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY key_unit_contacts_scope ON key_unit_contacts "
        f"USING ({_UNITS_IN_SCOPE}) WITH CHECK ({_UNITS_IN_SCOPE})"
    )
    grants = {
        "key_unit_types": "SELECT",
        "key_unit_contacts": "SELECT, INSERT, UPDATE, DELETE",
        "key_unit_filings": "SELECT, INSERT, UPDATE",
        "key_unit_dues": "SELECT, INSERT, UPDATE, DELETE",
        "inspection_templates": "SELECT, INSERT, UPDATE",
        "inspection_records": "SELECT, INSERT",
        "inspection_case_links": "SELECT, INSERT, UPDATE",
    }
    for table, privileges in grants.items():
        op.execute(f"GRANT {privileges} ON {table} TO {WEB_ROLE}")
    op.execute(
        f"GRANT USAGE, SELECT ON key_unit_filings_id_seq, inspection_records_id_seq, "
        f"inspection_case_links_id_seq TO {WEB_ROLE}"
    )


def downgrade() -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER trg_key_unit_dues_layer_version_{event} ON key_unit_dues")
    op.drop_table("inspection_case_links")
    op.drop_table("inspection_records")
    op.drop_constraint(
        "fk_inspection_points_template_code_inspection_templates", "inspection_points",
        type_="foreignkey",
    )  # fmt: skip
    op.drop_index("ix_inspection_points_next_due", table_name="inspection_points")
    op.execute("DROP INDEX ix_inspection_points_scope_key")
    for col in ("scope_key", "version", "registered_on", "due_schedule", "due_basis", "due_cal",
                "due_problem", "next_due", "template_code"):  # fmt: skip
        op.drop_column("inspection_points", col)
    op.drop_table("inspection_templates")
    op.drop_table("key_unit_dues")
    op.drop_table("key_unit_filings")
    op.execute("DROP POLICY IF EXISTS key_unit_contacts_scope ON key_unit_contacts")
    op.drop_table("key_unit_contacts")
    op.execute("DROP INDEX ix_key_units_scope_key")
    for col in ("scope_key", "version", "registered_on"):
        op.drop_column("key_units", col)
    op.drop_table("key_unit_types")
