"""A scope that covers every village of the store filters nothing, and says so.

A township's own server usually holds one town: its leaders' town scope then covers every
row, yet each query still tested the scope on every row, and row-level security hashed
every household of the town for every statement on members (scoped queries 2x the
unscoped ones). ``geogrid_prefix_covers_all(prefix)`` is true when no town or village of the
store lies outside the prefix; every household references a village (foreign key) and every
grid code starts with its village's code, so the scope test is then redundant. The
policies short-circuit on it (an init plan, evaluated once per statement), and
:mod:`geogrid.features` drops its scope clause in the same snapshot. Cases may lie
outside every village (no village, no grid): the partial index makes asking for those
instant.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _policies(covers: bool) -> dict[str, str]:
    test = "h.scope_key LIKE (SELECT geogrid_scope_pattern())"
    households = f"SELECT h.id FROM households h WHERE {test}"
    members = (
        "SELECT m.id FROM household_members m JOIN households h ON h.id = m.household_id "
        f"WHERE {test}"
    )
    records = (
        "SELECT s.id FROM special_population s JOIN household_members m ON m.id = s.member_id "
        f"JOIN households h ON h.id = m.household_id WHERE {test}"
    )
    gate = "(SELECT geogrid_scope_covers_all()) OR " if covers else ""
    return {
        "household_members": f"{gate}household_id IN ({households})",
        "special_population": f"geogrid_special_allowed() AND ({gate}member_id IN ({members}))",
        "special_followups": f"geogrid_special_allowed() AND ({gate}record_id IN ({records}))",
    }


def _alter(covers: bool) -> None:
    for table, expr in _policies(covers).items():
        op.execute(f"ALTER POLICY {table}_scope ON {table} USING ({expr}) WITH CHECK ({expr})")


def upgrade() -> None:
    # PL/pgSQL: the look-up's plan is prepared once per connection, not at every call
    op.execute(
        """
        CREATE FUNCTION geogrid_prefix_covers_all(prefix text) RETURNS boolean
        STABLE LANGUAGE plpgsql AS $$
        BEGIN
            RETURN prefix IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM admin_areas a
                WHERE a.level IN ('town', 'village') AND a.code NOT LIKE prefix || '%');
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION geogrid_scope_covers_all() RETURNS boolean
        STABLE LANGUAGE plpgsql AS $$
        DECLARE scope text := coalesce(current_setting('geogrid.scope', true), '');
        BEGIN
            IF scope = '' THEN RETURN false; END IF;
            IF scope = '*' THEN RETURN true; END IF;
            RETURN geogrid_prefix_covers_all(scope);
        END $$
        """
    )
    _alter(True)
    op.execute(
        "CREATE INDEX ix_cases_unplaced ON cases (id) "
        "WHERE grid_code IS NULL AND village_code IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_cases_unplaced")
    _alter(False)
    op.execute("DROP FUNCTION geogrid_scope_covers_all()")
    op.execute("DROP FUNCTION geogrid_prefix_covers_all(text)")
