"""``geogrid db upgrade``: a backup, the migrations in one transaction, a report.

PostgreSQL has transactional DDL, and geogrid's migrations run on one connection in one
transaction (:func:`geogrid.store.upgrade`, ``transaction_per_migration=False``): an
upgrade that fails half-way leaves the schema and the data as they were. The backup
taken first covers what a transaction cannot (an upgrade that succeeds but is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from geogrid import store
from geogrid.ops.backup import BackupResult, create_backup
from geogrid.ops.partitions import PARTITION_NAME
from geogrid.settings import Settings


@dataclass(frozen=True)
class UpgradeReport:
    """What ``geogrid db upgrade`` did."""

    before: str | None
    after: str | None
    revisions: list[tuple[str, str]] = field(default_factory=list)
    tables_added: list[str] = field(default_factory=list)
    tables_removed: list[str] = field(default_factory=list)
    tables_changed: dict[str, list[str]] = field(default_factory=dict)
    backup: BackupResult | None = None


def _shape(engine: Engine) -> dict[str, dict[str, str]]:
    """Every table's columns and their types (monthly partitions left out)."""
    insp = inspect(engine)
    shape: dict[str, dict[str, str]] = {}
    for table in insp.get_table_names():
        if table == "spatial_ref_sys" or PARTITION_NAME.fullmatch(table):
            continue
        shape[table] = {c["name"]: str(c["type"]) for c in insp.get_columns(table)}
        shape[table].update(
            {f"index {i['name']}": "index" for i in insp.get_indexes(table) if i.get("name")}
        )
    return shape


def pending(current: str | None, target: str = "head") -> list[tuple[str, str]]:
    """The migrations from ``current`` up to ``target``, oldest first: ``(id, summary)``."""
    scripts = ScriptDirectory.from_config(store.alembic_config("postgresql://x/y"))
    revs = list(scripts.iterate_revisions(target, current or "base"))
    return [(r.revision, (r.doc or "").strip().splitlines()[0] if r.doc else "")
            for r in reversed(revs)]  # fmt: skip


def _changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> dict[str, Any]:
    changed: dict[str, list[str]] = {}
    for table in sorted(set(before) & set(after)):
        old, new = before[table], after[table]
        notes = [f"+{c}" for c in new if c not in old] + [f"-{c}" for c in old if c not in new]
        notes += [f"~{c} {old[c]} -> {new[c]}" for c in new if c in old and old[c] != new[c]]
        if notes:
            changed[table] = notes
    return {
        "tables_added": sorted(set(after) - set(before)),
        "tables_removed": sorted(set(before) - set(after)),
        "tables_changed": changed,
    }


def upgrade(
    settings: Settings, *, target: str = "head", backup: bool = True, unencrypted: bool = False
) -> UpgradeReport:
    """Back up, then migrate the configured database to ``target``; what changed.

    Parameters
    ----------
    settings
        The database and the backup settings (see :func:`geogrid.ops.backup.create_backup`).
    target
        The revision to reach.
    backup
        Take a backup first (skipped only when nothing is to be done, or when told).
    unencrypted
        Passed to the backup (allowed without a backup key, key files left out).
    """
    url = store.database_url(settings)
    engine = store.make_engine(url)
    try:
        current = store.current_revision(engine)
        todo = pending(current, target)
        if not todo:
            return UpgradeReport(current, current)
        taken = create_backup(settings, unencrypted=unencrypted) if backup else None
        before = _shape(engine)
        store.upgrade(url, target)
        after = _shape(engine)
        reached = store.current_revision(engine)
    finally:
        engine.dispose()
    return UpgradeReport(current, reached, todo, backup=taken, **_changes(before, after))
