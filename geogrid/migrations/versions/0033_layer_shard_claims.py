"""Cases: each connection bumps the cases layer's version in a shard of its own.

0032 spread the bumps of the cases layer's version over 64 rows, chosen by
``pg_backend_pid() % 64``. Two of the web server's ~20 pooled connections almost always
share a shard that way (the birthday problem: the chance that 20 connections all differ
is about 4 %), and a transaction whose connection shares a shard with one about to commit
waits for that commit's WAL flush. On the cases bench at 50 clients the bump's statement
took 0.23 ms on average, nearly all of it waiting: 10 % of the time PostgreSQL spent
on the workflow's statements (``pg_stat_statements``).

Now a connection claims a shard on its first bump, with a session-level advisory lock
(``pg_try_advisory_lock(CLASS, shard)``, starting from ``pg_backend_pid() % 64``), and
keeps it for its life (the claim is remembered in the session setting
``geogrid.layer_shard``; the lock goes with the session). Shards are shared only when more
than 64 connections bump at once. Nothing else changes: the version is still the row plus
the sum of the shards (``layer_versions_now``).

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_0032 = importlib.import_module("geogrid.migrations.versions.0032_cases_commit_path")
SHARDS = _0032.SHARDS
#: the first key of the advisory locks claiming shards (the second is the shard): any
#: constant no other lock of geogrid uses (its other advisory locks take one bigint key)
LOCK_CLASS = 0x67677368  # 'ggsh'

CLAIM_FUNCTION = f"""
CREATE FUNCTION geogrid_layer_shard() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    claimed integer := nullif(current_setting('geogrid.layer_shard', true), '')::integer;
    first integer := pg_backend_pid() % {SHARDS};
BEGIN
    IF claimed IS NOT NULL THEN
        RETURN claimed;
    END IF;
    FOR i IN 0..{SHARDS - 1} LOOP
        -- a session lock: kept after this transaction, released with the connection
        IF pg_try_advisory_lock({LOCK_CLASS}, (first + i) % {SHARDS}) THEN
            claimed := (first + i) % {SHARDS};
            EXIT;
        END IF;
    END LOOP;
    claimed := coalesce(claimed, first);  -- more connections than shards: share one
    -- for the session (a rolled-back transaction forgets it: the next call claims again,
    -- at worst keeping a second shard until the connection closes)
    PERFORM set_config('geogrid.layer_shard', claimed::text, false);
    RETURN claimed;
END $$
"""


def _bump_function() -> str:
    """0032's bump with the claimed shard in place of ``pg_backend_pid() % 64``."""
    text = _0032.BUMP_FUNCTION
    for old, new in (
        ("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
        ("DECLARE lyr text;", "DECLARE lyr text; mine integer := geogrid_layer_shard();"),
        (f"shard = pg_backend_pid() % {SHARDS}", "shard = mine"),
    ):
        if text.count(old) != 1:  # 0032's text is fixed: a change there must fail here
            raise RuntimeError(f"0032's bump function has not one {old!r}")
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    op.execute(CLAIM_FUNCTION)
    op.execute(_bump_function())


def downgrade() -> None:
    op.execute(_0032.BUMP_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute("DROP FUNCTION geogrid_layer_shard()")
