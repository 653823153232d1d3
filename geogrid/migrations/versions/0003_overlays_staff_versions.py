"""Overlay layers (cases, key units, fire inspection points), staff, layer data versions.

Also lets a villager group that was split (``--split-large``) belong to several grids of
one plan: grid_groups gets a ``part`` column, and only whole groups are unique per plan.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The six-step case workflow (采集上报 → 指挥派遣 → 处置反馈 → 任务核查 → 入库评价 → 结案归档);
#: the workflow issue extends these tables with events and deadlines.
CASE_STATUSES = ("reported", "dispatched", "handled", "verified", "evaluated", "closed")

#: Layers whose data version drives tile ETags and cache invalidation.
VERSIONED = {
    "admin_areas": ("towns", "villages"),
    "villager_groups": ("groups",),
    "households": ("households",),
    "plans": ("grids",),
    "grids": ("grids",),
    "grid_groups": ("grids",),
    "cases": ("cases",),
    "key_units": ("key_units",),
    "inspection_points": ("inspection_points",),
    "staff": ("staff",),
    "staff_assignments": ("staff",),
}


def _point() -> Geometry:
    return Geometry("POINT", srid=4326, spatial_index=False)


def _ts() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]  # fmt: skip


def upgrade() -> None:
    # -- split groups may span grids --------------------------------------------------------
    op.add_column("grid_groups", sa.Column("part", sa.SmallInteger(), nullable=True))
    op.drop_constraint("uq_grid_groups_plan_id_group_id", "grid_groups", type_="unique")
    op.create_index(
        "uq_grid_groups_plan_id_group_id_whole", "grid_groups", ["plan_id", "group_id"],
        unique=True, postgresql_where=sa.text("part IS NULL"),
    )  # fmt: skip

    # -- overlays ---------------------------------------------------------------------------
    op.create_table(
        "cases",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("case_no", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), server_default="reported", nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("geom", _point(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("grid_code", sa.String(15), nullable=True,
                  comment="basic grid of the active plan when the case was placed"),
        sa.Column("description", sa.Text(), nullable=True, comment="public description"),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("case_no", name=op.f("uq_cases_case_no")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_cases_village_code_admin_areas")),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in CASE_STATUSES) + ")",
            name=op.f("ck_cases_status")),
    )  # fmt: skip
    op.create_index("ix_cases_geom", "cases", ["geom"], postgresql_using="gist")
    op.create_index("ix_cases_reported_at", "cases", ["reported_at"])
    op.create_index("ix_cases_category_reported_at", "cases", ["category", "reported_at"])
    op.create_index("ix_cases_grid_code", "cases", ["grid_code"])

    op.create_table(
        "key_units",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("unit_no", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit_type", sa.Text(), nullable=False),
        sa.Column("risk_level", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("geom", _point(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("grid_code", sa.String(15), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_units")),
        sa.UniqueConstraint("unit_no", name=op.f("uq_key_units_unit_no")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_key_units_village_code_admin_areas")),
        sa.CheckConstraint("risk_level BETWEEN 1 AND 3", name=op.f("ck_key_units_risk_level")),
    )  # fmt: skip
    op.create_index("ix_key_units_geom", "key_units", ["geom"], postgresql_using="gist")

    op.create_table(
        "inspection_points",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("point_no", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("geom", _point(), nullable=False),
        sa.Column("schedule", sa.String(12), nullable=False),
        sa.Column("last_inspected", sa.Date(), nullable=True),
        sa.Column("key_unit_id", sa.BigInteger(), nullable=True),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("grid_code", sa.String(15), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_points")),
        sa.UniqueConstraint("point_no", name=op.f("uq_inspection_points_point_no")),
        sa.ForeignKeyConstraint(["key_unit_id"], ["key_units.id"], ondelete="SET NULL",
                                name=op.f("fk_inspection_points_key_unit_id_key_units")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_inspection_points_village_code_admin_areas")),
        sa.CheckConstraint(
            "schedule IN ('weekly', 'monthly', 'quarterly', 'halfyearly', 'yearly')",
            name=op.f("ck_inspection_points_schedule")),
    )  # fmt: skip
    op.create_index(
        "ix_inspection_points_geom", "inspection_points", ["geom"], postgresql_using="gist"
    )

    # -- staff and their posts ----------------------------------------------------------------
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True, comment="duty phone, shown publicly"),
        sa.Column("photo", sa.Text(), nullable=True, comment="file name under the photo store"),
        sa.Column("duties", sa.Text(), nullable=True),
        sa.Column("town_code", sa.String(12), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.ForeignKeyConstraint(["town_code"], ["admin_areas.code"],
                                name=op.f("fk_staff_town_code_admin_areas")),
    )  # fmt: skip
    op.create_table(
        "staff_assignments",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("grid_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(12), nullable=False),
        sa.Column("post", sa.String(1), server_default="A", nullable=False),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_assignments")),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], ondelete="CASCADE",
                                name=op.f("fk_staff_assignments_staff_id_staff")),
        sa.ForeignKeyConstraint(["grid_id"], ["grids.id"], ondelete="CASCADE",
                                name=op.f("fk_staff_assignments_grid_id_grids")),
        sa.UniqueConstraint("grid_id", "role", "post",
                            name=op.f("uq_staff_assignments_grid_id_role_post")),
        sa.CheckConstraint("role IN ('leader', 'guide', 'info_officer')",
                           name=op.f("ck_staff_assignments_role")),
        sa.CheckConstraint("post IN ('A', 'B')", name=op.f("ck_staff_assignments_post")),
    )  # fmt: skip

    # -- data versions: one counter per served layer, bumped by statement triggers -----------
    op.create_table(
        "layer_versions",
        sa.Column("layer", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("layer", name=op.f("pk_layer_versions")),
    )  # fmt: skip
    layers = sorted({layer for ls in VERSIONED.values() for layer in ls})
    op.execute(
        "INSERT INTO layer_versions (layer) VALUES " + ", ".join(f"('{layer}')" for layer in layers)
    )
    op.execute(
        """
        CREATE FUNCTION geogrid_bump_layer_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE lyr text;
        BEGIN
            FOREACH lyr IN ARRAY TG_ARGV LOOP
                UPDATE layer_versions SET version = version + 1, changed_at = now()
                WHERE layer_versions.layer = lyr;
            END LOOP;
            RETURN NULL;
        END $$
        """
    )
    for table, table_layers in VERSIONED.items():
        args = ", ".join(f"'{layer}'" for layer in table_layers)
        op.execute(
            f"CREATE TRIGGER trg_{table}_layer_version AFTER INSERT OR UPDATE OR DELETE "
            f"OR TRUNCATE ON {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION geogrid_bump_layer_version({args})"
        )


def downgrade() -> None:
    for table in VERSIONED:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_layer_version ON {table}")
    op.execute("DROP FUNCTION IF EXISTS geogrid_bump_layer_version()")
    for table in ("layer_versions", "staff_assignments", "staff", "inspection_points",
                  "key_units", "cases"):  # fmt: skip
        op.drop_table(table)
    op.drop_index("uq_grid_groups_plan_id_group_id_whole", table_name="grid_groups")
    op.execute("DELETE FROM grid_groups WHERE part IS NOT NULL")
    op.create_unique_constraint(
        "uq_grid_groups_plan_id_group_id", "grid_groups", ["plan_id", "group_id"]
    )
    op.drop_column("grid_groups", "part")
