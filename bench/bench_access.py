"""Benchmark: many signed-in users at once, and what scoping costs a query.

One command:

    .venv/bin/python bench/bench_access.py [--users 200] [--seconds 60] [--workers 2]

1. Data (built once, < 3 minutes, cached in ``bench/.cache/access-home``; ``--reuse`` keeps
   it): the sample town (seed 1, ~10k households, generated into
   ``bench/.cache/access-town``) loaded and partitioned as ``geogrid demo`` does it, its
   cases topped up to ``--cases`` with copies of the real ones moved by up to ~40 m
   (same village and grid, seeded dates in 2025), the heat pyramid built, and
   ``--users`` accounts created with :func:`geogrid.access.users.add_user` through the
   owner engine: town leaders, village leaders (one per village in turn),
   grid workers (one per grid in turn), planners and viewers.
2. Load: a real ``geogrid serve --workers N`` on a free 127.0.0.1 port. Each user signs
   in twice (``POST /login`` for a page session cookie, ``POST /api/auth/token`` for a
   bearer token; Argon2 checks, at most ``--signin-concurrency`` at a time), then for
   ``--seconds`` (and at most ``--max-requests`` requests) asks, in a seeded random mix
   its role may do: the leader and public pages, grid, case (z16, within its scope) and
   heat tiles over its own area with the session cookie, and pages of OGC API items
   (cases for case roles, grids for others) with the bearer token, pausing
   ``--think`` seconds on average between requests. One ``httpx.AsyncClient`` with at
   most ``--connections`` connections, to 127.0.0.1 only. Any answer other than
   2xx/304, and any transport error, is an error (a GET on a kept-alive connection the
   server had just closed is retried once, as browsers do, and counted as retried).
3. Scoped vs unscoped, in this process on one serving connection, interleaved (A B B A
   …) so drift hits both alike: the OGC cases items page of a town-scoped user vs the
   same query without the prefix clause (:func:`geogrid.features.items_page`), the z16
   cases tile with and without the scope (:func:`tiles.layers.tile_query`), and the
   people list (:func:`geogrid.people.service.list_members`: the web role under
   row-level security with the scope bound in SQL vs the owner, whose role bypasses
   RLS, with scope ``all``). Target: scoped / unscoped p50 <= 1.10. Measured twice:
   with the schema at revision 0008 (migration 0009's scope indexes dropped by a
   downgrade; ``--no-before`` skips this) and again at head.

The client, the server's workers and PostgreSQL share the machine's cores: latencies are
those of a saturated 2-core box when the think time is short, and req/s is what the whole
machine sustains, the client included (httpx spends ~0.5 ms of CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tiles import stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
TOWN = CACHE / "access-town"
HOME = CACHE / "access-home"
DB = "bench_access"
PREFIX = "bench-"
SERVER_LOG = CACHE / "access-server.log"
#: The schema revision before the scope indexes (part (b) measures before and after).
BEFORE = "0008"
#: Role mix of the simulated users (fractions of ``--users``).
MIX = (("town_leader", 0.10), ("village_leader", 0.25), ("grid_worker", 0.45),
       ("planner", 0.10), ("viewer", 0.10))  # fmt: skip
WINDOWS = ("", "?from=2025-04-01&to=2025-06-30", "?from=2025-07-01&to=2025-09-30")


# --------------------------------------------------------------------------- data


def start_cluster() -> str:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    os.environ["GEOGRID_HOME"] = str(HOME)  # the data key of the people import lives here
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    return cluster.url().rsplit("/", 1)[0] + "/" + DB


def _admin(url: str) -> str:
    return url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"


def loaded(url: str) -> bool:
    try:
        e = store.make_engine(url)
        with e.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM users WHERE username LIKE 'bench-%'"))
            ok = n.scalar_one() > 0
        e.dispose()
        return bool(ok)
    except Exception:  # no database yet, or an older schema: load afresh
        return False


def load(url: str, n_cases: int, n_users: int) -> None:
    import psycopg

    from geogrid.cli.demo import ensure_active_plan, load_town
    from tiles import heat

    t_all = time.perf_counter()
    if not (TOWN / "cases.csv").exists():
        from geogrid.sample import generate_town

        print(f"generating the sample town into {TOWN}")
        generate_town(seed=1, out=TOWN)
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    store.upgrade(url)
    engine = store.make_engine(url)
    try:
        t = time.perf_counter()
        load_town(engine, TOWN)
        print(f"  sample town loaded in {time.perf_counter() - t:.0f} s")
        with engine.connect() as conn:
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
        t = time.perf_counter()
        ensure_active_plan(engine, town, None)
        print(f"  partitioned in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        top_up_cases(engine, n_cases)
        print(f"  cases topped up to {n_cases:,} in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        with engine.begin() as conn:
            heat.refresh_heat(conn, full=True)
        print(f"  heat pyramid in {time.perf_counter() - t:.0f} s")
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        t = time.perf_counter()
        make_users(engine, town, n_users)
        print(f"  {n_users} users created in {time.perf_counter() - t:.0f} s")
    finally:
        engine.dispose()
    print(f"data built in {time.perf_counter() - t_all:.0f} s")


def top_up_cases(engine: Engine, n_total: int) -> None:
    """Synthetic cases copied from the real ones: the point moved by up to ~40 m, a seeded
    date in 2025, the same village and grid (SQL: seconds, where the importer takes minutes).
    """
    with engine.begin() as conn:
        real = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
        conn.execute(text("SELECT setseed(0.11)"))
        conn.execute(
            text("""
            INSERT INTO cases (case_no, category, status, reported_at, geom, village_code,
                               grid_code, description)
            SELECT 'S' || lpad(n::text, 8, '0'), c.category, c.status,
                   timestamptz '2025-01-01 00:00+08' + random() * interval '365 days',
                   ST_SetSRID(ST_MakePoint(ST_X(c.geom) + (random() - 0.5) * 0.0008,
                                           ST_Y(c.geom) + (random() - 0.5) * 0.0008), 4326),
                   c.village_code, c.grid_code, c.description
            FROM generate_series(1, :extra) n
            JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS k, * FROM cases) c
              ON c.k = n % :real
            """),
            {"extra": max(0, n_total - real), "real": real},
        )


def make_users(engine: Engine, town: str, n: int) -> None:
    """``n`` accounts in the role mix, each with its own scope; one shared password
    (set per run by :func:`set_password`: the bench does not keep passwords on disk)."""
    from geogrid.access import users
    from geogrid.access.scope import Scope

    with engine.begin() as conn:
        villages = list(
            conn.execute(
                text("SELECT code FROM admin_areas WHERE parent_code = :t ORDER BY code"),
                {"t": town},
            ).scalars()
        )
        grids = list(
            conn.execute(
                text(
                    "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                    "WHERE p.status = 'active' AND g.level = 3 ORDER BY g.code"
                )
            ).scalars()
        )
        scopes = {"town_leader": [town], "planner": [town], "viewer": [town],
                  "village_leader": villages, "grid_worker": grids}  # fmt: skip
        k = 0
        for role, share in MIX:
            for i in range(max(1, round(n * share))):
                if k >= n:
                    break
                code = scopes[role][i % len(scopes[role])]
                users.add_user(
                    conn, username=f"{PREFIX}{role.replace('_', '-')}-{i:03d}", role=role,
                    scope=Scope.parse(code), password="Bench-unused-1x",
                    must_change_password=False,
                )  # fmt: skip
                k += 1


def set_password(url: str) -> str:
    """A fresh generated password for every bench account (one Argon2 hash)."""
    from geogrid.access.passwords import generate_password, hash_password

    password = generate_password()
    engine = store.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE users SET password_hash = :h, failed_logins = 0, locked_until = NULL "
                "WHERE username LIKE 'bench-%'"
            ),
            {"h": hash_password(password)},
        )
    engine.dispose()
    return password


# --------------------------------------------------------------------------- users


@dataclass
class Account:
    username: str
    role: str
    scope: str
    #: tiles (z, x0, y0, x1, y1) covering the account's area, per zoom
    area: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    cookie: str = ""
    token: str = ""


def tile_range(x0: float, y0: float, x1: float, y1: float, z: int) -> tuple[int, int, int, int]:
    from tiles.layers import lonlat_to_tile

    a = lonlat_to_tile(x0, y1, z)
    b = lonlat_to_tile(x1, y0, z)
    return a[0], a[1], b[0], b[1]


def accounts(url: str) -> list[Account]:
    """Every bench account with the tile ranges of its scope's area."""
    engine = store.make_engine(url)
    out = []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT username, role, scope_code FROM users WHERE username LIKE 'bench-%' "
                "ORDER BY username"
            )
        ).all()
        boxes: dict[str, tuple[float, float, float, float]] = {}
        for code in {r.scope_code for r in rows}:
            box = conn.execute(
                text(
                    "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
                    "coalesce((SELECT ST_Extent(g.geom) FROM grids g JOIN plans p ON "
                    "p.id = g.plan_id WHERE p.status = 'active' AND g.code = :c), "
                    "(SELECT ST_Extent(geom) FROM admin_areas WHERE code = :c)) e) q"
                ),
                {"c": code},
            ).one()
            boxes[code] = tuple(float(v) for v in box)  # type: ignore[assignment]
    engine.dispose()
    for r in rows:
        acc = Account(r.username, r.role, r.scope_code)
        acc.area = {z: tile_range(*boxes[r.scope_code], z) for z in range(12, 17)}
        out.append(acc)
    # roles interleaved in the mix's proportions, so that the first n keep the mix
    share = dict(MIX)
    seen: dict[str, int] = defaultdict(int)

    def rank(a: Account) -> float:
        seen[a.role] += 1
        return seen[a.role] / share[a.role]

    return sorted(out, key=rank)


def _tile(rng: random.Random, acc: Account, z: int) -> str:
    x0, y0, x1, y1 = acc.area[z]
    return f"{z}/{rng.randint(x0, x1)}/{rng.randint(y0, y1)}.mvt"


CASE_ROLES = {"town_leader", "village_leader", "grid_worker"}
LEADER_PAGE = {"town_leader", "village_leader", "planner", "viewer"}


def next_request(rng: random.Random, acc: Account) -> tuple[str, str, bool]:
    """(kind, path, with the bearer token) of a user's next request, as its role may."""
    choices: list[tuple[str, float]] = [("page /public", 0.03), ("tile grids", 0.25),
                                        ("tile heat", 0.25), ("ogc items", 0.12)]  # fmt: skip
    if acc.role in LEADER_PAGE:
        choices.append(("page /leader", 0.05))
    if acc.role in CASE_ROLES:
        choices.append(("tile cases z16", 0.30))
    kind = rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
    if kind == "page /public":
        return kind, "/public", False
    if kind == "page /leader":
        return kind, "/leader", False
    if kind == "tile grids":
        return kind, "/tiles/grids/" + _tile(rng, acc, rng.randint(13, 16)), False
    if kind == "tile heat":
        z = rng.randint(12, 16)
        return kind, "/tiles/heat/" + _tile(rng, acc, z) + rng.choice(WINDOWS), False
    if kind == "tile cases z16":
        return kind, "/tiles/cases/" + _tile(rng, acc, 16) + rng.choice(WINDOWS), False
    coll = "cases" if acc.role in CASE_ROLES else "grids"
    offset = rng.randrange(0, 5) * 50
    return f"ogc {coll}", f"/ogc/collections/{coll}/items?limit=50&offset={offset}", True


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    url: str,
    workers: int,
    *,
    home: Path = HOME,
    log_path: Path = SERVER_LOG,
    startup_s: float = 90,
) -> tuple[subprocess.Popen[bytes], int]:
    """``geogrid serve`` on a free loopback port, once ``/health`` answers (other benches
    pass their own home, log file and start-up allowance)."""
    port = free_port()
    env = {**os.environ, "GEOGRID_HOME": str(home), "GEOGRID_DATABASE_URL": url,
           "GEOGRID_PORT": str(port), "GEOGRID_LOG_LEVEL": "WARNING"}  # fmt: skip
    cmd = [sys.executable, "-m", "geogrid", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]  # fmt: skip
    log = log_path.open("wb")  # read on failure; a pipe nobody reads could block it
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(log_path.read_text()[-3000:] or "the server died")
        time.sleep(0.3)
    stop(proc)
    raise SystemExit(f"the server did not start within {startup_s:.0f} s")


# --------------------------------------------------------------------------- load


@dataclass
class Stats:
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)

    def add(self, kind: str, seconds: float, ok: bool, what: str = "") -> None:
        self.lat[kind].append(seconds)
        if not ok:
            self.errors[kind] += 1
            if len(self.samples) < 5:
                self.samples.append(f"{kind}: {what}")


async def _send(
    client: httpx.AsyncClient, stats: Stats, kind: str, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    t = time.perf_counter()
    try:
        try:
            r = await client.request(method, path, **kw)
        except httpx.RemoteProtocolError:
            if method != "GET":
                raise
            # the server closed a kept-alive connection as it was reused (its keep-alive
            # timeout): browsers retry an idempotent request once, and so does this client
            stats.retries[kind] += 1
            r = await client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        stats.add(kind, time.perf_counter() - t, False, f"{path} {type(exc).__name__}")
        return None
    ok = 200 <= r.status_code < 300 or r.status_code == 304
    if kind == "signin page":
        ok = r.status_code == 303 and "gg_session" in r.cookies
    stats.add(kind, time.perf_counter() - t, ok, f"{path} {r.status_code} {r.text[:120]}")
    return r


async def sign_in(
    client: httpx.AsyncClient, stats: Stats, acc: Account, password: str, gate: asyncio.Semaphore
) -> None:
    form = {"username": acc.username, "password": password}
    async with gate:
        r = await _send(client, stats, "signin page", "POST", "/login",
                        data={**form, "next": "/public"})  # fmt: skip
        if r is not None:
            acc.cookie = r.cookies.get("gg_session") or ""
        r = await _send(client, stats, "signin token", "POST", "/api/auth/token", data=form)
        if r is not None and r.status_code == 200:
            acc.token = r.json()["access_token"]


async def user_loop(
    client: httpx.AsyncClient, stats: Stats, acc: Account, seed: int, until: float,
    max_requests: int, think: float,
) -> None:  # fmt: skip
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, think))  # users do not all start in the same ms
    for _ in range(max_requests):
        if time.monotonic() >= until:
            return
        kind, path, bearer = next_request(rng, acc)
        headers = ({"Authorization": f"Bearer {acc.token}"} if bearer
                   else {"Cookie": f"gg_session={acc.cookie}"})  # fmt: skip
        await _send(client, stats, kind, "GET", path, headers=headers)
        await asyncio.sleep(rng.expovariate(1 / think) if think > 0 else 0)


async def run_load(
    port: int, accs: list[Account], password: str, args: argparse.Namespace
) -> tuple[Stats, float, float]:
    stats = Stats()
    limits = httpx.Limits(max_connections=args.connections,
                          max_keepalive_connections=args.connections)  # fmt: skip
    timeout = httpx.Timeout(60.0, pool=120.0)
    # the client keeps no cookies: each user's session goes in its own Cookie header
    # (a shared jar would send one user's session with another's request)
    jar = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=timeout, follow_redirects=False,
                                 cookies=jar) as client:  # fmt: skip
        gate = asyncio.Semaphore(args.signin_concurrency)
        t0 = time.perf_counter()
        await asyncio.gather(*(sign_in(client, stats, a, password, gate) for a in accs))
        signin_s = time.perf_counter() - t0
        until = time.monotonic() + args.seconds
        t0 = time.perf_counter()
        await asyncio.gather(
            *(user_loop(client, stats, a, i, until, args.max_requests, args.think)
              for i, a in enumerate(accs))
        )  # fmt: skip
        load_s = time.perf_counter() - t0
    return stats, signin_s, load_s


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def print_load(stats: Stats, signin_s: float, load_s: float, args: argparse.Namespace) -> None:
    print(f"\n(a) {len(stats.lat['signin token'])} users, {args.workers} workers, "
          f"think {args.think} s, {args.connections} connections; sign-in phase "
          f"{signin_s:.1f} s, load phase {load_s:.1f} s; machine load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'kind':16} {'requests':>8} {'errors':>6} {'retried':>7} {'req/s':>7} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")  # fmt: skip
    total = errors = 0
    for kind in sorted(stats.lat, key=lambda k: (not k.startswith("signin"), k)):
        lat = stats.lat[kind]
        span = signin_s if kind.startswith("signin") else load_s
        total += 0 if kind.startswith("signin") else len(lat)
        errors += stats.errors[kind]
        print(f"{kind:16} {len(lat):8d} {stats.errors[kind]:6d} {stats.retries[kind]:7d} "
              f"{len(lat) / span:7.1f} "
              f"{pct(lat, 0.5):8.1f} {pct(lat, 0.95):8.1f} {pct(lat, 0.99):8.1f}")  # fmt: skip
    every = [v for k, lat in stats.lat.items() if not k.startswith("signin") for v in lat]
    print(f"{'all (load)':16} {total:8d} {errors:6d} {sum(stats.retries.values()):7d} "
          f"{total / load_s:7.1f} "
          f"{pct(every, 0.5):8.1f} {pct(every, 0.95):8.1f} {pct(every, 0.99):8.1f}")  # fmt: skip
    for s in stats.samples:
        print("  error:", s)


# --------------------------------------------------------------------------- scoped


def interleaved(
    a: Callable[[], Any], b: Callable[[], Any], reps: int, same: Callable[[Any], Any]
) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately (A B B A …) after a warm-up of each, in which
    their answers must agree (``same`` of each: a town's scope holds every row here)."""
    for _ in range(3):
        if same(a()) != same(b()):
            raise SystemExit("scoped and unscoped answers differ: not the same query")
    ta: list[float] = []
    tb: list[float] = []
    for i in range(reps):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return ta, tb


def _matched(body: bytes) -> tuple[int, list[Any]]:
    doc = json.loads(body)
    return doc["numberMatched"], doc["features"]


def _features(tiles: list[bytes]) -> list[list[str]]:
    """The decoded features of each tile, in a stable order (plans may order rows apart)."""
    import mapbox_vector_tile

    out = []
    for body in tiles:
        layers = mapbox_vector_tile.decode(body) if body else {}
        feats = layers.get("cases", {}).get("features", [])
        out.append(sorted(json.dumps(f, sort_keys=True) for f in feats))
    return out


def _rolled_back(conn: Connection, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        try:
            return fn()
        finally:
            conn.rollback()

    return run


def scoped_vs_unscoped(url: str, reps: int) -> list[tuple[str, list[float], list[float]]]:
    from geogrid import features
    from geogrid.access import rls
    from geogrid.access.policy import Principal, Role
    from geogrid.access.scope import Scope
    from geogrid.people.service import list_members
    from tiles.layers import LAYERS, tile_query
    from tiles.params import TileParams

    web_role = Settings().web_role or None
    web = store.make_serving_engine(url, pool_size=2, role=web_role)
    owner = store.make_serving_engine(url, pool_size=2)
    out = []
    try:
        with owner.connect() as conn:
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
            hot = conn.execute(
                text("SELECT ST_X(geom), ST_Y(geom) FROM cases ORDER BY md5(case_no) LIMIT 8")
            ).all()
        prefix = Scope.parse(town).prefix
        coll = features.get_collection("cases")
        query = features.parse_items_query(coll, [("limit", "50")])
        deep = features.parse_items_query(coll, [("limit", "50"), ("offset", "5000")])
        layer = LAYERS["cases"]
        from tiles.layers import lonlat_to_tile

        tiles = sorted({lonlat_to_tile(x, y, 16) for x, y in hot})
        with web.connect() as conn:
            for label, q in (("OGC cases page 1", query), ("OGC cases offset 5000", deep)):

                def page(p: str | None, q: Any = q, conn: Connection = conn) -> Callable[[], Any]:
                    return _rolled_back(conn, lambda: features.items_page(
                        conn, coll, q, base="http://x/ogc", scope_prefix=p))  # fmt: skip

                out.append((label, *interleaved(page(prefix), page(None), reps, _matched)))

            def tile(scope: str, conn: Connection = conn) -> Callable[[], Any]:
                def run() -> list[bytes]:
                    bodies = []
                    for x, y in tiles:
                        sql, values = tile_query(layer, 16, x, y, TileParams(scope=scope))
                        bodies.append(bytes(conn.execute(text(sql), values).scalar_one()))
                    return bodies

                return _rolled_back(conn, run)

            out.append((f"cases tile z16 (x{len(tiles)})",
                        *interleaved(tile(prefix), tile(""), reps, _features)))  # fmt: skip
        scoped = Principal(0, "bench", Role.town_leader, Scope.parse(town))
        everyone = Principal(0, "bench", Role.town_leader, Scope("all"))
        with web.connect() as wconn, owner.connect() as oconn:

            def people_rls() -> object:
                rls.apply(wconn, scoped)
                return list_members(wconn, principal=scoped, limit=50)

            def people_all() -> object:
                rls.apply(wconn, everyone)
                return list_members(wconn, principal=everyone, limit=50)

            # the same request of a user whose scope is everything: the web role, RLS and
            # all, so the ratio is what the scope itself costs
            out.append(("people list, web role", *interleaved(
                _rolled_back(wconn, people_rls),
                _rolled_back(wconn, people_all),
                reps, lambda r: ([m.id for m in r[0]], r[1]))))  # fmt: skip
            # against the owner, who bypasses row-level security: the second wall's own cost
            out.append(("people list vs owner", *interleaved(
                _rolled_back(wconn, people_rls),
                _rolled_back(oconn, lambda: list_members(oconn, principal=everyone, limit=50)),
                reps, lambda r: ([m.id for m in r[0]], r[1]))))  # fmt: skip
    finally:
        web.dispose()
        owner.dispose()
    return out


def print_scoped(rows: list[tuple[str, list[float], list[float]]], reps: int, state: str) -> None:
    print(f"\n(b) scoped (town) vs unscoped, {state}; same connection, {reps} interleaved "
          "runs each")  # fmt: skip
    print(f"{'query':24} {'scoped p50':>11} {'unscoped p50':>13} {'ratio':>6} "
          f"{'scoped p95':>11} {'unscoped p95':>13}")  # fmt: skip
    for label, a, b in rows:
        ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
        flag = "" if ma / mb <= 1.10 else "  > 1.10"
        print(f"{label:24} {ma:11.2f} {mb:13.2f} {ma / mb:6.2f} {pct(a, 0.95):11.2f} "
              f"{pct(b, 0.95):13.2f}{flag}")  # fmt: skip


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    ap.add_argument("--max-requests", type=int, default=2000, help="per user, at most")
    ap.add_argument("--think", type=float, default=0.5, help="mean pause between requests (s)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64, help="client connection limit")
    ap.add_argument("--signin-concurrency", type=int, default=8)
    ap.add_argument("--cases", type=int, default=100_000, help="cases in the town (top-up)")
    ap.add_argument("--reps", type=int, default=200, help="runs per query in part (b)")
    ap.add_argument("--reuse", action="store_true", help="keep the database built earlier")
    ap.add_argument("--skip-load", action="store_true", help="part (b) only")
    ap.add_argument("--skip-scoped", action="store_true", help="part (a) only")
    ap.add_argument(
        "--before",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"part (b) also at revision {BEFORE} (without the scope indexes)",
    )
    args = ap.parse_args()

    url = start_cluster()
    if not (args.reuse and loaded(url)):
        print(f"building {DB}: sample town, {args.cases:,} cases, {args.users} users")
        load(url, args.cases, args.users)
    else:
        store.upgrade(url)  # a database built by an older checkout gets new migrations
    e = store.make_engine(url)
    with e.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("households", "household_members", "grids", "cases")}  # fmt: skip
    e.dispose()
    print("data:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if not args.skip_load:
        password = set_password(url)
        accs = accounts(url)[: args.users]
        proc, port = start_server(url, args.workers)
        try:
            stats, signin_s, load_s = asyncio.run(run_load(port, accs, password, args))
        finally:
            stop(proc)
        print_load(stats, signin_s, load_s, args)
    if not args.skip_scoped:
        if args.before:
            # the same queries without migration 0009's scope indexes, then with them
            store.downgrade(url, BEFORE)
            try:
                rows = scoped_vs_unscoped(url, args.reps)
            finally:
                store.upgrade(url)
            print_scoped(rows, args.reps, f"before: schema at {BEFORE}, no scope indexes")
        print_scoped(scoped_vs_unscoped(url, args.reps), args.reps, "schema at head")


if __name__ == "__main__":
    main()
