"""The nightly chores of a server that runs for years (``geogrid db maintain``).

* **Months ahead**: the monthly partitions of the audit log, case events and heat rows are
  created three months ahead, and rows that reached a DEFAULT partition (a month whose
  partition was missing) are moved into their own month's
  (:func:`geogrid.ops.partitions.ensure`). Migrations do it once; a server that runs for
  a year needs it every month, or new rows pile up in DEFAULT partitions that no query
  prunes.
* **Assessment roll-up**: every case change appends two rows to the assessment's day
  buckets; :func:`geogrid.assessment.facts.compact` folds them into one row per bucket (the
  sums stay equal, so the indicators do not change, only how fast they are read).

Each chore runs in its own transaction; neither blocks case work. The systemd service
``geogrid db backup-timer`` writes runs it after the daily backup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text

from geogrid import store

__all__ = ["Maintained", "maintain"]


@dataclass
class Maintained:
    """What :func:`maintain` did."""

    created: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    rollup_rows: tuple[int, int] | None = None
    """Day-bucket rows before and after compaction (``None``: no assessment facts yet)."""


def maintain(url: str, *, months_ahead: int = 3) -> Maintained:
    """Run the chores against the database at ``url`` (its owner's connection)."""
    from geogrid.assessment.facts import compact
    from geogrid.ops.partitions import ensure

    done = Maintained()
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            ensured = ensure(conn, months_ahead=months_ahead)
            done.created, done.moved, done.blocked = ensured.created, ensured.moved, ensured.blocked
        with engine.begin() as conn:
            if conn.execute(text("SELECT to_regclass('assessment_case_rollup')")).scalar():
                done.rollup_rows = compact(conn)
    finally:
        engine.dispose()
    return done
