"""Cases: a leaner transition path — the cases layer's version bumped at commit.

Until now a statement trigger on ``cases`` (0005) raised ``layer_versions['cases']`` at the
end of every statement that wrote a case: from then on the writing transaction held that
one row locked until it ended, so every report and every transition of the whole system
queued behind the previous one's remaining statements, its commit and the client's round
trips in between (measured on the cases bench: most waiting backends in
``Lock:transactionid`` behind a transaction ``idle in transaction``; ~100 transitions/s
on two cores whatever the number of clients).

Now the bump is a *deferred* constraint trigger: it runs when the transaction commits, so
the row is held only for the commit itself (its WAL flush). Each transaction queues it
once: :func:`geogrid_layer_bump_first` in the trigger's ``WHEN`` marks the transaction in a
transaction-local setting, so a bulk statement does not queue one bump per row; the bump
itself is 0003's ``geogrid_bump_layer_version``. The meaning for tile caches is unchanged:
the version moves in the same transaction as the cases it covers, so whoever reads the new
version also sees the new cases. A transaction that wants to see its own bump before
committing runs ``SET CONSTRAINTS ALL IMMEDIATE``.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = {"insert": "NEW", "update": "NEW", "delete": "OLD"}


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION geogrid_layer_bump_first(lyr text) RETURNS boolean
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            -- true once per transaction and layer (the setting is transaction-local: a
            -- rolled-back savepoint forgets it, and with it the bump it queued)
            IF current_setting('geogrid.layer_bump_' || lyr, true) = 'queued' THEN
                RETURN false;
            END IF;
            PERFORM set_config('geogrid.layer_bump_' || lyr, 'queued', true);
            RETURN true;
        END $$
        """
    )
    for event in EVENTS:
        op.execute(f"DROP TRIGGER trg_cases_layer_version_{event} ON cases")
    op.execute(
        "CREATE CONSTRAINT TRIGGER trg_cases_layer_version_at_commit "
        "AFTER INSERT OR UPDATE OR DELETE ON cases DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW WHEN (geogrid_layer_bump_first('cases')) "
        "EXECUTE FUNCTION geogrid_bump_layer_version('cases')"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER trg_cases_layer_version_at_commit ON cases")
    for event, which in EVENTS.items():
        op.execute(
            f"CREATE TRIGGER trg_cases_layer_version_{event} AFTER {event.upper()} "
            f"ON cases REFERENCING {which} TABLE AS changed_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION geogrid_bump_layer_version_if_changed('cases')"
        )
    op.execute("DROP FUNCTION geogrid_layer_bump_first(text)")
