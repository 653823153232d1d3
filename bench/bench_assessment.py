"""Benchmark: assessment indicators (量化考核) for a county-year, a village and a grid.

One command:

    nice .venv/bin/python bench/bench_assessment.py [--reuse] [--reps 5] [--year 2025]

Data: the database :mod:`bench_cases` builds (``bench/.cache/cases-home``, 1,000,000
historical cases from 2025-01-01 to yesterday with their event histories, the sample town's
households, visits, inspections and filings). With ``--reuse`` an existing one is used as it
is, read only (its cluster is started if it is not running and stopped afterwards only
then); without it, or when it is missing, :func:`bench_cases.load` builds it first.

Measured (in process, one connection, :func:`geogrid.assessment.indicators.compute`, every
indicator; the case indicators only when the database lacks the field-work tables): the
whole county per town and per grid for the year, one village per grid, one grid — each
``--reps`` times after one warm-up; prints the median and the best, the rows, the cases
and events the period holds, and each target with its verdict: county < 2 s, one grid
< 100 ms. The load average is printed too: on a shared machine, the other users'
work counts against the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

from geogrid import store
from geogrid.assessment import indicators

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cases import DB, load, loaded, start_cluster

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse", action="store_true", help="use the bench_cases database as is")
    ap.add_argument("--cases", type=int, default=1_000_000, help="cases to build when building")
    ap.add_argument("--year", type=int, default=2025, help="the county-year measured")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    home_running = _running()
    cluster, url = start_cluster()
    try:
        if not (args.reuse and loaded(url, args.cases)):
            print(f"building {DB} (bench_cases' data)")
            load(url, args.cases)
        period = indicators.period_of(dt.date(args.year, 1, 1), dt.date(args.year, 12, 31))
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
        engine.dispose()
        print("data:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        sources = "all" if full else "cases"
        if not full:
            print(
                f"{DB} lacks the field-work tables (visits, inspections, filings): timing the "
                "case indicators only (the bulk of the work: one pass over the events)"
            )
        runs = [
            ("county", "county, per town", "", "town", args.reps),
            ("county", "county, per grid", "", "grid", args.reps),
            ("village", f"one village ({village}), per grid", village, "grid", args.reps),
            ("grid", f"one grid ({grid})", grid, "grid", args.reps * 4),
        ]
        print(f"\n{'what':44} {'rows':>5} {'median ms':>10} {'best ms':>9}  target")
        ok = True
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
        print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if not home_running:
            cluster.stop()
    sys.exit(0 if ok else 1)


def _running() -> bool:
    """Is the bench_cases cluster running already (someone else's run: leave it running)?"""
    from bench_cases import HOME

    from geogrid.cluster import PrivateCluster
    from geogrid.settings import Settings

    return PrivateCluster(Settings(home=HOME, database_url=None)).is_running()


if __name__ == "__main__":
    main()
