"""Benchmark: a town's grid boxes (一格一盒) exported in one command (issue 14: "exporting a
town's grid boxes (≈70 grids) under 60 s"), and the dashboard's data answer.

One command:

    nice .venv/bin/python bench/bench_archives.py [--reuse]

1. Data (built once, cached in ``bench/.cache/archives-home``; ``--reuse`` keeps it): the
   sample town (seed 1, ~10k households; the same town ``bench_access`` generates, copied
   from its cache when there) loaded and partitioned as ``geogrid demo`` does it (target
   150 households a grid: ~70 grids), with its cases.
2. Measure: :func:`geogrid.archives.bundle.export_area` for the whole town (what ``geogrid
   archive export --town CODE --out DIR`` runs): per grid a PDF (WeasyPrint, map, every
   table), an Excel workbook, a GeoPackage, the manifest and SHA256SUMS, audited; masked
   (the data key is not needed); ``--jobs`` box writers (default: one a core). Wall time,
   seconds and CPU seconds per grid (this process and its workers: steadier than wall
   time on a busy machine), the bundles verified after.
   Then :func:`geogrid.archives.dashboard.dashboard` for the town (the dashboard's one data
   request before its first paint), 2 warm-up calls then 10, p50.

Prints a table with the targets and the machine's load average (the box is shared: a load
of 15 on 2 cores makes everything several times slower).

Last runs (2026-11-30, 9,962 households in 67 grids, 4,691 cases, 2 cores shared with
four other engineers' suites and benches). Before this session's work, at load 1–2.6: 67
boxes in 66 s (2 spawned jobs; 91 CPU s). A/B in one sitting at load 9–18: before 373 s
wall, 1.68 CPU s a box; now 313 s, 1.20 CPU s a box (−29 %); the last run, at load 8–14:
183 s, 1.16 CPU s a box, all 67 verified, 53 MB; the dashboard's data p50 92 ms (target
1 s: met). The 60 s target is for a quiet machine: at ~1 CPU s a box (the quiet rate) the
67 boxes need ~35 s of two cores' time plus PostgreSQL's reads — not measured quiet here.
Where a box's CPU goes (quiet, profiled): WeasyPrint ~0.7 s (≈0.7 ms a listing line, the
rest fonts, subsetting, the map), the HTML and map 0.1 s, the workbook 0.06 s, the
GeoPackage 0.05 s (0.17 s with SQLite's syncs and four pyproj transformers), the reads
0.05 s.

Quiet run (lead, 2026-11-30 20:11 UTC, load 8 from the previous bench fading): 67 boxes in
28.8 s with 2 jobs (0.43 s a box, 0.82 CPU s a box), all verified, 53 MB — target 60 s met;
the dashboard's data for the town p50 28 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TOWN = CACHE / "archives-town"
HOME = CACHE / "archives-home"
DB = "bench_archives"
TARGET_S = 60.0
TARGET_DASH_MS = 1000.0


def start_cluster() -> str:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    os.environ["GEOGRID_HOME"] = str(HOME)
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    return cluster.url().rsplit("/", 1)[0] + "/" + DB


def _admin(url: str) -> str:
    return url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"


def loaded(url: str) -> bool:
    try:
        engine = store.make_engine(url)
        with engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM grids g JOIN plans p ON p.id = g.plan_id "
                     "WHERE p.status = 'active'")
            ).scalar_one()  # fmt: skip
        engine.dispose()
        return bool(n)
    except Exception:  # no database yet, or an older schema: build afresh
        return False


def load(url: str) -> None:
    import psycopg

    from geogrid.cli.demo import ensure_active_plan, load_town

    if not (TOWN / "households.xlsx").exists() and not any(TOWN.glob("*.xlsx")):
        cached = CACHE / "access-town"
        if cached.exists():
            shutil.copytree(cached, TOWN, dirs_exist_ok=True)
        else:
            from geogrid.sample import generate_town

            generate_town(seed=1, out=TOWN)
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    store.upgrade(url)
    engine = store.make_engine(url)
    try:
        load_town(engine, TOWN)
        with engine.connect() as conn:
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
        ensure_active_plan(engine, town, None)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE households h SET grid_code = g.code FROM grids g "
                    "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                    "WHERE g.level = 3 AND h.grid_code IS NULL AND ST_Covers(g.geom, h.geom)"
                )
            )
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the box writers): steadier
    than wall time on a shared machine."""
    import resource

    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="keep the cached town if built")
    ap.add_argument("--jobs", type=int, default=None, help="box writers (default: a core each)")
    args = ap.parse_args()
    url = start_cluster()
    if not (args.reuse and loaded(url)):
        print("building the town (once; --reuse keeps it)", flush=True)
        load(url)
    from geogrid.archives import bundle
    from geogrid.archives import dashboard as dash

    engine = store.make_engine(url)
    with engine.connect() as conn:
        town = conn.execute(
            text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
        ).scalar_one()
        sizes = conn.execute(
            text("SELECT (SELECT count(*) FROM households), (SELECT count(*) FROM cases)")
        ).one()
    out = Path(tempfile.mkdtemp(prefix="bench-archives-"))
    jobs = args.jobs or os.cpu_count() or 1
    cpu0 = _cpu()
    t0 = time.perf_counter()
    boxes = bundle.export_area(engine, town, out, jobs=jobs)
    wall = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    bad = [b.unit.code for b in boxes if bundle.verify_bundle(b.path)]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    times = []
    with engine.connect() as conn:
        area = dash.area_of(conn, town)
        for i in range(12):
            t = time.perf_counter()
            dash.dashboard(conn, area, dash.period(None, None))
            if i >= 2:
                times.append((time.perf_counter() - t) * 1000)
    engine.dispose()
    load1, load5, _ = os.getloadavg()
    print(f"town {town}: {sizes[0]:,} households, {sizes[1]:,} cases; load average "
          f"{load1:.1f} / {load5:.1f} (1 / 5 min) on {os.cpu_count()} cores")  # fmt: skip
    print(f"\n| {'measure':<48} | {'value':>10} | {'target':>8} | ok |")
    print(f"|{'-' * 50}|{'-' * 12}|{'-' * 10}|----|")
    rows = [
        (f"town's grid boxes ({len(boxes)} grids, {jobs} jobs), wall s", wall, TARGET_S),
        ("seconds per grid box", wall / max(len(boxes), 1), None),
        ("CPU s per box (bench + workers, not PostgreSQL)", cpu / max(len(boxes), 1), None),
        ("bundles failing verification", float(len(bad)), 0.0),
        ("bundle size, MB", size / 1e6, None),
        ("dashboard data for the town, p50 ms", statistics.median(times), TARGET_DASH_MS),
    ]
    for name, value, target in rows:
        ok = "" if target is None else ("yes" if value <= target else "NO")
        tgt = "" if target is None else f"{target:g}"
        print(f"| {name:<48} | {value:>10.2f} | {tgt:>8} | {ok:<2} |")


if __name__ == "__main__":
    main()
