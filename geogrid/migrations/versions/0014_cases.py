"""Cases: event-sourced workflow, category dictionary, routing, attachments, duplicates.

Reserved so that work on several issues can add migrations side by side; filled in by the
work that owns it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
