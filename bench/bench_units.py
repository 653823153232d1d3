"""Benchmark: overdue lists of key-unit filings and fire inspections for a county.

One command:

    .venv/bin/python bench/bench_units.py [--towns 15] [--reps 30] [--reuse]

1. Data (built once, cached in ``bench/.cache/units-home``; ``--reuse`` keeps it): the
   sample town (seed 1) loaded and partitioned as ``geogrid demo`` does it, with its key
   units and inspection points; then a county of ``--towns`` towns synthesised in SQL by
   copying the town, its villages, the units (three per original, moved by up to ~50 m)
   and the points (two per original) under shifted town codes (``CCCCCC2NN…``), grid
   codes shifted alike, registration and last-inspection dates spread over 2025–2026
   (seeded), so that about half the dues are past on the measured day. The due dates are
   then computed once (:func:`geogrid.fieldwork.filings.refresh_dues`,
   :func:`geogrid.fieldwork.inspections.refresh_points`; timed and reported).
2. Measured, in this process, ``--reps`` times each after one warm-up, for a county
   leader (scope ``all``) and a town leader: the first page (200 rows) and total of
   overdue filings, overdue filings counted per grid, the first page of overdue
   inspection points, points due within 7 days, the completion rate per grid for a
   quarter — each a service call on a serving connection of the web role (row-level
   security on, as the server runs) — and the two overdue lists over HTTP (the real app
   in a TestClient: sign-in token, JSON encoding). Target: p95 under 200 ms.

Runs of 2026-11-30 (1,204 key units, 2,900 points; 1,828 overdue filings, 2,464 overdue
points on 2026-06-30), county leader, p50 / p95 ms. Load 1.8–4.9: overdue filings page
17 / 23, per grid 9 / 12, overdue inspections page 19 / 44, due within 7 days 19 / 273
(one outlier), completion 7 / 9; HTTP overdue filings 56 / 90, HTTP overdue inspections
67 / 315 (p95: the load rose to 4.9 during the HTTP rows). Load 12 (other suites running):
59 / 101, 44 / 69, 87 / 172, 113 / 180, 39 / 81; HTTP 91 / 185 and 175 / 291 — every
service list under 200 ms at p95 even then; the HTTP inspections list misses only under load.

Quiet run (2026-11-30 18:27 UTC, load 0.9, data rebuilt), county leader, p50 / p95 ms, all
met: overdue filings page 7.5 / 13, per grid 5.7 / 7.8, overdue inspections page 7.6 / 8.8,
due within 7 days 11 / 12, completion 5.8 / 6.3; HTTP overdue filings 14 / 19, HTTP overdue
inspections 16 / 19; one town 2.5–4 / 3–4.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from geogrid import store
from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TOWN = CACHE / "units-town"
HOME = CACHE / "units-home"
DB = "bench_units"
TARGET_MS = 200.0
#: The day the lists are judged on (inside the calendar's known years).
DAY = dt.date(2026, 6, 30)


def start_cluster() -> tuple[PrivateCluster, str]:
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o755)
    os.environ["GEOGRID_HOME"] = str(HOME)
    cluster = PrivateCluster(Settings(home=HOME, database_url=None, cluster_fsync=False))
    cluster.start()
    return cluster, cluster.url().rsplit("/", 1)[0] + "/" + DB


def _admin(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"


def load(url: str, towns: int) -> None:
    """The sample town, partitioned, copied into a county of ``towns`` towns."""
    import psycopg

    from geogrid.cli.demo import ensure_active_plan, load_town

    if not (TOWN / "key_units.csv").exists():
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
        with engine.connect() as conn:
            town = str(conn.execute(text("SELECT code FROM admin_areas WHERE level = 'town'"))
                       .scalar_one())  # fmt: skip
        ensure_active_plan(engine, town, None)
        print(f"  sample town loaded and partitioned in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        county(engine, town, towns)
        print(f"  county of {towns} towns synthesised in {time.perf_counter() - t:.1f} s")
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def county(engine: Engine, town: str, towns: int) -> None:
    """Copies of the town's areas, key units and points under shifted town codes."""
    stem, seat = town[:6], town[:9]
    with engine.begin() as conn:
        conn.execute(text("SELECT setseed(0.17)"))
        # the original town's own units and points get spread dates too
        conn.execute(
            text("UPDATE key_units SET registered_on = DATE '2025-01-01' + (random() * 540)::int")
        )
        conn.execute(
            text(
                "UPDATE inspection_points SET registered_on = DATE '2025-01-01', "
                "last_inspected = DATE '2025-10-01' + (random() * 250)::int"
            )
        )
        for i in range(1, towns):
            new = f"{stem}{200 + i:03d}"
            params = {"old": seat, "new": new, "i": i}
            conn.execute(
                text(
                    "INSERT INTO admin_areas (code, level, name, parent_code, geom) "
                    "SELECT :new || substr(code, 10), level, name || CAST(:i AS text), "
                    "CASE WHEN level = 'village' THEN :new || '000' ELSE parent_code END, geom "
                    "FROM admin_areas WHERE code LIKE :old || '%' ORDER BY level = 'village'"
                ),
                params,
            )
            for copy in range(3):
                conn.execute(
                    text(
                        "INSERT INTO key_units (unit_no, name, unit_type, risk_level, address, "
                        "geom, village_code, grid_code, registered_on) "
                        "SELECT unit_no || '-' || :i || '-' || :c, name, unit_type, risk_level, "
                        "address, ST_Translate(geom, (random() - 0.5) * 0.001, "
                        "(random() - 0.5) * 0.001), :new || substr(village_code, 10), "
                        ":new || substr(grid_code, 10), "
                        "DATE '2025-01-01' + (random() * 540)::int "
                        "FROM key_units WHERE village_code LIKE :old || '%' "
                        "AND unit_no NOT LIKE '%-%'"
                    ),
                    {**params, "c": copy},
                )
            for copy in range(2):
                conn.execute(
                    text(
                        "INSERT INTO inspection_points (point_no, name, geom, schedule, "
                        "village_code, grid_code, registered_on, last_inspected) "
                        "SELECT point_no || '-' || :i || '-' || :c, name, geom, schedule, "
                        ":new || substr(village_code, 10), :new || substr(grid_code, 10), "
                        "DATE '2025-01-01', DATE '2025-10-01' + (random() * 250)::int "
                        "FROM inspection_points WHERE village_code LIKE :old || '%' "
                        "AND point_no NOT LIKE '%-%'"
                    ),
                    {**params, "c": copy},
                )


def compute_dues(engine: Engine) -> tuple[float, int, int]:
    """The dues computed once (what the first list after an import does)."""
    from geogrid.fieldwork import filings, inspections

    t = time.perf_counter()
    with engine.begin() as conn:
        n_units = filings.refresh_dues(conn)
        n_points = inspections.refresh_points(conn)
    return time.perf_counter() - t, n_units, n_points


def timed(fn: Callable[[], Any], reps: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def service_cases(serving: Engine, principal: Principal) -> dict[str, Callable[[], Any]]:
    from geogrid.fieldwork import filings, inspection_records, inspections

    def run(fn: Callable[..., Any], **kw: Any) -> Callable[[], Any]:
        def call() -> Any:
            with serving.connect() as conn:
                rls.apply(conn, principal)
                got = fn(conn, principal=principal, **kw)
                conn.commit()
                return got

        return call

    return {
        "overdue filings (page of 200 + total)": run(filings.overdue_filings, today=DAY),
        "overdue filings per grid": run(filings.overdue_counts, today=DAY),
        "overdue inspections (page of 200)": run(inspections.overdue_points, today=DAY),
        "inspections due within 7 days": run(inspections.due_points, today=DAY),
        "completion per grid (a quarter)": run(
            inspection_records.completion,
            date_from=dt.date(2026, 4, 1),
            date_to=dt.date(2026, 6, 30),
            today=DAY,
        ),
    }


def http_cases(url: str) -> tuple[dict[str, Callable[[], Any]], Callable[[], None]]:
    """The two overdue lists over HTTP for a county leader (scope all)."""
    from fastapi.testclient import TestClient

    from api import create_app
    from geogrid.access import users

    engine = store.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE username = 'bench-county'"))
        _, password = users.add_user(
            conn, username="bench-county", role="town_leader", scope=Scope("all"),
            must_change_password=False,
        )  # fmt: skip
    engine.dispose()
    client = TestClient(create_app(Settings(home=HOME), database_url=url))
    client.__enter__()
    token = client.post(
        "/api/auth/token", data={"username": "bench-county", "password": password}
    ).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}

    def get(path: str) -> Callable[[], Any]:
        def call() -> Any:
            r = client.get(path, params={"as_of": DAY.isoformat()}, headers=h)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
            return r

        return call

    cases = {
        "HTTP GET /api/key-units/overdue": get("/api/key-units/overdue"),
        "HTTP GET /api/inspections/overdue": get("/api/inspections/overdue"),
    }
    return cases, lambda: client.__exit__(None, None, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--towns", type=int, default=15)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--reuse", action="store_true", help="keep the data of an earlier run")
    args = ap.parse_args()
    cluster, url = start_cluster()
    try:
        if not args.reuse:
            load(url, args.towns)
        engine = store.make_engine(url)
        took, n_units, n_points = compute_dues(engine)
        with engine.connect() as conn:
            sizes = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM admin_areas WHERE level = 'town'), "
                    "(SELECT count(*) FROM key_units), (SELECT count(*) FROM inspection_points), "
                    "(SELECT count(*) FROM key_unit_dues WHERE due_date < :d), "
                    "(SELECT count(*) FROM inspection_points WHERE next_due < :d)"
                ),
                {"d": DAY},
            ).one()
            town = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
        engine.dispose()
        print(
            f"county: {sizes[0]} towns, {sizes[1]:,} key units, {sizes[2]:,} inspection points; "
            f"on {DAY}: {sizes[3]:,} overdue filings, {sizes[4]:,} overdue points"
        )
        print(f"due dates computed once: {n_units:,} dues, {n_points:,} points in {took:.2f} s")
        serving = store.make_serving_engine(url, pool_size=2, role="geogrid_web")
        rows: list[tuple[str, str, list[float]]] = []
        for who, scope in (("county (all)", Scope("all")), ("one town", Scope.parse(town))):
            principal = Principal(0, "bench", Role.town_leader, scope)
            for name, fn in service_cases(serving, principal).items():
                rows.append((who, name, timed(fn, args.reps)))
        ok = report(rows)
        rows = []
        cases, close = http_cases(url)
        try:
            for name, fn in cases.items():
                rows.append(("county (all)", name, timed(fn, args.reps)))
        finally:
            close()
        serving.dispose()
    finally:
        cluster.stop()
    ok = report(rows) and ok
    sys.exit(0 if ok else 1)


def report(rows: list[tuple[str, str, list[float]]]) -> bool:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nmachine load average (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    print("| scope | list | target p95 | p50 ms | p95 ms | max ms | ok |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for who, name, ms in rows:
        ms = sorted(ms)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        good = p95 < TARGET_MS
        ok &= good
        print(
            f"| {who} | {name} | < {TARGET_MS:.0f} ms | {statistics.median(ms):.1f} | "
            f"{p95:.1f} | {ms[-1]:.1f} | {'yes' if good else 'NO'} |"
        )
    return ok


if __name__ == "__main__":
    main()
