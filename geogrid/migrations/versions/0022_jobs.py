"""Background jobs persisted in the database (several serve workers).

* ``plan_jobs``: one row per plan created in the background (``POST /api/plans``): its
  status (queued → running → done | failed), progress (villages done of total, the
  village being partitioned), the plan it made or the clean error it failed with, and
  timestamps. ``worker`` names the server process running it (host, pid and the pid's
  start time) and ``heartbeat_at`` is renewed while it runs, so any worker answers a
  job's status and a job whose process died (a restart, a crash) is reported failed
  (``JobInterrupted``) instead of being forgotten or left running for ever.
  Nothing personal: a town code, counts, a plan id and an error summary.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"


def upgrade() -> None:
    op.create_table(
        "plan_jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("town_code", sa.String(12), nullable=False),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("village_code", sa.String(12), nullable=True),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_jobs")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], ondelete="SET NULL",
                                name=op.f("fk_plan_jobs_plan_id_plans")),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')",
                           name=op.f("ck_plan_jobs_status")),
        sa.CheckConstraint("id ~ '^[0-9a-f]{32}$'", name=op.f("ck_plan_jobs_id")),
    )  # fmt: skip
    # the unfinished jobs (recovery, the job-queue metric) without reading the finished ones
    op.create_index(
        "ix_plan_jobs_unfinished",
        "plan_jobs",
        ["status"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("ix_plan_jobs_finished_at", "plan_jobs", ["finished_at"])
    # the web server submits, runs (progress, outcome), reads and prunes old finished jobs
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON plan_jobs TO {WEB_ROLE}")


def downgrade() -> None:
    op.drop_table("plan_jobs")
