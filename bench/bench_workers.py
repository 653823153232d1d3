"""Benchmark: 200 users reading at once against ``geogrid serve`` with 1 and 2 workers.

One command:

    nice .venv/bin/python bench/bench_workers.py --reuse [--users 200] [--seconds 40]
        [--workers 1,2]

1. Data (built once, cached in ``bench/.cache/workers-home``; ``--reuse`` keeps it): the
   same town as bench_access.py (sample town seed 1, ~10k households, partitioned and
   activated, cases topped up to ``--cases``, the heat pyramid, ``--users`` accounts of
   every working role), built by bench_access's loader into its own private cluster.
2. For each worker count: a real ``geogrid serve --workers N`` on a free 127.0.0.1 port;
   every user signs in (bearer token), then for ``--seconds`` each user, on its own
   kept-alive connection (bench/loopclient.py: a lean client, so that the client takes
   little of the two cores), asks in a seeded random mix its role may do, pausing
   ``--think`` seconds on average between requests:

   ========================  ======  =========================================
   request                   share   what
   ========================  ======  =========================================
   tile grids                30 %    ``/tiles/grids/z/x/y.mvt`` z13–16, its area
   tile heat                 10 %    ``/tiles/heat/z/x/y.mvt`` z12–16, its area
   ogc items                 25 %    50 OGC API items (cases or grids), a page of 5
   plan grids                10 %    the active plan's grids (GeoJSON)
   case inbox                25 %    ``/api/cases/inbox`` (case roles; others: ogc)
   ========================  ======  =========================================

   Any answer other than 2xx/304, and any transport error, is an error.
3. ``--middleware``: the cost of the request middleware (request id, metrics, access
   line) per request, measured in this process around an empty ASGI app.

Prints, side by side per worker count: requests/s, p50 and p95 (ms) overall and per
request kind, errors; then the targets with verdicts (no failed request; 2 workers'
throughput at least x1.0 that of 1 worker). The client, the workers and PostgreSQL
share the machine's two cores: the ratio, not the absolute figure, is the point. The
private cluster is stopped at the end (its data stays for ``--reuse``).

Quiet run (lead, 2026-11-30 20:12 UTC; the load average of 20 is the bench's own 200
users): 1 worker 79.8 req/s (p50 2.15 s, p95 2.71 s), 2 workers 119.6 req/s (p50 1.40 s,
p95 2.91 s): x1.50, no failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_access
from bench_access import Account, Stats, accounts, pct, set_password, start_server
from bench_tiles import stop
from loopclient import Connection, TransportError

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
HOME = CACHE / "workers-home"
SERVER_LOG = CACHE / "workers-server.log"
CASE_ROLES = {"town_leader", "village_leader", "grid_worker"}
#: 2 workers must not serve less than 1 (the client, the workers and PostgreSQL share the
#: machine's cores: more than x1 is a gain only where cores are left over).
RATIO_TARGET = 1.0
MIX = (("tile grids", 0.30), ("tile heat", 0.10), ("ogc items", 0.25), ("plan grids", 0.10),
       ("case inbox", 0.25))  # fmt: skip


def next_request(rng: random.Random, acc: Account, plan: int) -> tuple[str, str]:
    """(kind, path) of a user's next read."""
    kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
    if kind == "case inbox" and acc.role not in CASE_ROLES:
        kind = "ogc items"
    if kind in ("tile grids", "tile heat"):
        layer = "grids" if kind == "tile grids" else "heat"
        z = rng.randint(13 if layer == "grids" else 12, 16)
        x0, y0, x1, y1 = acc.area[z]
        return kind, f"/tiles/{layer}/{z}/{rng.randint(x0, x1)}/{rng.randint(y0, y1)}.mvt"
    if kind == "ogc items":
        coll = "cases" if acc.role in CASE_ROLES else "grids"
        return kind, f"/ogc/collections/{coll}/items?limit=50&offset={rng.randrange(5) * 50}"
    if kind == "plan grids":
        return kind, f"/api/plans/{plan}/grids"
    return kind, "/api/cases/inbox?limit=20"


async def _user(
    port: int, acc: Account, password: str, plan: int, seed: int, stats: Stats,
    start: asyncio.Event, until: list[float], think: float, ready: list[str],
) -> None:  # fmt: skip
    conn = Connection("127.0.0.1", port)
    try:
        answer = await _form(conn, "/api/auth/token", {"username": acc.username,
                                                       "password": password})  # fmt: skip
        ready.append(acc.username)
        if answer.status_code != 200:
            stats.add("signin", 0, False, f"{answer.status_code} {answer.text[:100]}")
            return
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        rng = random.Random(seed)
        await start.wait()
        await asyncio.sleep(rng.uniform(0, think))
        while time.monotonic() < until[0]:
            kind, path = next_request(rng, acc, plan)
            t = time.perf_counter()
            try:
                got = await conn.request("GET", path, headers=headers)
                ok = 200 <= got.status_code < 300 or got.status_code == 304
                what = f"{path} {got.status_code} {got.text[:100]}"
            except TransportError as exc:
                ok, what = False, f"{path} {exc}"
            stats.add(kind, time.perf_counter() - t, ok, what)
            await asyncio.sleep(rng.expovariate(1 / think) if think > 0 else 0)
    finally:
        await conn.close()


async def _form(conn: Connection, path: str, fields: dict[str, str]) -> Any:
    """POST a form body (loopclient sends JSON bodies only)."""
    form = urlencode(fields)
    raw = (
        f"POST {path} HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form.encode())}\r\n\r\n{form}"
    ).encode()
    return await conn._exchange(raw)


async def run(port: int, accs: list[Account], password: str, plan: int,
              args: argparse.Namespace) -> tuple[Stats, float]:  # fmt: skip
    stats = Stats()
    start = asyncio.Event()
    until = [float("inf")]
    ready: list[str] = []
    tasks = [
        asyncio.create_task(
            _user(port, a, password, plan, i, stats, start, until, args.think, ready)
        )
        for i, a in enumerate(accs)
    ]
    # sign-ins (Argon2) first; the load starts when they are all done
    deadline = time.monotonic() + args.signin_wait
    while len(ready) < len(accs) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    until[0] = time.monotonic() + args.seconds
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return stats, time.perf_counter() - t0


def middleware_cost(n: int) -> tuple[float, float]:
    """µs per request: an empty ASGI app alone, and inside :class:`api.routes.metrics.Observe`."""
    from api.routes.metrics import Observe
    from geogrid.ops.metrics import Metrics

    class Route:
        path = "/api/plans/{plan_id}"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = Route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    wrapped = Observe(app, metrics=Metrics())

    async def send(message: Any) -> None:
        return None

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": "/api/plans/7",
                "headers": [(b"host", b"x"), (b"accept", b"*/*"),
                            (b"authorization", b"Bearer x")]}  # fmt: skip

    async def loop(target: Any) -> float:
        t = time.perf_counter()
        for _ in range(n):
            await target(scope(), receive, send)
        return (time.perf_counter() - t) / n * 1e6

    async def both() -> tuple[float, float]:
        await loop(app)
        await loop(wrapped)  # warm
        bare = min([await loop(app) for _ in range(5)])
        observed = min([await loop(wrapped) for _ in range(5)])
        return bare, observed

    return asyncio.run(both())


def report(rows: list[tuple[int, Stats, float]]) -> None:
    kinds = [k for k, _ in MIX]
    head = "".join(f"  {f'{w} worker' + ('s' if w > 1 else ''):>26}" for w, _, _ in rows)
    print(f"\n{'':<14}{head}")
    print(f"{'':<14}" + "".join(f"  {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}" for _ in rows))
    for kind in [*kinds, "all"]:
        cells = []
        for _, stats, seconds in rows:
            lat = ([v for k in kinds for v in stats.lat.get(k, [])] if kind == "all"
                   else stats.lat.get(kind, []))  # fmt: skip
            cells.append(f"  {len(lat) / seconds:8.1f} {pct(lat, 0.5):8.1f} {pct(lat, 0.95):8.1f}")
        print(f"{kind:<14}" + "".join(cells))
    print(f"{'errors':<14}" + "".join(f"  {sum(s.errors.values()):>26}" for _, s, _ in rows))
    for _, stats, _ in rows:
        for sample in stats.samples:
            print("  error:", sample)
    print(f"\n{'target':<44} {'measured':>10}  verdict")
    for w, stats, _ in rows:
        errors = sum(stats.errors.values())
        print(f"{f'{w} worker(s): no failed request':<44} {errors:>10}  "
              f"{'PASS' if errors == 0 else 'FAIL'}")  # fmt: skip
    if len(rows) >= 2:
        base = sum(len(v) for v in rows[0][1].lat.values()) / rows[0][2]
        for w, stats, seconds in rows[1:]:
            rate = sum(len(v) for v in stats.lat.values()) / seconds
            ratio = rate / base
            print(
                f"{f'throughput {w} vs {rows[0][0]} worker(s) >= x{RATIO_TARGET:g}':<44} "
                f"{f'x{ratio:.2f}':>10}  {'PASS' if ratio >= RATIO_TARGET else 'FAIL'}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=40.0, help="load per worker count")
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    ap.add_argument("--think", type=float, default=0.25, help="mean pause between requests (s)")
    ap.add_argument("--cases", type=int, default=20_000, help="cases in the town (top-up)")
    ap.add_argument("--signin-wait", type=float, default=300.0,
                    help="longest wait for the sign-ins before the load starts")  # fmt: skip
    ap.add_argument("--reuse", action="store_true", help="keep the database built earlier")
    ap.add_argument("--middleware", type=int, default=20_000, metavar="N",
                    help="requests through the middleware alone (0: skip)")  # fmt: skip
    args = ap.parse_args()

    if args.middleware:
        bare, observed = middleware_cost(args.middleware)
        print(f"middleware: {observed - bare:.1f} µs per request "
              f"(empty app {bare:.1f} µs, with request id + metrics + access check "
              f"{observed:.1f} µs)")  # fmt: skip
    bench_access.HOME, bench_access.TOWN = HOME, CACHE / "workers-town"
    url = bench_access.start_cluster()
    try:
        if not (args.reuse and bench_access.loaded(url)):
            print(f"building the town: {args.cases:,} cases, {args.users} users")
            bench_access.load(url, args.cases, args.users)
        else:
            store.upgrade(url)
        engine = store.make_engine(url)
        with engine.connect() as conn:
            plan = conn.execute(
                text("SELECT id FROM plans WHERE status = 'active' ORDER BY id LIMIT 1")
            ).scalar_one()
        engine.dispose()
        password = set_password(url)
        accs = accounts(url)[: args.users]
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            proc, port = start_server(url, workers, home=HOME, log_path=SERVER_LOG,
                                      startup_s=300)  # fmt: skip
            try:
                stats, seconds = asyncio.run(run(port, accs, password, plan, args))
            finally:
                stop(proc)
            rows.append((workers, stats, seconds))
            print(f"{workers} worker(s): {sum(len(v) for v in stats.lat.values())} requests "
                  f"in {seconds:.0f} s")  # fmt: skip
        load_avg = os.getloadavg()
        print(f"\n{len(accs)} users, think {args.think} s, {args.seconds:.0f} s per run "
              "(client, server and PostgreSQL on this machine's cores; load average "
              f"{load_avg[0]:.1f}, {os.cpu_count()} cores)")  # fmt: skip
        report(rows)
    finally:
        PrivateCluster(Settings(home=HOME, database_url=None)).stop()


if __name__ == "__main__":
    main()
