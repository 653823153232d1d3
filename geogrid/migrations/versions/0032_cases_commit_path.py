"""Cases: a commit path without a shared row, and a report's facts without a recount.

Measured on the cases bench (1M cases, 10 clients, ``pg_stat_statements``):

* **The cases layer's version.** 0024 moved its bump to commit time, but it still updates
  the one ``layer_versions`` row: each report or transition holds that row from its bump
  through its commit's WAL flush, so commits of the whole system are flushed one after the
  other (no group commit) and each waited 1.4 ms on average for the row — the costliest
  statement of the run. Now the bump goes to one of :data:`SHARDS` rows of
  ``layer_version_shards`` chosen by the backend (``pg_backend_pid() % SHARDS``): two
  transactions wait on each other only when their connections share a shard. A layer's
  version is its ``layer_versions`` row plus the sum of its shards (view
  ``layer_versions_now``, which every reader uses): it still moves in the same transaction
  as the cases it covers and never goes back, so tile caches and ETags keep their meaning.
  Only ``cases`` is sharded; other layers change rarely and keep their one row.
* **A report's assessment facts.** 0029's trigger folds an event into its case's facts row;
  a report has no row yet, so it fell back to the full recount
  (``geogrid_case_facts_refresh``), which looks the case's events up in every monthly
  partition of ``case_events`` (3.8 ms per report). The first event of a case (``seq`` 1,
  alone in its statement) now makes the row from the event itself, with the numbers the
  recount gives a one-event history (no deadline before it: nothing late or timed). Bulk
  imports and out-of-order events still take the recount.

Revision ID: 0032
Revises: 0031
Create Date: 2026-11-30
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
#: shards of a sharded layer's version (connections of the pools: 2 workers x 20 at most)
SHARDS = 64
SHARDED = ("cases",)

_FACTS = importlib.import_module("geogrid.migrations.versions.0029_assessment_facts")

BUMP_FUNCTION = f"""
CREATE FUNCTION geogrid_bump_layer_shard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE lyr text;
BEGIN
    FOREACH lyr IN ARRAY TG_ARGV LOOP
        UPDATE layer_version_shards SET version = version + 1, changed_at = now()
        WHERE layer = lyr AND shard = pg_backend_pid() % {SHARDS};
        IF NOT FOUND THEN  -- a layer without shards: its one row
            UPDATE layer_versions SET version = version + 1, changed_at = now()
            WHERE layer_versions.layer = lyr;
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""

#: every layer's version now: its row plus its shards (a sharded layer's bumps)
VERSIONS_VIEW = """
CREATE VIEW layer_versions_now AS
SELECT l.layer, l.version + coalesce(s.version, 0) AS version,
       greatest(l.changed_at, s.changed_at) AS changed_at
FROM layer_versions l
LEFT JOIN (SELECT layer, sum(version)::bigint AS version, max(changed_at) AS changed_at
           FROM layer_version_shards GROUP BY layer) s ON s.layer = l.layer
"""

#: the first event of a case (``seq`` 1, alone for its case in the statement, no facts row
#: yet): its facts as 0029's recount makes them of a one-event history
_BORN = f"""
    born AS (
        INSERT INTO assessment_case_facts AS f ({_FACTS.COLUMNS})
        SELECT e.case_id, coalesce(c.grid_code, c.village_code), c.village_code, c.grid_code,
               c.reported_at, e.at, e.at, 1, e.seq,
               e.action = 'report', e.action = 'register', e.action = 'close', false,
               0, 0, (e.action = 'dispatch')::int, 0, 0, (e.action = 'return')::int,
               (e.action = 'handle')::int, 0, 0, (e.action = 'check_fail')::int,
               (e.action = 'approve_extension')::int, (e.data ? 'rating')::int,
               coalesce(e.data ->> 'rating' IN ('satisfied', 'basic'), false)::int,
               e.to_status,
               CASE WHEN e.data -> 'set' ? 'due_at'
                    THEN CAST(e.data -> 'set' ->> 'due_at' AS timestamptz) END,
               CASE WHEN e.action = 'handle' THEN e.actor_id END
        FROM counted e JOIN cases c ON c.id = e.case_id AND c.village_code IS NOT NULL
        WHERE e.k = 1 AND e.seq = 1
          AND NOT EXISTS (SELECT 1 FROM assessment_case_facts x WHERE x.case_id = e.case_id)
        ON CONFLICT (case_id) DO NOTHING
        RETURNING f.*
    ),"""


def _trigger_function() -> str:
    """0029's trigger function with the first-event path (``born``) beside the fold."""
    old = _FACTS.TRIGGER_FUNCTION
    counted = (
        "WITH counted AS (\n"
        "        SELECT n.*, count(*) OVER (PARTITION BY n.case_id) AS k FROM new_events n\n"
        "    ), single AS (\n"
        "        SELECT m.* FROM counted m\n"
    )
    single = (
        "WITH single AS (\n"
        "        SELECT m.* FROM (SELECT n.*, count(*) OVER (PARTITION BY n.case_id) AS k\n"
        "                         FROM new_events n) m\n"
    )
    came_old = f"""came AS (
        SELECT {_FACTS.bucket("+")} FROM upd x
    ),"""
    came_new = f"""{_BORN.strip()} came AS (
        SELECT {_FACTS.bucket("+")} FROM upd x
        UNION ALL SELECT {_FACTS.bucket("+")} FROM born x
    ),"""
    folded_old = "SELECT array_agg(case_id) INTO folded FROM upd;"
    folded_new = (
        "SELECT array_agg(case_id) INTO folded\n"
        "    FROM (SELECT case_id FROM upd UNION ALL SELECT case_id FROM born) s;"
    )
    for part in (single, came_old, folded_old):
        if part not in old:
            raise RuntimeError(f"0029's trigger function changed: {part[:40]!r} not found")
    new = old.replace(single, counted).replace(came_old, came_new)
    new = new.replace(folded_old, folded_new)
    return new.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE layer_version_shards (
            layer text NOT NULL,
            shard smallint NOT NULL,
            version bigint NOT NULL DEFAULT 0,
            changed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_layer_version_shards PRIMARY KEY (layer, shard),
            CONSTRAINT fk_layer_version_shards_layer_layer_versions FOREIGN KEY (layer)
                REFERENCES layer_versions (layer) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE layer_version_shards IS 'bumps of a busy layer''s version spread "
        "over rows (by backend): the version is layer_versions plus their sum'"
    )
    for layer in SHARDED:
        op.execute(
            "INSERT INTO layer_version_shards (layer, shard) "
            f"SELECT '{layer}', s FROM generate_series(0, {SHARDS - 1}) s"
        )
    op.execute(VERSIONS_VIEW)
    op.execute(BUMP_FUNCTION)
    op.execute(f"GRANT SELECT, UPDATE ON layer_version_shards TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT ON layer_versions_now TO {WEB_ROLE}")
    op.execute("DROP TRIGGER trg_cases_layer_version_at_commit ON cases")
    op.execute(
        "CREATE CONSTRAINT TRIGGER trg_cases_layer_version_at_commit "
        "AFTER INSERT OR UPDATE OR DELETE ON cases DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW WHEN (geogrid_layer_bump_first('cases')) "
        "EXECUTE FUNCTION geogrid_bump_layer_shard('cases')"
    )
    op.execute(_trigger_function())


def downgrade() -> None:
    op.execute(_FACTS.TRIGGER_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute("DROP TRIGGER trg_cases_layer_version_at_commit ON cases")
    op.execute(
        "CREATE CONSTRAINT TRIGGER trg_cases_layer_version_at_commit "
        "AFTER INSERT OR UPDATE OR DELETE ON cases DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW WHEN (geogrid_layer_bump_first('cases')) "
        "EXECUTE FUNCTION geogrid_bump_layer_version('cases')"
    )
    # the shards' bumps folded back into the rows: no version goes back
    op.execute(
        "UPDATE layer_versions l SET version = l.version + s.version FROM "
        "(SELECT layer, sum(version)::bigint AS version FROM layer_version_shards "
        "GROUP BY layer) s WHERE s.layer = l.layer"
    )
    op.execute("DROP VIEW layer_versions_now")
    op.execute("DROP FUNCTION geogrid_bump_layer_shard()")
    op.execute("DROP TABLE layer_version_shards")
