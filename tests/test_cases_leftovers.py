"""Issue 12 leftovers: /api/heat and /api/stats/cases-by-grid filtered by workflow status and
overdue (the tiles' parser), counted against the database on the sample town; who may ask;
the heat pyramid left incremental; a year of imported cases in plausible proportions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.cases.machine import CLOSED_STATUSES, STATUSES, TIMED_STATUSES
from geogrid.overlays import import_overlay
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings


@dataclass
class Town:
    client: TestClient
    engine: Engine
    url: str
    headers: dict[str, str]
    bbox: str


@pytest.fixture(scope="module")
def town(pg, _town_template: str, sample_town, account_maker, tmp_path_factory) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    activate_plan(engine, create_plan(engine, sample_town.town_code, name="a", jobs=1))
    import_overlay(engine, sample_town.cases, "cases")
    with engine.connect() as conn:
        box = conn.execute(
            text(
                "SELECT ST_XMin(e) - 0.001, ST_YMin(e) - 0.001, ST_XMax(e) + 0.001, "
                "ST_YMax(e) + 0.001 FROM (SELECT ST_Extent(geom) AS e FROM cases) s"
            )
        ).one()
    viewer = account_maker(url, "viewer", sample_town.town_code)
    app = create_app(Settings(home=tmp_path_factory.mktemp("leftovers")), database_url=url)
    try:
        with TestClient(app) as client:
            yield Town(client, engine, url, viewer.headers(client), ",".join(map(str, box)))
    finally:
        engine.dispose()
        pg.drop_database(name)


_TIMED_SQL = "c.status IN ({})".format(", ".join(f"'{s}'" for s in sorted(TIMED_STATUSES)))
#: Overdue as the case service defines it: a running step deadline passed.
OVERDUE = f"{_TIMED_SQL} AND c.due_at < now()"
#: (query, the same cases in SQL): one status, several, overdue, not overdue, both.
FILTERS: list[tuple[dict[str, str], str]] = [
    ({"status": "in_progress"}, "c.status = 'in_progress'"),
    ({"status": "dispatched,handled,dispatched"}, "c.status IN ('dispatched', 'handled')"),
    ({"overdue": "true"}, OVERDUE),
    ({"overdue": "0"}, f"NOT ({OVERDUE})"),
    ({"status": "dispatched,in_progress", "overdue": "1"},
     f"c.status IN ('dispatched', 'in_progress') AND {OVERDUE}"),
    ({"status": "archived", "overdue": "false"}, "c.status = 'archived'"),
]  # fmt: skip
WINDOW = {"from": "2025-03-01", "to": "2025-10-31", "category": "环境卫生,消防隐患,矛盾纠纷"}
WINDOW_SQL = (
    "c.reported_at >= '2025-03-01T00:00:00+08:00' AND c.reported_at < '2025-11-01T00:00:00+08:00' "
    "AND c.category IN ('环境卫生', '消防隐患', '矛盾纠纷')"
)


def _rows(t: Town, sql: str) -> list[Any]:
    with t.engine.connect() as conn:
        return list(conn.execute(text(sql)).all())


def _count(t: Town, where: str) -> int:
    return int(_rows(t, f"SELECT count(*) FROM cases c WHERE {where}")[0][0])


def test_the_sample_town_has_every_kind_of_case_the_filters_name(town: Town) -> None:
    for _, where in FILTERS:
        assert 0 < _count(town, where) < _count(town, "true"), where
    assert 0 < _count(town, f"{WINDOW_SQL} AND {OVERDUE}") < _count(town, WINDOW_SQL)


@pytest.mark.parametrize("z", [10, 13, 14])
@pytest.mark.parametrize(("params", "where"), FILTERS, ids=lambda v: str(v)[:40])
def test_heat_geojson_filtered_equals_sql(
    town: Town, z: int, params: dict[str, str], where: str
) -> None:
    r = town.client.get(
        "/api/heat", params={"bbox": town.bbox, "z": z, **params}, headers=town.headers
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/geo+json"
    feats = r.json()["features"]
    assert sum(f["properties"]["n"] for f in feats) == _count(town, where)
    assert {f["properties"]["level"] for f in feats} == {z + 4}
    assert all(f["properties"]["n"] > 0 for f in feats)


def test_heat_geojson_bins_equal_the_heat_tiles_bins(town: Town) -> None:
    """Filtered or not, the GeoJSON bins are the ones the pyramid (and the tiles) use."""
    z = 12
    everything = town.client.get(
        "/api/heat", params={"bbox": town.bbox, "z": z}, headers=town.headers
    ).json()["features"]
    open_only = town.client.get(
        "/api/heat",
        params={"bbox": town.bbox, "z": z, "status": ",".join(sorted(TIMED_STATUSES))},
        headers=town.headers,
    ).json()["features"]
    every = {(f["properties"]["bin_x"], f["properties"]["bin_y"]): f for f in everything}
    assert open_only and all(
        (f["properties"]["bin_x"], f["properties"]["bin_y"]) in every for f in open_only
    )
    for f in open_only:
        same = every[(f["properties"]["bin_x"], f["properties"]["bin_y"])]
        assert f["geometry"] == same["geometry"]
        assert f["properties"]["n"] <= same["properties"]["n"]
    # every status at once is every case: the live count equals the pyramid's, bin by bin
    all_states = town.client.get(
        "/api/heat",
        params={"bbox": town.bbox, "z": z, "status": ",".join(STATUSES)},
        headers=town.headers,
    ).json()["features"]
    assert {(f["properties"]["bin_x"], f["properties"]["bin_y"], f["properties"]["n"])
            for f in all_states} == {
        (f["properties"]["bin_x"], f["properties"]["bin_y"], f["properties"]["n"])
        for f in everything
    }  # fmt: skip


def test_heat_geojson_window_and_filter_together(town: Town) -> None:
    r = town.client.get(
        "/api/heat",
        params={"bbox": town.bbox, "z": 11, "overdue": "true", **WINDOW},
        headers=town.headers,
    )
    assert r.status_code == 200, r.text
    n = sum(f["properties"]["n"] for f in r.json()["features"])
    assert n == _count(town, f"{WINDOW_SQL} AND {OVERDUE}")


def _grid_counts(t: Town, where: str) -> dict[str, int]:
    return {
        str(g): int(n)
        for g, n in _rows(
            t,
            f"SELECT c.grid_code, count(*) FROM cases c WHERE c.grid_code IS NOT NULL "
            f"AND {where} GROUP BY 1",
        )
    }


@pytest.mark.parametrize(("params", "where"), FILTERS, ids=lambda v: str(v)[:40])
def test_cases_by_grid_filtered_equals_sql(town: Town, params: dict[str, str], where: str) -> None:
    r = town.client.get(
        "/api/stats/cases-by-grid", params={"geometry": "false", **params}, headers=town.headers
    )
    assert r.status_code == 200, r.text
    body = r.json()
    got = {f["properties"]["code"]: f["properties"]["cases"] for f in body["features"]}
    want = _grid_counts(town, where)
    assert {k: v for k, v in got.items() if v} == want
    totals = {str(c): int(n) for c, n in _rows(
        town, f"SELECT c.category, count(*) FROM cases c WHERE {where} GROUP BY 1"
    )}  # fmt: skip
    assert body["totals"] == totals
    flag = params.get("overdue")
    assert body["filter"]["overdue"] == (None if flag is None else flag in ("true", "1"))
    statuses = params.get("status")
    assert body["filter"]["status"] == (
        None if statuses is None else sorted(set(statuses.split(",")))
    )


def test_cases_by_grid_window_and_filter_together(town: Town) -> None:
    where = f"{WINDOW_SQL} AND {OVERDUE}"
    body = town.client.get(
        "/api/stats/cases-by-grid",
        params={"geometry": "false", "overdue": "true", **WINDOW},
        headers=town.headers,
    ).json()
    got = {f["properties"]["code"]: f["properties"]["cases"] for f in body["features"]}
    assert {k: v for k, v in got.items() if v} == _grid_counts(town, where)
    assert sum(body["totals"].values()) == _count(town, where)
    assert body["filter"] == {"status": None, "overdue": True}
    # unfiltered, the answer still comes from the pyramid, and agrees with SQL
    plain = town.client.get(
        "/api/stats/cases-by-grid", params={"geometry": "false", **WINDOW}, headers=town.headers
    ).json()
    assert sum(plain["totals"].values()) == _count(town, WINDOW_SQL)
    assert plain["filter"] == {"status": None, "overdue": None}


@pytest.mark.parametrize("path", ["/api/heat", "/api/stats/cases-by-grid"])
@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"status": "done"}, "unknown case status 'done'"),
        ({"status": "closed,Closed"}, "unknown case status 'Closed'"),
        ({"status": "closed;voided"}, "unknown case status"),
        ({"overdue": "maybe"}, "'overdue' must be true or false"),
        ({"overdue": "yes"}, "'overdue' must be true or false"),
        ({"status": "x" * 301}, "status"),
        ({"overdue": "falsey"}, "overdue"),
    ],
    ids=["unknown", "case", "separator", "maybe", "yes", "too-long", "too-long-flag"],
)
def test_bad_filters_are_refused_in_the_error_shape(
    town: Town, path: str, params: dict[str, str], words: str
) -> None:
    base = {"bbox": town.bbox, "z": "11"} if path == "/api/heat" else {}
    r = town.client.get(path, params={**base, **params}, headers=town.headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) >= {"code", "description"} and isinstance(body["code"], str)
    assert words in body["description"]
    assert "SELECT" not in r.text


def test_filters_are_parsed_like_the_tiles(town: Town) -> None:
    """The three routes refuse the same values with the same words (one parser)."""
    for params in ({"status": "bogus"}, {"overdue": "2"}):
        tile = town.client.get("/tiles/heat/12/3300/1700.mvt", params=params, headers=town.headers)
        geo = town.client.get(
            "/api/heat", params={"bbox": town.bbox, "z": 11, **params}, headers=town.headers
        )
        stats = town.client.get("/api/stats/cases-by-grid", params=params, headers=town.headers)
        assert tile.status_code == geo.status_code == stats.status_code == 400
        assert tile.json() == geo.json() == stats.json()


# --------------------------------------------------------------------------- who may ask


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (None, 401),
        ("sysadmin", 403),
        ("secadmin", 403),
        ("auditor", 403),
        ("planner", 200),
        ("viewer", 200),
        ("town_leader", 200),
        ("village_leader", 200),
        ("grid_worker", 200),
    ],
)
def test_filtered_answers_follow_the_access_matrix(
    town: Town, account_maker, role: str | None, status: int
) -> None:  # type: ignore[no-untyped-def]
    scope = "all"
    if role in ("planner", "viewer", "town_leader", "village_leader", "grid_worker"):
        scope = str(_rows(town, "SELECT min(grid_code) FROM cases")[0][0])
        scope = {"village_leader": scope[:12], "grid_worker": scope}.get(role, scope[:9] + "000")
    headers = account_maker(town.url, role, scope).headers(town.client) if role else {}
    for path, params in (
        ("/api/heat", {"bbox": town.bbox, "z": 11, "overdue": "true"}),
        ("/api/stats/cases-by-grid", {"status": "dispatched", "geometry": "false"}),
    ):
        r = town.client.get(path, params=params, headers=headers)
        assert r.status_code == status, (path, r.text)
        if status != 200:
            assert set(r.json()) >= {"code", "description"}


def test_anonymous_see_filtered_heat_only_when_heat_is_public(town: Town, account_maker) -> None:  # type: ignore[no-untyped-def]
    sec = account_maker(town.url, "secadmin").headers(town.client)
    params = {"bbox": town.bbox, "z": 11, "overdue": "true"}
    assert town.client.get("/api/heat", params=params).status_code == 401
    r = town.client.put("/api/layers/public/heat", json={"public": True}, headers=sec)
    assert r.status_code in (200, 204), r.text
    try:
        town.client.app.state.public_layers = None  # type: ignore[attr-defined]
        r = town.client.get("/api/heat", params=params)
        assert r.status_code == 200, r.text
        assert sum(f["properties"]["n"] for f in r.json()["features"]) == _count(town, OVERDUE)
        # counts only: nothing about a case but how many
        assert {k for f in r.json()["features"] for k in f["properties"]} == {
            "n", "level", "bin_x", "bin_y"
        }  # fmt: skip
        assert r.headers["cache-control"].startswith("public")
    finally:
        town.client.put("/api/layers/public/heat", json={"public": False}, headers=sec)
        town.client.app.state.public_layers = None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- pyramid


def _pyramid(t: Town) -> tuple[Any, ...]:
    return tuple(
        _rows(
            t,
            "SELECT (SELECT count(*) FROM heat_cum), (SELECT md5(string_agg(h::text, '' "
            "ORDER BY level, bin_x, bin_y, category, year)) FROM heat_cum h), "
            "(SELECT count(*) FROM heat_daily), (SELECT count(*) FROM heat_dirty)",
        )[0]
    )


def test_filters_leave_the_pyramid_incremental(town: Town) -> None:
    """Filtered answers are counted live; the pyramid is neither rebuilt nor extended, and
    a case's change reaches the filtered answers as soon as the tile service reads the new
    data version (it trusts a reading for a quarter of a second)."""
    params = {"bbox": town.bbox, "z": 11, "status": "in_progress"}
    town.client.get("/api/heat", params={"bbox": town.bbox, "z": 11}, headers=town.headers)
    before = _pyramid(town)
    assert before[3] == 0  # refreshed by the unfiltered request
    first = town.client.get("/api/heat", params=params, headers=town.headers).json()
    town.client.get(
        "/api/stats/cases-by-grid", params={"status": "in_progress"}, headers=town.headers
    )
    assert _pyramid(town) == before
    n0 = sum(f["properties"]["n"] for f in first["features"])
    with town.engine.begin() as conn:
        case_id, grid = conn.execute(
            text(
                "SELECT id, grid_code FROM cases WHERE status = 'dispatched' "
                "AND grid_code IS NOT NULL ORDER BY id LIMIT 1"
            )
        ).one()
        conn.execute(text("UPDATE cases SET status = 'in_progress' WHERE id = :i"), {"i": case_id})
    time.sleep(town.client.app.state.tiles.watcher.interval + 0.05)  # type: ignore[attr-defined]
    try:
        again = town.client.get("/api/heat", params=params, headers=town.headers).json()
        assert sum(f["properties"]["n"] for f in again["features"]) == n0 + 1
        stats = town.client.get(
            "/api/stats/cases-by-grid",
            params={"status": "in_progress", "geometry": "false"},
            headers=town.headers,
        ).json()
        got = {f["properties"]["code"]: f["properties"]["cases"] for f in stats["features"]}
        assert got[grid] == _grid_counts(town, "c.status = 'in_progress'")[grid]
        # the change was refreshed (nothing dirty) and left the running totals as they were
        # (a status change moves no case between bins)
        assert _pyramid(town) == before
    finally:
        with town.engine.begin() as conn:
            conn.execute(
                text("UPDATE cases SET status = 'dispatched' WHERE id = :i"), {"i": case_id}
            )


# --------------------------------------------------------------------------- history (§9)


def test_a_year_of_imported_cases_in_plausible_proportions(town: Town) -> None:
    """The sample town's imported year: most cases finished, a working queue open, some of
    it overdue, some rework, spread over the year."""
    closed_sql = "c.status IN ({})".format(", ".join(f"'{s}'" for s in sorted(CLOSED_STATUSES)))
    total = _count(town, "true")
    closed = _count(town, closed_sql)
    open_ = total - closed
    overdue = _count(town, OVERDUE)
    reworked = _count(town, "c.rework_count > 0")
    handled = _count(town, "EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = c.id "
                           "AND e.action = 'handle')")  # fmt: skip
    months = _rows(
        town,
        "SELECT count(DISTINCT date_trunc('month', reported_at AT TIME ZONE 'Asia/Shanghai')) "
        "FROM cases",
    )[0][0]
    assert total >= 200
    assert 0.6 <= closed / total <= 0.97, (closed, total)  # most of a year is done...
    assert 0.03 <= open_ / total <= 0.4, (open_, total)  # ...and a queue remains
    # some of it late, not all (the sample year is 2025 and histories run to today, so the
    # share grows as the year ages: no upper bound but "not every open case")
    assert overdue / open_ >= 0.05 and overdue < open_, (overdue, open_)
    assert 0.01 <= reworked / handled <= 0.3, (reworked, handled)  # rework is the exception
    assert months >= 10  # the cases span the year
    # every open case of a timed step has its deadline (or says why not)
    assert _count(town, f"{_TIMED_SQL} AND c.due_at IS NULL AND c.deadline_problem IS NULL") == 0
    # the open queue spreads over several statuses, as a working centre's does
    open_statuses = _rows(
        town, f"SELECT count(DISTINCT c.status) FROM cases c WHERE NOT ({closed_sql})"
    )[0][0]
    assert open_statuses >= 4
