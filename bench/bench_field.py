"""Benchmark: the field app (/field/) on a phone-sized viewport in headless Chromium.

One command:

    .venv/bin/python bench/bench_field.py [--reuse] [--records 200] [--photos 50] [--loads 5]

1. Data (built once, kept in ``bench/.cache/field-home``; ``--reuse`` keeps it): the sample
   town (seed 1, ~10k households) loaded and partitioned as ``geogrid demo`` does it (grids
   of ~150 households), and a grid worker of a grid of median size.
2. A real ``geogrid serve`` on a free 127.0.0.1 port; Chromium (Debian's, 390×844, service
   workers on, their requests visible through Playwright's service-worker network events)
   signed in through /login.
3. First load: a fresh profile opens /field/ and waits until the app shows its data, its
   service worker controls the page and the network is quiet; the transfer is the sum of
   the response sizes (headers and bodies, as Chromium reports them) of every request the
   page and its service worker made, map tiles (``/basemap/``, ``/tiles/``) left out.
4. Offline open: the network cut for the page and its worker, the app reopened ``--loads``
   times; the time from navigation to the app showing its data (from its cache).
5. Sync: ``--records`` records (cases, ``--photos`` of them with a 1600×1200 JPEG made in the
   page, and visits) put into the app's outbox (IndexedDB), then "send now": the time until
   the outbox is empty (photos uploaded, records sent in batches), and the server checked to
   hold each record exactly once.

Prints the measurements and each target with its verdict: first load < 500 KB before map
tiles, offline open < 1 s, 200 records with 50 photos synced < 30 s on loopback.

First run (2026-11-30 18:29 UTC, load 1.7; a grid of 144 households): first load 23
responses, 490 KB before map tiles (Leaflet's 145 KB counted twice: the page and the
service worker's precache each fetch it); offline opens 0.17–0.31 s (median 0.22 s);
200 records (87 cases, 113 visits, 50 photos, 2.2 MB) synced in 7.5 s, each exactly once;
no request left 127.0.0.1 — every target met.

Quiet run (lead, 2026-11-30 20:15 UTC, fresh data, assets gzip-compressed): first load
202 KB before map tiles; offline opens 0.14–0.20 s; 200 records with 50 photos synced in
6.1 s, each once; nothing off 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_access import _admin, start_server
from bench_tiles import stop

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TOWN = CACHE / "cases-town"  # the same sample town as bench_cases (seed 1)
HOME = CACHE / "field-home"
DB = "bench_field"
SERVER_LOG = CACHE / "field-server.log"
USER = "bench-field-worker"
PASSWORD = "Bench-field-2026!"
CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
TILES = re.compile(r"/(basemap|tiles)/")
LOCAL = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:)")
TARGET_KB = 500
TARGET_OPEN_S = 1.0
TARGET_SYNC_S = 30.0


def start_cluster() -> tuple[PrivateCluster, str]:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    os.environ["GEOGRID_HOME"] = str(HOME)
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    return cluster, cluster.url().rsplit("/", 1)[0] + "/" + DB


def loaded(url: str) -> bool:
    try:
        e = store.make_engine(url)
        with e.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM users WHERE username = :u"), {"u": USER})
            ok = bool(n.scalar_one())
        e.dispose()
        return ok
    except Exception:  # no database yet, or an older schema: build afresh
        return False


def build(url: str) -> None:
    """The sample town, partitioned, and the grid worker of a median grid."""
    import psycopg

    from geogrid.access import users
    from geogrid.access.scope import Scope
    from geogrid.cli.demo import ensure_active_plan, load_town

    t0 = time.perf_counter()
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
        load_town(engine, TOWN)
        with engine.connect() as conn:
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
        ensure_active_plan(engine, town, None)
        with engine.begin() as conn:
            grid = conn.execute(
                text(
                    "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                    "AND p.status = 'active' WHERE g.level = 3 ORDER BY g.households, g.code "
                    "OFFSET (SELECT count(*) / 2 FROM grids g2 JOIN plans p2 ON p2.id = "
                    "g2.plan_id AND p2.status = 'active' WHERE g2.level = 3) LIMIT 1"
                )
            ).scalar_one()
            users.add_user(
                conn, username=USER, role="grid_worker", scope=Scope.parse(grid),
                password=PASSWORD, must_change_password=False,
            )  # fmt: skip
    finally:
        engine.dispose()
    print(f"data built in {time.perf_counter() - t0:.0f} s")


def sign_in(base: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/login", data={"username": USER, "password": PASSWORD})
        if r.status_code != 303:
            raise RuntimeError(f"sign-in failed: HTTP {r.status_code}")
        return str(r.cookies["gg_session"])


class Phone:
    """A 390×844 context with the worker signed in; counts transfers; can go offline."""

    def __init__(self, browser: Any, base: str, cookie: str) -> None:
        self.base = base
        self.ctx = browser.new_context(viewport=PHONE, service_workers="allow")
        self.ctx.add_cookies([{"name": "gg_session", "value": cookie, "url": base}])
        self.offline = False
        self.sizes: list[tuple[str, int]] = []
        self.outside: list[str] = []
        self.ctx.on("requestfinished", self._finished)
        self.ctx.route("**/*", self._route)
        self.page = self.ctx.new_page()

    def _finished(self, request: Any) -> None:
        response = request.response()
        if response is None or response.from_service_worker:
            return  # answered from the worker's cache: nothing crossed the network
        sizes = request.sizes()
        self.sizes.append(
            (request.url, int(sizes["responseBodySize"]) + int(sizes["responseHeadersSize"]))
        )

    def _route(self, route: Any) -> None:
        if not LOCAL.match(route.request.url):
            self.outside.append(route.request.url)
            route.abort()
        elif self.offline:
            route.abort("internetdisconnected")
        else:
            route.fallback()

    def set_offline(self, offline: bool) -> None:
        self.offline = offline
        self.ctx.set_offline(offline)

    def wait(self, expression: str, timeout: float = 60.0, poll: float = 0.01) -> float:
        start = time.monotonic()
        while not self.page.evaluate(expression):
            if time.monotonic() - start > timeout:
                raise TimeoutError(expression)
            time.sleep(poll)
        return time.monotonic() - start

    def open(self) -> float:
        start = time.monotonic()
        self.page.goto(f"{self.base}/field/", wait_until="commit")
        self.wait("document.body && document.body.dataset.ready === '1'")
        return time.monotonic() - start


SEED_OUTBOX = """
async ([records, photos, runId]) => {
  const db = await idb.openDB("geogrid-field", 1);
  const bundle = await db.get("meta", "bundle");
  const hh = bundle.households.filter(h => h.lon !== null);
  const made = [];
  for (let i = 0; i < photos; i++) {
    const c = new OffscreenCanvas(1600, 1200);
    const g = c.getContext("2d");
    g.fillStyle = `hsl(${(i * 37) % 360}, 60%, 70%)`;
    g.fillRect(0, 0, 1600, 1200);
    for (let k = 0; k < 60; k++) {
      g.fillStyle = `hsl(${(i * 53 + k * 29) % 360}, 70%, ${30 + (k % 5) * 10}%)`;
      g.fillRect((k * 97 + i * 13) % 1500, (k * 61 + i * 7) % 1100, 40 + k * 3, 30 + k * 2);
    }
    made.push(await c.convertToBlob({ type: "image/jpeg", quality: 0.8 }));
  }
  let bytes = 0;
  const now = Date.now();
  for (let i = 0; i < records; i++) {
    const h = hh[i % hh.length];
    const at = new Date(now + i).toISOString();
    let rec;
    if (i < photos || i % 4 === 0) {
      const pid = crypto.randomUUID();
      const ids = [];
      if (i < photos) {
        await db.put("photos", { id: pid, blob: made[i], sha256: null });
        bytes += made[i].size;
        ids.push(pid);
      }
      rec = { kind: "case", photos: ids, summary: "bench case " + i,
              body: { category: "0401", description: `${runId} 事件 ${i}`, priority: 2,
                      lon: h.lon, lat: h.lat, recorded_at: at } };
    } else {
      rec = { kind: "visit", photos: [], summary: "bench visit " + i,
              body: { household_id: h.id, notes: `${runId} 走访 ${i}`, people_met: [], tags: [] } };
    }
    rec.client_id = crypto.randomUUID();
    rec.created_at = at;
    rec.status = "waiting";
    await db.put("outbox", rec);
  }
  return bytes;
}
"""


def measure(base: str, cookie: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS"] = "1"
    from playwright import sync_api

    out: dict[str, Any] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update"],
        )  # fmt: skip
        try:
            phone = Phone(browser, base, cookie)
            t_first = phone.open()
            phone.wait("document.body.dataset.sw === 'active'", timeout=60)
            phone.page.wait_for_load_state("networkidle")
            phone.page.wait_for_timeout(1500)  # late fetches (worker install) finish
            counted = [(u, n) for u, n in phone.sizes if not TILES.search(u)]
            out["first_load_bytes"] = sum(n for _, n in counted)
            out["first_load_requests"] = len(counted)
            out["first_load_s"] = t_first
            out["largest"] = sorted(counted, key=lambda x: -x[1])[:6]
            out["households"] = phone.page.evaluate(
                "idb.openDB('geogrid-field', 1).then(d => d.get('meta', 'bundle'))"
                ".then(b => b.households.length)"
            )

            phone.set_offline(True)
            opens = [phone.open() for _ in range(args.loads)]
            assert phone.page.evaluate("document.body.dataset.bundle") == "cache"
            out["offline_open_s"] = opens
            phone.set_offline(False)

            run_id = f"bench-{uuid.uuid4().hex[:8]}"
            phone.page.goto(f"{base}/field/", wait_until="commit")
            phone.wait("document.body && document.body.dataset.ready === '1'")
            phone.wait("document.body.dataset.sending !== '1'")
            photo_bytes = phone.page.evaluate(SEED_OUTBOX, [args.records, args.photos, run_id])
            phone.page.reload(wait_until="commit")  # the app picks the outbox up on start
            phone.wait("document.body && document.body.dataset.ready === '1'")
            start = time.monotonic()
            phone.page.click("#nav-outbox")
            phone.page.click("#ff-send")
            phone.wait("document.body.dataset.outbox === '0'", timeout=600, poll=0.05)
            out["sync_s"] = time.monotonic() - start
            out["photo_bytes"] = photo_bytes
            out["run_id"] = run_id
            out["outside"] = phone.outside
        finally:
            browser.close()
    return out


def report(m: dict[str, Any], url: str, args: argparse.Namespace) -> bool:
    e = store.make_engine(url)
    with e.connect() as conn:
        like = m["run_id"] + " %"
        cases = conn.execute(
            text("SELECT count(*), count(DISTINCT description) FROM cases "
                 "WHERE description LIKE :p"), {"p": like}).one()  # fmt: skip
        visits = conn.execute(
            text("SELECT count(*), count(DISTINCT notes) FROM visits WHERE notes LIKE :p"),
            {"p": like},
        ).one()
        files = conn.execute(
            text("SELECT count(*) FROM case_files f JOIN cases c ON c.id = f.case_id "
                 "WHERE c.description LIKE :p"), {"p": like}).scalar_one()  # fmt: skip
    e.dispose()
    records = cases[0] + visits[0]
    once = cases[0] == cases[1] and visits[0] == visits[1] and records == args.records
    kb = m["first_load_bytes"] / 1024
    opens = m["offline_open_s"]
    print(f"\nbundle: {m['households']} households of one grid")
    print(f"first load: {m['first_load_requests']} responses, {kb:.0f} KB, "
          f"{m['first_load_s'] * 1000:.0f} ms to the app's data; largest:")  # fmt: skip
    for u, n in m["largest"]:
        print(f"  {n / 1024:7.1f} KB  {re.sub(r'^https?://[^/]+', '', u.split('?')[0])}")
    print(f"offline opens (s): {', '.join(f'{t:.3f}' for t in opens)}")
    print(f"sync: {records} records ({cases[0]} cases, {visits[0]} visits, {files} photos, "
          f"{m['photo_bytes'] / 1e6:.1f} MB of photos) in {m['sync_s']:.1f} s; "
          f"each exactly once: {once}")  # fmt: skip
    if m["outside"]:
        print(f"requests off 127.0.0.1 (refused): {m['outside']}")
    rows = [
        (f"first load, before map tiles < {TARGET_KB} KB", f"{kb:.0f} KB", kb < TARGET_KB),
        (f"opens from cache offline < {TARGET_OPEN_S:.0f} s (worst of {len(opens)})",
         f"{max(opens):.3f} s", max(opens) < TARGET_OPEN_S),
        (f"sync {args.records} records, {args.photos} photos < {TARGET_SYNC_S:.0f} s",
         f"{m['sync_s']:.1f} s", m["sync_s"] < TARGET_SYNC_S and once and files == args.photos),
        ("nothing loaded off 127.0.0.1", f"{len(m['outside'])} requests", not m["outside"]),
    ]  # fmt: skip
    print(f"\n{'target':52} {'measured':>12}  verdict")
    for what, measured, ok in rows:
        print(f"{what:52} {measured:>12}  {'ok' if ok else 'MISSED'}")
    print(f"(median offline open {statistics.median(opens):.3f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    return all(ok for _, _, ok in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200, help="records in the outbox")
    ap.add_argument("--photos", type=int, default=50, help="records with a photo")
    ap.add_argument("--loads", type=int, default=5, help="offline opens measured")
    ap.add_argument("--reuse", action="store_true", help="keep the database built earlier")
    args = ap.parse_args()
    cluster, url = start_cluster()
    try:
        if not (args.reuse and loaded(url)):
            print(f"building {DB}: sample town, partitioned, one grid worker")
            build(url)
        else:
            store.upgrade(url)
        proc, port = start_server(url, 1, home=HOME, log_path=SERVER_LOG, startup_s=300)
        try:
            base = f"http://127.0.0.1:{port}"
            m = measure(base, sign_in(base), args)
        finally:
            stop(proc)
        ok = report(m, url, args)
    finally:
        cluster.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
