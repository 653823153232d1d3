"""The plan service and ``geogrid plan`` against a real PostGIS copy of the sample town.

One database per module holds three partitions of the sample town, made once: plan A
(activated), plan R (a redraw from A with unchanged data) and plan M (made by the CLI with
fixed cadre counts, then edited). Tests that need a pristine database use ``town_url``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geogrid import plans, store
from geogrid.cli import build_app
from geogrid.errors import IllegalTransition, InvalidInput, NotFound
from partition import Plan, move_group, validate_plan

TOWN = "420117105000"


@dataclass
class Town:
    url: str
    engine: Engine
    a: int  # first plan, activated
    r: int  # redraw from A
    supplied_before: dict[int, str]
    households: int


def supplied_geoms(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, md5(ST_AsBinary(geom)) FROM villager_groups "
                "WHERE territory_source = 'supplied'"
            )
        ).all()
    return {int(i): str(h) for i, h in rows}


@pytest.fixture(scope="module")
def town(pg, _town_template: str) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        before = supplied_geoms(engine)
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM households")).scalar_one()
        a = plans.create_plan(engine, TOWN, name="A", author="test", jobs=1)
        plans.activate_plan(engine, a)
        r = plans.create_plan(engine, TOWN, name="R", redraw_from=a, jobs=1)
        yield Town(url, engine, a, r, before, int(n))
    finally:
        engine.dispose()
        pg.drop_database(name)


def find_moves(plan: Plan) -> tuple[tuple[str, str, str], tuple[str, str, str, str]]:
    """A valid move ``(village, unit, to)`` and one refused because it splits a grid.

    Returns ``((village, unit, to), (village, unit, to, reason))``; tries candidates with
    the pure partitioner until both kinds are found.
    """
    ok: tuple[str, str, str] | None = None
    split: tuple[str, str, str, str] | None = None
    a = plan.assignment
    for vc in sorted(set(a["village_code"])):
        va = a[a["village_code"] == vc]
        codes = sorted(set(va["grid_code"]))
        for unit, src in zip(va["unit"], va["grid_code"], strict=True):
            if not str(unit).isdigit():
                continue
            for to in codes:
                if to == src or (ok and split):
                    continue
                try:
                    move_group(plan, str(unit), to, village_code=vc)
                except InvalidInput as exc:
                    if split is None and "split grid" in str(exc):
                        split = (vc, str(unit), to, str(exc))
                else:
                    ok = ok or (vc, str(unit), to)
        if ok and split:
            return ok, split
    raise AssertionError("the sample town offers no valid and no splitting move")


# --------------------------------------------------------------------------- inputs


def test_load_inputs_places_failed_geocodes_and_reports_ungrouped(town_url: str) -> None:
    engine = store.make_engine(town_url)
    try:
        with engine.begin() as conn:
            failed = conn.execute(
                text(
                    "UPDATE households SET geom = NULL, geocode_precision = 'failed' "
                    "WHERE id IN (SELECT id FROM households ORDER BY id LIMIT 5) "
                    "RETURNING register_no, village_code, group_id"
                )
            ).all()
            conn.execute(
                text(
                    "UPDATE households SET group_id = NULL "
                    "WHERE id = (SELECT max(id) FROM households)"
                )
            )
            total = conn.execute(text("SELECT count(*) FROM households")).scalar_one()
        with engine.connect() as conn:
            hh, villages, groups, inputs = plans.load_inputs(conn, TOWN)
        assert inputs["placed_failed_geocodes"] == 5
        assert inputs["without_group"] == 1
        assert len(hh) == total - 1
        assert {"register_no", "village_code", "group_no", "population"} <= set(hh.columns)
        assert hh.geometry.notna().all() and (hh.geom_type == "Point").all()
        # every stand-in point lies in the household's own village
        for r, vc, _ in failed:
            pt = hh.loc[(hh["register_no"] == r) & (hh["village_code"] == vc)].geometry.iloc[0]
            assert villages.loc[villages["code"] == vc].geometry.iloc[0].covers(pt)
        assert len(villages) == 14 and villages["code"].str.fullmatch(r"\d{12}").all()
        assert len(groups) > 0 and {"village_code", "group_no"} <= set(groups.columns)
    finally:
        engine.dispose()


def test_unknown_town_is_not_found(town: Town) -> None:
    with pytest.raises(NotFound, match="town 420117199000"):
        plans.create_plan(town.engine, "420117199000", jobs=1)


# --------------------------------------------------------------------------- plan A


def test_every_household_in_exactly_one_grid(town: Town) -> None:
    with town.engine.connect() as conn:
        bad = conn.execute(
            text(
                "SELECT h.id, count(gg.grid_id) FROM households h "
                "LEFT JOIN grid_groups gg ON gg.group_id = h.group_id AND gg.plan_id = :p "
                "GROUP BY h.id HAVING count(gg.grid_id) <> 1 LIMIT 5"
            ),
            {"p": town.a},
        ).all()
        total = conn.execute(
            text("SELECT sum(households) FROM grids WHERE plan_id = :p AND level = :l"),
            [{"p": town.a, "l": 3}],
        ).scalar_one()
        by_level = conn.execute(
            text("SELECT level, sum(households) FROM grids WHERE plan_id = :p GROUP BY level"),
            {"p": town.a},
        ).all()
    assert bad == []
    assert total == town.households
    assert {int(lv): int(h) for lv, h in by_level} == dict.fromkeys((1, 2, 3), town.households)


def test_levels_codes_and_parents(town: Town) -> None:
    with town.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT g.code, g.level, g.village_code, p.code, p.level, "
                "GeometryType(g.geom) FROM grids g LEFT JOIN grids p ON p.id = g.parent_id "
                "WHERE g.plan_id = :p ORDER BY g.code"
            ),
            {"p": town.a},
        ).all()
    frame = pd.DataFrame(rows, columns=["code", "level", "vc", "parent", "plevel", "gtype"])
    top = frame[frame["level"] == 1]
    assert top["code"].tolist() == [TOWN] and top["parent"].isna().all()
    villages = frame[frame["level"] == 2]
    assert len(villages) == 14
    assert (villages["parent"] == TOWN).all() and (villages["code"] == villages["vc"]).all()
    basic = frame[frame["level"] == 3]
    assert basic["code"].str.fullmatch(r"\d{15}").all()
    assert (basic["code"].str[:12] == basic["vc"]).all()
    assert (basic["parent"] == basic["vc"]).all() and (basic["plevel"] == 2).all()
    assert set(frame["gtype"]) == {"MULTIPOLYGON"}
    for _, g in basic.groupby("vc"):  # numbered 001, 002, ... within each village
        assert sorted(int(c[-3:]) for c in g["code"]) == list(range(1, len(g) + 1))


def test_grids_tile_each_village(town: Town) -> None:
    with town.engine.connect() as conn:
        gaps = conn.execute(
            text(
                "SELECT v.code, ST_Area(ST_SymDifference(ST_Union(g.geom), v.geom)::geography), "
                "ST_Area(v.geom::geography), ST_Perimeter(v.geom::geography) "
                "FROM grids g JOIN admin_areas v ON v.code = g.village_code "
                "WHERE g.plan_id = :p AND g.level = 3 GROUP BY v.code, v.geom"
            ),
            {"p": town.a},
        ).all()
        overlaps = conn.execute(
            text(
                "SELECT a.code, b.code, ST_Overlaps(a.geom, b.geom), "
                "ST_Area(ST_Intersection(a.geom, b.geom)::geography) "
                "FROM grids a JOIN grids b ON a.plan_id = b.plan_id "
                "AND a.village_code = b.village_code AND a.id < b.id "
                "AND a.level = 3 AND b.level = 3 AND ST_Intersects(a.geom, b.geom) "
                "WHERE a.plan_id = :p"
            ),
            {"p": town.a},
        ).all()
    assert len(gaps) == 14
    for code, gap, area, perimeter in gaps:
        # the partitioner snaps to a 1 cm grid: edges may move by up to a centimetre
        tol = max(1.0, 1e-6 * area, 0.02 * perimeter)
        assert gap < tol, f"village {code}: grids and village differ by {gap:.2f} m²"
    for a, b, _overlaps, shared in overlaps:
        assert shared < 1.0, f"grids {a} and {b} overlap by {shared:.2f} m²"


def test_plan_metrics_and_grid_metrics(town: Town) -> None:
    with town.engine.connect() as conn:
        info = plans.get_plan(conn, town.a)
        fc = plans.plan_grids(conn, town.a, level=3)
    t = info.metrics["totals"]
    assert t["grids"] == info.grids == len(fc["features"])
    assert 0.8 <= t["share_in_band"] <= 1.0 and t["households"] == town.households
    assert {v["code"] for v in info.metrics["villages"]} == {
        f["properties"]["village_code"] for f in fc["features"]
    }
    assert all("bound_in_band_share" in v for v in info.metrics["villages"])
    assert info.params["target"] == 150 and info.params["min"] == 100
    props = fc["features"][0]["properties"]
    assert {"code", "households", "deviation", "polsby_popper", "groups", "flags"} <= set(props)
    assert props["deviation"] == props["households"] - 150
    assert fc["features"][0]["geometry"]["type"] == "MultiPolygon"
    assert "units" not in props
    with town.engine.connect() as conn:
        assert validate_plan(plans.load_plan(conn, town.a), check_numbering=True) == []
        with pytest.raises(InvalidInput, match="level"):
            plans.plan_grids(conn, town.a, level=4)
        with pytest.raises(NotFound, match="plan 999999"):
            plans.get_plan(conn, 999999)


def test_derived_territories_written_supplied_kept(town: Town) -> None:
    with town.engine.connect() as conn:
        counts = dict(
            conn.execute(
                text(
                    "SELECT COALESCE(territory_source, 'none'), count(*) FROM villager_groups "
                    "WHERE geom IS NOT NULL GROUP BY 1"
                )
            ).all()
        )
        no_geom = conn.execute(
            text(
                "SELECT count(*) FROM villager_groups g WHERE geom IS NULL AND EXISTS "
                "(SELECT 1 FROM households h WHERE h.group_id = g.id)"
            )
        ).scalar_one()
    assert counts.get("derived", 0) > 0 and "none" not in counts
    assert no_geom == 0
    assert supplied_geoms(town.engine) == town.supplied_before


# --------------------------------------------------------------------------- redraw, diff


def test_redraw_with_unchanged_data_moves_nothing(town: Town) -> None:
    with town.engine.connect() as conn:
        r = plans.get_plan(conn, town.r)
        d = plans.diff_plans(conn, town.a, town.r)
    assert r.parent_id == town.a and r.params["redraw_from"] == town.a
    assert r.metrics["households_moved"] == 0
    assert r.metrics["totals"]["households_moved"] == 0
    assert d.households_moved == 0 and d.changes == []
    assert d.groups_compared > 100


def test_activate_archives_previous_and_refuses_non_drafts(town: Town) -> None:
    with town.engine.begin() as conn:
        assert plans.get_plan(conn, town.a).status == "active"
        conn.execute(  # a key unit not yet placed in any grid
            text(
                "INSERT INTO key_units (unit_no, name, unit_type, risk_level, geom, village_code) "
                "SELECT 'KU-T', '测试小学', '学校', 2, ST_PointOnSurface(geom), code "
                "FROM admin_areas "
                "WHERE level = 'village' ORDER BY code LIMIT 1"
            )
        )
    active = plans.activate_plan(town.engine, town.r)
    assert active.status == "active" and active.activated_at is not None
    with town.engine.connect() as conn:  # overlays follow the newly active grids
        placed = conn.execute(
            text(
                "SELECT k.grid_code = g.code FROM key_units k JOIN grids g "
                "ON g.plan_id = :p AND g.level = 3 AND ST_Contains(g.geom, k.geom) "
                "WHERE k.unit_no = 'KU-T'"
            ),
            {"p": town.r},
        ).scalar_one()
    assert placed is True
    with town.engine.connect() as conn:
        assert plans.get_plan(conn, town.a).status == "archived"
        actives = conn.execute(
            text("SELECT id FROM plans WHERE town_code = :t AND status = 'active'"), {"t": TOWN}
        ).all()
    assert actives == [(town.r,)]
    with pytest.raises(IllegalTransition, match=f"plan {town.a} is archived"):
        plans.activate_plan(town.engine, town.a)
    with pytest.raises(IllegalTransition, match=r"is active"):
        plans.activate_plan(town.engine, town.r)
    with pytest.raises(NotFound):
        plans.activate_plan(town.engine, 999999)


def test_concurrent_activations_leave_one_active(town: Town) -> None:
    with town.engine.begin() as conn:
        ids = [
            int(
                conn.execute(
                    text("INSERT INTO plans (town_code, name) VALUES (:t, :n) RETURNING id"),
                    {"t": TOWN, "n": f"bare {i}"},
                ).scalar_one()
            )
            for i in range(4)
        ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(ids))

    def run(pid: int) -> None:
        barrier.wait()
        try:
            plans.activate_plan(town.engine, pid)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with town.engine.connect() as conn:
        statuses = dict(
            conn.execute(
                text("SELECT id, status FROM plans WHERE town_code = :t"), {"t": TOWN}
            ).all()
        )
    assert errors == []
    assert list(statuses.values()).count("active") == 1
    assert {statuses[i] for i in ids} <= {"active", "archived"}


def test_diff_of_plans_of_other_towns_is_refused(town: Town) -> None:
    with town.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO admin_areas (code, level, name, parent_code) "
                "VALUES ('420117106000', 'town', 'other', '420117')"
            )
        )
        other = conn.execute(
            text("INSERT INTO plans (town_code, name) VALUES ('420117106000', 'o') RETURNING id")
        ).scalar_one()
    with town.engine.connect() as conn, pytest.raises(InvalidInput, match="different towns"):
        plans.diff_plans(conn, town.a, int(other))
    with town.engine.connect() as conn, pytest.raises(NotFound, match="plan 999999"):
        plans.diff_plans(conn, town.a, 999999)


# --------------------------------------------------------------------------- CLI, cadres, edits


def test_cli_create_with_cadres_then_move_diff_report(
    town: Town, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cad = pd.read_csv(sample_town.cadres, dtype={"village_code": str})
    listed = cad.iloc[[1, 3, 5]]
    csv = tmp_path / "cadres.csv"
    listed.to_csv(csv, index=False)
    runner = CliRunner()
    env = {"GEOGRID_DATABASE_URL": town.url}
    app = build_app()
    res = runner.invoke(
        app,
        ["plan", "create", "--town", TOWN, "--cadres", str(csv), "--jobs", "1", "--name", "M"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    found = re.search(r"plan id: (\d+)", res.output)
    assert found, res.output
    m = int(found.group(1))
    assert "grids within band" in res.output

    with town.engine.connect() as conn:
        counts = dict(
            conn.execute(
                text(
                    "SELECT village_code, count(*) FROM grids "
                    "WHERE plan_id = :p AND level = 3 GROUP BY 1"
                ),
                {"p": m},
            ).all()
        )
        info = plans.get_plan(conn, m)
        plan = plans.load_plan(conn, m)
    for vc, k in zip(listed["village_code"], listed["cadres"], strict=True):
        assert counts[vc] == k, f"village {vc}: {counts[vc]} grids, {k} cadres"
    assert info.params["cadres"] == dict(zip(listed["village_code"], listed["cadres"], strict=True))
    assert info.status == "draft" and info.version == 1

    (vc, unit, to), (svc, sunit, sto, reason) = find_moves(plan)
    # a move that disconnects a grid is refused, with the reason
    with pytest.raises(InvalidInput, match="split grid") as refused:
        plans.move_group_in_plan(
            town.engine, m, group=f"{svc}/{sunit}", to_grid_code=sto, expected_version=1
        )
    assert str(refused.value) == reason
    # a stale version is refused
    with pytest.raises(plans.StaleVersion, match="version 1, not 7"):
        plans.move_group_in_plan(
            town.engine, m, group=f"{vc}/{unit}", to_grid_code=to, expected_version=7
        )
    # a valid move through the CLI
    res = runner.invoke(
        app, ["plan", "move", str(m), "--group", f"{vc}/{unit}", "--to", to], env=env
    )
    assert res.exit_code == 0, res.output
    assert "version 2" in res.output
    with town.engine.connect() as conn:
        edited = plans.load_plan(conn, m)
        info = plans.get_plan(conn, m)
        member_of = conn.execute(
            text(
                "SELECT g.code FROM grid_groups gg JOIN grids g ON g.id = gg.grid_id "
                "JOIN villager_groups vg ON vg.id = gg.group_id "
                "WHERE gg.plan_id = :p AND vg.village_code = :vc AND vg.group_no = :g"
            ),
            {"p": m, "vc": vc, "g": int(unit)},
        ).scalar_one()
    assert member_of == to
    assert validate_plan(edited) == []
    assert info.version == 2 and info.metrics["edits"][-1]["to"] == to
    assert edited.grids.loc[edited.grids["code"] == to, "groups"].iloc[0].split(",").count(unit)

    res = runner.invoke(app, ["plan", "diff", str(town.a), str(m), "--json"], env=env)
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert body["households_moved"] >= 0 and isinstance(body["changes"], list)

    res = runner.invoke(app, ["plan", "list", "--town", TOWN], env=env)
    assert res.exit_code == 0 and "M" in res.output

    out = tmp_path / "report.json"
    res = runner.invoke(app, ["plan", "report", str(m), "-o", str(out)], env=env)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["totals"]["grids"] == info.grids
    html = tmp_path / "report.html"
    res = runner.invoke(app, ["plan", "report", str(m), "-o", str(html)], env=env)
    assert res.exit_code == 0, res.output
    page = html.read_text(encoding="utf-8")
    assert "<html" in page.lower()
    assert 'src="assets/' not in page  # Leaflet inlined: the file works offline on its own

    res = runner.invoke(app, ["plan", "activate", str(m)], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["plan", "activate", str(m)], env=env)
    assert res.exit_code != 0 and isinstance(res.exception, IllegalTransition)
    assert "only a draft" in str(res.exception)
    with pytest.raises(IllegalTransition, match="only a draft plan can be edited"):
        plans.move_group_in_plan(town.engine, m, group=f"{vc}/{unit}", to_grid_code=to)


def test_cadres_for_foreign_village_are_refused(town: Town) -> None:
    with pytest.raises(InvalidInput, match="not in town"):
        plans.create_plan(town.engine, TOWN, cadres={"420117999001": 3}, jobs=1)
    with town.engine.connect() as conn, pytest.raises(InvalidInput, match="not in town"):
        plans.check_create(conn, town_code=TOWN, cadres={"420117999001": 3})
