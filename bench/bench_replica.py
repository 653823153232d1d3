"""Benchmark: read throughput with the primary alone against primary + one streaming replica.

One command:

    nice .venv/bin/python bench/bench_replica.py --reuse [--users 16] [--seconds 20]

1. Loads (once, kept with ``--reuse``) the sample town (boundaries, groups, households,
   key units, cases) into a private cluster in ``bench/.cache/replica-home``, makes the
   villages, groups and heat layers public, and adds one standby with
   ``geogrid.ops.replica.add`` (pg_basebackup -R, streaming).
2. Runs the app under uvicorn on loopback twice, from a cold tile cache each time: first
   on the primary alone, then with ``GEOGRID_REPLICA_URLS`` naming the standby.
3. Each run: ``--users`` simulated users (one kept-alive connection each; bench/loopclient.py)
   send, for ``--seconds``, the same seeded mix: half OGC API item pages of a random bbox
   inside the town (villages or groups; never cached) and half vector tiles of random
   addresses at zooms 14-17 (heat: 14-16) inside the town (villages, groups, heat; cold
   cache: mostly misses). A writer renames a village on the primary every second (the primary takes
   writes; the villages version moves, so tiles of it are made again).
4. Prints one table: requests/s, p50 and p95 latency, failed requests, and how many reads
   the replica answered (from ``/metrics``), with the ratio of the two throughputs; then
   the targets with verdicts: no failed request in either run, and at least
   :data:`SHARE_TARGET` of the reads answered by the replica (routing works under writes).
   The ratio has no verdict here: on one 2-core machine the replica takes the server's
   CPU (a replica on its own machine adds that machine's cores).

On the 2-core development machine the server, the primary, the standby and the client share
two cores: the ratio, not the absolute figure, is the point (a replica on its own machine
adds that machine's cores).

Last run (2026-11-30, 16 users x 20 s, load average 11 from other work on the 2 cores):
primary alone 257 req/s (p50 37 ms, p95 178 ms); primary + 1 replica 224 req/s (p50 44 ms,
p95 219 ms; the replica answered 3,393 reads), ratio 0.87, no failed request. On one
2-core machine the replica's replay and its own backends take CPU from the server.

Quiet run (lead, 2026-11-30 20:14 UTC, 16 users x 20 s): primary alone 305.6 req/s (p95
120 ms), primary + 1 replica 302.4 req/s (p95 127 ms), ratio 0.99, the replica answering 73%
of the reads, no failed request: on one 2-core machine the standby's replay and backends take
the cores the server would use; a replica on its own machine adds that machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.ops import replica
from geogrid.ops.restore import libpq_dsn
from geogrid.settings import Settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_ogc import serve  # noqa: E402 - the same way of starting the server
from bench_tiles import stop  # noqa: E402 - the same way of stopping the server
from loopclient import Connection, TransportError  # noqa: E402

from tiles.layers import lonlat_to_tile  # noqa: E402

CACHE = HERE / ".cache"
HOME = CACHE / "replica-home"
TOWN = CACHE / "replica-town"
PUBLIC = ("villages", "groups", "heat")
#: Share of the reads the replica must answer in the "primary + 1 replica" run.
SHARE_TARGET = 0.3


def settings() -> Settings:
    return Settings(home=HOME, database_url=None, cluster_fsync=False)


def load() -> None:
    """The sample town in a fresh private cluster, and one standby."""
    from geogrid.access.embed import set_public
    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.ingest.load import import_households
    from geogrid.overlays import import_overlay
    from geogrid.sample import generate_town

    s = settings()
    if HOME.exists():
        for rep in replica.load(s):
            replica.remove(s, rep.name)
        PrivateCluster(s).stop()
        shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    HOME.chmod(0o755)
    cluster = PrivateCluster(s)
    cluster.start()
    url = cluster.url()
    store.upgrade(url)
    town = generate_town(seed=7, out=TOWN)
    engine = store.make_engine(url)
    import_boundaries(engine, town.boundaries, level="town")
    import_boundaries(engine, town.boundaries, level="village")
    import_boundaries(engine, town.groups, level="group")
    assert town.households_xlsx is not None
    import_households(engine, town.households_xlsx, rejects_path=CACHE / "replica-rejects.csv")
    for kind, path in (("key_units", town.key_units), ("cases", town.cases)):
        import_overlay(engine, path, kind, rejects_path=CACHE / f"replica-{kind}.rejects.csv")  # type: ignore[arg-type]
    with engine.begin() as conn:
        for layer in PUBLIC:
            set_public(conn, layer=layer, public=True, by=None)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()
    replica.add(s, name="bench")


def town_extent(url: str) -> tuple[float, float, float, float]:
    with psycopg.connect(libpq_dsn(url)) as conn:
        row = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) e FROM admin_areas WHERE level = 'village') q"
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])


def paths(extent: tuple[float, float, float, float], n: int, seed: int) -> list[str]:
    """``n`` request paths: half item pages of random bboxes, half random tiles."""
    rnd = random.Random(seed)
    x0, y0, x1, y1 = extent
    out = []
    for i in range(n):
        if i % 2:
            w, h = (x1 - x0) * rnd.uniform(0.05, 0.3), (y1 - y0) * rnd.uniform(0.05, 0.3)
            lx, ly = rnd.uniform(x0, x1 - w), rnd.uniform(y0, y1 - h)
            coll = rnd.choice(("villages", "groups"))
            out.append(f"/ogc/collections/{coll}/items?limit=20&bbox="
                       f"{lx:.5f},{ly:.5f},{lx + w:.5f},{ly + h:.5f}")  # fmt: skip
        else:
            layer = rnd.choice(PUBLIC)
            z = rnd.randint(14, 16 if layer == "heat" else 17)  # the heat pyramid ends at 16
            tx, ty = lonlat_to_tile(rnd.uniform(x0, x1), rnd.uniform(y0, y1), z)
            out.append(f"/tiles/{layer}/{z}/{tx}/{ty}.mvt")
    return out


@dataclass
class Run:
    label: str
    done: int
    failed: int
    seconds: float
    latencies: list[float]
    replica_reads: int

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[int(q) - 1] * 1000


async def _users(
    port: int, work: list[str], users: int, seconds: float
) -> tuple[int, int, float, list[float]]:
    lat: list[float] = []
    failed = 0
    done = 0
    deadline = time.monotonic() + seconds
    start = time.monotonic()

    async def user(k: int) -> None:
        nonlocal failed, done
        conn = Connection("127.0.0.1", port)
        i = k
        try:
            while time.monotonic() < deadline:
                path = work[i % len(work)]
                i += users
                t = time.perf_counter()
                try:
                    answer = await conn.request("GET", path)
                    ok = answer.status_code in (200, 204)
                except TransportError:
                    ok = False
                lat.append(time.perf_counter() - t)
                done += 1
                failed += 0 if ok else 1
        finally:
            await conn.close()

    await asyncio.gather(*(user(k) for k in range(users)))
    return done, failed, time.monotonic() - start, lat


def _writer(url: str, stop_event: threading.Event) -> None:
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        while not stop_event.wait(1.0):
            conn.execute("UPDATE admin_areas SET name = name WHERE code = "
                         "(SELECT min(code) FROM admin_areas WHERE level = 'village')")  # fmt: skip


def replica_reads(port: int) -> int:
    import httpx

    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in body.splitlines():
        if line.startswith("geogrid_replica_reads_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def run(label: str, url: str, replica_url: str | None, args: argparse.Namespace, port: int) -> Run:
    if replica_url:
        os.environ["GEOGRID_REPLICA_URLS"] = replica_url
    else:
        os.environ.pop("GEOGRID_REPLICA_URLS", None)
    os.environ["GEOGRID_HOME"] = str(HOME)
    proc = serve(url, port)
    stop_event = threading.Event()
    writer = threading.Thread(target=_writer, args=(url, stop_event), daemon=True)
    try:
        work = paths(town_extent(url), 20_000, seed=1)
        time.sleep(3)  # the replica checker's first rounds
        writer.start()
        done, failed, seconds, lat = asyncio.run(_users(port, work, args.users, args.seconds))
        reads = replica_reads(port) if replica_url else 0
    finally:
        stop_event.set()
        stop(proc)
    return Run(label, done, failed, seconds, lat, reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded cluster")
    args = parser.parse_args()
    s = settings()
    t = time.perf_counter()
    if not (args.reuse and (HOME / "replicas.json").exists()):
        load()
    print(f"  ready in {time.perf_counter() - t:.0f} s")
    cluster = PrivateCluster(s)
    cluster.start()
    store.upgrade(cluster.url())  # a cache from an older schema (the standby follows)
    rep = replica.start(s, "bench")
    try:
        url = cluster.url()
        results = [
            run("primary alone", url, None, args, _free_port()),
            run("primary + 1 replica", url, replica.url(s, rep.name), args, _free_port()),
        ]
    finally:
        replica.stop(s, rep.name)
        cluster.stop()
    load_avg = os.getloadavg()
    print(f"\nread throughput, {args.users} users x {args.seconds:g} s, tiles + OGC items "
          f"(load average {load_avg[0]:.1f}, {os.cpu_count()} cores)")  # fmt: skip
    print(f"| {'configuration':<20} | {'requests':>8} | {'req/s':>7} | {'p50 ms':>7} | "
          f"{'p95 ms':>7} | {'failed':>6} | {'replica reads':>13} |")  # fmt: skip
    print("|" + "|".join("-" * w for w in (22, 10, 9, 9, 9, 8, 15)) + "|")
    for r in results:
        print(f"| {r.label:<20} | {r.done:>8} | {r.rate:>7.1f} | {r.pct(50):>7.1f} | "
              f"{r.pct(95):>7.1f} | {r.failed:>6} | {r.replica_reads:>13} |")  # fmt: skip
    print(f"\nratio (primary + replica) / (primary alone): {results[1].rate / results[0].rate:.2f}")
    share = results[1].replica_reads / max(results[1].done, 1)
    print(f"\n{'target':<40} {'measured':>10}  verdict")
    for r in results:
        print(f"{f'{r.label}: no failed request':<40} {r.failed:>10}  "
              f"{'PASS' if r.failed == 0 else 'FAIL'}")  # fmt: skip
    print(f"{f'replica answers >= {SHARE_TARGET:.0%} of the reads':<40} {share:>10.0%}  "
          f"{'PASS' if share >= SHARE_TARGET else 'FAIL'}")  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
