"""Assessment: schemes, their items, rounds, manual scores and frozen results.

* ``assessment_schemes`` — a named scheme for one level (town, village, grid, staff) of an
  area ('' = everywhere, else a town code), grade thresholds A–D (E below D) as JSON.
* ``assessment_scheme_items`` — its weighted items: an indicator (a key of the registry in
  :mod:`geogrid.assessment.indicators`) or a manual item (自查 self, 互查 mutual, 抽查 spot).
* ``assessment_rounds`` — monthly, quarterly or year-end rounds of a scheme in an area;
  ``draft`` until published, then frozen with a copy of the scheme (``scheme_snapshot``).
* ``assessment_manual_scores`` — manual item scores of a round per target, with checker
  and notes.
* ``assessment_results`` — the snapshot rows written when a round is published: every
  indicator value, the composite score, the grade and the rank; never rewritten.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
TABLES = (
    "assessment_results",
    "assessment_manual_scores",
    "assessment_rounds",
    "assessment_scheme_items",
    "assessment_schemes",
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
        "assessment_schemes",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("area_code", sa.String(12), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("thresholds", JSONB(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment_schemes")),
        sa.CheckConstraint("level IN ('town', 'village', 'grid', 'staff')",
                           name=op.f("ck_assessment_schemes_level")),
        sa.CheckConstraint("area_code ~ '^([0-9]{9}000)?$'",
                           name=op.f("ck_assessment_schemes_area_code")),
    )  # fmt: skip
    op.create_table(
        "assessment_scheme_items",
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("weight", sa.Numeric(6, 2), nullable=False),
        sa.Column("sort", sa.SmallInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("scheme_id", "key", name=op.f("pk_assessment_scheme_items")),
        sa.ForeignKeyConstraint(["scheme_id"], ["assessment_schemes.id"], ondelete="CASCADE",
                                name=op.f("fk_assessment_scheme_items_scheme_id_"
                                          "assessment_schemes")),
        sa.CheckConstraint("kind IN ('indicator', 'self', 'mutual', 'spot')",
                           name=op.f("ck_assessment_scheme_items_kind")),
        sa.CheckConstraint("weight > 0 AND weight <= 100",
                           name=op.f("ck_assessment_scheme_items_weight")),
    )  # fmt: skip
    op.create_table(
        "assessment_rounds",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("area_code", sa.String(12), server_default="", nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("status", sa.String(10), server_default="draft", nullable=False),
        sa.Column("scheme_snapshot", JSONB(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("published_by", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment_rounds")),
        sa.ForeignKeyConstraint(["scheme_id"], ["assessment_schemes.id"],
                                name=op.f("fk_assessment_rounds_scheme_id_assessment_schemes")),
        sa.UniqueConstraint("scheme_id", "area_code", "period_start", "period_end",
                            name=op.f("uq_assessment_rounds_scheme_period")),
        sa.CheckConstraint("kind IN ('monthly', 'quarterly', 'yearly')",
                           name=op.f("ck_assessment_rounds_kind")),
        sa.CheckConstraint("status IN ('draft', 'published')",
                           name=op.f("ck_assessment_rounds_status")),
        sa.CheckConstraint("period_end >= period_start",
                           name=op.f("ck_assessment_rounds_period")),
        sa.CheckConstraint("(status = 'published') = (published_at IS NOT NULL)",
                           name=op.f("ck_assessment_rounds_published")),
    )  # fmt: skip
    op.create_table(
        "assessment_manual_scores",
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(32), nullable=False),
        sa.Column("target_code", sa.String(15), nullable=False),
        sa.Column("score", sa.Numeric(5, 2), nullable=False),
        sa.Column("checker", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("entered_by", sa.Text(), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("round_id", "item_key", "target_code",
                                name=op.f("pk_assessment_manual_scores")),
        sa.ForeignKeyConstraint(["round_id"], ["assessment_rounds.id"], ondelete="CASCADE",
                                name=op.f("fk_assessment_manual_scores_round_id_"
                                          "assessment_rounds")),
        sa.CheckConstraint("score >= 0 AND score <= 100",
                           name=op.f("ck_assessment_manual_scores_score")),
    )  # fmt: skip
    op.create_table(
        "assessment_results",
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("target_code", sa.String(15), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("households", sa.Integer(), nullable=True),
        sa.Column("indicator_values", JSONB(), nullable=False),
        sa.Column("item_scores", JSONB(), nullable=False),
        sa.Column("score", sa.Numeric(6, 2), nullable=True),
        sa.Column("grade", sa.String(1), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("round_id", "target_code", name=op.f("pk_assessment_results")),
        sa.ForeignKeyConstraint(["round_id"], ["assessment_rounds.id"], ondelete="CASCADE",
                                name=op.f("fk_assessment_results_round_id_assessment_rounds")),
        sa.CheckConstraint("grade IS NULL OR grade IN ('A', 'B', 'C', 'D', 'E')",
                           name=op.f("ck_assessment_results_grade")),
    )  # fmt: skip
    op.create_index("ix_assessment_results_target_code", "assessment_results",
                    ["target_code", "round_id"])  # fmt: skip
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON assessment_schemes, assessment_scheme_items, "
        f"assessment_rounds, assessment_manual_scores TO {WEB_ROLE}"
    )
    # frozen rows: written once on publishing, never changed by the web role
    op.execute(f"GRANT SELECT, INSERT ON assessment_results TO {WEB_ROLE}")
    op.execute(
        f"GRANT USAGE, SELECT ON assessment_schemes_id_seq, assessment_rounds_id_seq TO {WEB_ROLE}"
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
