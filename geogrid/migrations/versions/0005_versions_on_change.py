"""Bump a layer's data version only when a statement really changed rows.

Revision 0003's statement triggers bumped ``layer_versions`` on every INSERT, UPDATE or
DELETE statement, including upserts that changed nothing (a re-import of the same file),
which needlessly invalidated tile caches and ETags. Each event now has its own trigger
with a transition table, and the version moves only when that table is not empty.
TRUNCATE keeps the unconditional trigger (it has no transition table).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Same table → layers map as revision 0003.
VERSIONED = {
    "admin_areas": ("towns", "villages"),
    "villager_groups": ("groups",),
    "households": ("households",),
    "plans": ("grids",),
    "grids": ("grids",),
    "grid_groups": ("grids",),
    "cases": ("cases",),
    "key_units": ("key_units",),
    "inspection_points": ("inspection_points",),
    "staff": ("staff",),
    "staff_assignments": ("staff",),
}
EVENTS = {"insert": "NEW", "update": "NEW", "delete": "OLD"}


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION geogrid_bump_layer_version_if_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE lyr text;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM changed_rows) THEN
                RETURN NULL;
            END IF;
            FOREACH lyr IN ARRAY TG_ARGV LOOP
                UPDATE layer_versions SET version = version + 1, changed_at = now()
                WHERE layer_versions.layer = lyr;
            END LOOP;
            RETURN NULL;
        END $$
        """
    )
    for table, layers in VERSIONED.items():
        args = ", ".join(f"'{layer}'" for layer in layers)
        op.execute(f"DROP TRIGGER trg_{table}_layer_version ON {table}")
        for event, which in EVENTS.items():
            op.execute(
                f"CREATE TRIGGER trg_{table}_layer_version_{event} AFTER {event.upper()} "
                f"ON {table} REFERENCING {which} TABLE AS changed_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION geogrid_bump_layer_version_if_changed({args})"
            )
        op.execute(
            f"CREATE TRIGGER trg_{table}_layer_version_truncate AFTER TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION geogrid_bump_layer_version({args})"
        )


def downgrade() -> None:
    for table, layers in VERSIONED.items():
        args = ", ".join(f"'{layer}'" for layer in layers)
        for event in (*EVENTS, "truncate"):
            op.execute(f"DROP TRIGGER trg_{table}_layer_version_{event} ON {table}")
        op.execute(
            f"CREATE TRIGGER trg_{table}_layer_version AFTER INSERT OR UPDATE OR DELETE "
            f"OR TRUNCATE ON {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION geogrid_bump_layer_version({args})"
        )
    op.execute("DROP FUNCTION geogrid_bump_layer_version_if_changed()")
