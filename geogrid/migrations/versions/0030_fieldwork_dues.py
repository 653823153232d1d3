"""Field work: key-unit filing dues kept by the database (issue 13).

Revision ID: 0030
Revises: 0029
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved: filled by the change this revision is named for."""


def downgrade() -> None:
    """Reserved: nothing to undo yet."""
