"""Benchmark: the case workflow (采集上报 … 结案归档) under load, on 1,000,000 historical cases.

One command:

    .venv/bin/python bench/bench_cases.py [--cases 1000000] [--clients 10,50] [--seconds 30]

1. Data (built once, cached in ``bench/.cache/cases-home``; ``--reuse`` keeps it): the
   sample town (seed 1, ~10k households, in ``bench/.cache/cases-town``) loaded and
   partitioned as ``geogrid demo`` does it, then ``--cases`` historical cases (2025–2026,
   most closed or archived, some still open and overdue) loaded through the cases
   importer's bulk path with their event histories, and the accounts: one grid worker per
   grid of the active plan and a few town leaders (the service centre).
2. Load: a real ``geogrid serve --workers N`` (uvicorn) on a free 127.0.0.1 port; every
   account signs in (``POST /api/auth/token``, bearer tokens). Then, for each concurrency
   level of ``--clients``, that many clients in closed loop for ``--seconds``: each takes
   a grid (its grid worker) and a town leader and runs cases through the whole workflow
   over HTTP — create (grid worker, a point in its grid), accept, register, dispatch,
   start, handle, check_pass, evaluate, close, archive (each with ``If-Match`` from the
   previous answer, asking for the brief answer: ``Prefer: return=minimal``) — and after
   each case reads it back in full; after every ``--lists-every``-th
   case (default 5, i.e. once per ~45 transitions) the town leader's inbox and the town's
   overdue list. Any answer other than 2xx, and any transport error, is an error. Each
   client has its own kept-alive connection (:mod:`loopclient`, a plain HTTP/1.1 client
   light on CPU: the client shares the cores with the server). Commits are durable during
   the load (``fsync`` and ``synchronous_commit`` on, as ``geogrid serve`` runs by
   default; the bulk build runs without them).
3. Quiet: the town's inbox and overdue list read one at a time (``--reps`` each).

Prints requests/s, p50 and p95 per request kind and level, and each target with its
verdict: p95 < 50 ms at 10 clients and < 150 ms at 50, >= 300 transitions/s, a town's
inbox or overdue list < 50 ms (p95, quiet). The client, the server's workers and PostgreSQL
share the machine's cores (and, on a shared machine, with whatever else runs). It also
prints the CPU time each level cost per request — this process (the client), the server's
process tree, the cluster's process tree — and the transitions/s the machine's cores could
carry at that cost: a figure other load barely moves (busy neighbours inflate latencies and
rates, not the CPU a request takes). The private cluster is stopped at the end (its data
stays for ``--reuse``).

A level's clients join one by one over ``--ramp`` seconds (default 2; not measured), as
load tools ramp users up; then ``--seconds`` are measured (requests that start in that
window, and the CPU each part spends in it). Started in the same instant, closed-loop
clients stay in step for the whole level: all 50 report at once (a report is ~2.5 times
a transition's work), then all transition, and the reports' p95 doubles.

History (``--reuse --clients 10,50 --seconds 30 --reps 20`` unless said):

* 2026-11-30: the cached database had been *stamped* past migrations it never ran (no
  partitions of ``case_events``, no key-unit, visit or assessment tables); ``loaded`` now
  rebuilds such a database (~10 minutes). On the genuine schema: 199 transitions/s at 10
  clients (p95 72 ms), 170/s at 50 (p95 483 ms); after that session's changes (turns,
  0032's shards and first-event facts, the duplicate search, driver statements, cached
  token checks) 228/s (p95 66 ms) and 243/s (p95 294 ms), CPU 6.5 ms per request.
* 2026-12-01 (lead), the same code first measured on a quieter machine: 344 transitions/s
  at 10 clients (p95 41 ms), 366/s at 50 (p95 182 ms), CPU 4.2 ms per request (server
  2.0, PostgreSQL 2.1): the machine's neighbours had cost a third. Then, each measured:
  - kept-alive connections spread over the workers (``api/balance.py``): one worker had
    33 of 50 connections, its clients a mean of 135 ms against 72 ms on the other;
  - the cases layer's version shards claimed per connection (0033): the bump waited
    0.23 ms on a shared shard, 10 % of PostgreSQL's time on the workflow's statements;
  - this ramp-up (before it: p95 162-178 ms at 50 clients, with it 154-162 ms);
  - the lanes (``api/routes/cases_lane.py``): a bearer-token transition or read of one
    case in one worker thread instead of two hops and FastAPI's dependencies: web server
    2.1 -> 1.7 ms of CPU per request, p95 at 50 clients 144 ms;
  - four request turns per process instead of six (p95 134 against 144 ms);
  - the workflow's transactions on generic plans (``force_generic_plan``: with ``auto``
    PostgreSQL planned the case's detail on every call, 2.1 ms for 0.5 ms of running).
  Result (03:50 UTC): **389 transitions/s at 10 clients (p95 of every request 41 ms),
  389/s at 50 (p95 133 ms)**, town inbox / overdue list p95 11 / 7 ms quiet; CPU per
  request 3.9 ms (client 0.1, server 1.6, PostgreSQL 2.1). Every target met; without the
  ramp-up (``--ramp 0``) the 50-client p95 is 162 ms (reports p95 216 ms), the rest met.
* Where the rest goes (``pg_stat_statements``, ``perf``, py-spy at 50 clients): the
  event-and-row statement ~1.1 ms in PostgreSQL, a third of it the assessment facts
  trigger; the town inbox 15 ms under load (it counts ~5,000 waiting cases); the web
  server's handing of requests to threads (``threading.Condition.notify`` is 13 % of the
  time the processes hold the GIL); every case update touches 13 indexes (no update of a
  case is HOT: its status is indexed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_access import Stats, _admin, _send, pct, set_password, start_server
from bench_tiles import stop
from loopclient import Connection, TransportError

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TOWN = CACHE / "cases-town"
HOME = CACHE / "cases-home"
DB = "bench_cases"
SERVER_LOG = CACHE / "cases-server.log"
#: bench_access.set_password resets the accounts named so
PREFIX = "bench-"
TOWN_LEADERS = 5
#: How long the server may take to start (each worker imports the application).
STARTUP_S = 300

#: The workflow a bench case goes through: (action, who, extra body fields).
LIFECYCLE: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("accept", "grid", {}),
    ("register", "centre", {}),
    ("dispatch", "centre", {}),
    ("start", "grid", {}),
    ("handle", "grid", {"note": "已处置"}),
    ("check_pass", "centre", {}),
    ("evaluate", "centre", {"rating": "satisfied"}),
    ("close", "centre", {}),
    ("archive", "centre", {}),
)
#: Transitions ask for the brief answer (state, ETag, next actions): a client working a
#: case through reads it in full once, after the last step.
BRIEF = {"Prefer": "return=minimal"}
CATEGORIES = ("0101", "0201", "0301", "0401", "0601", "0901")
#: (kind, level or None for every level, p95 limit in ms)
P95_TARGETS = {10: 50.0, 50: 150.0}
TRANSITIONS_PER_S = 300.0
LIST_P95_MS = 50.0


# --------------------------------------------------------------------------- data


def start_cluster() -> tuple[PrivateCluster, str]:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    os.environ["GEOGRID_HOME"] = str(HOME)
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    return cluster, cluster.url().rsplit("/", 1)[0] + "/" + DB


#: What the load runs with: every commit flushed to disk, as ``geogrid serve`` runs by
#: default (the cluster was made without it, for the bulk load; ALTER SYSTEM wins).
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def durability(url: str, on: bool) -> dict[str, str]:
    """Turn durable commits on (the load) or off (the bulk build); the settings now."""
    import psycopg

    with psycopg.connect(_admin(url), autocommit=True) as conn:
        for name, value in DURABLE.items():
            conn.execute(f"ALTER SYSTEM SET {name} = {value if on else 'off'}")
        conn.execute("SELECT pg_reload_conf()")
        if on:
            conn.execute("CHECKPOINT")  # what the bulk build left in memory, on disk
        time.sleep(0.5)  # the reload reaches every process
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in DURABLE
        }


def loaded(url: str, n_cases: int) -> bool:
    """Is the database built, with every table the models declare? A database stamped
    past migrations it never ran (an upgrade while a migration was an empty stub) measures
    another schema: it is built afresh."""
    from sqlalchemy import inspect

    from geogrid.models import Base

    try:
        store.upgrade(url)
        e = store.make_engine(url)
        with e.connect() as conn:
            users = conn.execute(
                text("SELECT count(*) FROM users WHERE username LIKE 'bench-%'")
            ).scalar_one()
            cases = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
            missing = set(Base.metadata.tables) - set(inspect(conn).get_table_names())
        e.dispose()
    except Exception:  # no database yet, or an older schema: load afresh
        return False
    if missing:
        print(f"{DB} lacks tables its migrations make ({', '.join(sorted(missing)[:5])}...): "
              "building it afresh")  # fmt: skip
    return bool(users) and cases >= n_cases and not missing


def load(url: str, n_cases: int) -> None:
    import psycopg

    from geogrid.cli.demo import ensure_active_plan, load_town

    t_all = time.perf_counter()
    durability(url, False)
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
        town = town_code(engine)
        t = time.perf_counter()
        ensure_active_plan(engine, town, None)
        print(f"  partitioned in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        load_history(engine, n_cases)
        print(f"  {n_cases:,} historical cases in {time.perf_counter() - t:.0f} s")
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        make_users(engine, town)
    finally:
        engine.dispose()
    print(f"data built in {time.perf_counter() - t_all:.0f} s")


def town_code(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
        )


def load_history(engine: Engine, n_cases: int) -> None:
    """Top the town's cases up to ``n_cases`` and give every one its event history through
    the importer's bulk path (:func:`geogrid.cases.history.synthesise`, set-based).

    The new cases are copies of the sample town's (point moved by up to ~40 m, same
    village and grid), reported at a seeded time from 2025-01-01 to yesterday, with a status
    by age: older than 30 days archived, closed, rejected or voided but for 0.3 % still open
    (hence overdue); 3 to 30 days old 90 % finished; the last 3 days spread over the
    workflow.
    """
    from geogrid.cases.history import synthesise

    with engine.begin() as conn:
        real = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
        extra = max(0, n_cases - real)
        conn.execute(text("SELECT setseed(0.12)"))
        conn.execute(
            text("""
            INSERT INTO cases (case_no, category, category_code, status, source, reported_at,
                               geom, village_code, grid_code, current_grid_code, description)
            SELECT 'H' || lpad(n::text, 8, '0'), c.category, c.category_code,
                   CASE
                     WHEN r.at < now() - interval '30 days' THEN
                       CASE WHEN u < 0.030 THEN 'rejected' WHEN u < 0.050 THEN 'voided'
                            WHEN u < 0.900 THEN 'archived' WHEN u < 0.997 THEN 'closed'
                            ELSE (ARRAY['registered', 'dispatched', 'in_progress',
                                        'handled', 'suspended'])[1 + (u2 * 5)::int % 5] END
                     WHEN r.at < now() - interval '3 days' AND u < 0.9 THEN
                       (ARRAY['closed', 'archived', 'rejected'])[1 + (u2 * 3)::int % 3]
                     ELSE (ARRAY['reported', 'accepted', 'registered', 'dispatched',
                                 'in_progress', 'in_progress', 'handled', 'checked',
                                 'evaluated', 'closed'])[1 + (u2 * 10)::int % 10]
                   END,
                   'import', r.at,
                   ST_SetSRID(ST_MakePoint(ST_X(c.geom) + (u2 - 0.5) * 0.0008,
                                           ST_Y(c.geom) + (u - 0.5) * 0.0008), 4326),
                   c.village_code, c.grid_code, c.current_grid_code, c.description
            FROM (SELECT n, random() AS u, random() AS u2,
                         timestamptz '2025-01-01 00:00+08'
                           + random() * (now() - interval '1 day' - '2025-01-01 00:00+08')
                           AS at
                  FROM generate_series(1, :extra) n) r
            JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS k, * FROM cases) c
              ON c.k = r.n % :real
            """),
            {"extra": extra, "real": real},
        )
        if extra:
            synthesise(conn, "SELECT id FROM cases")  # skips cases with a history


def make_users(engine: Engine, town: str) -> None:
    """One grid worker per grid of the active plan and :data:`TOWN_LEADERS` town leaders
    (passwords set per run by :func:`bench_access.set_password`)."""
    from geogrid.access import users
    from geogrid.access.scope import Scope

    with engine.begin() as conn:
        grids = conn.execute(
            text(
                "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                "WHERE p.status = 'active' AND g.level = 3 ORDER BY g.code"
            )
        ).scalars()
        accounts = [("grid_worker", code) for code in grids]
        accounts += [("town_leader", town)] * TOWN_LEADERS
        for i, (role, code) in enumerate(accounts):
            users.add_user(
                conn, username=f"{PREFIX}{role.replace('_', '-')}-{i:03d}", role=role,
                scope=Scope.parse(code), password="Bench-unused-1x", must_change_password=False,
            )  # fmt: skip


# --------------------------------------------------------------------------- accounts


@dataclass
class Team:
    """What one client works with: a grid, its grid worker, a town leader."""

    grid: str
    points: list[tuple[float, float]]
    grid_headers: dict[str, str] = field(default_factory=dict)
    centre_headers: dict[str, str] = field(default_factory=dict)


def teams(url: str) -> tuple[list[tuple[str, str]], dict[str, list[tuple[float, float]]]]:
    """(username, scope) of every bench account, and household points per grid."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            accounts = [
                (r.username, r.scope_code)
                for r in conn.execute(
                    text(
                        "SELECT username, scope_code FROM users WHERE username LIKE 'bench-%' "
                        "ORDER BY username"
                    )
                )
            ]
            points: dict[str, list[tuple[float, float]]] = {}
            # households strictly inside a grid of the active plan (not on a border)
            for r in conn.execute(
                text(
                    "SELECT g.code, ST_X(h.geom) AS x, ST_Y(h.geom) AS y FROM households h "
                    "JOIN grids g ON ST_Contains(g.geom, h.geom) "
                    "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' AND g.level = 3 "
                    "ORDER BY h.id"
                )
            ):
                points.setdefault(r.code, []).append((r.x, r.y))
    finally:
        engine.dispose()
    return accounts, points


async def sign_in_all(
    client: httpx.AsyncClient, stats: Stats, names: list[str], password: str
) -> dict[str, dict[str, str]]:
    gate = asyncio.Semaphore(4)
    headers: dict[str, dict[str, str]] = {}

    async def one(name: str) -> None:
        async with gate:
            r = await _send(client, stats, "signin token", "POST", "/api/auth/token",
                            data={"username": name, "password": password})  # fmt: skip
            if r is not None and r.status_code == 200:
                headers[name] = {"Authorization": f"Bearer {r.json()['access_token']}"}

    await asyncio.gather(*(one(n) for n in names))
    return headers


# --------------------------------------------------------------------------- load


async def _call(
    client: Connection, stats: Stats, kind: str, method: str, path: str, **kw: Any
) -> Any:
    """One request on ``client`` timed into ``stats``: any answer but 2xx/304 and any
    transport error counts as an error (as :func:`bench_access._send` does for httpx)."""
    t = time.perf_counter()
    try:
        r = await client.request(method, path, **kw)
    except TransportError as exc:
        stats.add(kind, time.perf_counter() - t, False, f"{path} {exc}")
        return None
    ok = 200 <= r.status_code < 300 or r.status_code == 304
    stats.add(kind, time.perf_counter() - t, ok, f"{path} {r.status_code} {r.text[:120]}")
    return r


@dataclass
class Window:
    """A level's measured window: requests that start in ``[start, until)`` count in
    :attr:`stats`; of the others (ramp-up, the last cases' ends) only the errors do.
    Passed as the :class:`Stats` of :func:`_call`."""

    start: float
    until: float
    stats: Stats = field(default_factory=Stats)

    def add(self, kind: str, seconds: float, ok: bool, what: str = "") -> None:
        if self.start <= time.monotonic() - seconds < self.until:
            self.stats.add(kind, seconds, ok, what)
        elif not ok:
            self.stats.errors[kind] += 1
            if len(self.stats.samples) < 5:
                self.stats.samples.append(f"{kind}: {what}")


async def case_loop(
    client: Connection, window: Window, team: Team, seed: int, lists_every: int,
    join_at: float,
) -> None:  # fmt: skip
    """Cases through the whole workflow, one after the other, from ``join_at`` until the
    window ends (the last case is finished); the town's inbox and overdue list after every
    ``lists_every``-th case. A request counts where it started (:class:`Window`)."""
    rng = random.Random(seed)
    stats = cast(Stats, window)
    await asyncio.sleep(max(0.0, join_at - time.monotonic()))
    done = 0
    while time.monotonic() < window.until:
        lon, lat = rng.choice(team.points)
        body = {"category": rng.choice(CATEGORIES), "lon": lon, "lat": lat,
                "description": f"压测案件 {seed}", "source": "grid_worker"}  # fmt: skip
        r = await _call(client, stats, "create", "POST", "/api/cases", json=body,
                        headers=team.grid_headers)  # fmt: skip
        if r is None or r.status_code != 201:
            await asyncio.sleep(0.5)  # an error was counted; do not spin on it
            continue
        case_id, etag = r.json()["case"]["id"], r.headers.get("etag", "")
        for action, who, extra in LIFECYCLE:
            headers = team.grid_headers if who == "grid" else team.centre_headers
            r = await _call(client, stats, "transition", "POST",
                            f"/api/cases/{case_id}/transitions",
                            json={"action": action, **extra},
                            headers={**headers, "If-Match": etag, **BRIEF})  # fmt: skip
            if r is None or r.status_code != 200:
                break
            etag = r.headers.get("etag", "")
        await _call(client, stats, "get case", "GET", f"/api/cases/{case_id}",
                    headers=team.grid_headers)  # fmt: skip
        done += 1
        if done % lists_every == 0:
            await _call(client, stats, "inbox (town)", "GET", "/api/cases/inbox?limit=50",
                        headers=team.centre_headers)  # fmt: skip
            await _call(client, stats, "overdue (town)", "GET",
                        "/api/cases/due?kind=overdue&limit=50",
                        headers=team.centre_headers)  # fmt: skip


# --------------------------------------------------------------------------- CPU


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        out[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / tick)
    return out


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds spent so far by each named process and all its descendants."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        todo, total = [root], 0.0
        while todo:
            pid = todo.pop()
            total += table.get(pid, (0, 0.0))[1]
            todo.extend(children.get(pid, ()))
        out[name] = total
    return out


@dataclass
class Cpu:
    """CPU seconds per part (client, server, PostgreSQL) during a level."""

    roots: dict[str, int]
    spent: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> Cpu:
        self._t0 = tree_cpu(self.roots)
        return self

    def __exit__(self, *_: Any) -> None:
        t1 = tree_cpu(self.roots)
        self.spent = {k: t1[k] - self._t0[k] for k in self.roots}


def postmaster_pid() -> int:
    return int((HOME / "pgdata" / "postmaster.pid").read_text().split()[0])


async def run_level(
    port: int, all_teams: list[Team], n: int, seconds: float, lists_every: int,
    ramp: float, roots: dict[str, int],
) -> tuple[Stats, float, dict[str, float]]:  # fmt: skip
    """``n`` clients joining one by one over ``ramp`` seconds (as load tools ramp users
    up: started at once, closed-loop clients stay in step, all reporting together and
    then all transitioning), then ``seconds`` measured: the requests started in that
    window, and the CPU time each part spent in it."""
    clients = [Connection("127.0.0.1", port) for _ in range(n)]  # one per simulated user
    t0 = time.monotonic()
    window = Window(t0 + ramp, t0 + ramp + seconds)
    spent: dict[str, float] = {}

    async def measure() -> None:
        await asyncio.sleep(max(0.0, window.start - time.monotonic()))
        with Cpu(roots) as cpu:
            c0 = time.process_time()
            await asyncio.sleep(max(0.0, window.until - time.monotonic()))
            client = time.process_time() - c0
        spent.update(client=client, **cpu.spent)

    try:
        await asyncio.gather(
            measure(),
            *(
                case_loop(clients[i], window, all_teams[i % len(all_teams)], i, lists_every,
                          t0 + ramp * i / n)
                for i in range(n)
            ),
        )  # fmt: skip
        return window.stats, seconds, spent
    finally:
        for c in clients:
            await c.close()


async def quiet_lists(port: int, team: Team, reps: int) -> Stats:
    stats = Stats()
    client = Connection("127.0.0.1", port)
    try:
        for kind, path in (("inbox (town)", "/api/cases/inbox?limit=50"),
                           ("overdue (town)", "/api/cases/due?kind=overdue&limit=50"),
                           ("baseline", BASELINE)):  # fmt: skip
            await _call(client, Stats(), kind, "GET", path, headers=team.centre_headers)
            for _ in range(reps):
                await _call(client, stats, kind, "GET", path, headers=team.centre_headers)
    finally:
        await client.close()
    return stats


def in_process_lists(url: str, reps: int) -> Stats:
    """The town leader's inbox and overdue list through the service functions on one
    serving connection as the web role (what the server spends, without HTTP)."""
    from geogrid.access import rls, users
    from geogrid.cases import queries

    stats = Stats()
    engine = store.make_serving_engine(url, pool_size=1, role=Settings().web_role or None)
    try:
        with engine.connect() as conn:
            name = conn.execute(
                text("SELECT username FROM users WHERE username LIKE 'bench-town-leader-%' "
                     "ORDER BY 1 LIMIT 1")
            ).scalar_one()  # fmt: skip
            principal = users.get_user(conn, username=name).principal()
            calls = {
                "inbox (town)": lambda: queries.inbox(conn, principal=principal),
                "overdue (town)": lambda: queries.due_cases(conn, principal=principal),
            }
            for kind, call in calls.items():
                for i in range(reps + 1):
                    t = time.perf_counter()
                    rls.apply(conn, principal)
                    call()
                    conn.rollback()
                    if i:  # the first one warms the connection
                        stats.add(kind, time.perf_counter() - t, True)
    finally:
        engine.dispose()
    return stats


def profile_hot_path(url: str, n: int) -> None:
    """``n`` cases through the workflow in this process through the service functions
    (as the web role, one transaction per call as the routes do), with every SQL statement
    SQLAlchemy runs timed: where a create or a transition spends its time. An action's lock
    and its event-and-row statement run on the driver (``store.direct_rows``) and are not
    in that list: they are what is left of a transition's time."""
    from collections import defaultdict

    from sqlalchemy import event

    from geogrid.access import rls, users
    from geogrid.cases import service

    spent: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, list[float]] = defaultdict(list)
    engine = store.make_serving_engine(url, pool_size=1, role=Settings().web_role or None)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        key = " ".join(statement.split())[:90]
        spent[key].append(time.perf_counter() - conn.info.pop("t0"))

    accounts, points = teams(url)
    try:
        with engine.connect() as conn:
            people = {name: users.get_user(conn, username=name).principal()
                      for name, _ in accounts}  # fmt: skip
            conn.rollback()
            leader = next(p for name, p in people.items() if "town-leader" in name)
            workers = [p for name, p in people.items()
                       if "grid-worker" in name and points.get(p.scope.code)]  # fmt: skip
            rng = random.Random(3)
            for i in range(n):
                worker = workers[i % len(workers)]
                lon, lat = rng.choice(points[worker.scope.code])
                t = time.perf_counter()
                rls.apply(conn, worker)
                made = service.create_case(
                    conn, principal=worker, category="0401", lon=lon, lat=lat,
                    description="剖析", source="grid_worker",
                )  # fmt: skip
                conn.commit()
                calls["create"].append(time.perf_counter() - t)
                case_id = made.case.id
                for action, who, extra in LIFECYCLE:
                    actor = worker if who == "grid" else leader
                    t = time.perf_counter()
                    rls.apply(conn, actor)
                    service.transition(
                        conn, principal=actor, case_id=case_id, action=action,
                        expected_version=None, note=extra.get("note", ""),
                        data={k: v for k, v in extra.items() if k != "note"},
                    )  # fmt: skip
                    conn.commit()
                    calls["transition"].append(time.perf_counter() - t)
    finally:
        engine.dispose()
    print(f"\nprofile: {n} cases through the workflow in process (web role, one transaction "
          "per call)")  # fmt: skip
    for kind, lat in calls.items():
        print(f"  {kind:12} {len(lat):5d} calls  p50 {pct(lat, 0.5):7.2f} ms  "
              f"p95 {pct(lat, 0.95):7.2f} ms")  # fmt: skip
    total = sum(sum(v) for v in spent.values())
    print(f"  SQL: {sum(len(v) for v in spent.values())} statements, {total * 1000:.0f} ms; "
          "the costliest:")  # fmt: skip
    for key, lat in sorted(spent.items(), key=lambda kv: -sum(kv[1]))[:15]:
        print(f"  {sum(lat) * 1000:8.1f} ms {len(lat):6d}x {pct(lat, 0.5):6.2f} ms  {key}")


#: CPU seconds per level and part (client, server, postgres), filled by :func:`drive`.
CPU_SPENT: dict[str, dict[str, float]] = {}


async def drive(
    url: str, port: int, args: argparse.Namespace, server_pid: int
) -> list[tuple[str, Stats, float]]:
    password = set_password(url)
    accounts, points = teams(url)
    signin = Stats()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        headers = await sign_in_all(client, signin, [a for a, _ in accounts], password)
    leaders = [headers[n] for n, _ in accounts if "town-leader" in n and n in headers]
    workers = [(scope, headers[n]) for n, scope in accounts
               if "grid-worker" in n and n in headers and points.get(scope)]  # fmt: skip
    if not leaders or not workers:
        raise SystemExit(f"sign-in failed: {signin.samples}")
    all_teams = [Team(grid, points[grid], h, leaders[i % len(leaders)])
                 for i, (grid, h) in enumerate(workers)]  # fmt: skip
    random.Random(7).shuffle(all_teams)
    out = []
    roots = {"server": server_pid, "postgres": postmaster_pid()}
    for n in args.clients:
        stats, seconds, spent = await run_level(
            port, all_teams, n, args.seconds, args.lists_every, args.ramp, roots
        )
        CPU_SPENT[f"{n} clients"] = spent
        out.append((f"{n} clients", stats, seconds))
    out.append(("quiet", await quiet_lists(port, all_teams[0], args.reps), 0.0))
    out.append(("in process", in_process_lists(url, args.reps), 0.0))
    return out


# --------------------------------------------------------------------------- report


KINDS = ("create", "transition", "get case", "inbox (town)", "overdue (town)", "baseline")
#: A signed-in request doing next to nothing (a deadline on the cached calendar): what
#: HTTP, authentication and the framework cost by themselves.
BASELINE = "/api/calendar/deadline?start=2026-11-30T09:00%2B08:00&amount=3&unit=days"


def report(results: list[tuple[str, Stats, float]], args: argparse.Namespace) -> bool:
    print(f"\n{'level':10} {'kind':16} {'requests':>8} {'errors':>6} {'req/s':>7} "
          f"{'p50 ms':>8} {'p95 ms':>8}")  # fmt: skip
    verdicts: list[tuple[str, str, bool]] = []
    for label, stats, seconds in results:
        for kind in KINDS:
            lat = stats.lat.get(kind, [])
            if not lat:
                continue
            rate = f"{len(lat) / seconds:7.1f}" if seconds else f"{'-':>7}"
            print(f"{label:10} {kind:16} {len(lat):8d} {stats.errors[kind]:6d} {rate} "
                  f"{pct(lat, 0.5):8.1f} {pct(lat, 0.95):8.1f}")  # fmt: skip
        for s in stats.samples:
            print(f"{'':10} error: {s}")
        n = int(label.split()[0]) if label[0].isdigit() else 0
        if n in P95_TARGETS:
            every = [v for k in KINDS for v in stats.lat.get(k, [])]
            p95 = pct(every, 0.95)
            verdicts.append((f"p95 of every request at {n} clients < {P95_TARGETS[n]:.0f} ms",
                             f"{p95:.1f} ms", p95 < P95_TARGETS[n]))  # fmt: skip
    cores = os.cpu_count() or 1
    print("\nCPU per request (every kind) by part, and the transitions/s the machine's "
          f"{cores} cores allow at that cost (independent of other load):")  # fmt: skip
    for label, stats, _ in results:
        spent = CPU_SPENT.get(label)
        if not spent:
            continue
        n_req = sum(len(v) for v in stats.lat.values()) or 1
        total = sum(spent.values())
        parts = ", ".join(f"{k} {v / n_req * 1000:.1f}" for k, v in spent.items())
        share = len(stats.lat.get("transition", [])) / n_req
        print(f"{label:10} ms/request: {parts}, total {total / n_req * 1000:.1f}; "
              f"-> {cores * share / (total / n_req):.0f} transitions/s")  # fmt: skip
    rates = [len(s.lat.get("transition", [])) / sec for lab, s, sec in results if sec]
    best = max(rates, default=0.0)
    verdicts.append((f"transitions/s >= {TRANSITIONS_PER_S:.0f} (best level)", f"{best:.0f}/s",
                     best >= TRANSITIONS_PER_S))  # fmt: skip
    quiet = next(s for lab, s, _ in results if lab == "quiet")
    for kind in ("inbox (town)", "overdue (town)"):
        p95 = pct(quiet.lat.get(kind, []), 0.95)
        verdicts.append((f"{kind} p95, quiet < {LIST_P95_MS:.0f} ms", f"{p95:.1f} ms",
                         p95 < LIST_P95_MS))  # fmt: skip
    errors = sum(sum(s.errors.values()) for _, s, _ in results)
    verdicts.append(("no errors", str(errors), errors == 0))
    print(f"\n{'target':52} {'measured':>12}  verdict")
    for what, measured, ok in verdicts:
        print(f"{what:52} {measured:>12}  {'ok' if ok else 'MISSED'}")
    return all(ok for _, _, ok in verdicts)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000, help="historical cases held")
    ap.add_argument("--clients", default="10,50", help="concurrency levels, comma-separated")
    ap.add_argument("--seconds", type=float, default=30.0, help="load per level")
    ap.add_argument("--ramp", type=float, default=2.0,
                    help="seconds over which a level's clients join (not measured)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--reps", type=int, default=50, help="quiet reads of each list")
    ap.add_argument("--lists-every", type=int, default=5, metavar="K",
                    help="under load: the town lists after every K-th case")  # fmt: skip
    ap.add_argument("--reuse", action="store_true", help="keep the database built earlier")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also run N cases in process with every SQL statement timed")  # fmt: skip
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]

    cluster, url = start_cluster()
    try:
        if not (args.reuse and loaded(url, args.cases)):
            print(f"building {DB}: sample town, {args.cases:,} historical cases")
            load(url, args.cases)
        settings = durability(url, True)
        print("durability:", ", ".join(f"{k} {v}" for k, v in settings.items()))
        e = store.make_engine(url)
        with e.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                      for t in ("households", "grids", "cases", "case_events")}  # fmt: skip
        e.dispose()
        print("data:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        proc, port = start_server(url, args.workers, home=HOME, log_path=SERVER_LOG,
                                  startup_s=STARTUP_S)  # fmt: skip
        try:
            results = asyncio.run(drive(url, port, args, proc.pid))
        finally:
            stop(proc)
        if args.profile:
            profile_hot_path(url, args.profile)
        print(f"\n{args.workers} server workers; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")  # fmt: skip
        ok = report(results, args)
    finally:
        cluster.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
