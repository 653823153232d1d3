"""Benchmark: geogrid's vector and heat tiles against TiPg on the same PostGIS tables.

One command:

    .venv/bin/python bench/bench_tiles.py [--cases 1000000] [--per-zoom 40] [--clients 2]

1. Generates (once, cached in ``bench/.cache/county-tiles``) a sample county: 250 villages,
   ~300,000 households, a year of cases; loads it into a private PostGIS cluster in
   ``bench/.cache/tiles-home`` (boundaries, groups, households with geogrid's importers;
   level-3 grids of an active plan per town partitioned by ``geogrid.plans.create_plan``
   (``--grids plan``, the default: ~2,000 grids), or one grid per villager group
   (``--grids groups``); the cases topped up to ``--cases`` with synthetic ones near the
   real ones, vectorised and COPYed) and builds the heat pyramid (timed). ``--reuse``
   keeps a database loaded by an earlier run.
2. Installs TiPg from PyPI into its own venv ``bench/.venv-tipg`` (its pins may conflict
   with ours) and starts both servers with uvicorn in subprocesses on loopback.
3. Requests the same tiles (z10–z16; all tiles over the county at z10–z11, a seeded
   sample of tiles holding cases above) with ``--clients`` concurrent keep-alive clients:
   a *cold* pass on a freshly started server (tile cache empty; geogrid warms its
   database connections at start-up, as in production), then *warm* passes.
4. Prints requests/s and p50/p95 latency per server, layer and cache state, p95 per zoom
   of every uncached pass, and the ratios.

Concurrency: the client, the server under test and PostgreSQL share the machine's cores.
The default of 2 clients (one per core here) measures latency below saturation; more
clients measure the same work plus queueing (p95 grows with clients / cores) and are
worth running for throughput (``--clients 8``).

TiPg serves raw rows (cases: one point per case, silently capped at 10,000 per tile);
geogrid aggregates cases below z15 from the heat pyramid. Heat tiles have no TiPg
counterpart and are measured on their own (target: p95 < 30 ms at every zoom).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import uvloop
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
DATA = CACHE / "county-tiles"
HOME = CACHE / "tiles-home"
TIPG_VENV = HERE / ".venv-tipg"
DB = "bench_tiles"
ZOOMS = range(10, 17)


# --------------------------------------------------------------------------- data


def ensure_county() -> None:
    if (DATA / "cases.csv").exists():
        return
    from geogrid.sample import generate_county

    print(f"generating the sample county into {DATA} (once, ~30 s)")
    generate_county(seed=3, out=DATA, villages=250, households=300_000)


def start_cluster() -> str:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    base = cluster.url()
    return base.rsplit("/", 1)[0] + "/" + DB


def _admin(url: str) -> str:
    return url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"


def load(url: str, n_cases: int, grids: str) -> None:
    import psycopg

    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.ingest.load import import_households

    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    store.upgrade(url)
    engine = store.make_engine(url)
    t = time.perf_counter()
    import_boundaries(engine, DATA / "boundaries.gpkg", level="town")
    import_boundaries(engine, DATA / "boundaries.gpkg", level="village")
    import_boundaries(engine, DATA / "groups.gpkg", level="group")
    import_households(engine, DATA / "households.csv", rejects_path=CACHE / "tiles-rejects.csv")
    print(f"  boundaries, groups, households loaded in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    make_grids(engine, grids)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM grids WHERE level = 3")).scalar_one()
    print(f"  {n:,} level-3 grids ({grids}) in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    load_cases(engine, n_cases)
    print(f"  {n_cases:,} cases loaded in {time.perf_counter() - t:.0f} s")
    from tiles import heat

    t = time.perf_counter()
    with engine.begin() as conn:
        done = heat.refresh_heat(conn, full=True)
    print(f"  heat pyramid built in {time.perf_counter() - t:.1f} s: {done}")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def make_grids(engine: Engine, how: str) -> None:
    if how == "plan":
        from geogrid.plans import activate_plan, create_plan

        with engine.connect() as conn:
            towns = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code")
            ).scalars()
            towns = list(towns)
        for code in towns:
            plan = create_plan(engine, code, jobs=2)
            activate_plan(engine, plan)
        return
    # one basic grid per villager group with a polygon, in an active plan per town
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO plans (town_code, name, status)
            SELECT code, 'bench', 'active' FROM admin_areas WHERE level = 'town'
            """)
        )
        conn.execute(
            text("""
            INSERT INTO grids (plan_id, code, level, village_code, name, geom, households)
            SELECT p.id, g.village_code || lpad(g.group_no::text, 3, '0'), 3, g.village_code,
                   g.name, g.geom,
                   (SELECT count(*) FROM households h WHERE h.group_id = g.id)
            FROM villager_groups g
            JOIN admin_areas v ON v.code = g.village_code
            JOIN plans p ON p.town_code = v.parent_code
            WHERE g.geom IS NOT NULL
            """)
        )


def load_cases(engine: Engine, n_total: int) -> None:
    import pandas as pd

    real = pd.read_csv(DATA / "cases.csv")
    rng = np.random.default_rng(11)
    extra = max(0, n_total - len(real))
    pick = rng.integers(0, len(real), extra)
    jitter = rng.normal(0.0, 0.0004, (extra, 2))  # ~40 m
    start = np.datetime64("2025-01-01T00:00:00")
    seconds = rng.integers(0, 365 * 86400, extra).astype("timedelta64[s]")
    when = pd.Series((start + seconds).astype("datetime64[s]")).dt.strftime(
        "%Y-%m-%dT%H:%M:%S+08:00"
    )
    synth = pd.DataFrame(
        {
            "case_id": [f"S{i:08d}" for i in range(extra)],
            "category": real["category"].to_numpy()[pick],
            "reported_at": when.to_numpy(),
            "lon": np.round(real["lon"].to_numpy()[pick] + jitter[:, 0], 6),
            "lat": np.round(real["lat"].to_numpy()[pick] + jitter[:, 1], 6),
            "description": real["description"].to_numpy()[pick],
        }
    )
    frame = pd.concat([real, synth], ignore_index=True)
    # through geogrid's own importer, as a deployment loads them: every case gets its
    # village and the grid of the active plan that holds it (timed on its own)
    path = CACHE / f"cases-{n_total}.csv"
    frame.to_csv(path, index=False)
    from geogrid.overlays import import_overlay

    t = time.perf_counter()
    report = import_overlay(engine, path, "cases", rejects_path=CACHE / "cases-rejects.csv")
    print(f"  geogrid import cases: {report.inserted:,} inserted, {report.rejected:,} rejected, "
          f"{report.in_grid:,} in a grid, in {time.perf_counter() - t:.1f} s")  # fmt: skip


def time_refresh(url: str) -> list[tuple[str, float, object]]:
    """Time incremental heat refreshes after typical edits, each undone afterwards."""
    from tiles import heat

    edits = [
        ("insert 1 case", "INSERT INTO cases (case_no, category, reported_at, geom) "
         "SELECT 'BENCH-1', category, reported_at, geom FROM cases ORDER BY id LIMIT 1",
         "DELETE FROM cases WHERE case_no = 'BENCH-1'"),
        ("re-date 100 cases", "UPDATE cases SET reported_at = reported_at + interval '3 days' "
         "WHERE id IN (SELECT id FROM cases ORDER BY id LIMIT 100)",
         "UPDATE cases SET reported_at = reported_at - interval '3 days' "
         "WHERE id IN (SELECT id FROM cases ORDER BY id LIMIT 100)"),
    ]  # fmt: skip
    engine = store.make_engine(url)
    out: list[tuple[str, float, object]] = []
    try:
        for name, do, undo in edits:
            for label, sql in ((name, do), (f"undo: {name}", undo)):
                with engine.begin() as conn:
                    conn.execute(text(sql))
                t = time.perf_counter()
                with engine.begin() as conn:
                    done = heat.refresh_heat(conn)
                out.append((label, time.perf_counter() - t, done))
    finally:
        engine.dispose()
    return out


def prewarm(url: str) -> None:
    """Load every table and index into PostgreSQL's buffer cache (``pg_prewarm``).

    "Cold" in this benchmark means *no tile cached*, on a database in its steady state, for
    both servers alike: without this, whichever server runs first pays for reading the
    tables into the cache and the other one profits.
    """
    engine = store.make_engine(url)
    t = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
        blocks = conn.execute(
            text("""
            SELECT coalesce(sum(pg_prewarm(c.oid)), 0) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 't')
            """)
        ).scalar_one()
        size = conn.execute(text("SHOW shared_buffers")).scalar_one()
    engine.dispose()
    print(f"prewarmed {blocks * 8 / 1024:,.0f} MB of tables and indexes "
          f"(shared_buffers {size}) in {time.perf_counter() - t:.1f} s")  # fmt: skip


# --------------------------------------------------------------------------- tiles


def tile_of(lon: np.ndarray, lat: np.ndarray, z: int) -> np.ndarray:
    n = 2**z
    x = np.floor((lon + 180.0) / 360.0 * n).astype(np.int64)
    r = np.radians(lat)
    y = np.floor((1.0 - np.arcsinh(np.tan(r)) / np.pi) / 2.0 * n).astype(np.int64)
    return np.column_stack([x, y])


def tile_set(url: str, per_zoom: int) -> list[tuple[int, int, int]]:
    """All tiles over the county at z10–11, then tiles under random cases above."""
    engine = store.make_engine(url)
    with engine.connect() as conn:
        x0, y0, x1, y1 = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom) e FROM admin_areas WHERE level = 'town') q"
            )
        ).one()
        pts = np.array(
            conn.execute(
                text(
                    "SELECT ST_X(geom), ST_Y(geom) FROM cases TABLESAMPLE SYSTEM (1) REPEATABLE (5)"
                )  # the same tiles every run
            ).all(),
            dtype=float,
        )
    engine.dispose()
    rng = np.random.default_rng(5)
    out: list[tuple[int, int, int]] = []
    for z in ZOOMS:
        a = tile_of(np.array([x0]), np.array([y1]), z)[0]
        b = tile_of(np.array([x1]), np.array([y0]), z)[0]
        every = [(z, int(x), int(y)) for x in range(a[0], b[0] + 1) for y in range(a[1], b[1] + 1)]
        if len(every) <= per_zoom:
            out += every
            continue
        tiles = np.unique(tile_of(pts[:, 0], pts[:, 1], z), axis=0)
        take = rng.choice(len(tiles), min(per_zoom, len(tiles)), replace=False)
        out += [(z, int(tiles[i, 0]), int(tiles[i, 1])) for i in sorted(take)]
    return out


# --------------------------------------------------------------------------- servers


def ensure_tipg() -> Path:
    python = TIPG_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing TiPg into {TIPG_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(TIPG_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "tipg", "uvicorn[standard]"], check=True)  # same server stack
    return python


def serve(cmd: list[str], env: dict[str, str], port: int, probe: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read().decode() if proc.stderr else "server died")
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server on port {port} did not start")


def start_geogrid(url: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--no-access-log"]  # fmt: skip
    env = {"GEOGRID_DATABASE_URL": url, "GEOGRID_HOME": str(HOME)}
    return serve(cmd, env, port, "/health")


def start_tipg(url: str, port: int) -> subprocess.Popen[bytes]:
    python = ensure_tipg()
    cmd = [str(python), "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    env = {"DATABASE_URL": url.replace("+psycopg", ""), "TIPG_DB_SCHEMAS": '["public"]'}
    return serve(cmd, env, port, "/collections")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# --------------------------------------------------------------------------- load


@dataclass
class Result:
    server: str
    layer: str
    state: str
    n: int
    seconds: float
    lat: list[float]
    errors: int
    zooms: list[int]

    @property
    def rps(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        s = sorted(self.lat)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


class _Connection:
    """A minimal keep-alive HTTP/1.1 client connection (GET only).

    The load generator shares the 2 cores with both servers and PostgreSQL; httpx spends
    ~0.5 ms of CPU per request, which capped warm-cache measurements at the client's speed
    rather than the server's. This reads status, headers and the raw body (gzip stays
    compressed: the servers are measured, not the client) and nothing else.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept-Encoding: gzip\r\n\r\n".encode()
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if not size:
                    break
        elif status not in (204, 304):  # a body delimited by the end of the connection
            await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _run(urls: list[str], clients: int) -> tuple[float, list[float], int, list[int]]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)
    lat: list[float] = []
    zooms: list[int] = []
    errors = 0
    where = urlsplit(urls[0]) if urls else None

    async def worker() -> None:
        nonlocal errors
        assert where is not None and where.hostname and where.port
        conn = _Connection(where.hostname, where.port)
        try:
            while True:
                try:
                    u = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                parts = urlsplit(u)
                target = quote(parts.path) + (f"?{quote(parts.query, safe='=&,')}"
                                              if parts.query else "")  # fmt: skip
                t = time.perf_counter()
                status = await asyncio.wait_for(conn.get(target), 120)
                lat.append(time.perf_counter() - t)
                zooms.append(_zoom(u))
                if status not in (200, 204):
                    errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - t0, lat, errors, zooms


def _zoom(url: str) -> int:
    """The z of a tile URL (``…/{z}/{x}/{y}[.mvt][?…]``); -1 for other URLs."""
    parts = url.split("?")[0].rsplit("/", 3)
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else -1


def measure(server: str, layer: str, state: str, urls: list[str], clients: int) -> Result:
    seconds, lat, errors, zooms = uvloop.run(_run(urls, clients))
    return Result(server, layer, state, len(urls), seconds, lat, errors, zooms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--per-zoom", type=int, default=40, help="tiles per zoom above z11")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--warm-passes", type=int, default=3)
    ap.add_argument("--grids", choices=("groups", "plan"), default="plan")
    ap.add_argument("--reuse", action="store_true", help="keep the loaded database")
    ap.add_argument("--no-peer", action="store_true",
                    help="skip TiPg (quick iterations; the report needs the peer)")  # fmt: skip
    ap.add_argument("--rebuild-heat", action="store_true", help="rebuild the pyramid (timed)")
    args = ap.parse_args()

    ensure_county()
    url = start_cluster()
    loaded = False
    if args.reuse:
        try:
            e = store.make_engine(url)
            with e.connect() as conn:
                loaded = conn.execute(text("SELECT count(*) FROM cases")).scalar_one() > 0
            e.dispose()
        except Exception:
            loaded = False
    if not loaded:
        print(f"loading the county with {args.cases:,} cases into {DB}")
        load(url, args.cases, args.grids)
    if loaded:
        store.upgrade(url)  # a database loaded by an older checkout gets new migrations
    e = store.make_engine(url)
    if loaded and args.rebuild_heat:
        from tiles import heat

        t = time.perf_counter()
        with e.begin() as conn:
            done = heat.refresh_heat(conn, full=True)
        print(f"heat pyramid rebuilt in {time.perf_counter() - t:.1f} s: {done}")
    with e.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("households", "grids", "cases")
        }
    e.dispose()
    print("data:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    for label, seconds, done in time_refresh(url):
        print(f"heat refresh after {label}: {seconds * 1000:.0f} ms ({done})")
    prewarm(url)
    tiles = tile_set(url, args.per_zoom)
    print(f"{len(tiles)} tiles per layer at z{ZOOMS.start}–z{ZOOMS.stop - 1}; "
          f"{args.clients} concurrent clients")  # fmt: skip
    window = "?from=2025-04-01&to=2025-06-30&category=环境卫生,矛盾纠纷"
    ours = {
        "grids": [f"/tiles/grids/{z}/{x}/{y}.mvt" for z, x, y in tiles],
        "cases": [f"/tiles/cases/{z}/{x}/{y}.mvt" for z, x, y in tiles],
        "heat": [f"/tiles/heat/{z}/{x}/{y}.mvt" for z, x, y in tiles],
        "heat+window": [f"/tiles/heat/{z}/{x}/{y}.mvt{window}" for z, x, y in tiles],
    }
    theirs = {
        "grids": [f"/collections/public.grids/tiles/WebMercatorQuad/{z}/{x}/{y}"
                  for z, x, y in tiles],
        "cases": [f"/collections/public.cases/tiles/WebMercatorQuad/{z}/{x}/{y}"
                  for z, x, y in tiles],
    }  # fmt: skip
    results: list[Result] = []
    per_zoom_heat: dict[int, list[float]] = {}

    port = 8765
    proc = start_geogrid(url, port)
    try:
        base = f"http://127.0.0.1:{port}"
        for layer, paths in ours.items():
            results.append(
                measure("geogrid", layer, "cold", [base + p for p in paths], args.clients)
            )
        # per-zoom heat latency, uncached: a fresh window nobody asked for yet
        for z in ZOOMS:
            paths = [f"{base}/tiles/heat/{zz}/{x}/{y}.mvt?from=2025-02-01&to=2025-11-15"
                     for zz, x, y in tiles if zz == z]  # fmt: skip
            per_zoom_heat[z] = measure("geogrid", "heat", "cold", paths, args.clients).lat
        for layer, paths in ours.items():
            urls = [base + p for p in paths] * args.warm_passes
            results.append(measure("geogrid", layer, "warm", urls, args.clients))
        # what a leader's page asks besides tiles, each answer new (uncached): case counts
        # per grid for 10 time windows, and GIS clients paging deep into the cases
        # (with the grids' geometry on a page's first load; counts only on a filter change)
        windows = [f"from=2025-{m:02d}-01&to=2025-{m + 2:02d}-28" for m in range(1, 11)]
        stats = [f"{base}/api/stats/cases-by-grid?{w}" for w in windows]
        results.append(measure("geogrid", "by-grid+geom", "cold", stats, args.clients))
        windows = [f"from=2025-{m:02d}-02&to=2025-{m + 2:02d}-27" for m in range(1, 11)]
        stats = [f"{base}/api/stats/cases-by-grid?{w}&geometry=false" for w in windows]
        results.append(measure("geogrid", "by-grid", "cold", stats, args.clients))
        pages = [f"{base}/ogc/collections/cases/items?limit=100&offset={k * 99_000}"
                 for k in range(10)]  # fmt: skip
        results.append(measure("geogrid", "OGC page", "cold", pages, args.clients))
    finally:
        stop(proc)

    port = 8766
    proc = start_tipg(url, port) if not args.no_peer else None
    try:
        if proc is None:
            theirs = {}
        base = f"http://127.0.0.1:{port}"
        for layer, paths in theirs.items():
            results.append(measure("tipg", layer, "cold", [base + p for p in paths], args.clients))
        for layer, paths in theirs.items():
            urls = [base + p for p in paths] * args.warm_passes
            results.append(measure("tipg", layer, "warm", urls, args.clients))
    finally:
        if proc is not None:
            stop(proc)

    print()
    print(f"{'server':8} {'layer':12} {'cache':5} {'requests':>8} {'req/s':>8} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'errors':>6}")  # fmt: skip
    for r in results:
        print(f"{r.server:8} {r.layer:12} {r.state:5} {r.n:8d} {r.rps:8.1f} "
              f"{r.pct(0.5):8.1f} {r.pct(0.95):8.1f} {r.errors:6d}")  # fmt: skip
    print()
    print("heat tiles, uncached (new window), per zoom:")
    for z, lat in per_zoom_heat.items():
        if lat:
            s = sorted(lat)
            print(f"  z{z}: n={len(s):3d} p50 {statistics.median(s) * 1000:6.1f} ms  "
                  f"p95 {s[min(len(s) - 1, int(0.95 * len(s)))] * 1000:6.1f} ms")  # fmt: skip
    print()
    print("cold p95 ms per zoom (uncached):")
    print(f"{'server':8} {'layer':12} " + " ".join(f"{'z' + str(z):>6}" for z in ZOOMS))
    for r in results:
        if r.state == "cold" and max(r.zooms, default=-1) >= 0:
            cells = []
            for z in ZOOMS:
                s = sorted(t for t, zz in zip(r.lat, r.zooms, strict=True) if zz == z)
                cells.append(f"{s[min(len(s) - 1, int(0.95 * len(s)))] * 1000:6.1f}" if s
                             else f"{'-':>6}")  # fmt: skip
            print(f"{r.server:8} {r.layer:12} " + " ".join(cells))
    print()
    by = {(r.server, r.layer, r.state): r for r in results}
    for layer in ("grids", "cases"):
        for state in ("cold", "warm"):
            if ("tipg", layer, state) not in by:
                continue
            a, b = by[("geogrid", layer, state)], by[("tipg", layer, state)]
            print(f"ratio geogrid/tipg {layer:6} {state}: throughput ×{a.rps / b.rps:5.1f}, "
                  f"p95 ×{b.pct(0.95) / a.pct(0.95):5.1f} faster")  # fmt: skip


if __name__ == "__main__":
    main()
