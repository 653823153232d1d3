"""Gazetteer address points for offline geocoding.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "address_points",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("address_norm", sa.Text(), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_points")),
        sa.ForeignKeyConstraint(["village_code"], ["admin_areas.code"],
                                name=op.f("fk_address_points_village_code_admin_areas")),
        sa.UniqueConstraint("address_norm", name=op.f("uq_address_points_address_norm")),
    )  # fmt: skip
    op.create_index("ix_address_points_geom", "address_points", ["geom"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_table("address_points")
