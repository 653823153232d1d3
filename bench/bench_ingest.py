"""Benchmark: a county-sized household register through read → parse → geocode → load.

Generates (once, cached in bench/.cache/) a sample county whose register has about
1,000,000 rows, loads its boundaries into the private PostGIS (GEOGRID_HOME, or a
throwaway cluster with --fresh), then times each stage of ``geogrid import households``
and prints rows/s per stage, the whole pipeline and peak memory.

    .venv/bin/python bench/bench_ingest.py [--rows 1000000] [--fresh]

Target (issue 3): the whole pipeline at ≥ 25,000 rows/s on 2 cores (< 40 s for 1M rows),
peak memory < 4 GB.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.ingest.address import parse_addresses
from geogrid.ingest.boundaries import import_boundaries
from geogrid.ingest.load import geocode_households, load_geocoded, register_coordinates
from geogrid.ingest.readers import read_register
from geogrid.sample import generate_county
from geogrid.settings import Settings

CACHE = Path(__file__).parent / ".cache"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fresh", action="store_true", help="use a throwaway cluster")
    args = ap.parse_args()

    # the generator loses a few percent of households at village borders: ask for more
    want = int(args.rows * 1.07)
    data = CACHE / f"county-{args.rows}"
    if not (data / "households.csv").exists():
        print(f"generating a county register of ~{args.rows:,} rows into {data} (once)")
        generate_county(seed=1, out=data, villages=max(50, args.rows // 2500),
                        households=want, formats=("csv",))  # fmt: skip

    home = None
    if args.fresh:
        home = Path(tempfile.mkdtemp(prefix="geogrid-bench-"))
        home.chmod(0o755)
        settings = Settings(home=home, database_url=None)  # durable, as the default cluster
    else:
        settings = Settings()
    try:
        url = store.database_url(settings)
        store.upgrade(url)
        engine = store.make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE households, address_points"))
        import_boundaries(engine, data / "boundaries.gpkg", level="town")
        import_boundaries(engine, data / "boundaries.gpkg", level="village")
        import_boundaries(engine, data / "groups.gpkg", level="group")

        rows: list[tuple[str, float, int]] = []
        t0 = time.perf_counter()
        reg = read_register(data / "households.csv")  # GBK, as exported by township PCs
        raw = register_coordinates(reg)
        rows.append(("read (GBK CSV)", time.perf_counter() - t0, len(raw)))

        t = time.perf_counter()
        parse_addresses(raw["address"])
        rows.append(("parse addresses (alone)", time.perf_counter() - t, len(raw)))

        t = time.perf_counter()
        with engine.connect() as conn:
            good, rejects = geocode_households(conn, raw, as_geodataframe=False)
        rows.append(("validate+parse+geocode", time.perf_counter() - t, len(raw)))

        t = time.perf_counter()
        with engine.begin() as conn:
            report = load_geocoded(conn, good)
        rows.append(("load (COPY + upsert)", time.perf_counter() - t, len(good)))
        total = time.perf_counter() - t0 - rows[1][1]  # the standalone parse is not a stage
        rows.append(("whole pipeline", total, len(raw)))

        t = time.perf_counter()
        with engine.begin() as conn:
            again = load_geocoded(conn, good)
        rows.append(("re-load unchanged", time.perf_counter() - t, len(good)))
        engine.dispose()
    finally:
        if home is not None:
            PrivateCluster(settings).stop()
            shutil.rmtree(home, ignore_errors=True)

    print()
    print(f"{'stage':<26}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    for name, secs, n in rows:
        print(f"{name:<26}{n:>12,}{secs:>10.2f}{n / secs:>12,.0f}")
    print(f"\ninserted {report.inserted:,}, rejected {len(rejects):,}, "
          f"by precision {report.by_precision}; re-load unchanged {again.unchanged:,}")  # fmt: skip
    print(f"peak memory {_peak_mb():,.0f} MB (target < 4,096); whole pipeline "
          f"{rows[-2][2] / rows[-2][1]:,.0f} rows/s (target ≥ 25,000)")  # fmt: skip


if __name__ == "__main__":
    main()
