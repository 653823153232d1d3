"""The people API over real HTTP, as the web role under row-level security.

One database per module: a copy of the sample town with three households given places —
grid ``V001`` (own grid), grid ``V002`` (its sibling) and another village ``W`` with no
grid — one member each (canary values) and two special-population records. Accounts are
made per test, so each test reads the audit entries of its own users.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.people.crypto import key_provider
from geogrid.people.idcard import check_character
from geogrid.people.load import import_members, import_special
from geogrid.settings import Settings
from tests.conftest import make_home


def _id(first17: str) -> str:
    return first17 + check_character(first17)


#: name, ID number, phone of the member in the own grid, the sibling grid, the other village
PEOPLE = {
    "own": ("张三明", _id("42011719800101001"), "13812345678"),
    "sibling": ("李四光", _id("42011719810202002"), "13912345670"),
    "other": ("王五", _id("42011719820303003"), "15012345671"),
}
CANARIES = [v for person in PEOPLE.values() for v in person]


@dataclass
class World:
    client: TestClient
    url: str
    engine: Engine
    village: str
    other_village: str
    member: dict[str, int]
    record: dict[str, int]

    @property
    def own_grid(self) -> str:
        return self.village + "001"

    @property
    def sibling_grid(self) -> str:
        return self.village + "002"


def _setup(engine: Engine, home: Path) -> tuple[str, str, dict[str, int], dict[str, int]]:
    with engine.begin() as conn:
        villages = conn.execute(
            text(
                "SELECT h.village_code, a.name, min(h.id), max(h.id) FROM households h "
                "JOIN admin_areas a ON a.code = h.village_code "
                "GROUP BY 1, 2 ORDER BY 1 LIMIT 2"
            )
        ).all()
        (v, v_name, h_own, h_sib), (w, w_name, h_other, _) = villages
        conn.execute(text("UPDATE households SET grid_code = :g WHERE id = :h"),
                     {"g": v + "001", "h": h_own})  # fmt: skip
        conn.execute(text("UPDATE households SET grid_code = :g WHERE id = :h"),
                     {"g": v + "002", "h": h_sib})  # fmt: skip
        regs = dict(
            conn.execute(
                text("SELECT id, register_no FROM households WHERE id = ANY(:i)"),
                {"i": [h_own, h_sib, h_other]},
            ).all()
        )
    places = {"own": (v_name, h_own), "sibling": (v_name, h_sib), "other": (w_name, h_other)}
    members = home / "members.csv"
    special = home / "special.csv"
    with members.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["村", "户号", "姓名", "与户主关系", "公民身份号码", "联系电话"])
        for key, (name, number, phone) in PEOPLE.items():
            village_name, hh = places[key]
            out.writerow([village_name, regs[hh], name, "户主", number, phone])
    with special.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["户号", "公民身份号码", "人员类别", "风险等级"])
        out.writerow([regs[h_own], PEOPLE["own"][1], "社区矫正", "中"])
        out.writerow([regs[h_sib], PEOPLE["sibling"][1], "吸毒人员", "高"])
    keys = key_provider(home, env={}, create=True)
    assert import_members(engine, members, keys).inserted == 3
    assert import_special(engine, special, keys).inserted == 2
    with engine.connect() as conn:
        member = {
            key: conn.execute(
                text("SELECT id FROM household_members WHERE household_id = :h"), {"h": hh}
            ).scalar_one()
            for key, (_, hh) in places.items()
        }
        record = {
            key: conn.execute(
                text("SELECT id FROM special_population WHERE member_id = :m"), {"m": member[key]}
            ).scalar_one()
            for key in ("own", "sibling")
        }
    return v, w, member, record


@pytest.fixture(scope="module")
def world(pg, _town_template: str) -> Iterator[World]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    home = make_home("geogrid-people-")
    engine = store.make_engine(url)
    try:
        v, w, member, record = _setup(engine, home)
        app = create_app(Settings(home=home), database_url=url)
        with TestClient(app) as client:
            yield World(client, url, engine, v, w, member, record)
    finally:
        engine.dispose()
        pg.drop_database(name)


def audit_rows(world: World, username: str) -> list[Any]:
    with world.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT action, outcome, target_type, target_ids, detail FROM audit_log "
                "WHERE actor = :u AND action <> 'auth.signin' ORDER BY id"
            ),
            {"u": username},
        ).all()


def no_canary(body: str) -> None:
    for value in CANARIES:
        assert value not in body
    assert "13812345678"[3:7] not in body  # the hidden middle of a phone


def test_masked_by_default_and_scoped_to_own_grid(world: World, make_account) -> None:  # type: ignore[no-untyped-def]
    acct = make_account(world.url, "grid_worker", world.own_grid)
    h = acct.headers(world.client)
    r = world.client.get("/api/people", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["id"] == world.member["own"]
    assert (item["name"], item["phone"]) == ("张*明", "138****5678")
    assert item["id_number"] == "4201" + "*" * 10 + PEOPLE["own"][1][-4:]
    assert item["grid_code"] == world.own_grid
    no_canary(r.text)
    one = world.client.get(f"/api/people/{world.member['own']}", headers=h)
    assert one.status_code == 200 and one.json()["name"] == "张*明"
    no_canary(one.text)
    rows = audit_rows(world, acct.username)
    assert [(a, o) for a, o, *_ in rows] == [("people.read", "ok"), ("people.read", "ok")]
    assert rows[0].target_type == "household_member"
    assert rows[0].target_ids == [str(world.member["own"])]
    no_canary(str([tuple(r) for r in rows]))


@pytest.mark.parametrize(
    ("role", "scope", "sees"),
    [
        ("grid_worker", "own_grid", {"own"}),
        ("grid_worker", "sibling_grid", {"sibling"}),
        ("village_leader", "village", {"own", "sibling"}),
        ("village_leader", "other_village", {"other"}),
        ("town_leader", "town", {"own", "sibling", "other"}),
        ("town_leader", "420117999000", set()),
    ],
)
def test_scope_relations(world: World, make_account, role: str, scope: str, sees: set[str]) -> None:  # type: ignore[no-untyped-def]
    code = {
        "own_grid": world.own_grid, "sibling_grid": world.sibling_grid,
        "village": world.village, "other_village": world.other_village,
        "town": world.village[:9] + "000",
    }.get(scope, scope)  # fmt: skip
    acct = make_account(world.url, role, code)
    h = acct.headers(world.client)
    r = world.client.get("/api/people", headers=h, params={"limit": 500})
    assert r.status_code == 200, r.text
    got = {k for k, mid in world.member.items() if mid in {i["id"] for i in r.json()["items"]}}
    assert got == sees
    for key, mid in world.member.items():
        one = world.client.get(f"/api/people/{mid}", headers=h)
        assert one.status_code == (200 if key in sees else 404), (key, one.text)
        no_canary(one.text)
    refused = [r for r in audit_rows(world, acct.username) if r.outcome == "refused"]
    assert len(refused) == 3 - len(sees)


def test_roles_without_people_read_are_refused_and_audited(world: World, make_account) -> None:  # type: ignore[no-untyped-def]
    for role in ("viewer", "planner", "auditor"):
        acct = make_account(world.url, role, "all")
        r = world.client.get("/api/people", headers=acct.headers(world.client))
        assert r.status_code == 403, r.text
        assert [(a, o) for a, o, *_ in audit_rows(world, acct.username)] == [
            ("people.read", "refused")
        ]
    assert world.client.get("/api/people").status_code == 401


def test_unmask_needs_permission_reason_and_scope(world: World, make_account, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    own = world.member["own"]
    plain = make_account(world.url, "grid_worker", world.own_grid)
    r = world.client.post(f"/api/people/{own}/unmask", json={"reason": "入户走访核实"},
                          headers=plain.headers(world.client))  # fmt: skip
    assert r.status_code == 403, r.text
    assert [(a, o) for a, o, *_ in audit_rows(world, plain.username)] == [
        ("people.unmask", "refused")
    ]
    acct = make_account(world.url, "grid_worker", world.own_grid, ("unmask",))
    h = acct.headers(world.client)
    assert world.client.post(f"/api/people/{own}/unmask", json={}, headers=h).status_code == 400
    r = world.client.post(f"/api/people/{own}/unmask", json={"reason": "入户走访核实"}, headers=h)
    assert r.status_code == 200, r.text
    name, number, phone = PEOPLE["own"]
    assert r.json() == {"id": own, "name": name, "id_number": number, "phone": phone,
                        "birth_date": "1980-01-01"}  # fmt: skip
    sib = world.member["sibling"]
    r = world.client.post(f"/api/people/{sib}/unmask", json={"reason": "核实"}, headers=h)
    assert r.status_code == 404
    no_canary(r.text)
    rows = audit_rows(world, acct.username)
    assert [(a, o) for a, o, *_ in rows] == [("people.unmask", "ok"), ("people.unmask", "refused")]
    assert rows[0].target_ids == [str(own)] and rows[0].detail["reason"] == "入户走访核实"
    assert rows[1].target_ids == [str(sib)]
    no_canary(caplog.text)  # the plain values went to the client only, never to a log


def test_search_by_id_number_and_name(world: World, make_account) -> None:  # type: ignore[no-untyped-def]
    acct = make_account(world.url, "village_leader", world.village)
    h = acct.headers(world.client)
    r = world.client.post("/api/people/search", json={"id_number": PEOPLE["sibling"][1]}, headers=h)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [world.member["sibling"]]
    no_canary(r.text)
    r = world.client.post("/api/people/search", json={"id_number": PEOPLE["other"][1]}, headers=h)
    assert r.json()["total"] == 0  # exists, but in another village
    r = world.client.post("/api/people/search", json={"name": "张"}, headers=h)
    assert [i["id"] for i in r.json()["items"]] == [world.member["own"]]
    bad = PEOPLE["own"][1][:-1] + ("0" if PEOPLE["own"][1][-1] != "0" else "1")
    r = world.client.post("/api/people/search", json={"id_number": bad}, headers=h)
    assert r.status_code == 400 and "check character" in r.json()["description"]
    assert bad not in r.text
    details = [r.detail for r in audit_rows(world, acct.username)]
    assert [d["filters"] for d in details] == [["id_number"], ["id_number"], ["name"]]
    no_canary(str(details))


def test_special_needs_the_permission(world: World, make_account) -> None:  # type: ignore[no-untyped-def]
    plain = make_account(world.url, "village_leader", world.village)
    h = plain.headers(world.client)
    assert world.client.get("/api/special", headers=h).status_code == 403
    rec = world.record["own"]
    assert world.client.get(f"/api/special/{rec}/followups", headers=h).status_code == 403
    r = world.client.post(f"/api/special/{rec}/followups", json={"note": "x"}, headers=h)
    assert r.status_code == 403
    assert {(a, o) for a, o, *_ in audit_rows(world, plain.username)} == {
        ("special.read", "refused"), ("special.write", "refused"),
    }  # fmt: skip
    # the members list never says who is special
    people = world.client.get("/api/people", headers=h)
    assert "社区矫正" not in people.text and "吸毒" not in people.text


def test_special_list_and_followups_in_scope(world: World, make_account) -> None:  # type: ignore[no-untyped-def]
    acct = make_account(world.url, "grid_worker", world.own_grid, ("special",))
    h = acct.headers(world.client)
    r = world.client.get("/api/special", headers=h)
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    assert (item["id"], item["category"], item["risk_level"], item["name"]) == (
        world.record["own"], "社区矫正", "中", "张*明",
    )  # fmt: skip
    no_canary(r.text)
    before = item["followups"]  # the matrix test may have added some
    rec = world.record["own"]
    r = world.client.post(
        f"/api/special/{rec}/followups",
        json={"note": "本人在家，情况稳定", "next_due": "2099-01-01"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json()["by_name"] == acct.username
    listed = world.client.get(f"/api/special/{rec}/followups", headers=h)
    assert [f["note"] for f in listed.json()][:1] == ["本人在家，情况稳定"]
    assert len(listed.json()) == before + 1
    after = world.client.get("/api/special", headers=h).json()["items"][0]
    assert (after["followups"], after["next_due"]) == (before + 1, "2099-01-01")
    sib = world.record["sibling"]
    assert world.client.get(f"/api/special/{sib}/followups", headers=h).status_code == 404
    r = world.client.post(f"/api/special/{sib}/followups", json={"note": "x"}, headers=h)
    assert r.status_code == 404
    for bad in ({"note": ""}, {"note": "x", "followed_at": "2999-01-01T00:00:00+08:00"},
                {"note": "x", "followed_at": "2026-01-01T00:00:00"}):  # fmt: skip
        assert (
            world.client.post(f"/api/special/{rec}/followups", json=bad, headers=h).status_code
            == 400
        ), bad
    outcomes = [(a, o) for a, o, *_ in audit_rows(world, acct.username)]
    assert outcomes == [
        ("special.read", "ok"), ("special.write", "ok"), ("special.read", "ok"),
        ("special.read", "ok"), ("special.read", "refused"), ("special.write", "refused"),
    ]  # fmt: skip


@pytest.mark.parametrize(("kind", "special"), [("grid", False), ("grid", True), ("none", True)])
def test_row_level_security_is_the_second_wall(world: World, kind: str, special: bool) -> None:
    """A query that forgets its scope filter, run as the web role, still sees only the scope."""
    with world.engine.connect() as conn:
        conn.execute(text("SET LOCAL ROLE geogrid_web"))
        principal = None
        if kind == "grid":
            perms = frozenset({"special"}) if special else frozenset()
            principal = Principal(0, "t", Role.grid_worker, Scope("grid", world.own_grid), perms)
        rls.apply(conn, principal)
        members = conn.execute(text("SELECT id FROM household_members")).scalars().all()
        records = conn.execute(text("SELECT id FROM special_population")).scalars().all()
        conn.rollback()
    if kind == "none":
        assert members == [] and records == []
    else:
        assert members == [world.member["own"]]
        assert records == ([world.record["own"]] if special else [])


def test_openapi_documents_the_routes(world: World) -> None:
    doc = world.client.get("/openapi.json")
    assert doc.status_code == 200, doc.text
    paths = doc.json()["paths"]
    for path in ("/api/people", "/api/people/search", "/api/people/{member_id}",
                 "/api/people/{member_id}/unmask", "/api/special",
                 "/api/special/{record_id}/followups"):  # fmt: skip
        assert path in paths
    schemas = doc.json()["components"]["schemas"]
    assert {"Member", "Unmasked", "SpecialRecord", "Followup"} <= set(schemas)


# --------------------------------------------------------------------------- the matrix

#: Every people route: (method, path) → (action, the request for the own-grid record).
ROUTES: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/api/people"): ("people.read", lambda w: ("GET", "/api/people", None)),
    ("POST", "/api/people/search"): (
        "people.read", lambda w: ("POST", "/api/people/search", {"name": "张"}),
    ),
    ("GET", "/api/people/{member_id}"): (
        "people.read", lambda w: ("GET", f"/api/people/{w.member['own']}", None),
    ),
    ("POST", "/api/people/{member_id}/unmask"): (
        "people.unmask",
        lambda w: ("POST", f"/api/people/{w.member['own']}/unmask", {"reason": "核实"}),
    ),
    ("GET", "/api/special"): ("special.read", lambda w: ("GET", "/api/special", None)),
    ("GET", "/api/special/{record_id}/followups"): (
        "special.read", lambda w: ("GET", f"/api/special/{w.record['own']}/followups", None),
    ),
    ("POST", "/api/special/{record_id}/followups"): (
        "special.write",
        lambda w: ("POST", f"/api/special/{w.record['own']}/followups", {"note": "矩阵"}),
    ),
}  # fmt: skip

#: (role, scope relation to the own grid) for every role; admin roles work on 'all'.
SUBJECTS = [
    ("grid_worker", "own_grid"), ("grid_worker", "sibling_grid"), ("grid_worker", "other_town"),
    ("village_leader", "village"), ("village_leader", "other_village"),
    ("village_leader", "other_town"), ("town_leader", "town"), ("town_leader", "other_town"),
    ("planner", "town"), ("viewer", "own_grid"), ("sysadmin", "all"), ("secadmin", "all"),
    ("auditor", "all"),
]  # fmt: skip


def _code(w: World, relation: str) -> str:
    return {
        "own_grid": w.own_grid, "sibling_grid": w.sibling_grid, "village": w.village,
        "other_village": w.other_village, "town": w.village[:9] + "000", "all": "all",
        "other_town": "420117999000",
    }[relation]  # fmt: skip


def _other_town(role: str) -> str:
    return {"grid_worker": "420117999001001", "village_leader": "420117999001"}.get(
        role, "420117999000"
    )


def test_every_people_route_is_in_the_matrix(world: World) -> None:
    from api.auth import all_routes, policy_of

    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith(("/api/people", "/api/special"))
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == {k: action for k, (action, _) in ROUTES.items()}


@pytest.mark.parametrize("perms", [(), ("special", "unmask")])
def test_role_scope_matrix(world: World, make_account, perms: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """Every role and scope relation × every people route, with and without the extra
    permissions: allowed requests succeed, the rest are refused (403, or 404 out of scope),
    and nothing outside the scope appears in any answer."""
    from geogrid.access.policy import POLICY

    failures = []
    for role, relation in SUBJECTS:
        code = _other_town(role) if relation == "other_town" else _code(world, relation)
        acct = make_account(world.url, role, code, perms)
        scope = Scope.parse(code)
        h = acct.headers(world.client)
        visible = {k for k, mid in world.member.items() if _key(world, k).startswith(scope.prefix)}
        for (method, path), (action, build) in ROUTES.items():
            rule = POLICY[action]
            may = role in rule.roles and (rule.permission is None or rule.permission in perms)
            _, url, body = build(world)
            r = world.client.request(method, url, json=body, headers=h)
            targeted = "{" in path
            if not may:
                want = {403}
            elif targeted and "own" not in visible:
                want = {404}
            else:
                want = {200, 201}
            if r.status_code not in want:
                failures.append(f"{role}/{relation} {method} {path}: {r.status_code} not {want}")
            for key, (name, number, _phone) in PEOPLE.items():
                if key not in visible and (mask(name) in r.text or number in r.text):
                    failures.append(f"{role}/{relation} {method} {path}: sees {key}")
            if "unmask" not in path:
                no_canary(r.text)
    assert failures == [], "\n".join(failures)


def _key(w: World, key: str) -> str:
    return {"own": w.own_grid, "sibling": w.sibling_grid, "other": w.other_village}[key]


def mask(name: str) -> str:
    from geogrid.people.mask import mask_name

    return mask_name(name) or ""
