"""Field app sync: idempotency keys of client-made records.

* ``client_records``: one row per record the field app (or any client) created with a
  client-made UUID. The key is claimed (inserted with ``record_id`` NULL) before the record
  is created and filled in, in the same transaction, once it exists, so a second send of the
  same key (even a concurrent one) finds the first record instead of creating another.
  Nothing personal: who sent it, the kind of record and its id.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"


def upgrade() -> None:
    op.create_table(
        "client_records",
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_client_records")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_client_records_user_id_users")),
        sa.CheckConstraint("kind ~ '^[a-z_]{1,32}$'", name=op.f("ck_client_records_kind")),
    )  # fmt: skip
    op.create_index("ix_client_records_user_id", "client_records", ["user_id"])
    # claim (INSERT), look up (SELECT), fill in the new record's id (UPDATE of that column only)
    op.execute(f"GRANT SELECT, INSERT ON client_records TO {WEB_ROLE}")
    op.execute(f"GRANT UPDATE (record_id) ON client_records TO {WEB_ROLE}")


def downgrade() -> None:
    op.drop_table("client_records")
