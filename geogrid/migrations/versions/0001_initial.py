"""Initial schema: admin areas, villager groups, households, plans, grids.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SRID = 4326


def _geom(kind: str) -> Geometry:
    return Geometry(kind, srid=SRID, spatial_index=False)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]  # fmt: skip


def _gist(table: str) -> None:
    op.create_index(f"ix_{table}_geom", table, ["geom"], postgresql_using="gist")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    op.create_table(
        "admin_areas",
        sa.Column("code", sa.String(12), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("parent_code", sa.String(12), nullable=True),
        sa.Column("geom", _geom("MULTIPOLYGON"), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_admin_areas")),
        sa.ForeignKeyConstraint(["parent_code"], ["admin_areas.code"],
                                name=op.f("fk_admin_areas_parent_code_admin_areas")),
        sa.CheckConstraint("level IN ('county', 'town', 'village')",
                           name=op.f("ck_admin_areas_level")),
        sa.CheckConstraint(
            "(level = 'county' AND code ~ '^[0-9]{6}([0-9]{6})?$') OR code ~ '^[0-9]{12}$'",
            name=op.f("ck_admin_areas_code_format")),
    )  # fmt: skip
    _gist("admin_areas")
    op.create_index("ix_admin_areas_parent_code", "admin_areas", ["parent_code"])

    op.create_table(
        "villager_groups",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("group_no", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("geom", _geom("MULTIPOLYGON"), nullable=True),
        sa.Column("territory_source", sa.String(8), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_villager_groups")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_villager_groups_village_code_admin_areas")),
        sa.UniqueConstraint("village_code", "group_no",
                            name=op.f("uq_villager_groups_village_code_group_no")),
        sa.CheckConstraint("group_no > 0", name=op.f("ck_villager_groups_group_no_positive")),
        sa.CheckConstraint("territory_source IN ('supplied', 'derived')",
                           name=op.f("ck_villager_groups_territory_source")),
    )  # fmt: skip
    _gist("villager_groups")

    op.create_table(
        "households",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("register_no", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("address_raw", sa.Text(), nullable=True),
        sa.Column("address_norm", sa.Text(), nullable=True),
        sa.Column("natural_village", sa.Text(), nullable=True),
        sa.Column("head_name", sa.Text(), nullable=True, comment="personal data"),
        sa.Column("phone", sa.Text(), nullable=True, comment="personal data"),
        sa.Column("members", sa.Integer(), server_default="1", nullable=False),
        sa.Column("geom", _geom("POINT"), nullable=True),
        sa.Column("geocode_precision", sa.String(8), nullable=False),
        sa.Column("geocode_source", sa.Text(), nullable=True),
        sa.Column("row_hash", sa.String(32), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_households")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_households_village_code_admin_areas")),
        sa.ForeignKeyConstraint(["group_id"], ["villager_groups.id"],
                                name=op.f("fk_households_group_id_villager_groups")),
        sa.UniqueConstraint("village_code", "register_no",
                            name=op.f("uq_households_village_code_register_no")),
        sa.CheckConstraint("members >= 0", name=op.f("ck_households_members_nonnegative")),
        sa.CheckConstraint(
            "geocode_precision IN ('exact', 'house', 'group', 'village', 'failed')",
            name=op.f("ck_households_geocode_precision")),
        sa.CheckConstraint("(geom IS NULL) = (geocode_precision = 'failed')",
                           name=op.f("ck_households_geom_matches_precision")),
    )  # fmt: skip
    _gist("households")
    op.create_index("ix_households_group_id", "households", ["group_id"])

    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("town_code", sa.String(12), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(8), server_default="draft", nullable=False),
        sa.Column("params", JSONB(), server_default="{}", nullable=False),
        sa.Column("metrics", JSONB(), server_default="{}", nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.ForeignKeyConstraint(["town_code"], ["admin_areas.code"],
                                name=op.f("fk_plans_town_code_admin_areas")),
        sa.ForeignKeyConstraint(["parent_id"], ["plans.id"],
                                name=op.f("fk_plans_parent_id_plans")),
        sa.CheckConstraint("status IN ('draft', 'active', 'archived')",
                           name=op.f("ck_plans_status")),
    )  # fmt: skip
    op.create_index(
        "uq_plans_town_code_active", "plans", ["town_code"], unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )  # fmt: skip

    op.create_table(
        "grids",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(15), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("geom", _geom("MULTIPOLYGON"), nullable=True),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column("population", sa.Integer(), server_default="0", nullable=False),
        sa.Column("metrics", JSONB(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grids")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], ondelete="CASCADE",
                                name=op.f("fk_grids_plan_id_plans")),
        sa.ForeignKeyConstraint(["parent_id"], ["grids.id"], ondelete="CASCADE",
                                name=op.f("fk_grids_parent_id_grids")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_grids_village_code_admin_areas")),
        sa.UniqueConstraint("plan_id", "code", name=op.f("uq_grids_plan_id_code")),
        sa.CheckConstraint("level IN (1, 2, 3)", name=op.f("ck_grids_level")),
        sa.CheckConstraint(
            "(level = 3 AND code ~ '^[0-9]{15}$') OR (level < 3 AND code ~ '^[0-9]{12}$')",
            name=op.f("ck_grids_code_format")),
    )  # fmt: skip
    _gist("grids")
    op.create_index("ix_grids_parent_id", "grids", ["parent_id"])

    op.create_table(
        "grid_groups",
        sa.Column("grid_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("grid_id", "group_id", name=op.f("pk_grid_groups")),
        sa.ForeignKeyConstraint(["grid_id"], ["grids.id"], ondelete="CASCADE",
                                name=op.f("fk_grid_groups_grid_id_grids")),
        sa.ForeignKeyConstraint(["group_id"], ["villager_groups.id"],
                                name=op.f("fk_grid_groups_group_id_villager_groups")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], ondelete="CASCADE",
                                name=op.f("fk_grid_groups_plan_id_plans")),
        sa.UniqueConstraint("plan_id", "group_id",
                            name=op.f("uq_grid_groups_plan_id_group_id")),
    )  # fmt: skip


def downgrade() -> None:
    for table in ("grid_groups", "grids", "plans", "households", "villager_groups",
                  "admin_areas"):  # fmt: skip
        op.drop_table(table)
