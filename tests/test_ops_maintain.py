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


def test_maintain_exits_2_when_a_detached_table_blocks_a_month(cli, db_url: str) -> None:  # type: ignore[no-untyped-def]
    month = shift(dt.date.today().replace(day=1), -14)
    name = f"case_events_{month:%Y%m}"
    engine = store.make_engine(db_url)

    def event(seq: int) -> None:  # a case event of that month (a late import, say)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO case_events (case_id, seq, action, from_status, to_status, at, "
                    "actor, data) SELECT id, :s, 'handle', 'in_progress', 'handled', "
                    "CAST(:at AS timestamptz), 'test', '{}' FROM cases WHERE case_no = 'OLD-1'"
                ),
                {"s": seq, "at": f"{month:%Y-%m}-15 12:00+08"},
            )

    def in_default() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM case_events_default")).scalar_one())

    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cases (case_no, category, reported_at, geom) VALUES ('OLD-1', "
                    "'其他', CAST(:at AS timestamptz), ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326))"
                ),
                {"at": f"{month:%Y-%m}-15 11:00+08"},
            )
        event(100)
        assert in_default() >= 1
        out = cli("db", "maintain")  # the month gets its partition, the rows move there
        assert name in out and in_default() == 0
        cli("db", "partitions", "detach", "--before", f"{shift(month, 1):%Y-%m}")
        event(101)  # the month's partition is detached: the row lands in DEFAULT
        assert in_default() == 1
        out = " ".join(cli("db", "maintain", code=2).split())
        assert f"months without a partition (a detached table holds the name): {name}" in out
        assert in_default() == 1  # the row stays where it is, the detached table untouched
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() >= 1
    finally:
        engine.dispose()
