"""``geogrid db maintain``, the nightly chores: the monthly partitions ahead are (re)created
and the assessment roll-up's appended rows are folded (sums kept); the backup timer's
service runs it after the backup."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from geogrid import store
from geogrid.ops.backup import timer_units
from geogrid.ops.partitions import shift
from geogrid.settings import Settings


def test_maintain_creates_months_ahead_and_compacts_the_rollup(cli, db_url: str) -> None:  # type: ignore[no-untyped-def]
    ahead = shift(dt.date.today().replace(day=1), 2)
    name = f"case_events_{ahead:%Y%m}"
    engine = store.make_engine(db_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
            conn.execute(text(f"DROP TABLE {name}"))  # a month ahead missing
            cols = list(conn.execute(text("SELECT * FROM assessment_case_rollup LIMIT 0")).keys())
            sums = cols[6:]  # id, the bucket's five key columns, then the sums
            first_sum = sums[0]
            for n in (2, 3, -1):
                conn.execute(
                    text(
                        f"INSERT INTO assessment_case_rollup (code, village_code, grid_code, "
                        f"first_day, end_day, {', '.join(sums)}) VALUES ('420117105201001', "
                        "'420117105201', '420117105201001', '2026-03-02', '2026-03-09', :n"
                        + ", 0" * (len(sums) - 1)
                        + ")"
                    ),
                    {"n": n},
                )
        out = cli("db", "maintain")
        assert name in out and "assessment roll-up: 3 rows -> 1" in out
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
            kept = conn.execute(text(f"SELECT {first_sum} FROM assessment_case_rollup")).all()
            assert [tuple(r) for r in kept] == [(4,)]  # 2 + 3 - 1: the sum is kept
        # a second run has nothing left to do
        again = cli("db", "maintain")
        assert "partitions created: none" in again and "1 rows -> 1" in again
    finally:
        engine.dispose()


def test_the_backup_service_runs_the_chores_after_the_backup() -> None:
    units = timer_units(Settings(home="/var/lib/geogrid"), keep=7, at="02:30", python="/py")
    service = units["geogrid-backup.service"]
    assert service.index("ExecStart=/py -m geogrid db backup --keep 7") < service.index(
        "ExecStartPost=/py -m geogrid db maintain"
    )
