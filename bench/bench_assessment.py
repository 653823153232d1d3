"""Benchmark: assessment indicators (量化考核) for a county-year, a village and a grid.

One command (the lead's quiet run):

    nice .venv/bin/python bench/bench_assessment.py --reuse --home /tmp/assess-home

Options: ``--home DIR`` (default ``bench/.cache/cases-home``), ``--reps 5``, ``--year 2025``.

Data: the database :mod:`bench_cases` builds (1,000,000 historical cases from 2025-01-01 to
yesterday with their event histories, the sample town's households, visits, inspections and
filings), in the private cluster of ``--home``. With ``--reuse`` an existing one is used
as it is (its cluster is started if it is not running and stopped afterwards only then);
without it, or when it is missing, :func:`bench_cases.load` builds it first. Either way it
is then upgraded to the newest migration (:func:`geogrid.store.upgrade`; the time is printed:
on a reused database it is the cost of the migrations made since on 1M cases).

Measured (in process, one connection, :func:`geogrid.assessment.indicators.compute`, every
indicator): the whole county per town and per grid for the year, one village per grid, one
grid — each ``--reps`` times after one warm-up; prints the median and the best, the rows,
the cases and events the period holds, and each target with its verdict: county < 2 s,
one grid < 100 ms. Then the write cost of the facts trigger: one event appended to a case
(as a transition does) with and without the trigger, in transactions rolled back. The
load average is printed too: on a shared machine, the other users' work counts against
the numbers.

Last figures (2026-11-30 19:38 UTC, /tmp/assess-home: 1,005,043 cases, 9.66M events; the
year 2025: 524,401 cases, 5.07M events; a loaded machine, load average 12.8 on 2 cores):

    county, per town                      1 row     789 ms (best 677)  < 2,000 ms ok
    county, per grid                     66 rows    740 ms (best 740)  < 2,000 ms ok
    one village, per grid                 8 rows    229 ms (best 184)
    one grid (113,000 cases in all)       1 row     120 ms (best  96)  < 100 ms MISSED here
    appending one event: +1.30 ms with the facts trigger (1.60 vs 0.29 ms)

The grid's time then was mostly its 729 cases open at the year's end (recounted from their
events: ~75 ms at that load; the day buckets ~7-14 ms). Before (events at query time, load
25): county 59 s, one grid 11 s. Migration 0029 on this data: 210-226 s (load 12-50).

Quiet run (lead, 2026-11-30 20:11 UTC, /tmp/assess-home, year 2025: 524,401 cases,
5.07M events): county per town 224 ms, per grid 223 ms, one village 53 ms, one grid 28 ms
(median of 5) — both targets met; appending an event 0.79 ms with the facts trigger, 0.33 ms
without. Migration 0029's backfill on the 1,008,326-case database: 82 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, text

from geogrid import store
from geogrid.assessment import indicators
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cases import DB, HOME, load, loaded

TARGETS_MS = {"county": 2000.0, "grid": 100.0}


def timed(
    url: str, prefix: str, level: str, period: indicators.Period, reps: int, sources: str
) -> tuple[list[float], int]:
    """Milliseconds of each of ``reps`` runs (after one warm-up) and the rows found."""
    engine = store.make_engine(url)
    out: list[float] = []
    rows = 0
    try:
        with engine.connect() as conn:
            for i in range(reps + 1):
                t = time.perf_counter()
                found = indicators.compute(
                    conn, prefix=prefix, level=level, period=period, sources=sources
                )
                conn.rollback()
                if i:
                    out.append((time.perf_counter() - t) * 1000)
                rows = len(found)
    finally:
        engine.dispose()
    return out, rows


def write_cost(engine: Engine, n: int = 200) -> tuple[float, float]:
    """Median ms to append one event to a case (a transition's insert) with and without the
    facts trigger, in transactions rolled back (the data is left as it was)."""
    out = []
    for enabled in (True, False):
        ms = []
        with engine.connect() as conn:
            if not enabled:
                conn.execute(
                    text("ALTER TABLE case_events DISABLE TRIGGER case_events_assessment_facts")
                )
            ids = conn.execute(
                text(
                    "SELECT id FROM cases WHERE status IN ('dispatched', 'in_progress') "
                    "ORDER BY id DESC LIMIT :n"
                ),
                {"n": n},
            ).scalars()
            for cid in list(ids):
                t = time.perf_counter()
                conn.execute(
                    text(
                        "INSERT INTO case_events (case_id, seq, action, from_status, to_status, "
                        "at, actor, data) SELECT :c, max(seq) + 1, 'handle', 'in_progress', "
                        "'handled', now(), 'bench', '{}' FROM case_events WHERE case_id = :c"
                    ),
                    {"c": cid},
                )
                ms.append((time.perf_counter() - t) * 1000)
            conn.rollback()
        out.append(statistics.median(ms) if ms else float("nan"))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--reuse", action="store_true", help="use the bench_cases database as is")
    ap.add_argument("--home", type=Path, default=HOME, help="the private cluster's home")
    ap.add_argument("--cases", type=int, default=1_000_000, help="cases to build when building")
    ap.add_argument("--year", type=int, default=2025, help="the county-year measured")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    home = args.home.resolve()
    os.environ["GEOGRID_HOME"] = str(home)
    cluster = PrivateCluster(Settings(home=home, database_url=None, cluster_fsync=False))
    home_running = cluster.is_running()
    cluster.start()
    url = cluster.url().rsplit("/", 1)[0] + "/" + DB
    ok = True
    try:
        if not (args.reuse and loaded(url, args.cases)):
            print(f"building {DB} (bench_cases' data)")
            load(url, args.cases)
        period = indicators.period_of(dt.date(args.year, 1, 1), dt.date(args.year, 12, 31))
        t = time.perf_counter()
        store.upgrade(url)  # a reused database gets the migrations made since it was built
        print(f"migrations up to head: {time.perf_counter() - t:,.1f} s")
        engine = store.make_engine(url)
        with engine.connect() as conn:
            counts = {
                "households": conn.execute(text("SELECT count(*) FROM households")).scalar_one(),
                "cases (all)": conn.execute(text("SELECT count(*) FROM cases")).scalar_one(),
                "cases in the year": conn.execute(
                    text("SELECT count(*) FROM cases WHERE reported_at >= :f AND reported_at < :t"),
                    {"f": period.since, "t": period.until},
                ).scalar_one(),
                "events in the year": conn.execute(
                    text("SELECT count(*) FROM case_events WHERE at >= :f AND at < :t"),
                    {"f": period.since, "t": period.until},
                ).scalar_one(),
            }
            village, grid = conn.execute(
                text(
                    "SELECT village_code, grid_code FROM cases WHERE grid_code IS NOT NULL "
                    "GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1"
                )
            ).one()
            full = conn.execute(text("SELECT to_regclass('visits') IS NOT NULL")).scalar_one()
        print("data:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        sources = "all" if full else "cases"
        runs = [
            ("county", "county, per town", "", "town", args.reps),
            ("county", "county, per grid", "", "grid", args.reps),
            ("village", f"one village ({village}), per grid", village, "grid", args.reps),
            ("grid", f"one grid ({grid})", grid, "grid", args.reps * 4),
        ]
        print(f"\n{'what':44} {'rows':>5} {'median ms':>10} {'best ms':>9}  target")
        for kind, label, prefix, level, reps in runs:
            ms, rows = timed(url, prefix, level, period, reps, sources)
            med, best = statistics.median(ms), min(ms)
            target = TARGETS_MS.get(kind)
            verdict = (
                ""
                if target is None
                else (f"< {target:,.0f} ms {'ok' if med < target else 'MISSED'}")
            )
            ok = ok and (target is None or med < target)
            print(f"{label:44} {rows:>5} {med:>10,.0f} {best:>9,.0f}  {verdict}")
        with_t, without_t = write_cost(engine)
        print(
            f"\nappending one event (a transition's insert): {with_t:.2f} ms with the facts "
            f"trigger, {without_t:.2f} ms without (+{with_t - without_t:.2f} ms)"
        )
        engine.dispose()
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if not home_running:
            cluster.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
