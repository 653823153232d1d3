"""Visit logs (民情日志), visit plans and special-population follow-up schedules.

* ``visit_tags``: the dictionary of need tags (低保, 残疾, 就业, 医疗, 矛盾 …) a visit may carry.
* ``visits``: one visit to a household *or* a key unit (exactly one of the two): the day,
  the worker (the signed-in user), the people met and the notes (personal data: answered
  masked or to in-scope users only, under row-level security), need tags, whether a
  follow-up is wanted (and by when), a ``version`` raised by every edit (ETag / If-Match).
  ``village_code`` is the target's village when the visit was recorded; the scope of a
  visit is always its household's (or key unit's) *current* grid, so that a redrawn plan
  hands the visit history to the new grid's workers.
* ``visit_photos``: photos of a visit, by SHA-256 in the content-addressed file store.
* ``visit_rules``: the visit plan, per area prefix (``''`` everywhere, else a town's
  9-digit prefix, a village or a grid code) and kind (``household``: every household;
  ``special``: households with a special-population member) — one visit at least every
  ``period_months`` months (windows aligned to the calendar year). The longest matching
  prefix wins. Seeded: every household once a quarter, special populations monthly.
* ``visit_area_state`` and ``visit_coverage_cache``: coverage figures per area kept between
  calls (:mod:`geogrid.fieldwork.coverage_cache`); triggers raise an area's version when
  one of its visits changes, and the global version (row ``'*'``) when households,
  members, special-population records or visit rules change.
* ``followup_rules``: the follow-up interval of special-population records per risk level,
  in working days of the working calendar (高 5, 中 20, 低 60).

Row-level security: a visit (and its photos) is visible when its household or key unit is
inside the request's scope (the same test as household members, short-circuited when the
scope covers the whole store).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
TABLES = (
    "visit_tags", "visits", "visit_photos", "visit_rules", "followup_rules",
    "visit_area_state", "visit_coverage_cache",
)  # fmt: skip
TAGS = (
    ("低保", "Minimum living allowance", 1),
    ("残疾", "Disability", 2),
    ("就业", "Employment", 3),
    ("医疗", "Medical care", 4),
    ("矛盾", "Dispute", 5),
    ("养老", "Elderly care", 6),
    ("教育", "Education", 7),
    ("住房", "Housing", 8),
    ("安全", "Safety", 9),
    ("其他", "Other", 10),
)
PATTERN = "(SELECT geogrid_scope_pattern())"
VISIBLE = (
    "(SELECT geogrid_scope_covers_all()) "
    f"OR household_id IN (SELECT h.id FROM households h WHERE h.scope_key LIKE {PATTERN}) "
    "OR key_unit_id IN (SELECT k.id FROM key_units k "
    f"WHERE coalesce(k.grid_code, k.village_code) LIKE {PATTERN})"
)


def _ts() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "visit_tags",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("sort", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default="true"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_visit_tags")),
        sa.CheckConstraint("length(code) BETWEEN 1 AND 8", name=op.f("ck_visit_tags_code")),
    )  # fmt: skip
    op.bulk_insert(
        sa.table("visit_tags", sa.column("code"), sa.column("name_en"), sa.column("sort")),
        [{"code": c, "name_en": e, "sort": s} for c, e, s in TAGS],
    )

    op.create_table(
        "visits",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("household_id", sa.BigInteger(), nullable=True),
        sa.Column("key_unit_id", sa.BigInteger(), nullable=True),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("visited_on", sa.Date(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("worker_name", sa.Text(), nullable=False),
        sa.Column("people_met", ARRAY(sa.Text()), nullable=False, server_default="{}",
                  comment="personal data"),
        sa.Column("notes", sa.Text(), nullable=False, server_default="",
                  comment="personal data"),
        sa.Column("tags", ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("follow_up", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("follow_up_due", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"], ondelete="CASCADE",
                                name=op.f("fk_visits_household_id_households")),
        sa.ForeignKeyConstraint(["key_unit_id"], ["key_units.id"], ondelete="CASCADE",
                                name=op.f("fk_visits_key_unit_id_key_units")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_visits_village_code_admin_areas")),
        sa.ForeignKeyConstraint(["worker_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_visits_worker_id_users")),
        sa.CheckConstraint("num_nonnulls(household_id, key_unit_id) = 1",
                           name=op.f("ck_visits_one_target")),
        sa.CheckConstraint("follow_up OR follow_up_due IS NULL",
                           name=op.f("ck_visits_due_needs_follow_up")),
        sa.CheckConstraint("follow_up_due IS NULL OR follow_up_due >= visited_on",
                           name=op.f("ck_visits_due_after_visit")),
        sa.CheckConstraint("cardinality(people_met) <= 20 AND cardinality(tags) <= 20",
                           name=op.f("ck_visits_list_sizes")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_visits_version")),
    )  # fmt: skip
    op.create_index("ix_visits_household_id_visited_on", "visits", ["household_id", "visited_on"])
    op.create_index("ix_visits_key_unit_id", "visits", ["key_unit_id"])
    op.create_index("ix_visits_visited_on", "visits", ["visited_on"])
    op.create_index("ix_visits_worker_id_visited_on", "visits", ["worker_id", "visited_on"])

    op.create_table(
        "visit_photos",
        sa.Column("visit_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("visit_id", "sha256", name=op.f("pk_visit_photos")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], ondelete="CASCADE",
                                name=op.f("fk_visit_photos_visit_id_visits")),
        sa.ForeignKeyConstraint(["sha256"], ["stored_files.sha256"],
                                name=op.f("fk_visit_photos_sha256_stored_files")),
    )  # fmt: skip

    op.create_table(
        "visit_rules",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("prefix", sa.String(15), nullable=False, server_default="",
                  comment="'' everywhere, else a town (9 digits), village or grid prefix"),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("period_months", sa.SmallInteger(), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_rules")),
        sa.UniqueConstraint("prefix", "kind", name=op.f("uq_visit_rules_prefix_kind")),
        sa.CheckConstraint("kind IN ('household', 'special')", name=op.f("ck_visit_rules_kind")),
        sa.CheckConstraint("period_months IN (1, 2, 3, 4, 6, 12)",
                           name=op.f("ck_visit_rules_period_months")),
        sa.CheckConstraint("prefix ~ '^([0-9]{9}|[0-9]{12}|[0-9]{15})?$'",
                           name=op.f("ck_visit_rules_prefix")),
    )  # fmt: skip
    op.execute(
        "INSERT INTO visit_rules (prefix, kind, period_months, updated_by) VALUES "
        "('', 'household', 3, 'migration'), ('', 'special', 1, 'migration')"
    )

    op.create_table(
        "followup_rules",
        sa.Column("risk_level", sa.String(1), nullable=False),
        sa.Column("working_days", sa.SmallInteger(), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("risk_level", name=op.f("pk_followup_rules")),
        sa.CheckConstraint("risk_level IN ('低', '中', '高')",
                           name=op.f("ck_followup_rules_risk_level")),
        sa.CheckConstraint("working_days BETWEEN 1 AND 250",
                           name=op.f("ck_followup_rules_working_days")),
    )  # fmt: skip
    op.execute(
        "INSERT INTO followup_rules (risk_level, working_days, updated_by) VALUES "
        "('高', 5, 'migration'), ('中', 20, 'migration'), ('低', 60, 'migration')"
    )

    _coverage_cache()

    # -- row-level security (the second wall) and the web role's grants ------------------
    for table, expr in {
        "visits": VISIBLE,
        "visit_photos": "visit_id IN (SELECT v.id FROM visits v)",
    }.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_scope ON {table} USING ({expr}) WITH CHECK ({expr})")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON visits TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON visit_photos TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT ON visit_tags TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON visit_rules TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, UPDATE ON followup_rules TO {WEB_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON visits_id_seq, visit_rules_id_seq TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON visit_area_state TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON visit_coverage_cache TO {WEB_ROLE}")


#: Statement triggers that raise the global version (table, events).
GLOBAL_TRIGGERS = {
    "households": "INSERT OR DELETE OR UPDATE OF grid_code, village_code",
    "household_members": "DELETE OR UPDATE OF household_id",
    "special_population": "INSERT OR DELETE OR UPDATE OF member_id",
    "visit_rules": "INSERT OR DELETE OR UPDATE",
}


def _coverage_cache() -> None:
    op.create_table(
        "visit_area_state",
        sa.Column("area", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
        sa.Column("listed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("area", name=op.f("pk_visit_area_state")),
    )  # fmt: skip
    op.execute("INSERT INTO visit_area_state (area, version, listed) VALUES ('*', 1, 0)")
    op.create_table(
        "visit_coverage_cache",
        sa.Column("area", sa.Text(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("special", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("global_version", sa.BigInteger(), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("visited", sa.Integer(), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("area", "period_start", "period_end", "special",
                                name=op.f("pk_visit_coverage_cache")),
    )  # fmt: skip
    op.execute(
        """
        CREATE FUNCTION geogrid_visit_area_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE a text;
        BEGIN
            IF TG_OP <> 'DELETE' AND NEW.household_id IS NOT NULL THEN
                SELECT scope_key INTO a FROM households WHERE id = NEW.household_id;
                IF a IS NOT NULL THEN
                    INSERT INTO visit_area_state (area) VALUES (a) ON CONFLICT (area)
                    DO UPDATE SET version = visit_area_state.version + 1;
                END IF;
            END IF;
            IF TG_OP <> 'INSERT' AND OLD.household_id IS NOT NULL THEN
                SELECT scope_key INTO a FROM households WHERE id = OLD.household_id;
                IF a IS NOT NULL THEN
                    INSERT INTO visit_area_state (area) VALUES (a) ON CONFLICT (area)
                    DO UPDATE SET version = visit_area_state.version + 1;
                END IF;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER visits_area_dirty AFTER INSERT OR DELETE OR UPDATE OF household_id, "
        "visited_on ON visits FOR EACH ROW EXECUTE FUNCTION geogrid_visit_area_dirty()"
    )
    op.execute(
        """
        CREATE FUNCTION geogrid_visit_global_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE visit_area_state SET version = version + 1 WHERE area = '*';
            RETURN NULL;
        END $$
        """
    )
    for table, events in GLOBAL_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {table}_visit_dirty AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION geogrid_visit_global_dirty()"
        )


def downgrade() -> None:
    for table in GLOBAL_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_visit_dirty ON {table}")
    op.execute("DROP TRIGGER IF EXISTS visits_area_dirty ON visits")
    for table in ("visit_photos", "visits"):
        op.execute(f"DROP POLICY IF EXISTS {table}_scope ON {table}")
    for table in reversed(TABLES):
        op.drop_table(table)
    op.execute("DROP FUNCTION geogrid_visit_global_dirty()")
    op.execute("DROP FUNCTION geogrid_visit_area_dirty()")
