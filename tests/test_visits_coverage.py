"""Coverage formulas (geogrid.fieldwork.coverage) on a small fixture worked out by hand.

One village V with two grids: G1 holds households h1–h4 (h4 has a special-population
member: the monthly ``special`` rule), G2 holds h5 and h6. Rules as seeded: households
once a quarter, special populations once a month. Visits (worker, day):

    h1: w1 2026-07-10, w1 2026-08-01      h4: w1 2026-07-03, w1 2026-09-15
    h2: w1 2026-05-20                     h5: w2 2026-09-30
    h3: none at all                       h6: w2 2026-10-02
    plus one visit to a key unit (never counted for households)

Hand-worked expectations are written next to each assertion.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.access import users
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.errors import Forbidden, InvalidInput, NotFound
from geogrid.fieldwork import coverage, visit_lists
from geogrid.fieldwork.coverage import Period

TOWN = "420117105000"
V = "420117105201"
G1, G2 = V + "001", V + "002"


@dataclass
class Fixture:
    engine: Engine
    hh: dict[str, int]
    w1: int
    w2: int


def _principal(scope: str = "all", special: bool = True) -> Principal:
    perms = frozenset({"special"}) if special else frozenset()
    return Principal(1, "t", Role.town_leader, Scope.parse(scope), perms)


@pytest.fixture(scope="module")
def fx(pg) -> Iterator[Fixture]:  # type: ignore[no-untyped-def]
    name = pg.create_database()
    engine = store.make_engine(pg.url(name))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO admin_areas (code, level, name, parent_code) VALUES "
                    "(:t, 'town', '石门镇', NULL), (:v, 'village', '王家湾村', :t)"
                ),
                {"t": TOWN, "v": V},
            )
            hh = {}
            for i, grid in enumerate([G1, G1, G1, G1, G2, G2], start=1):
                hh[f"h{i}"] = conn.execute(
                    text(
                        "INSERT INTO households (village_code, register_no, geocode_precision, "
                        "grid_code) VALUES (:v, :r, 'failed', :g) RETURNING id"
                    ),
                    {"v": V, "r": f"{i:04d}", "g": grid},
                ).scalar_one()
            member = conn.execute(
                text(
                    "INSERT INTO household_members (household_id, village_code, name, id_hash, "
                    "id_enc, id_key, id_masked, row_hash) VALUES (:h, :v, '张三明', '\\x01', "
                    "'\\x02', 'k', '4201**********0011', '\\x03') RETURNING id"
                ),
                {"h": hh["h4"], "v": V},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO special_population (member_id, village_code, category, "
                    "risk_level) VALUES (:m, :v, '社区矫正', '中')"
                ),
                {"m": member, "v": V},
            )
            w1 = users.add_user(conn, username="wkr1", role="grid_worker", scope=Scope.parse(G1))[0]
            w2 = users.add_user(conn, username="wkr2", role="grid_worker", scope=Scope.parse(G2))[0]
            unit = conn.execute(
                text(
                    "INSERT INTO key_units (unit_no, name, unit_type, risk_level, geom, "
                    "village_code, grid_code) VALUES ('KU1', '村小学', 'school', 2, "
                    "ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326), :v, :g) RETURNING id"
                ),
                {"v": V, "g": G1},
            ).scalar_one()
            visits = [
                ("h1", w1, "2026-07-10"), ("h1", w1, "2026-08-01"), ("h2", w1, "2026-05-20"),
                ("h4", w1, "2026-07-03"), ("h4", w1, "2026-09-15"), ("h5", w2, "2026-09-30"),
                ("h6", w2, "2026-10-02"),
            ]  # fmt: skip
            for h, w, day in visits:
                conn.execute(
                    text(
                        "INSERT INTO visits (household_id, village_code, visited_on, worker_id, "
                        "worker_name, notes) VALUES (:h, :v, :d, :w, :n, '走访')"
                    ),
                    {"h": hh[h], "v": V, "d": dt.date.fromisoformat(day), "w": w.id,
                     "n": w.username},
                )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO visits (key_unit_id, village_code, visited_on, worker_id, "
                    "worker_name, notes) VALUES (:k, :v, '2026-07-20', :w, 'wkr1', '检查')"
                ),
                {"k": unit, "v": V, "w": w1.id},
            )
        yield Fixture(engine, hh, w1.id, w2.id)
    finally:
        engine.dispose()
        pg.drop_database(name)


def _areas(fx: Fixture, period: Period, **kw) -> dict[str, tuple]:  # type: ignore[no-untyped-def, type-arg]
    principal = kw.pop("principal", _principal())
    with fx.engine.connect() as conn:
        rows = coverage.by_area(conn, principal=principal, period=period, **kw)
    return {
        r.area_code: (r.households, r.visited, r.never_visited, r.coverage, r.due, r.done,
                      r.plan_rate)
        for r in rows
    }  # fmt: skip


def test_quarter_with_special_permission(fx: Fixture) -> None:
    # G1: visited h1, h4 of 4 → 0.5; due: h1–h3 one Q3 window each, h4 three months → 6;
    #     done: h1 (Q3), h4 (July, September) → 3. G2: h5 of 2; due 2, done 1.
    assert _areas(fx, Period.parse("2026-Q3")) == {
        G1: (4, 2, 2, 0.5, 6, 3, 0.5),
        G2: (2, 1, 1, 0.5, 2, 1, 0.5),
    }


def test_quarter_without_special_permission_uses_the_household_rule(fx: Fixture) -> None:
    # h4 is quarterly for a caller who may not know it is special: G1 due 4, done 2
    got = _areas(fx, Period.parse("2026-Q3"), principal=_principal(special=False))
    assert got[G1] == (4, 2, 2, 0.5, 4, 2, 0.5)


def test_one_month_inside_a_quarter(fx: Fixture) -> None:
    # August: quarterly windows end in September (not due); h4's August window is due and
    # not done; visited in August: h1 only
    assert _areas(fx, Period.parse("2026-08")) == {
        G1: (4, 1, 3, 0.25, 1, 0, 0.0),
        G2: (2, 0, 2, 0.0, 0, 0, None),
    }


def test_the_quarters_last_month_counts_windows_begun_earlier(fx: Fixture) -> None:
    # September: every Q3 window ends here; h1's July visit makes its window done;
    # visited in September: h4 (G1), h5 (G2)
    assert _areas(fx, Period.parse("2026-09")) == {
        G1: (4, 1, 3, 0.25, 4, 2, 0.5),
        G2: (2, 1, 1, 0.5, 2, 1, 0.5),
    }


def test_a_period_ending_before_a_months_last_day(fx: Fixture) -> None:
    # 1 July – 29 September: September's windows end after the period; h4's July and
    # August windows are due, July done; h5's 30 September visit is outside
    got = _areas(fx, Period(dt.date(2026, 7, 1), dt.date(2026, 9, 29)))
    assert got == {G1: (4, 2, 2, 0.5, 2, 1, 0.5), G2: (2, 0, 2, 0.0, 0, 0, None)}


def test_scope_and_area(fx: Fixture) -> None:
    q3 = Period.parse("2026-Q3")
    assert set(_areas(fx, q3, principal=_principal(G2))) == {G2}
    assert set(_areas(fx, q3, area=G1)) == {G1}
    with pytest.raises(Forbidden):
        _areas(fx, q3, principal=_principal(G2), area=G1)


def test_workers(fx: Fixture) -> None:
    with fx.engine.connect() as conn:
        rows = visit_lists.by_worker(conn, principal=_principal(), period=Period.parse("2026-Q3"))
    got = {
        r.worker_name: (r.visits, r.households_visited, r.households, r.visited, r.coverage,
                        r.due, r.done, r.plan_rate)
        for r in rows
    }  # fmt: skip
    # w1: four household visits in Q3 (h1 ×2, h4 ×2; the key-unit visit is not a
    # household's) to 2 households; G1's figures. w2: h5 once; G2's figures.
    assert got == {
        "wkr1": (4, 2, 4, 2, 0.5, 6, 3, 0.5),
        "wkr2": (1, 1, 2, 1, 0.5, 2, 1, 0.5),
    }


def test_never_visited(fx: Fixture) -> None:
    with fx.engine.connect() as conn:
        in_q3, total = visit_lists.never_visited(
            conn, principal=_principal(), period=Period.parse("2026-Q3")
        )
        ever, ever_total = visit_lists.never_visited(conn, principal=_principal(), period=None)
        conn.rollback()
    assert [i.household_id for i in in_q3] == [fx.hh["h2"], fx.hh["h3"], fx.hh["h6"]]
    assert total == 3
    assert [i.last_visited_on for i in in_q3] == [dt.date(2026, 5, 20), None, dt.date(2026, 10, 2)]
    assert [i.household_id for i in ever] == [fx.hh["h3"]] and ever_total == 1
    with fx.engine.connect() as conn:  # pages: the areas holding the page are read alone
        q3 = Period.parse("2026-Q3")
        pages = [
            visit_lists.never_visited(
                conn, principal=_principal(), period=q3, limit=lim, offset=off
            )
            for lim, off in ((1, 1), (2, 2), (2, 3), (1, 0))
        ]
        conn.rollback()
    assert [([i.household_id for i in items], n) for items, n in pages] == [
        ([fx.hh["h3"]], 3), ([fx.hh["h6"]], 3), ([], 3), ([fx.hh["h2"]], 3)
    ]  # fmt: skip


def test_due_now(fx: Fixture) -> None:
    day = dt.date(2026, 11, 30)
    with fx.engine.connect() as conn:
        items, total = visit_lists.due_households(conn, principal=_principal(), day=day)
        plain, _ = visit_lists.due_households(conn, principal=_principal(special=False), day=day)
        conn.rollback()
    # h4 (monthly) is due by 30 November; h1, h2, h3, h5 have no visit in Q4 (due by
    # 31 December); h6 was visited on 2 October
    assert [(i.household_id, i.due_by, i.period_months) for i in items] == [
        (fx.hh["h4"], dt.date(2026, 11, 30), 1),
        *[(fx.hh[h], dt.date(2026, 12, 31), 3) for h in ("h1", "h2", "h3", "h5")],
    ]
    assert total == 5
    assert {i.household_id: i.period_months for i in plain}[fx.hh["h4"]] == 3


def test_a_more_specific_rule_wins(fx: Fixture) -> None:
    admin = _principal()
    with fx.engine.connect() as conn:
        rule = coverage.set_rule(
            conn, principal=admin, area_code=G2, kind="household", period_months=1
        )
        # G2 monthly in Q3: 3 windows each; h5 visited in September only → done 1
        q3 = Period.parse("2026-Q3")
        rows = {r.area_code: r for r in coverage.by_area(conn, principal=admin, period=q3)}
        assert (rows[G2].due, rows[G2].done) == (6, 1)
        assert (rows[G1].due, rows[G1].done) == (6, 3)  # unchanged
        coverage.delete_rule(conn, principal=admin, rule_id=rule.id)
        assert {r.area_code for r in coverage.list_rules(conn)} == {""}
        conn.rollback()


@pytest.mark.parametrize(
    ("kw", "error", "why"),
    [
        ({"kind": "village"}, InvalidInput, "kind must be"),
        ({"period_months": 5}, InvalidInput, "period_months must be"),
        ({"period_months": True}, InvalidInput, "period_months must be"),
        ({"area_code": "4201"}, InvalidInput, "not a town, village or grid"),
        ({"area_code": "420117106201"}, Forbidden, "outside your scope"),
        ({"area_code": ""}, Forbidden, "everywhere is outside your scope"),
    ],
)
def test_rule_validator_rejects(fx: Fixture, kw, error, why) -> None:  # type: ignore[no-untyped-def]
    args = {"area_code": G1, "kind": "household", "period_months": 3, **kw}
    with fx.engine.connect() as conn, pytest.raises(error, match=why):
        coverage.set_rule(conn, principal=_principal(TOWN), **args)


def test_general_rules_cannot_be_removed(fx: Fixture) -> None:
    with fx.engine.connect() as conn:
        general = coverage.list_rules(conn)[0]
        with pytest.raises(InvalidInput, match="not removed"):
            coverage.delete_rule(conn, principal=_principal(), rule_id=general.id)
        with pytest.raises(NotFound):
            coverage.delete_rule(conn, principal=_principal(), rule_id=10**9)


@pytest.mark.parametrize(
    ("text_", "why"),
    [
        ("2026-13", "no such month"),
        ("2026-Q5", "use 2026"),
        ("1999", "2000 or later"),
        ("26-Q1", "use 2026"),
    ],
)
def test_period_parser_rejects(text_: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        Period.parse(text_)


def test_period_rejects_reversed_and_long_ranges() -> None:
    with pytest.raises(InvalidInput, match="ends before"):
        Period(dt.date(2026, 2, 1), dt.date(2026, 1, 1))
    with pytest.raises(InvalidInput, match="at most"):
        Period(dt.date(2020, 1, 1), dt.date(2026, 1, 1))


def test_cached_figures_follow_the_data(fx: Fixture) -> None:
    """Figures kept between calls: a new visit refreshes its area only, a new rule every
    area; the refreshed figures equal a computation from scratch."""
    q3 = Period.parse("2026-Q3")
    who = _principal()
    with fx.engine.connect() as conn:
        first = coverage.by_area(conn, principal=who, period=q3)
        conn.commit()
        cached = conn.execute(text("SELECT count(*) FROM visit_coverage_cache")).scalar_one()
        assert cached == 2
        assert coverage.by_area(conn, principal=who, period=q3) == first  # from the cache
        g2_before = conn.execute(
            text("SELECT version FROM visit_area_state WHERE area = :a"), {"a": G2}
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO visits (household_id, village_code, visited_on, worker_name, notes) "
                "VALUES (:h, :v, '2026-08-08', 'x', '走访')"
            ),
            {"h": fx.hh["h6"], "v": V},
        )
        g2_after = conn.execute(
            text("SELECT version FROM visit_area_state WHERE area = :a"), {"a": G2}
        ).scalar_one()
        assert g2_after == g2_before + 1
        rows = {r.area_code: r for r in coverage.by_area(conn, principal=who, period=q3)}
        assert (rows[G2].visited, rows[G2].done) == (2, 2)  # h6 now visited in Q3
        assert rows[G1] == {r.area_code: r for r in first}[G1]
        scratch = coverage._area_rows(conn, who, "", q3)
        assert [(r.area, r.households, r.visited, r.due, r.done) for r in scratch] == [
            (r.area_code, r.households, r.visited, r.due, r.done) for r in rows.values()
        ]
        conn.rollback()
        with conn.begin():
            conn.execute(text("DELETE FROM visit_coverage_cache"))
