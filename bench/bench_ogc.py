"""Benchmark: OGC API – Features item pages on a large case table (filters, deep pages).

One command:

    .venv/bin/python bench/bench_ogc.py [--cases 1000000] [--requests 40] [--reuse]

1. Loads (once, kept with ``--reuse``) the sample town into a private PostGIS cluster in
   ``bench/.cache/ogc-home`` with geogrid's importers (boundaries, groups, households, the
   town's key units and cases), then tops the cases up to ``--cases`` with synthetic
   ones near the real ones (one ``INSERT … SELECT`` in PostgreSQL), and analyses.
2. Serves the app with uvicorn on loopback (a subprocess, as in production) and signs in
   as a town leader whose scope covers the town.
3. Times ``--requests`` sequential requests per row: page 1; page 5,000 through the
   cursor its ``next`` link would carry (the cursor of row 499,900, computed once) and,
   for contrast, through ``offset``; filtered pages in CQL2 text and JSON (comparison,
   IN, temporal, spatial, with bbox and filter-crs) with values rotating per request.
4. Prints p50/p95 per row, how many answers carried ``numberMatched`` (exact; left out
   when over the count bound), the ratios p95(page 5,000 by cursor) / p95(page 1) and
   worst filtered p95 / p95(page 1); stops the server and the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_tiles import stop  # noqa: E402 - the same way of stopping the server

from api.app import WARM_CONNECTIONS  # noqa: E402 - connections warmed at start-up

CACHE = HERE / ".cache"
HOME = CACHE / "ogc-home"
TOWN = CACHE / "ogc-town"
DB = "bench_ogc"
LIMIT = 100
DEEP_PAGE = 5_000
#: Untimed requests per row first (the pooled connections' first use).
WARM = 5
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"

#: Synthetic cases: copies of the real ones moved by up to ~50 m and up to a year.
_TOP_UP = """
WITH base AS (SELECT row_number() OVER (ORDER BY case_no) - 1 AS rn, c.* FROM cases c),
     k AS (SELECT count(*) AS n FROM base)
INSERT INTO cases (case_no, category, reported_at, geom, village_code, grid_code, description)
SELECT 'S' || lpad(i::text, 8, '0'), b.category,
       b.reported_at + make_interval(secs => (i * 7919) % (365 * 86400)) - interval '180 days',
       ST_SetSRID(ST_MakePoint(ST_X(b.geom) + ((i * 31) % 101 - 50) * 5e-6,
                               ST_Y(b.geom) + ((i * 17) % 101 - 50) * 5e-6), 4326),
       b.village_code, b.grid_code, b.description
FROM generate_series(1::bigint, :extra) AS i
JOIN base b ON b.rn = i % (SELECT n FROM k)
"""


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    """The app under uvicorn in a subprocess (as bench_tiles does; a longer start-up wait:
    the server warms its connections before it answers)."""
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--no-access-log"]  # fmt: skip
    env = {**os.environ, "GEOGRID_DATABASE_URL": url, "GEOGRID_HOME": str(HOME)}
    proc = subprocess.Popen(cmd, env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 900  # a loaded, shared machine starts slowly
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read().decode() if proc.stderr else "server died")
        time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"server on port {port} did not start")


def start_cluster() -> tuple[PrivateCluster, str]:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    return cluster, cluster.url().rsplit("/", 1)[0] + "/" + DB


def _admin(url: str) -> str:
    return url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"


def load(url: str, n_cases: int) -> None:
    import psycopg

    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.ingest.load import import_households
    from geogrid.overlays import import_overlay
    from geogrid.sample import generate_town

    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    store.upgrade(url)
    town = generate_town(seed=7, out=TOWN)
    engine = store.make_engine(url)
    t = time.perf_counter()
    import_boundaries(engine, town.boundaries, level="town")
    import_boundaries(engine, town.boundaries, level="village")
    import_boundaries(engine, town.groups, level="group")
    import_households(engine, town.households_xlsx, rejects_path=CACHE / "ogc-rejects.csv")
    for kind, path in (("key_units", town.key_units), ("cases", town.cases)):
        import_overlay(engine, path, kind, rejects_path=CACHE / f"ogc-{kind}.rejects.csv")  # type: ignore[arg-type]
    with engine.begin() as conn:
        real = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
        conn.execute(text(_TOP_UP), {"extra": max(0, n_cases - real)})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()
    print(f"  loaded in {time.perf_counter() - t:.0f} s")


def sign_in(url: str, base: str) -> dict[str, str]:
    from geogrid.access import users
    from geogrid.access.scope import Scope

    engine = store.make_engine(url)
    name = f"bench-{int(time.time())}"
    with engine.begin() as conn:
        town = conn.execute(text("SELECT code FROM admin_areas WHERE level = 'town'")).scalar()
        _, password = users.add_user(
            conn, username=name, role="town_leader", scope=Scope.parse(str(town)),
            must_change_password=False,
        )  # fmt: skip
    engine.dispose()
    r = httpx.post(
        f"{base}/api/auth/token", data={"username": name, "password": password}, timeout=120
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def deep_cursor(url: str, offset: int) -> str:
    """The cursor the next link of the page before ``offset`` carries (its last row)."""
    from geogrid.ogcapi.paging import encode_cursor

    engine = store.make_engine(url)
    with engine.connect() as conn:
        key = conn.execute(
            text("SELECT case_no FROM cases ORDER BY case_no OFFSET :o LIMIT 1"), {"o": offset - 1}
        ).scalar_one()
    engine.dispose()
    return encode_cursor([key], backward=False, sort_key="")


def filters(url: str, n: int) -> dict[str, list[dict[str, Any]]]:
    """Rotating filtered requests: (label → query parameters per request)."""
    engine = store.make_engine(url)
    with engine.connect() as conn:
        cats = [r[0] for r in conn.execute(text("SELECT DISTINCT category FROM cases"))]
        villages = [r[0] for r in conn.execute(text("SELECT DISTINCT village_code FROM cases"))]
        pts = conn.execute(
            text("SELECT ST_X(geom), ST_Y(geom) FROM cases TABLESAMPLE SYSTEM (1) LIMIT :n"),
            {"n": n},
        ).all()
    engine.dispose()
    out: dict[str, list[dict[str, Any]]] = {
        "CQL2 text: category = and time": [],
        "CQL2 text: village IN, T_AFTER": [],
        "CQL2 JSON: s_intersects bbox + =": [],
        "bbox (EPSG:4490) + CQL2 text": [],
    }
    for i in range(n):
        month = 1 + i % 12
        cat, vil = cats[i % len(cats)], villages[i % len(villages)]
        x, y = pts[i % len(pts)]
        since = f"TIMESTAMP('2025-{month:02d}-01T00:00:00Z')"
        out["CQL2 text: category = and time"].append(
            {"filter": f"category = '{cat}' AND reported_at >= {since}"}
        )
        out["CQL2 text: village IN, T_AFTER"].append({
            "filter": f"village_code IN ('{vil}', '{villages[(i + 1) % len(villages)]}') "
                      f"AND reported_at T_AFTER TIMESTAMP('2025-{month:02d}-15T00:00:00Z')"
        })  # fmt: skip
        box = {"bbox": [x - 0.01, y - 0.01, x + 0.01, y + 0.01]}
        out["CQL2 JSON: s_intersects bbox + ="].append({
            "filter-lang": "cql2-json",
            "filter": json.dumps({"op": "and", "args": [
                {"op": "s_intersects", "args": [{"property": "geometry"}, box]},
                {"op": "=", "args": [{"property": "category"}, cat]}]}, ensure_ascii=False),
        })  # fmt: skip
        out["bbox (EPSG:4490) + CQL2 text"].append({
            "bbox": f"{y - 0.02},{x - 0.02},{y + 0.02},{x + 0.02}", "bbox-crs": "EPSG:4490",
            "crs": "EPSG:4490", "filter": f"category <> '{cat}'",
        })  # fmt: skip
    return out


def timed(client: httpx.Client, path: str, params: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Latencies of the requests, and how many answers carried ``numberMatched``."""
    lat: list[float] = []
    counted = 0
    for p in params:
        t = time.perf_counter()
        r = client.get(path, params={"limit": LIMIT, **p})
        lat.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise SystemExit(f"{r.status_code} {r.text[:300]} for {p}")
        counted += '"numberMatched"' in r.text[:200]
    return lat, counted


def p95(lat: list[float]) -> float:
    s = sorted(lat)
    return s[min(len(s) - 1, int(0.95 * len(s)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=40, help="requests per row")
    ap.add_argument("--reuse", action="store_true", help="keep the loaded database")
    args = ap.parse_args()
    if args.cases < LIMIT * DEEP_PAGE + 1:
        raise SystemExit(f"--cases must exceed {LIMIT * DEEP_PAGE} for page {DEEP_PAGE:,}")
    cluster, url = start_cluster()
    proc = None
    try:
        loaded = False
        if args.reuse:
            try:
                e = store.make_engine(url)
                with e.connect() as conn:
                    loaded = conn.execute(text("SELECT count(*) FROM cases")).scalar_one() > (
                        LIMIT * DEEP_PAGE
                    )
                e.dispose()
            except Exception:  # no such database yet: load it
                loaded = False
        if not loaded:
            print(f"loading the sample town with {args.cases:,} cases into {DB}")
            load(url, args.cases)
        else:
            store.upgrade(url)
        port = 8767
        proc = serve(url, port)
        base = f"http://127.0.0.1:{port}"
        headers = sign_in(url, base)
        n = args.requests
        deep = DEEP_PAGE * LIMIT - LIMIT
        cursor = deep_cursor(url, deep)
        items = "/ogc/collections/cases/items"
        rows: list[tuple[str, tuple[list[float], int]]] = []
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            with store.make_engine(url).connect() as conn:
                total = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
            # before any other request with a CRS: each pooled connection's first
            # EPSG:4490 page (the start-up warm-up opened WARM_CONNECTIONS of them and
            # geogrid.ogcapi.warm loads the transform when the pool opens one)
            first_crs = timed(client, items, [{"crs": f"{EPSG}4490"}] * WARM_CONNECTIONS)
            timed(client, items, [{}] * WARM)  # warm the server's pool
            rows.append(("page 1", timed(client, items, [{}] * n)))
            rows.append((
                f"page {DEEP_PAGE:,} by cursor (next link)",
                timed(client, items, [{"offset": deep, "cursor": cursor}] * n),
            ))  # fmt: skip
            rows.append((
                f"page {DEEP_PAGE:,} by offset",
                timed(client, items, [{"offset": deep}] * max(5, n // 4)),
            ))  # fmt: skip
            for label, params in filters(url, n + WARM).items():
                # the first requests with a CRS in a pooled backend load its PROJ
                # definition (~0.2 s, once per connection): untimed, as page 1's warm-up
                timed(client, items, params[n:])
                rows.append((f"filtered: {label}", timed(client, items, params[:n])))
        rows.append(("first EPSG:4490 page per pooled connection", first_crs))
        print(f"\ncases: {total:,}; page size {LIMIT}; {n} sequential requests per row\n")
        print(f"{'request':46} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'counted':>8}")
        for label, (lat, counted) in rows:
            print(
                f"{label:46} {len(lat):4d} {statistics.median(lat) * 1000:8.1f} "
                f"{p95(lat):8.1f} {counted:8d}"
            )
        print("(counted: answers with numberMatched, exact; left out beyond the count bound)")
        first, deep_cursor_p95 = p95(rows[0][1][0]), p95(rows[1][1][0])
        worst = max(p95(lat) for label, (lat, _) in rows if label.startswith("filtered"))
        print(f"\nratio worst p95 filtered / page 1: {worst / first:.2f}")
        print(f"\nratio p95 page {DEEP_PAGE:,} (cursor) / page 1: {deep_cursor_p95 / first:.2f}")
        print(f"ratio p95 page {DEEP_PAGE:,} (offset) / page 1: {p95(rows[2][1][0]) / first:.2f}")
    finally:
        if proc is not None:
            stop(proc)
        cluster.stop()


if __name__ == "__main__":
    main()
