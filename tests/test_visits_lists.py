"""County visit lists (geogrid.fieldwork.visit_lists): kept figures stay exact, and the
steady-state call reads the big tables by index only (a guard that is not timing-based).

A generated county (``GRIDS`` grids × ``PER_GRID`` households, 0–3 visits each spread
over 2026, a special-population member in every 25th household) is loaded once per
module and analysed. The lists are compared with a plain SQL recount after every change
the caches must follow: a new visit, a visit removed, a household moved to another grid.
The guard runs each list twice as the web role under row-level security and EXPLAINs
(ANALYZE) every SELECT of the second (steady-state) call: no plan node that ran may scan
``households``, ``visits`` or ``household_members`` sequentially.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from geogrid import store
from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.fieldwork import visit_lists
from geogrid.fieldwork.coverage import Period
from geogrid.fieldwork.visit_lists import _page_groups

TOWN = "420117105000"
VILLAGES = [f"420117105{v:03d}" for v in range(201, 205)]
GRIDS_PER_VILLAGE = 10
PER_GRID = 60
DAY = dt.date(2026, 11, 30)
Q3 = Period.parse("2026-Q3")
#: The tables that grow with the county (special-population records stay a few pages in
#: this fixture: a sequential scan of them is the planner's right choice here).
BIG = ("households", "visits", "household_members")


def _county() -> Principal:
    return Principal(-1, "county", Role.town_leader, Scope("all"), frozenset({"special"}))


@pytest.fixture(scope="module")
def county(pg) -> Iterator[tuple[Engine, Engine]]:  # type: ignore[no-untyped-def]
    name = pg.create_database()
    url = pg.url(name)
    engine = store.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO admin_areas (code, level, name) VALUES (:t, 'town', '石门镇')"),
            {"t": TOWN},
        )
        for v in VILLAGES:
            conn.execute(
                text(
                    "INSERT INTO admin_areas (code, level, name, parent_code) "
                    "VALUES (:v, 'village', :n, :t)"
                ),
                {"v": v, "n": f"村{v[-3:]}", "t": TOWN},
            )
        conn.execute(text("SELECT setseed(0.25)"))
        conn.execute(
            text(
                "INSERT INTO households (village_code, register_no, geocode_precision, "
                "grid_code) SELECT v, lpad(g::text, 3, '0') || lpad(n::text, 4, '0'), "
                "'failed', v || lpad(g::text, 3, '0') FROM unnest(CAST(:vs AS text[])) v, "
                "generate_series(1, :g) g, generate_series(1, :n) n"
            ),
            {"vs": VILLAGES, "g": GRIDS_PER_VILLAGE, "n": PER_GRID},
        )
        conn.execute(
            text(
                "INSERT INTO household_members (household_id, village_code, name, id_hash, "
                "id_enc, id_key, id_masked, row_hash) SELECT h.id, h.village_code, '张三', "
                "decode(md5(h.id::text), 'hex'), '\\x02', 'k', '4201**********0011', "
                "decode(md5(h.id::text), 'hex') FROM households h"
            )
        )
        conn.execute(
            text(
                "INSERT INTO special_population (member_id, village_code, category, "
                "risk_level) SELECT m.id, m.village_code, '社区矫正', '中' "
                "FROM household_members m WHERE m.household_id % 25 = 0"
            )
        )
        conn.execute(
            text(
                "INSERT INTO users (username, role, scope_kind, scope_code, password_hash, "
                "must_change_password) SELECT DISTINCT 'w' || grid_code, 'grid_worker', "
                "'grid', grid_code, 'x', false FROM households"
            )
        )
        conn.execute(
            text(
                "INSERT INTO visits (household_id, village_code, visited_on, worker_id, "
                "worker_name, notes) SELECT h.id, h.village_code, date '2026-01-01' + "
                "(random() * 330)::int, u.id, u.username, '走访' FROM households h "
                "JOIN users u ON u.scope_code = h.grid_code "
                "CROSS JOIN LATERAL generate_series(1, (random() * 3 + h.id * 0)::int) n"
            )
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    web = store.make_serving_engine(url, pool_size=1, role="geogrid_web")
    try:
        yield engine, web
    finally:
        web.dispose()
        engine.dispose()
        pg.drop_database(name)


# --------------------------------------------------------------------------- recounts


def _recount_never(conn: Connection) -> int:
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM households h WHERE NOT EXISTS "
                "(SELECT 1 FROM visits v WHERE v.household_id = h.id)"
            )
        ).scalar_one()
    )


def _recount_due(conn: Connection) -> int:
    # seeded rules: quarterly, monthly for households with a special member
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM households h WHERE NOT EXISTS (SELECT 1 FROM visits v "
                "WHERE v.household_id = h.id AND v.visited_on BETWEEN CASE WHEN EXISTS ("
                "SELECT 1 FROM household_members m JOIN special_population s "
                "ON s.member_id = m.id WHERE m.household_id = h.id) THEN :month ELSE :quarter "
                "END AND :day)"
            ),
            {"month": DAY.replace(day=1), "quarter": dt.date(2026, 10, 1), "day": DAY},
        ).scalar_one()
    )


def _recount_workers(conn: Connection) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        text(
            "SELECT worker_name, count(*), count(DISTINCT household_id) FROM visits "
            "WHERE visited_on BETWEEN :a AND :b AND household_id IS NOT NULL GROUP BY 1"
        ),
        {"a": Q3.start, "b": Q3.end},
    ).all()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _lists(conn: Connection) -> tuple[int, int, dict[str, tuple[int, int]]]:
    p = _county()
    rls.apply(conn, p)
    _, never = visit_lists.never_visited(conn, principal=p, period=None)
    _, due = visit_lists.due_households(conn, principal=p, day=DAY)
    workers = {
        w.worker_name: (w.visits, w.households_visited)
        for w in visit_lists.by_worker(conn, principal=p, period=Q3)
        if w.visits
    }
    return never, due, workers


def _check(engine: Engine, web: Engine) -> None:
    with engine.connect() as conn:
        expected = (_recount_never(conn), _recount_due(conn), _recount_workers(conn))
    with web.connect() as conn:
        got = _lists(conn)
        conn.commit()  # the figures are kept
    assert got == expected


def test_kept_figures_follow_every_change(county: tuple[Engine, Engine]) -> None:
    engine, web = county
    _check(engine, web)  # computed from scratch
    _check(engine, web)  # served from the kept figures
    with engine.begin() as conn:  # a visit to a never-visited household, in Q3
        h = conn.execute(
            text(
                "SELECT h.id, h.village_code, h.grid_code FROM households h WHERE NOT EXISTS "
                "(SELECT 1 FROM visits v WHERE v.household_id = h.id) ORDER BY h.id LIMIT 1"
            )
        ).one()
        conn.execute(
            text(
                "INSERT INTO visits (household_id, village_code, visited_on, worker_id, "
                "worker_name, notes) SELECT :h, :v, '2026-08-08', u.id, u.username, '走访' "
                "FROM users u WHERE u.username = 'w' || :g"
            ),
            {"h": h.id, "v": h.village_code, "g": VILLAGES[-1] + "010"},
        )
    _check(engine, web)
    with engine.begin() as conn:  # every visit of one household removed (Q4 ones too)
        conn.execute(
            text(
                "DELETE FROM visits WHERE household_id = (SELECT household_id FROM visits "
                "WHERE visited_on > '2026-10-01' ORDER BY id LIMIT 1)"
            )
        )
    _check(engine, web)
    with engine.begin() as conn:  # a household moves to another grid (global version)
        conn.execute(
            text(
                "UPDATE households SET grid_code = :g WHERE id = (SELECT min(id) "
                "FROM households WHERE grid_code <> :g)"
            ),
            {"g": VILLAGES[0] + "001"},
        )
    _check(engine, web)


def test_pages_add_up_to_the_list(county: tuple[Engine, Engine]) -> None:
    _, web = county
    p = _county()
    with web.connect() as conn:
        rls.apply(conn, p)
        whole, total = visit_lists.due_households(conn, principal=p, day=DAY, limit=500)
        assert total <= 500 or len(whole) == 500
        pages = [
            visit_lists.due_households(conn, principal=p, day=DAY, limit=37, offset=o)
            for o in range(0, min(total, 500), 37)
        ]
        conn.rollback()
    assert [i for items, n in pages for i in items][: len(whole)] == whole[:500]
    assert {n for _, n in pages} == {total}
    # soonest window end first: the monthly (special) households lead
    assert whole[0].period_months == 1 and whole[0].due_by == DAY


@pytest.mark.parametrize(
    ("offset", "limit", "groups", "first"),
    [
        (0, 5, ["a"], 0),
        (0, 10, ["a", "b"], 0),
        (5, 3, ["b"], 0),
        (4, 3, ["a", "b"], 4),
        (12, 5, [], 0),
    ],
)
def test_page_groups(offset: int, limit: int, groups: list[str], first: int) -> None:
    # groups a (5 rows), empty (0), b (7 rows): 12 rows in all
    got = _page_groups([("a", 5), ("e", 0), ("b", 7)], offset, limit)
    assert got == (groups, first if groups else offset - 12)


# --------------------------------------------------------------------------- the guard


def _statements(web: Engine, fn: Callable[[Connection, Principal], Any]) -> list[tuple]:  # type: ignore[type-arg]
    """The SELECTs (with their parameters) of the second of two calls of ``fn``."""
    p = _county()
    with web.connect() as conn:
        rls.apply(conn, p)
        fn(conn, p)
        conn.commit()
    seen: list[tuple] = []  # type: ignore[type-arg]

    def grab(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, params))

    event.listen(web, "before_cursor_execute", grab)
    try:
        with web.connect() as conn:
            rls.apply(conn, p)
            fn(conn, p)
            conn.rollback()
    finally:
        event.remove(web, "before_cursor_execute", grab)
    return seen


def _seq_scans(plan: Any) -> set[str]:
    """Big tables scanned sequentially by nodes that ran (row-level security's sub-plans
    for narrower scopes are in every plan, never executed for a county leader)."""
    out = set()
    if isinstance(plan, dict) and plan.get("Actual Loops", 0) > 0:
        if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in BIG:
            out.add(plan["Relation Name"])
        for child in plan.get("Plans", []):
            out |= _seq_scans(child)
    return out


LISTS = {
    "never visited at all": lambda c, p: visit_lists.never_visited(c, principal=p, period=None),
    "never visited in Q3": lambda c, p: visit_lists.never_visited(c, principal=p, period=Q3),
    "never visited, page 5": lambda c, p: visit_lists.never_visited(
        c, principal=p, period=None, offset=400
    ),
    "due now": lambda c, p: visit_lists.due_households(c, principal=p, day=DAY),
    "due now, page 9": lambda c, p: visit_lists.due_households(c, principal=p, day=DAY, offset=800),
    "per worker": lambda c, p: visit_lists.by_worker(c, principal=p, period=Q3),
}


@pytest.mark.parametrize("name", list(LISTS))
def test_steady_state_reads_by_index(county: tuple[Engine, Engine], name: str) -> None:
    _, web = county
    statements = _statements(web, LISTS[name])
    assert statements
    with web.connect() as conn:
        rls.apply(conn, _county())
        for sql, params in statements:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:  # type: ignore[union-attr]
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                plan = cur.fetchone()[0]  # type: ignore[index]
            plan = plan if isinstance(plan, list) else json.loads(plan)
            scans = _seq_scans(plan[0]["Plan"])
            assert not scans, f"{name}: sequential scan of {scans} in {sql[:200]}"
        conn.rollback()
