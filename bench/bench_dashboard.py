"""Benchmark: the leader dashboard's first paint (issue 14: "the dashboard's first paint under
1 s on loopback").

One command:

    nice .venv/bin/python bench/bench_dashboard.py [--reuse] [--loads N]

1. Data: the archives bench town (``bench/.cache/archives-home``, ~10k households, ~70
   grids, ~4.7k cases; built by ``bench_archives`` when missing, ``--reuse`` keeps it),
   its cases moved once into the dashboard's default period (the last 90 days).
2. A real ``geogrid serve`` on a free 127.0.0.1 port (one worker, as installed), a town
   leader signed in through ``/login`` (its session cookie given to the browser).
3. Headless Debian Chromium (``/usr/bin/chromium`` through playwright, as the page tests),
   ``/leader/dashboard`` at 1440×900 and the 大屏 layout ``?screen=1`` at 1920×1080, each
   loaded ``--loads`` times cold (a fresh browser context: empty cache) and warm (the same
   context again: scripts and styles from the cache, revalidated). Measured: navigation
   start → the mark ``gg-dashboard-drawn`` the page sets (``performance.mark``) in the first
   animation frame after its first charts were drawn (the case figures' charts, from
   ``/api/dashboard/cases``; the indicator ranking and the 五个一 chart follow); the bench
   checks that chart's canvas then holds ink. Also: the data request's time and the bytes
   the page transferred.

Prints a table with p50/p95 per layout and cache state, the target (1000 ms) and verdicts,
and the machine's load average (the box is shared: compare figures of one run only).

Last run (2026-11-30 19:37 UTC, load average 14–16 on 2 cores while other engineers ran
suites and benches: figures several times a quiet machine's), 8 cold loads and 16 warm per
layout: 1440×900 cold p50 1484 ms / p95 2604, warm p50 772 / p95 1085; 1920×1080 大屏 cold
p50 1492 / p95 1896, warm p50 642 / p95 824 (target 1000 ms: met warm on the large screen
only, at that load; not measured on a quiet machine). A cold page moves 358 KB (gzip;
ECharts' common build 241 KB of it), a warm one 64 KB (the page and its data). The waterfall
of a cold load at load ~37: scripts in by 360 ms, the data request 526–780 ms (started
before ECharts runs), the first charts drawn at ~1170 ms (ECharts' first render of seven
charts ~400 ms at that load). Before this work (full ECharts, Leaflet's styles and
VectorGrid, the data requested after ECharts ran; 503 KB cold) a cold load drew at
1.3–1.6 s at load ~8.

Quiet runs (lead, 2026-11-30 20:17–20:19 UTC, load 3.7–4.2; two runs after the bench
town's schema was brought to the head): first chart drawn, cold p50 695–779 ms, p95 807–1,052
ms (one cold load of 16 over 1 s); warm p50 307–330 ms, p95 361–404 ms; 358 KB moved cold,
64 KB warm. An earlier run against the bench town's stale schema (0029 half-applied) got a
500 from the indicators request: a bench-database problem, gone after the upgrade.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_archives as ba  # noqa: E402 - the town and its cluster

from geogrid import store  # noqa: E402
from geogrid.cluster import PrivateCluster  # noqa: E402
from geogrid.settings import Settings  # noqa: E402

TARGET_MS = 1000.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
USER, PASSWORD = "bench-dashboard-leader", "Bench-dashboard-2026!"
LAYOUTS = (("1440×900", "/leader/dashboard", (1440, 900)),
           ("1920×1080 screen=1", "/leader/dashboard?screen=1", (1920, 1080)))  # fmt: skip
MARK = "gg-dashboard-drawn"
#: Alpha pixels of the first chart's canvas (the case trend by week), read when drawn.
INK = """() => {
  const c = document.querySelector('#gg-chart-trend_week canvas');
  if (!c) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""
TIMES = f"""() => {{
  const m = performance.getEntriesByName('{MARK}');
  if (!m.length) return null;
  const res = performance.getEntriesByType('resource');
  const data = res.filter(r => r.name.includes('/api/dashboard/cases'));
  const nav = performance.getEntriesByType('navigation')[0];
  return {{drawn: m[0].startTime,
          data: data.length ? data[0].responseEnd - data[0].startTime : null,
          html: nav ? nav.responseEnd : null,
          bytes: res.reduce((s, r) => s + (r.transferSize || 0), nav ? nav.transferSize : 0)}};
}}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recent_cases(url: str) -> None:
    """Move the town's cases into the dashboard's default period (the last 90 days): the
    sample town's cases are of 2025, and an empty period paints no chart. Their times move
    together by whole days (once: a later run finds them recent); their events stay."""
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "WITH s AS (SELECT date_trunc('day', now() - max(reported_at)) AS d "
                    "FROM cases HAVING max(reported_at) < now() - interval '14 days') "
                    "UPDATE cases SET reported_at = reported_at + s.d, "
                    "created_at = created_at + s.d, due_at = due_at + s.d, "
                    "closed_at = closed_at + s.d FROM s"
                )
            )
    finally:
        engine.dispose()


def town_leader(url: str) -> None:
    """The bench's town leader, with a known password (created once, reset each run)."""
    from geogrid.access import users
    from geogrid.access.scope import Scope
    from geogrid.errors import NotFound

    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
            try:
                user = users.get_user(conn, username=USER)
            except NotFound:
                users.add_user(conn, username=USER, role="town_leader", scope=Scope.parse(town),
                               password=PASSWORD, must_change_password=False)  # fmt: skip
                return
            temp = users.reset_password(conn, username=USER)
            users.change_password(conn, user_id=user.id, old=temp, new=PASSWORD)
    finally:
        engine.dispose()


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GEOGRID_HOME": str(ba.HOME), "GEOGRID_DATABASE_URL": url,
           "GEOGRID_LOG_LEVEL": "WARNING"}  # fmt: skip
    exe = Path(sys.executable).with_name("geogrid")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "geogrid"]
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"geogrid serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("geogrid serve did not answer within 120 s")


def stop_cluster() -> None:
    """Stop the archives town's private cluster that :func:`bench_archives.start_cluster`
    started (or found running)."""
    PrivateCluster(Settings(home=ba.HOME, database_url=None)).stop()


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server we started, and its workers
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def sign_in(base: str) -> str:
    r = httpx.post(base + "/login", data={"username": USER, "password": PASSWORD}, timeout=30)
    if r.status_code != 303 or "gg_session" not in r.cookies:
        raise RuntimeError(f"sign-in refused: {r.status_code}")
    return str(r.cookies["gg_session"])


def one_load(page: Any, url: str) -> dict[str, float]:
    """Navigate and wait for the first-charts mark; its times (ms since navigation)."""
    page.goto(url, wait_until="commit")
    deadline = time.monotonic() + 60
    while (got := page.evaluate(TIMES)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {MARK} within 60 s at {url}")
        page.wait_for_timeout(25)
    ink = page.evaluate(INK)
    if ink <= 0:
        raise AssertionError("the mark was set but the first chart's canvas is blank")
    return {**got, "ink": ink}


def measure(base: str, session: str, loads: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    cookie = {"name": "gg_session", "value": session, "domain": "127.0.0.1", "path": "/",
              "expires": -1, "httpOnly": True, "secure": False, "sameSite": "Lax"}  # fmt: skip
    rows: list[dict[str, Any]] = []
    outside: set[str] = set()
    errors: list[str] = []
    failed: set[str] = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:

            def context(size: tuple[int, int]) -> Any:
                ctx = browser.new_context(
                    viewport={"width": size[0], "height": size[1]}, locale="zh-CN",
                    storage_state={"cookies": [cookie], "origins": []},
                )  # fmt: skip
                ctx.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:",
                       "blob:")) else outside.add(r.url))  # fmt: skip
                ctx.on("response", lambda r: failed.add(f"{r.status} {r.url.split('?')[0]}")
                       if r.status >= 400 else None)  # fmt: skip
                return ctx

            for name, path, size in LAYOUTS:
                url = base + path
                # one load before timing: the server's first answers (imports, pools)
                ctx = context(size)
                one_load(ctx.new_page(), url)
                ctx.close()
                cold, warm = [], []
                for _ in range(loads):
                    ctx = context(size)
                    page = ctx.new_page()
                    page.on(
                        "console", lambda m: errors.append(m.text) if m.type == "error" else None
                    )
                    cold.append(one_load(page, url))
                    for _ in range(2):  # the same context again: a warm cache
                        warm.append(one_load(page, url))
                    ctx.close()
                rows += [{"layout": name, "cache": "cold", "runs": cold},
                         {"layout": name, "cache": "warm", "runs": warm}]  # fmt: skip
        finally:
            browser.close()
    if outside:
        raise AssertionError(f"requests outside 127.0.0.1: {sorted(outside)[:5]}")
    if errors or failed:  # the first paint was still timed: say it, do not hide the figures
        print(f"WARNING: {len(errors)} console errors; answers >= 400: {sorted(failed)[:5]}")
    return rows


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def print_table(base: str, rows: list[dict[str, Any]]) -> None:
    """The table: p50/p95 per layout and cache state, the target and the verdicts."""
    load1, load5, _ = os.getloadavg()
    print(f"/leader/dashboard on {base} (geogrid serve, 1 worker), headless Chromium; load "
          f"average {load1:.1f} / {load5:.1f} (1 / 5 min) on {os.cpu_count()} cores")  # fmt: skip
    print(f"\n| {'layout, cache':<24} | {'loads':>5} | {'first chart p50':>15} | {'p95 ms':>7} "
          f"| {'data ms p50':>11} | {'KB moved':>8} | {'target':>6} | ok  |")  # fmt: skip
    print(f"|{'-' * 26}|{'-' * 7}|{'-' * 17}|{'-' * 9}|{'-' * 13}|{'-' * 10}|{'-' * 8}|-----|")
    for r in rows:
        drawn = [x["drawn"] for x in r["runs"]]
        data = [x["data"] for x in r["runs"] if x["data"] is not None]
        kb = statistics.median(x["bytes"] for x in r["runs"]) / 1024
        p95 = _pct(drawn, 0.95)
        ok = "yes" if p95 <= TARGET_MS else "NO"
        print(f"| {r['layout'] + ', ' + r['cache']:<24} | {len(drawn):>5} | "
              f"{statistics.median(drawn):>15.0f} | {p95:>7.0f} | "
              f"{statistics.median(data) if data else float('nan'):>11.0f} | {kb:>8.0f} | "
              f"{TARGET_MS:>6.0f} | {ok:<3} |")  # fmt: skip
    print("\nverdict on p95 (every load under the target but the slowest 5 %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="keep the cached town if built")
    ap.add_argument("--loads", type=int, default=8, help="cold loads per layout")
    args = ap.parse_args()
    url = ba.start_cluster()
    try:
        if not (args.reuse and ba.loaded(url)):
            print("building the town (once; --reuse keeps it)", flush=True)
            ba.load(url)
        recent_cases(url)
        town_leader(url)
        port = _free_port()
        server = start_server(url, port)
        try:
            base = f"http://127.0.0.1:{port}"
            rows = measure(base, sign_in(base), args.loads)
        finally:
            stop_server(server)
        print_table(base, rows)
    finally:
        stop_cluster()  # after the server; the data stays for --reuse


if __name__ == "__main__":
    main()
