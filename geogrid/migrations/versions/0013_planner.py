"""Planner: grid locks and the edit history of draft plans (undo/redo).

* ``grids.locked``: a locked basic grid is left exactly as it is by a redraw of its plan
  (``create_plan(redraw_from=...)``) and by a re-run of its village; moves into or out of
  it are refused.
* ``plan_edits``: one row per edit of a plan, numbered ``seq`` 1, 2, ... within the plan:
  ``kind`` (move, rename, lock, unlock, rerun, undo, redo), a ``payload`` saying what was
  done (group, grids, households, names...), the ``before`` and ``after`` snapshots of the
  village it changed (its basic grids with geometry, counts, metrics, names, locks and
  group memberships), ``target_seq`` for undo and redo (the edit undone or redone), the
  plan ``version`` the edit produced, its author and time. Undo applies the ``before``
  snapshot of the last edit not undone as a new version; redo its ``after`` snapshot.

* ``households.house_no``: the door number alone (``12``, ``12-1``, ``12附1``), generated
  from the normalised address, which the web role may read (the address itself it may
  not): household contact cards print it and nothing else about the household.

Staff photos need no column: ``staff.photo`` holds ``sha256:<hex>`` for a photo kept in
the content-addressed file store (:mod:`geogrid.files`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
EDIT_KINDS = ("move", "rename", "lock", "unlock", "rerun", "undo", "redo")
#: The door number at the end of a normalised address (``…3组12-1号`` → ``12-1``).
HOUSE_NO = "substring(address_norm from '([0-9]+(?:[-附之][0-9]+)?)号$')"


def upgrade() -> None:
    op.add_column(
        "grids",
        sa.Column("locked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "plan_edits",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("village_code", sa.String(length=12), nullable=True),
        sa.Column("payload", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("before", JSONB(), nullable=True),
        sa.Column("after", JSONB(), nullable=True),
        sa.Column("target_seq", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_edits")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], ondelete="CASCADE",
                                name=op.f("fk_plan_edits_plan_id_plans")),
        sa.UniqueConstraint("plan_id", "seq", name=op.f("uq_plan_edits_plan_id_seq")),
        sa.CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in EDIT_KINDS) + ")",
                           name=op.f("ck_plan_edits_kind")),
    )  # fmt: skip
    op.execute(f"GRANT SELECT, INSERT ON plan_edits TO {WEB_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON plan_edits_id_seq TO {WEB_ROLE}")
    op.add_column(
        "households",
        sa.Column("house_no", sa.Text(), sa.Computed(HOUSE_NO, persisted=True), nullable=True),
    )
    op.execute(f"GRANT SELECT (house_no) ON households TO {WEB_ROLE}")


def downgrade() -> None:
    op.drop_column("households", "house_no")
    op.drop_table("plan_edits")
    op.drop_column("grids", "locked")
