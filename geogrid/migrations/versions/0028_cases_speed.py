"""No schema change (a revision reserved for the case-speed work, which needed none).

The report and transition statements were shortened in :mod:`geogrid.cases.service`
without new database objects; the revision stays so that databases stamped with it
during development keep a known place in the chain.

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
    """Nothing to do."""


def downgrade() -> None:
    """Nothing to undo."""
