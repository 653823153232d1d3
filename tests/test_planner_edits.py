"""Planner edits of a draft against a real PostGIS copy of the sample town: the edit log
with undo and redo, renames, locks kept by redraws and village re-runs, re-running one
village with a set number of grids, and the move preview (band and contiguity)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

from geogrid import plans, store
from geogrid.errors import IllegalTransition, InvalidInput
from geogrid.planner import edits, history

TOWN = "420117105000"


@dataclass
class Town:
    engine: Engine
    active: int


@pytest.fixture(scope="module")
def town(pg, _town_template: str) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    engine = store.make_engine(pg.url(name))
    try:
        active = plans.create_plan(engine, TOWN, name="A", jobs=1)
        plans.activate_plan(engine, active)
        yield Town(engine, active)
    finally:
        engine.dispose()
        pg.drop_database(name)


@pytest.fixture
def draft(town: Town) -> int:
    """A fresh draft (a redraw of the active plan) for each test."""
    return plans.create_plan(town.engine, TOWN, name="D", redraw_from=town.active, jobs=1)


def state(engine: Engine, plan_id: int) -> dict[str, tuple[str, int, str, bool, list[str]]]:
    """Every basic grid: (name, households, geometry hash, locked, groups)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT code, name, households, md5(ST_AsBinary(geom)), locked, "
                "metrics->'groups' FROM grids WHERE plan_id = :p AND level = 3"
            ),
            {"p": plan_id},
        ).all()
        members = conn.execute(
            text("SELECT count(*) FROM grid_groups WHERE plan_id = :p"), {"p": plan_id}
        ).scalar_one()
    out = {r[0]: (r[1], int(r[2]), r[3], bool(r[4]), list(r[5] or [])) for r in rows}
    out["_members"] = ("", int(members), "", False, [])
    return out


def valid_move(engine: Engine, plan_id: int) -> tuple[str, str]:
    """A (group, to) move of the draft the rules allow."""
    with engine.connect() as conn:
        plan = plans.load_plan(conn, plan_id)
        for u in plan.assignment.itertuples():
            for to in sorted(set(plan.grids.loc[plan.grids["village_code"] == u.village_code,
                                                "code"])):  # fmt: skip
                if to == u.grid_code or not str(u.unit).isdigit():
                    continue
                group = f"{u.village_code}/{u.unit}"
                p = edits.preview_move(conn, plan_id, group=group, to_grid_code=to)
                if p.allowed:
                    return group, to
    raise AssertionError("no valid move in the sample town")


def version(engine: Engine, plan_id: int) -> int:
    with engine.connect() as conn:
        return plans.plan_version(conn, plan_id)


def test_undo_redo_and_history(town: Town, draft: int) -> None:
    e = town.engine
    start = state(e, draft)
    group, to = valid_move(e, draft)
    v0 = version(e, draft)
    moved = plans.move_group_in_plan(e, draft, group=group, to_grid_code=to,
                                     expected_version=v0, author="t")  # fmt: skip
    after_move = state(e, draft)
    assert after_move != start and moved.version == v0 + 1
    with e.connect() as conn:
        h = history.history(conn, draft)
    assert [x.kind for x in h.entries] == ["move"] and h.can_undo and not h.can_redo
    assert h.entries[0].payload["group"] == group and h.entries[0].author == "t"
    # undo needs the current version; a stale one is refused
    with pytest.raises(plans.StaleVersion):
        history.undo(e, draft, expected_version=v0)
    u = history.undo(e, draft, expected_version=moved.version, author="t")
    assert u.version == moved.version + 1 and u.kind == "undo" and u.payload["of"] == 1
    assert state(e, draft) == start
    with e.connect() as conn:
        h = history.history(conn, draft)
    assert h.entries[0].undone and h.redo_seq == 1 and not h.can_undo
    with pytest.raises(InvalidInput) as nothing:
        history.undo(e, draft)
    assert nothing.value.detail["reason"] == "nothing_to_undo"
    r = history.redo(e, draft, expected_version=u.version)
    assert r.kind == "redo" and state(e, draft) == after_move
    # a new edit after an undo clears what could be redone
    history.undo(e, draft)
    grid = sorted(k for k in start if not k.startswith("_"))[0]
    edits.rename_grid(e, draft, grid, "  新  名字 ")
    assert state(e, draft)[grid][0] == "新 名字"
    with e.connect() as conn:
        h = history.history(conn, draft)
    assert [x.kind for x in h.entries] == ["move", "undo", "redo", "undo", "rename"]
    assert not h.can_redo and h.undo_seq == 5
    history.undo(e, draft)
    assert state(e, draft) == start


def test_edits_need_a_draft(town: Town) -> None:
    e = town.engine
    grid = next(k for k in state(e, town.active) if not k.startswith("_"))
    with pytest.raises(IllegalTransition):
        edits.rename_grid(e, town.active, grid, "x")
    with pytest.raises(IllegalTransition):
        history.undo(e, town.active)
    with e.connect() as conn:
        assert edits.preview_move(conn, town.active, group=f"{grid[:12]}/1",
                                  to_grid_code=grid).reason == "not_draft"  # fmt: skip


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "name_empty"), ("   ", "name_empty"), ("x" * 61, "name_invalid"),
     ("a\x07b", "name_invalid")],
)  # fmt: skip
def test_rename_refuses_bad_names(town: Town, draft: int, name: str, reason: str) -> None:
    grid = next(k for k in state(town.engine, draft) if not k.startswith("_"))
    with pytest.raises(InvalidInput) as exc:
        edits.rename_grid(town.engine, draft, grid, name)
    assert exc.value.detail["reason"] == reason


def test_locks_refuse_moves_and_survive_redraw_and_rerun(town: Town, draft: int) -> None:
    e = town.engine
    group, to = valid_move(e, draft)
    edits.set_lock(e, draft, to, True)
    with pytest.raises(InvalidInput) as again:
        edits.set_lock(e, draft, to, True)
    assert again.value.detail["reason"] == "unchanged"
    with e.connect() as conn:
        p = edits.preview_move(conn, draft, group=group, to_grid_code=to)
    assert not p.allowed and p.reason == "grid_locked"
    with pytest.raises(InvalidInput):
        plans.move_group_in_plan(e, draft, group=group, to_grid_code=to)
    kept = state(e, draft)[to]
    # a redraw from the draft keeps the locked grid exactly, and locked
    redrawn = plans.create_plan(e, TOWN, redraw_from=draft, jobs=1)
    assert state(e, redrawn)[to] == kept
    # a re-run of the village keeps it too, with one grid more than before
    village = to[:12]
    n = sum(1 for k in state(e, draft) if k.startswith(village))
    edits.rerun_village(e, draft, village, grids=n + 1)
    s = state(e, draft)
    assert s[to] == kept
    assert sum(1 for k in s if k.startswith(village)) == n + 1
    with pytest.raises(InvalidInput) as few:
        edits.rerun_village(e, draft, village, grids=1)
    assert few.value.detail["reason"] == "grids_below_locked"
    edits.set_lock(e, draft, to, False)
    with e.connect() as conn:
        assert not history.history(conn, draft).can_redo


def test_rerun_one_village_only(town: Town, draft: int) -> None:
    e = town.engine
    start = state(e, draft)
    with e.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT village_code, count(*) FROM grids WHERE plan_id = :p AND level = 3 "
                "GROUP BY 1 HAVING count(*) >= 2 ORDER BY 2 DESC, 1"
            ),
            {"p": draft},
        ).all()
        total = conn.execute(
            text("SELECT households FROM grids WHERE plan_id = :p AND level = 1"), {"p": draft}
        ).scalar_one()
    village, n = counts[0]
    r = edits.rerun_village(e, draft, village, grids=n - 1, expected_version=version(e, draft))
    assert r.kind == "rerun" and r.payload["grids_before"] == n
    s = state(e, draft)
    assert {k: v for k, v in s.items() if k.startswith(village)}.keys() == {
        f"{village}{i:03d}" for i in range(1, n)
    }
    others = {k: v for k, v in start.items() if not k.startswith(village) and k != "_members"}
    assert others == {k: v for k, v in s.items() if not k.startswith(village) and k != "_members"}
    with e.connect() as conn:
        info = plans.get_plan(conn, draft)
        vrow = next(v for v in info.metrics["villages"] if v["code"] == village)
        hh = conn.execute(
            text("SELECT sum(households) FROM grids WHERE plan_id = :p AND level = 3"),
            {"p": draft},
        ).scalar_one()
    assert vrow["grids"] == n - 1 and info.metrics["totals"]["grids"] == len(start) - 2
    assert hh == total  # every household still in exactly one grid
    history.undo(e, draft)
    assert state(e, draft) == start
    with pytest.raises(InvalidInput):
        edits.rerun_village(e, draft, village, grids=0)


def test_preview_warns_of_band_and_refuses_contiguity(town: Town, draft: int) -> None:
    e = town.engine
    with e.connect() as conn:
        plan = plans.load_plan(conn, draft)
        seen: dict[str, edits.MovePreview] = {}
        for u in plan.assignment.itertuples():
            if not str(u.unit).isdigit():
                continue
            for to in sorted(set(plan.grids.loc[plan.grids["village_code"] == u.village_code,
                                                "code"]) - {u.grid_code}):  # fmt: skip
                p = edits.preview_move(conn, draft, group=f"{u.village_code}/{u.unit}",
                                       to_grid_code=to)  # fmt: skip
                key = "band" if p.needs_confirmation else (p.reason or "ok")
                seen.setdefault(key, p)
            if {"band", "breaks_contiguity", "not_adjacent"} <= set(seen):
                break
    band = seen["band"]
    w = band.warnings[0]
    assert w["reason"] in ("below_band", "above_band") and (w["min"], w["max"]) == (100, 200)
    assert not 100 <= w["after"] <= 200 and band.after[w["grid"]] == w["after"]
    assert sum(band.before.values()) == sum(band.after.values())
    assert "split" in (seen["breaks_contiguity"].message or "")
    # the move itself needs the confirmation
    with pytest.raises(plans.NeedsConfirmation) as exc:
        plans.move_group_in_plan(e, draft, group=f"{band.village_code}/{band.unit}",
                                 to_grid_code=band.to_grid or "", confirm=False)  # fmt: skip
    assert exc.value.detail["warnings"] == band.warnings
    plans.move_group_in_plan(e, draft, group=f"{band.village_code}/{band.unit}",
                             to_grid_code=band.to_grid or "", confirm=True)  # fmt: skip


def test_redraw_keeps_grids_named_locked(town: Town) -> None:
    e = town.engine
    grid = sorted(k for k in state(e, town.active) if not k.startswith("_"))[0]
    redrawn = plans.create_plan(e, TOWN, redraw_from=town.active, locked=[grid], jobs=1)
    kept = state(e, redrawn)[grid]
    assert kept[3] is True and kept[1:3] == state(e, town.active)[grid][1:3]
    with e.connect() as conn:
        assert plans.get_plan(conn, redrawn).params["locked"] == [grid]
    with pytest.raises(InvalidInput) as exc:
        plans.create_plan(e, TOWN, locked=[grid], jobs=1)
    assert exc.value.detail["reason"] == "locked_without_redraw"
