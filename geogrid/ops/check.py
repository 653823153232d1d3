"""``geogrid db check``: the schema matches the code, and the audit chain is intact.

The schema check is the one ``tests/test_migrations.py`` runs: Alembic's autogenerate
comparison of the live database against :data:`geogrid.models.Base.metadata` (tables,
columns, types, nullability, indexes, constraints), with the tables the models do not
describe (PostGIS', the working calendar's plain-SQL tables) and the monthly partitions
(audit log, case events, heat rows) left out, plus the revision being the newest shipped.
The audit check is :func:`geogrid.access.audit.verify`. A warning (not a failure): rows
sitting in a DEFAULT partition (a month whose partition was missing when they were
written; ``geogrid db partitions create`` moves them, and until then no query prunes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from geogrid import store
from geogrid.access import audit
from geogrid.models import Base
from geogrid.ops.partitions import PARTITION_NAME, SPECS

_PARTITION = PARTITION_NAME  # the monthly partitions mirror their parents


@dataclass(frozen=True)
class Finding:
    """One thing ``db check`` found wrong."""

    check: str
    message: str
    warning: bool = False
    """A warning (``db check`` exits 2 when there are only warnings) rather than a failure."""


def describe(diff: Any) -> str:
    """One line for an Alembic comparison item (a tuple, or a list of column changes).

    >>> describe(("add_column", None, "households", type("C", (), {"name": "x"})()))
    'add_column: households.x'
    """
    if isinstance(diff, list):  # modify_* items for one column come as a list
        return "; ".join(describe(d) for d in diff)
    kind = diff[0]
    if kind in ("add_column", "remove_column"):
        return f"{kind}: {diff[2]}.{diff[3].name}"
    if kind.startswith("modify_"):
        return f"{kind}: {diff[2]}.{diff[3]} ({diff[5]!s} in the database, {diff[6]!s} in the code)"
    obj = diff[1]
    table = getattr(getattr(obj, "table", None), "name", None)
    name = getattr(obj, "name", None)
    return f"{kind}: {table + '.' if table and table != name else ''}{name}"


def _ours(diff: Any) -> bool:
    first = diff[0] if isinstance(diff, list) else diff
    if isinstance(first, tuple) and first[0] == "remove_table":
        return False  # not in the models: PostGIS', or made by a migration in plain SQL
    obj = first[1] if isinstance(first, tuple) and len(first) > 1 else None
    table = getattr(getattr(obj, "table", None), "name", None) or getattr(obj, "name", "")
    if isinstance(first, tuple) and first[0].startswith("modify_"):
        table = first[2]
    return _PARTITION.fullmatch(str(table or "")) is None


def schema_findings(conn: Connection) -> list[Finding]:
    """Differences between the live schema and the code's models, and a revision behind."""
    findings = []
    revision = MigrationContext.configure(conn).get_current_revision()
    head = store.head_revision()
    if revision != head:
        findings.append(Finding("schema", f"revision {revision or 'none'} is not the newest "
                                          f"({head}): run `geogrid db upgrade`"))  # fmt: skip
    diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    findings.extend(Finding("schema", describe(d)) for d in diff if _ours(d))
    return findings


def audit_findings(conn: Connection) -> tuple[list[Finding], audit.Verification]:
    """The audit chain recomputed; a finding naming the first entry that does not fit."""
    result = audit.verify(conn)
    if result.ok:
        return [], result
    return [Finding("audit", f"audit entry {result.broken_at}: {result.reason}")], result


def partition_warnings(conn: Connection) -> list[Finding]:
    """A warning per partitioned table whose DEFAULT partition holds rows."""
    found = []
    for table in SPECS:
        name = f"{table}_default"
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None:
            continue
        rows = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
        if rows:
            found.append(Finding("partitions", f"{rows} rows of {table} in its DEFAULT partition "
                                 f"{name}: run `geogrid db partitions create` to move them into "
                                 "their months", warning=True))  # fmt: skip
    return found


def run_checks(url: str) -> tuple[list[Finding], audit.Verification]:
    """Every check against the database at ``url``: the findings (empty: all is well)."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            findings = schema_findings(conn)
            more, verification = audit_findings(conn)
            more += partition_warnings(conn)
    finally:
        engine.dispose()
    return findings + more, verification
