"""Grid teams (五个一同步): the five parts, their completeness (worked out by hand here), the
guards, the public part, and /api/grid-teams for every role and scope (allowed and refused;
tests/test_access_api.py leaves the prefix to this file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from api.auth import all_routes, policy_of
from geogrid.archives import teams
from geogrid.errors import Conflict, InvalidInput, NotFound
from tests.archives_support import World, make_world

ROUTES = {
    ("GET", "/api/grid-teams"): "team.read",
    ("GET", "/api/grid-teams/{code}"): "team.read",
    ("PUT", "/api/grid-teams/{code}"): "team.write",
    ("GET", "/api/grid-teams/{code}/public"): "public.read",
}


@pytest.fixture(scope="module")
def world(pg, _town_template, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(
        pg, _town_template, account_maker, tmp_path_factory.mktemp("teams"), members=False
    )


def _full_team(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "party_org_kind": "group",
        "party_org_name": "第一网格党小组",
        "archive_no": "GX-001",
        "archive_place": "村委会档案室",
        "members": [
            {
                "role": "party_leader",
                "name": "周党建",
                "title": "党小组长",
                "office_phone": "0731-8000001",
            },
            {"role": "party_member", "name": "吴党员", "public": False},
            {
                "role": "npc_deputy",
                "name": "郑代表",
                "title": "镇人大代表",
                "office_phone": "0731-8000002",
            },
            {"role": "volunteer", "name": "冯志愿"},
        ],
    }
    body.update(over)
    return body


def test_every_route_under_the_prefix_is_listed() -> None:
    from api import create_app

    app = create_app()
    found = {
        (m, r.path): policy_of(r)
        for r in all_routes(app)  # type: ignore[arg-type]
        if r.path.startswith("/api/grid-teams")
        for m in getattr(r, "methods", ())
        if m != "HEAD"
    }
    assert found == ROUTES


def test_completeness_counts_the_five_parts(world: World) -> None:
    grid, sibling = world.codes["grid"], world.codes["sibling"]
    with world.engine.begin() as conn:
        conn.execute(text("DELETE FROM grid_teams WHERE grid_code IN (:a, :b)"),
                     {"a": grid, "b": sibling})  # fmt: skip
        before = {r["grid_code"]: r for r in teams.completeness(conn, world.codes["village"])}
        # the seed posts a leader and an information officer in every grid: 2 of 5
        assert before[grid]["parts"] == 2
        assert (before[grid]["leader"], before[grid]["info_officer"]) == (True, True)
        assert not (
            before[grid]["party"] or before[grid]["service_team"] or before[grid]["archive"]
        )
        team = teams.TeamIn(
            party_org_kind="group", party_org_name="党小组", archive_no="A-1",
            members=[teams.MemberIn("party_member", "甲"), teams.MemberIn("volunteer", "乙")],
        )  # fmt: skip
        teams.save_team(conn, grid, team, actor="t")
        # a named party organisation without members is not a party group (rule 2)
        teams.save_team(conn, sibling, teams.TeamIn(party_org_name="第二党支部"), actor="t")
        conn.execute(
            text(
                "DELETE FROM staff_assignments a USING grids g WHERE a.grid_id = g.id "
                "AND g.code = :s AND a.role = 'info_officer'"
            ),
            {"s": sibling},
        )
        after = {r["grid_code"]: r for r in teams.completeness(conn, world.codes["village"])}
        assert after[grid]["parts"] == 5
        assert after[sibling]["parts"] == 1  # the leader only
        assert after[sibling]["party"] is False and after[sibling]["info_officer"] is False
        # every grid of the village is listed once, other villages are not
        assert all(c.startswith(world.codes["village"]) for c in after)
        conn.rollback()


def test_save_replaces_members_and_checks_the_version(world: World) -> None:
    grid = world.codes["grid"]
    with world.engine.begin() as conn:
        party = teams.TeamIn(party_org_name="X", members=[teams.MemberIn("party_member", "甲")])
        first = teams.save_team(conn, grid, party, actor="a")
        v = first["version"]
        second = teams.save_team(
            conn, grid, teams.TeamIn(members=[teams.MemberIn("volunteer", "乙")]),
            actor="b", version=v,
        )  # fmt: skip
        assert second["version"] == v + 1
        assert [m["name"] for m in second["members"]] == ["乙"]
        assert second["updated_by"] == "b"
        with pytest.raises(Conflict):
            teams.save_team(conn, grid, teams.TeamIn(), actor="c", version=v)
        conn.rollback()


M = teams.MemberIn
BAD_TEAMS = [
    ("kind", teams.TeamIn(party_org_kind="committee")),
    ("org name length", teams.TeamIn(party_org_name="党" * 81)),
    ("control characters", teams.TeamIn(party_org_name="党小组\x07")),
    ("post as member", teams.TeamIn(members=[teams.MemberIn("leader", "甲")])),
    ("unknown role", teams.TeamIn(members=[teams.MemberIn("mayor", "甲")])),
    ("empty name", teams.TeamIn(members=[teams.MemberIn("volunteer", "  ")])),
    ("long name", teams.TeamIn(members=[teams.MemberIn("volunteer", "甲" * 41)])),
    ("phone characters", teams.TeamIn(members=[M("volunteer", "甲", office_phone="call me")])),
    ("staff id", teams.TeamIn(members=[teams.MemberIn("volunteer", "甲", staff_id=0)])),
    ("two party leaders", teams.TeamIn(party_org_name="P", members=[
        teams.MemberIn("party_leader", "甲"), teams.MemberIn("party_leader", "乙")])),
    ("party without organisation", teams.TeamIn(members=[teams.MemberIn("party_member", "甲")])),
    ("too many members", teams.TeamIn(members=[M("volunteer", f"v{i}") for i in range(101)])),
    ("archive no length", teams.TeamIn(archive_no="1" * 41)),
    ("archive place length", teams.TeamIn(archive_place="室" * 121)),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "team"), BAD_TEAMS, ids=[r for r, _ in BAD_TEAMS])
def test_validate_team_rejects(rule: str, team: teams.TeamIn) -> None:
    with pytest.raises(InvalidInput):
        teams.validate_team(team)


@pytest.mark.parametrize("code", ["42011710520100", "4201171052010011", "42011710520100x", ""])
def test_bad_grid_codes_are_rejected(world: World, code: str) -> None:
    with world.engine.connect() as conn, pytest.raises(InvalidInput):
        teams.get_team(conn, code)


def test_unknown_grid_and_staff_are_not_found(world: World) -> None:
    with world.engine.begin() as conn:
        with pytest.raises(NotFound):
            teams.get_team(conn, "420117999201001")
        with pytest.raises(NotFound):
            teams.save_team(
                conn, world.codes["grid"],
                teams.TeamIn(members=[teams.MemberIn("volunteer", "甲", staff_id=2**31 - 1)]),
                actor="t",
            )  # fmt: skip
        with pytest.raises(InvalidInput):
            teams.completeness(conn, "42x")
        conn.rollback()


def _expect(subject: str, route: tuple[str, str], code: str) -> int:
    """The status the policy and scopes give ``subject`` on the team of grid ``code``."""
    method, path = route
    if path.endswith("/public"):
        return 200
    if subject == "anonymous":
        return 401
    write = method == "PUT"
    role_ok = {
        False: ("planner", "viewer", "town_leader", "town_leader_unmask", "village_leader",
                "grid_worker", "grid_worker_unmask", "town_leader_other",
                "village_leader_other", "grid_worker_sibling"),
        True: ("town_leader", "town_leader_unmask", "town_leader_other"),
    }[write]  # fmt: skip
    if subject not in role_ok:
        return 403
    if path == "/api/grid-teams":
        return 200  # no code: the user's own scope
    if subject in ("town_leader_other", "village_leader_other", "grid_worker_sibling"):
        return 403
    return 200


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_role_matrix(world: World, route: tuple[str, str]) -> None:
    method, path = route
    code = world.codes["grid"]
    url = path.replace("{code}", code)
    for subject, headers in world.headers.items():
        kw = {"json": _full_team()} if method == "PUT" else {}
        r = world.client.request(method, url, headers=headers, **kw)
        assert r.status_code == _expect(subject, route, code), (subject, r.text)


def test_list_with_an_area_is_scope_checked(world: World) -> None:
    h = world.headers
    r = world.client.get("/api/grid-teams", params={"code": world.codes["village"]},
                         headers=h["village_leader"])  # fmt: skip
    assert r.status_code == 200
    grids = r.json()["grids"]
    assert grids and all(g["grid_code"].startswith(world.codes["village"]) for g in grids)
    assert set(r.json()["parts"]) == set(teams.PARTS)
    r = world.client.get("/api/grid-teams", params={"code": world.codes["village"]},
                         headers=h["village_leader_other"])  # fmt: skip
    assert r.status_code == 403
    r = world.client.get("/api/grid-teams", params={"code": "12"}, headers=h["town_leader"])
    assert r.status_code == 400


def test_put_validates_audits_and_the_public_part_hides_private_members(world: World) -> None:
    code = world.codes["grid"]
    h = world.headers["town_leader"]
    bad = world.client.put(
        f"/api/grid-teams/{code}", json=_full_team(party_org_kind="x"), headers=h
    )
    assert bad.status_code == 400 and bad.json()["code"]
    r = world.client.put(f"/api/grid-teams/{code}", json=_full_team(), headers=h)
    assert r.status_code == 200, r.text
    team = r.json()
    assert team["completeness"]["parts"] == 5
    stale = world.client.put(
        f"/api/grid-teams/{code}", json=_full_team(version=team["version"] - 1), headers=h
    )
    assert stale.status_code == 409
    with world.engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'team.write' AND outcome = 'ok' "
                 "AND :c = ANY(target_ids)"), {"c": code},
        ).scalar_one()  # fmt: skip
    assert n >= 1
    pub = world.client.get(f"/api/grid-teams/{code}/public").json()
    names = [m["name"] for m in pub["members"]]
    assert "吴党员" not in names and {"周党建", "郑代表", "冯志愿"} <= set(names)
    assert all(
        set(m) == {"role", "role_label", "name", "title", "office_phone"} for m in pub["members"]
    )
    assert pub["party_org"]["name"] == "第一网格党小组"
    assert all(p["present"] for p in pub["parts"].values())
