"""Cases: event-sourced workflow, category dictionary, routing, attachments, duplicates.

* ``case_categories`` — the category dictionary (2-digit classes, 4-digit subclasses) with
  aliases for the names older files use; ``case_time_limits`` — the time limit of each
  (category, step) in working hours or days.
* ``cases`` grows the workflow's current state (owner, post, pending request, step
  deadline, rework count, version …), the grid the case is in under the active plan now
  (``current_grid_code``; ``grid_code`` stays the grid it was reported in), source,
  priority and address. The status set changes: the old ``verified`` (核查) is ``checked``.
* ``case_events`` — append-only (row trigger on UPDATE/DELETE, statement trigger on
  TRUNCATE, only SELECT/INSERT for the web role): one row per transition, ``seq`` = the
  case's version after it. Existing cases get a synthesised history up to their status.
* ``case_reporters`` — the reporter's name and phone (personal; row-level security by the
  case's scope for reads, any insert), one row per reporter (merged duplicates add theirs).
* ``case_routes`` — (area, category) → post; ``case_departments`` and their members.
* ``stored_files`` and ``case_files`` — uploads in the content-addressed store and the
  case events they are attached to. ``case_settings`` — duplicate radius and window,
  the soon-due horizon.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
OLD_STATUSES = ("reported", "dispatched", "handled", "verified", "evaluated", "closed")
STATUSES = (
    "reported", "accepted", "rejected", "verified", "registered", "voided", "dispatched",
    "in_progress", "suspended", "handled", "checked", "evaluated", "closed", "archived",
    "merged",
)  # fmt: skip
OPEN = (
    "reported", "accepted", "verified", "registered", "dispatched", "in_progress", "suspended",
    "handled", "checked", "evaluated",
)  # fmt: skip
SOURCES = ("grid_worker", "open311", "hotline", "inspection", "import")
STEPS = ("accept", "verify", "register", "dispatch", "handle", "check", "evaluate", "close")
POST_KINDS = ("centre", "grid", "village", "department")

#: (code, name, English name, aliases); subclasses follow their class.
CATEGORIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("01", "矛盾纠纷", "Disputes", ("纠纷",)),
    ("0101", "邻里纠纷", "Neighbour dispute", ()),
    ("0102", "婚姻家庭纠纷", "Family dispute", ()),
    ("0103", "土地山林纠纷", "Land or forest dispute", ("宅基地纠纷",)),
    ("0104", "劳资纠纷", "Wage dispute", ()),
    ("0105", "物业纠纷", "Property management dispute", ()),
    ("02", "治安隐患", "Public-order hazards", ("治安问题", "安全隐患", "治安")),
    ("0201", "可疑人员", "Suspicious person", ()),
    ("0202", "治安秩序", "Public order", ()),
    ("0203", "黄赌毒线索", "Vice lead", ()),
    ("0204", "公共安全隐患", "Public-safety hazard", ()),
    ("03", "消防隐患", "Fire hazards", ("消防",)),
    ("0301", "消防通道堵塞", "Blocked fire lane", ()),
    ("0302", "电气线路隐患", "Electrical hazard", ()),
    ("0303", "易燃物堆放", "Flammables stored", ()),
    ("0304", "消防设施损坏", "Fire equipment damaged", ()),
    ("04", "环境卫生", "Sanitation", ("卫生", "环境")),
    ("0401", "垃圾堆放", "Rubbish dumped", ()),
    ("0402", "污水排放", "Sewage", ()),
    ("0403", "焚烧秸秆", "Straw burning", ()),
    ("0404", "河道沟渠", "Rivers and ditches", ()),
    ("0405", "违规养殖", "Illegal livestock keeping", ()),
    ("05", "特殊人群", "Special groups", ()),
    ("0501", "社区矫正", "Community correction", ()),
    ("0502", "刑满释放", "Released prisoner", ()),
    ("0503", "严重精神障碍", "Severe mental disorder", ()),
    ("0504", "吸毒人员", "Drug user", ()),
    ("0505", "重点青少年", "Youth at risk", ()),
    ("06", "民生服务", "Public services", ("民生",)),
    ("0601", "社保医保", "Social and health insurance", ()),
    ("0602", "道路设施", "Roads and facilities", ()),
    ("0603", "供水供电", "Water and power supply", ()),
    ("0604", "养老助残", "Elderly and disability care", ()),
    ("0605", "证照办理", "Certificates", ()),
    ("07", "居民投诉", "Residents' complaints", ("投诉",)),
    ("0701", "噪音扰民", "Noise", ()),
    ("0702", "服务态度", "Service attitude", ()),
    ("0703", "违章建设", "Illegal construction", ()),
    ("0704", "占道经营", "Street obstruction", ()),
    ("08", "突发事件", "Emergencies", ("紧急事件",)),
    ("0801", "自然灾害", "Natural disaster", ()),
    ("0802", "事故灾难", "Accident", ()),
    ("0803", "公共卫生事件", "Public-health event", ()),
    ("0804", "群体性事件", "Mass incident", ()),
    ("09", "其他", "Other", ()),
    ("0901", "道路交通", "Road traffic", ()),
    ("0999", "其他事项", "Other matters", ()),
)

#: Step limits of every class: (amount, unit); ``handle`` depends on the class.
STEP_LIMITS: dict[str, tuple[int, str]] = {
    "accept": (2, "hours"), "verify": (1, "days"), "register": (4, "hours"),
    "dispatch": (2, "hours"), "check": (1, "days"), "evaluate": (1, "days"),
    "close": (2, "days"),
}  # fmt: skip
HANDLE_LIMITS: dict[str, tuple[int, str]] = {
    "01": (5, "days"), "02": (3, "days"), "03": (2, "days"), "04": (3, "days"),
    "05": (5, "days"), "06": (5, "days"), "07": (5, "days"), "08": (4, "hours"),
    "09": (5, "days"),
}  # fmt: skip

#: The path old statuses took (report … close), with the status each step leads to.
_PATH = (
    ("report", None, "reported"), ("accept", "reported", "accepted"),
    ("register", "accepted", "registered"), ("dispatch", "registered", "dispatched"),
    ("start", "dispatched", "in_progress"), ("handle", "in_progress", "handled"),
    ("check_pass", "handled", "checked"), ("evaluate", "checked", "evaluated"),
    ("close", "evaluated", "closed"),
)  # fmt: skip


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)  # fmt: skip


def _dictionary() -> None:
    op.create_table(
        "case_categories",
        sa.Column("code", sa.String(4), nullable=False),
        sa.Column("parent_code", sa.String(2), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("aliases", ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("sort", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_case_categories")),
        sa.ForeignKeyConstraint(["parent_code"], ["case_categories.code"],
                                name=op.f("fk_case_categories_parent_code_case_categories")),
        sa.CheckConstraint("code ~ '^[0-9]{2}([0-9]{2})?$'", name=op.f("ck_case_categories_code")),
        sa.CheckConstraint(
            "(length(code) = 2 AND parent_code IS NULL) "
            "OR (length(code) = 4 AND parent_code = left(code, 2))",
            name=op.f("ck_case_categories_parent")),
    )  # fmt: skip
    op.create_table(
        "case_time_limits",
        sa.Column("category_code", sa.String(4), nullable=False),
        sa.Column("step", sa.String(10), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(5), nullable=False),
        sa.PrimaryKeyConstraint("category_code", "step", name=op.f("pk_case_time_limits")),
        sa.ForeignKeyConstraint(["category_code"], ["case_categories.code"], ondelete="CASCADE",
                                name=op.f("fk_case_time_limits_category_code_case_categories")),
        sa.CheckConstraint(f"step IN ({_in(STEPS)})", name=op.f("ck_case_time_limits_step")),
        sa.CheckConstraint("unit IN ('hours', 'days')", name=op.f("ck_case_time_limits_unit")),
        sa.CheckConstraint("amount > 0 AND amount <= 10000",
                           name=op.f("ck_case_time_limits_amount")),
    )  # fmt: skip
    rows = [
        {"code": c, "parent": c[:2] if len(c) == 4 else None, "name": n, "en": en,
         "aliases": list(al), "sort": i}
        for i, (c, n, en, al) in enumerate(CATEGORIES)
    ]  # fmt: skip
    op.get_bind().execute(
        sa.text(
            "INSERT INTO case_categories (code, parent_code, name, name_en, aliases, sort) "
            "VALUES (:code, :parent, :name, :en, :aliases, :sort)"
        ),
        rows,
    )
    limits = [
        {"c": c, "s": step, "a": amount, "u": unit}
        for c, *_ in CATEGORIES
        if len(c) == 2
        for step, (amount, unit) in {**STEP_LIMITS, "handle": HANDLE_LIMITS[c]}.items()
    ]
    op.get_bind().execute(
        sa.text(
            "INSERT INTO case_time_limits (category_code, step, amount, unit) "
            "VALUES (:c, :s, :a, :u)"
        ),
        limits,
    )


def _case_columns() -> None:
    op.drop_constraint(op.f("ck_cases_status"), "cases", type_="check")
    op.execute("UPDATE cases SET status = 'checked' WHERE status = 'verified'")
    add: list[sa.Column[Any]] = [
        sa.Column("category_code", sa.String(4), nullable=True),
        sa.Column("source", sa.String(12), server_default="import", nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default="2", nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("current_grid_code", sa.String(15), nullable=True,
                  comment="basic grid of the active plan now (grid_code: when reported)"),
        sa.Column("route_kind", sa.String(10), nullable=True),
        sa.Column("route_code", sa.Text(), nullable=True),
        sa.Column("assignee_kind", sa.String(10), nullable=True),
        sa.Column("assignee_code", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("handled_by", sa.Integer(), nullable=True),
        sa.Column("pending", sa.String(10), nullable=True),
        sa.Column("pending_data", JSONB(), nullable=True),
        sa.Column("resume_status", sa.String(12), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_step", sa.String(10), nullable=True),
        sa.Column("deadline_problem", sa.Text(), nullable=True),
        sa.Column("rework_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("merged_into", sa.BigInteger(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
    ]  # fmt: skip
    for column in add:
        op.add_column("cases", column)
    op.alter_column("cases", "status", type_=sa.String(12))
    op.create_check_constraint("status", "cases", f"status IN ({_in(STATUSES)})")
    op.create_check_constraint("source", "cases", f"source IN ({_in(SOURCES)})")
    op.create_check_constraint("priority", "cases", "priority BETWEEN 1 AND 3")
    op.create_check_constraint(
        "pending", "cases", "pending IS NULL OR pending IN ('extension', 'suspension', 'transfer')"
    )
    op.create_check_constraint(
        "assignee_kind", "cases", f"assignee_kind IS NULL OR assignee_kind IN ({_in(POST_KINDS)})"
    )
    op.create_foreign_key(
        op.f("fk_cases_category_code_case_categories"), "cases", "case_categories",
        ["category_code"], ["code"],
    )  # fmt: skip
    op.create_foreign_key(
        op.f("fk_cases_owner_id_users"), "cases", "users", ["owner_id"], ["id"], ondelete="SET NULL"
    )
    op.create_foreign_key(
        op.f("fk_cases_merged_into_cases"), "cases", "cases", ["merged_into"], ["id"],
        ondelete="SET NULL",
    )  # fmt: skip
    open_ = sa.text(f"status IN ({_in(OPEN)})")
    # due lists and counts answer from the index alone: status and the scope key's columns
    op.create_index("ix_cases_open_due_at", "cases", ["due_at"], postgresql_where=open_,
                    postgresql_include=["status", "grid_code", "village_code"])  # fmt: skip
    op.create_index("ix_cases_open_assignee", "cases", ["assignee_kind", "assignee_code"],
                    postgresql_where=open_)  # fmt: skip
    # closed statuses only: an index of open statuses beside the partial ones below makes
    # the planner multiply their selectivities (74 rows expected of 9,400) and pick bitmaps
    op.create_index("ix_cases_status", "cases", ["status"],
                    postgresql_where=sa.text(f"status NOT IN ({_in(OPEN)})"))  # fmt: skip
    # queues (inbox, due lists) of a scope: open cases only, with what their tests read;
    # grid_code and village_code too, or no Index Only Scan (the key is an expression)
    op.execute(
        "CREATE INDEX ix_cases_open_queue ON cases "
        "((coalesce(grid_code, village_code)) text_pattern_ops) INCLUDE (id, status, source, "
        "pending, assignee_kind, assignee_code, handled_by, due_at, pending_data, grid_code, "
        f"village_code) WHERE status IN ({_in(OPEN)})"
    )
    op.create_index("ix_cases_current_grid_code", "cases", ["current_grid_code"])
    # duplicate hints look for open cases nearby: not the thousand closed ones in a 75 m box
    op.create_index("ix_cases_open_geom", "cases", ["geom"], postgresql_using="gist",
                    postgresql_where=open_)  # fmt: skip
    op.execute("CREATE SEQUENCE case_no_seq")


def _events() -> None:
    op.create_table(
        "case_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("from_status", sa.String(12), nullable=True),
        sa.Column("to_status", sa.String(12), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("attachments", ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("data", JSONB(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
        sa.UniqueConstraint("case_id", "seq", name=op.f("uq_case_events_case_id_seq")),
        sa.CheckConstraint("seq > 0", name=op.f("ck_case_events_seq")),
        comment="append-only: one row per transition of a case",
    )  # fmt: skip
    op.create_index("ix_case_events_at", "case_events", ["at"])
    op.execute(
        """
        CREATE FUNCTION geogrid_case_events_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'case_events is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER case_events_no_change BEFORE UPDATE OR DELETE ON case_events "
        "FOR EACH ROW EXECUTE FUNCTION geogrid_case_events_refuse()"
    )
    op.execute(
        "CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION geogrid_case_events_refuse()"
    )


def _people_and_posts() -> None:
    op.create_table(
        "case_reporters",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True, comment="personal data"),
        sa.Column("phone", sa.Text(), nullable=True, comment="personal data"),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("merged_from", sa.BigInteger(), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_reporters")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE",
                                name=op.f("fk_case_reporters_case_id_cases")),
    )  # fmt: skip
    op.create_index("ix_case_reporters_case_id", "case_reporters", ["case_id"])
    op.create_table(
        "case_departments",
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("town_code", sa.String(12), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_case_departments")),
        sa.ForeignKeyConstraint(["town_code"], ["admin_areas.code"],
                                name=op.f("fk_case_departments_town_code_admin_areas")),
    )  # fmt: skip
    op.create_table(
        "case_department_members",
        sa.Column("department_code", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("department_code", "user_id",
                                name=op.f("pk_case_department_members")),
        sa.ForeignKeyConstraint(
            ["department_code"], ["case_departments.code"], ondelete="CASCADE",
            name=op.f("fk_case_department_members_department_code_case_departments")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_case_department_members_user_id_users")),
    )  # fmt: skip
    op.create_table(
        "case_routes",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("area_code", sa.String(15), nullable=False,
                  comment="town, village or grid code; '' everywhere"),
        sa.Column("category_code", sa.String(4), nullable=True, comment="NULL: any category"),
        sa.Column("post_kind", sa.String(10), nullable=False),
        sa.Column("post_code", sa.Text(), nullable=True,
                  comment="NULL: the case's own grid / village / town"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_routes")),
        sa.ForeignKeyConstraint(["category_code"], ["case_categories.code"], ondelete="CASCADE",
                                name=op.f("fk_case_routes_category_code_case_categories")),
        sa.CheckConstraint(f"post_kind IN ({_in(POST_KINDS)})",
                           name=op.f("ck_case_routes_post_kind")),
        sa.CheckConstraint("area_code ~ '^([0-9]{12}|[0-9]{15})?$'",
                           name=op.f("ck_case_routes_area_code")),
    )  # fmt: skip
    op.execute(
        "CREATE UNIQUE INDEX uq_case_routes_area_code_category_code ON case_routes "
        "(area_code, category_code) NULLS NOT DISTINCT"
    )


def _files_and_settings() -> None:
    op.create_table(
        "stored_files",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mime", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_stored_files")),
    )  # fmt: skip
    op.create_table(
        "case_files",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "sha256", name=op.f("pk_case_files")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE",
                                name=op.f("fk_case_files_case_id_cases")),
        sa.ForeignKeyConstraint(["sha256"], ["stored_files.sha256"],
                                name=op.f("fk_case_files_sha256_stored_files")),
    )  # fmt: skip
    op.create_table(
        "case_settings",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_case_settings")),
    )
    op.execute(
        "INSERT INTO case_settings (key, value) VALUES ('duplicate_radius_m', '50'), "
        "('duplicate_window_hours', '72'), ('soon_due_hours', '24')"
    )


def _synthesise_histories() -> None:
    """Events for the cases already stored: the path from ``reported`` to their status."""
    path = ", ".join(
        f"({i + 1}, '{a}', {repr(f) if f else 'NULL'}, '{t}')" for i, (a, f, t) in enumerate(_PATH)
    )
    op.execute(
        """
        UPDATE cases c SET
            current_grid_code = c.grid_code,
            category_code = coalesce((SELECT k.code FROM case_categories k
                             WHERE k.name = c.category OR c.category = ANY (k.aliases)
                             ORDER BY length(k.code), k.code LIMIT 1), '09'),
            route_kind = CASE WHEN c.grid_code IS NULL THEN 'village' ELSE 'grid' END,
            route_code = coalesce(c.grid_code, c.village_code)
        """
    )
    op.execute(
        f"""
        WITH path (n, action, from_status, to_status) AS (VALUES {path}),
        target AS (SELECT c.*, (SELECT p.n FROM path p WHERE p.to_status = c.status) AS last
                   FROM cases c)
        INSERT INTO case_events (case_id, seq, action, from_status, to_status, at, actor,
                                 data)
        SELECT t.id, p.n, p.action, p.from_status, p.to_status,
               least(t.reported_at + (p.n - 1) * interval '1 hour', greatest(now(), t.reported_at)),
               'migration',
               jsonb_build_object('synthesised', true, 'set', CASE p.action
                   WHEN 'report' THEN jsonb_build_object(
                       'route_kind', t.route_kind, 'route_code', t.route_code,
                       'assignee_kind', 'centre', 'assignee_code', left(t.village_code, 9) || '000')
                   WHEN 'dispatch' THEN jsonb_build_object(
                       'assignee_kind', t.route_kind, 'assignee_code', t.route_code)
                   WHEN 'close' THEN jsonb_build_object('closed_at', to_jsonb(
                       least(t.reported_at + (p.n - 1) * interval '1 hour',
                             greatest(now(), t.reported_at))))
                   ELSE '{{}}'::jsonb END)
        FROM target t JOIN path p ON p.n <= t.last
        """
    )
    op.execute(
        """
        UPDATE cases c SET version = e.n, closed_at = e.closed_at,
            assignee_kind = CASE WHEN e.n >= 4 THEN c.route_kind ELSE 'centre' END,
            assignee_code = CASE WHEN e.n >= 4 THEN c.route_code
                                 ELSE left(c.village_code, 9) || '000' END
        FROM (SELECT case_id, max(seq) AS n,
                     max(at) FILTER (WHERE action = 'close') AS closed_at
              FROM case_events GROUP BY case_id) e
        WHERE e.case_id = c.id
        """
    )


def _security() -> None:
    tables = ("case_categories", "case_time_limits", "case_reporters", "case_departments",
              "case_department_members", "case_routes", "stored_files", "case_files",
              "case_settings")  # fmt: skip
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(tables)} TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON case_events TO {WEB_ROLE}")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON case_events FROM {WEB_ROLE}")
    op.execute(
        f"GRANT USAGE, SELECT ON case_no_seq, case_events_id_seq, case_reporters_id_seq, "
        f"case_routes_id_seq TO {WEB_ROLE}"
    )
    # reporters: read only within the case's scope; anyone may add one (a resident's report)
    in_scope = (
        "case_id IN (SELECT c.id FROM cases c "
        "WHERE geogrid_scope_allows(coalesce(c.grid_code, c.village_code)))"
    )
    op.execute("ALTER TABLE case_reporters ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE case_reporters FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY case_reporters_read ON case_reporters FOR SELECT USING ({in_scope})")
    op.execute("CREATE POLICY case_reporters_add ON case_reporters FOR INSERT WITH CHECK (true)")
    op.execute(
        f"CREATE POLICY case_reporters_change ON case_reporters FOR UPDATE USING ({in_scope}) "
        f"WITH CHECK ({in_scope})"
    )


def upgrade() -> None:
    _dictionary()
    _case_columns()
    _events()
    _people_and_posts()
    _files_and_settings()
    _synthesise_histories()
    _security()


def downgrade() -> None:
    for policy in ("read", "add", "change"):
        op.execute(f"DROP POLICY IF EXISTS case_reporters_{policy} ON case_reporters")
    for table in ("case_settings", "case_files", "stored_files", "case_routes",
                  "case_department_members", "case_departments", "case_reporters"):  # fmt: skip
        op.drop_table(table)
    op.execute("DROP TRIGGER case_events_no_truncate ON case_events")
    op.execute("DROP TRIGGER case_events_no_change ON case_events")
    op.drop_table("case_events")
    op.execute("DROP FUNCTION geogrid_case_events_refuse()")
    op.execute("DROP SEQUENCE case_no_seq")
    for index in ("ix_cases_open_geom", "ix_cases_open_queue", "ix_cases_open_due_at",
                  "ix_cases_open_assignee",
                  "ix_cases_status",
                  "ix_cases_current_grid_code"):  # fmt: skip
        op.drop_index(index, table_name="cases")
    for fk in ("fk_cases_merged_into_cases", "fk_cases_owner_id_users",
               "fk_cases_category_code_case_categories"):  # fmt: skip
        op.drop_constraint(op.f(fk), "cases", type_="foreignkey")
    for ck in ("ck_cases_assignee_kind", "ck_cases_pending", "ck_cases_priority",
               "ck_cases_source", "ck_cases_status"):  # fmt: skip
        op.drop_constraint(op.f(ck), "cases", type_="check")
    op.execute(
        "UPDATE cases SET status = CASE status WHEN 'checked' THEN 'verified' "
        "WHEN 'in_progress' THEN 'dispatched' WHEN 'suspended' THEN 'dispatched' "
        "WHEN 'accepted' THEN 'reported' WHEN 'registered' THEN 'reported' "
        "WHEN 'verified' THEN 'reported' WHEN 'archived' THEN 'closed' "
        "WHEN 'rejected' THEN 'closed' WHEN 'voided' THEN 'closed' WHEN 'merged' THEN 'closed' "
        "ELSE status END"
    )
    for column in ("version", "closed_at", "merged_into", "rework_count", "deadline_problem",
                   "due_step", "due_at", "resume_status", "pending_data", "pending",
                   "handled_by", "owner_id", "assignee_code", "assignee_kind", "route_code",
                   "route_kind", "current_grid_code", "address", "priority", "source",
                   "category_code"):  # fmt: skip
        op.drop_column("cases", column)
    op.create_check_constraint("status", "cases", f"status IN ({_in(OLD_STATUSES)})")
    op.drop_table("case_time_limits")
    op.drop_table("case_categories")
