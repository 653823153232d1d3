"""Assessment facts: per-case facts and daily roll-ups for the indicators (issue 14 speed).

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved: filled by the change this revision is named for."""


def downgrade() -> None:
    """Reserved: nothing to undo yet."""
