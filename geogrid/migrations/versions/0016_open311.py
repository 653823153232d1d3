"""Open311 GeoReport v2: resident request tokens, service attributes, submission rate limits.

* ``open311_requests``: one row per case a resident submitted through Open311 (the
  complaint page included): the keyed hash of the resident's token (HMAC-SHA256 under the
  server secret; the token itself is shown once and never stored), the ``address_id`` given
  and the answers to the service's attributes. Nothing personal: the reporter's contact
  details go to the case service's own (row-level secured) table.
* ``open311_attributes``: the questions a service asks (GeoReport ``attributes``);
  ``service_code`` NULL means every service. Seeded with three optional questions.
* ``open311_rate``: submissions counted per client (a keyed hash of its address, never the
  address) and time window, for the per-client rate limit.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")

#: (code, datatype, description, order, values) asked of every service; all optional.
SEED_ATTRIBUTES: tuple[tuple[str, str, str, int, list[dict[str, str]]], ...] = (
    ("urgency", "singlevaluelist", "紧急程度 How urgent", 1,
     [{"key": "normal", "name": "一般"}, {"key": "urgent", "name": "紧急"}]),
    ("occurred_at", "datetime", "发生时间 When it happened", 2, []),
    ("people_affected", "number", "涉及人数 People affected", 3, []),
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "open311_requests",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("address_id", sa.BigInteger(), nullable=True),
        sa.Column("attributes", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_open311_requests")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE",
                                name=op.f("fk_open311_requests_case_id_cases")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_open311_requests_token_hash")),
        sa.CheckConstraint("length(token_hash) = 64", name=op.f("ck_open311_requests_token_hash")),
    )  # fmt: skip
    op.create_table(
        "open311_attributes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("service_code", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("datatype", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("required", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("sort", sa.Integer(), server_default="0", nullable=False),
        sa.Column("values", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_attributes")),
        sa.CheckConstraint(
            "datatype IN (" + ", ".join(f"'{d}'" for d in DATATYPES) + ")",
            name=op.f("ck_open311_attributes_datatype"),
        ),
        sa.CheckConstraint("code ~ '^[A-Za-z0-9_.-]{1,64}$'",
                           name=op.f("ck_open311_attributes_code")),
    )  # fmt: skip
    op.execute(
        "CREATE UNIQUE INDEX uq_open311_attributes_service_code "
        "ON open311_attributes (coalesce(service_code, ''), code)"
    )
    op.create_table(
        "open311_rate",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_open311_rate")),
    )
    op.create_index("ix_open311_rate_window_start", "open311_rate", ["window_start"])
    rows = sa.table(
        "open311_attributes",
        sa.column("code", sa.Text()),
        sa.column("datatype", sa.Text()),
        sa.column("description", sa.Text()),
        sa.column("sort", sa.Integer()),
        sa.column("values", JSONB()),
    )
    op.bulk_insert(
        rows,
        [
            {"code": c, "datatype": d, "description": t, "sort": s, "values": v}
            for c, d, t, s, v in SEED_ATTRIBUTES
        ],
    )  # fmt: skip
    op.execute(f"GRANT SELECT, INSERT ON open311_requests TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT ON open311_attributes TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON open311_rate TO {WEB_ROLE}")


def downgrade() -> None:
    op.drop_table("open311_rate")
    op.drop_table("open311_attributes")
    op.drop_table("open311_requests")
