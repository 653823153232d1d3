"""Cases: fewer round trips per transition (issue 12 speed).

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved: filled by the change this revision is named for."""


def downgrade() -> None:
    """Reserved: nothing to undo yet."""
