"""Access to /api/cases: every role (and anonymous) × scope × route, the expected answer
computed from the policy table and where the case lies; every route under the prefix is
listed here (tests/test_access_api.py leaves /api/cases to this file)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import text

from api import create_app
from api.auth import all_routes, policy_of
from geogrid import store
from geogrid.access import users
from geogrid.access.policy import ANONYMOUS, POLICY
from geogrid.cases import service
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings

SHA = "0" * 64

#: (method, route) → action
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/cases"): "case.read",
    ("GET", "/api/cases/inbox"): "case.read",
    ("GET", "/api/cases/due"): "case.read",
    ("GET", "/api/cases/due/counts"): "case.read",
    ("GET", "/api/cases/machine"): "case.read",
    ("GET", "/api/cases/categories"): "case.read",
    ("PUT", "/api/cases/categories/{code}"): "case.admin",
    ("GET", "/api/cases/routing"): "case.admin",
    ("PUT", "/api/cases/routing"): "case.admin",
    ("POST", "/api/cases"): "case.report",
    ("POST", "/api/cases/files"): "case.report",
    ("GET", "/api/cases/{case_id}"): "case.read",
    ("GET", "/api/cases/{case_id}/duplicates"): "case.read",
    ("POST", "/api/cases/{case_id}/transitions"): "case.work",
    ("GET", "/api/cases/{case_id}/files/{sha256}"): "case.read",
    ("POST", "/api/cases/{case_id}/reporter/unmask"): "case.unmask",
}

#: subject → (role, scope kind, permissions)
SUBJECTS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "anonymous": (None, "", ()),
    "sysadmin": ("sysadmin", "all", ()),
    "secadmin": ("secadmin", "all", ()),
    "auditor": ("auditor", "all", ()),
    "planner": ("planner", "town", ()),
    "viewer": ("viewer", "town", ()),
    "town_leader": ("town_leader", "town", ()),
    "town_leader_unmask": ("town_leader", "town", ("unmask",)),
    "town_leader_other": ("town_leader", "other_town", ()),
    "village_leader": ("village_leader", "village", ()),
    "village_leader_other": ("village_leader", "other_village", ()),
    "grid_worker": ("grid_worker", "grid", ()),
    "grid_worker_sibling": ("grid_worker", "sibling", ()),
    "grid_worker_unmask_sibling": ("grid_worker", "sibling", ("unmask",)),
}


@dataclass
class World:
    client: TestClient
    codes: dict[str, str]
    case_id: int
    lon: float
    lat: float
    headers: dict[str, dict[str, str]]


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def world(pg, _town_template: str, sample_town, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    plan = create_plan(engine, sample_town.town_code, name="active", jobs=1)
    activate_plan(engine, plan)
    with engine.connect() as conn:
        village, grid, sibling = conn.execute(
            text(
                "SELECT g.village_code, min(g.code), max(g.code) FROM grids g "
                "WHERE g.plan_id = :p AND g.level = 3 GROUP BY g.village_code "
                "HAVING count(*) >= 2 ORDER BY g.village_code LIMIT 1"
            ),
            {"p": plan},
        ).one()
        lon, lat = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids "
                "WHERE plan_id = :p AND code = :g) s"
            ),
            {"p": plan, "g": grid},
        ).one()
    codes = {
        "all": "all",
        "town": sample_town.town_code,
        "village": village,
        "grid": grid,
        "sibling": sibling,
        "other_town": "420117999000",
        "other_village": "420117999201",
    }
    accounts = {
        key: account_maker(url, role, codes[scope], perms)
        for key, (role, scope, perms) in SUBJECTS.items()
        if role is not None
    }
    with engine.begin() as conn:
        worker = users.get_user(conn, username=accounts["grid_worker"].username).principal()
        made = service.create_case(
            conn,
            principal=worker,
            category="0401",
            lon=float(lon),
            lat=float(lat),
            description="矩阵",
            source="grid_worker",
        )
    engine.dispose()
    app = create_app(Settings(home=tmp_path_factory.mktemp("cases-acc")), database_url=url)
    try:
        with TestClient(app) as client:
            headers = {"anonymous": {}}
            headers.update({k: a.headers(client) for k, a in accounts.items()})
            yield World(client, codes, made.case.id, float(lon), float(lat), headers)
    finally:
        pg.drop_database(name)


def test_every_route_is_in_the_matrix(world: World) -> None:
    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith("/api/cases")
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == ROUTES


def _request(w: World, method: str, route: str) -> tuple[str, str, dict[str, Any]]:
    """(method, url, request kwargs): harmless samples (a stale If-Match, an unattached file)."""
    cid = w.case_id
    url = route.replace("{case_id}", str(cid)).replace("{sha256}", SHA).replace("{code}", "0999")
    kw: dict[str, Any] = {}
    if route == "/api/cases" and method == "POST":
        kw["json"] = {"category": "0401", "lon": w.lon, "lat": w.lat, "description": "矩阵"}
    elif route.endswith("/transitions"):
        kw["json"] = {"action": "comment", "note": "x"}
        kw["headers"] = {"If-Match": f'"case-{cid}-v999"'}
    elif route.endswith("/files") and method == "POST":
        kw["files"] = {"file": ("a.jpg", _jpeg(), "image/jpeg")}
    elif route.endswith("/unmask"):
        kw["json"] = {"reason": "矩阵测试"}
    elif route == "/api/cases/routing" and method == "PUT":
        kw["json"] = {"area_code": w.codes["town"], "rows": []}
    elif route.startswith("/api/cases/categories/"):
        kw["json"] = {"name_en": "Other matters"}
    return method, url, kw


def _expected(w: World, subject: str, method: str, route: str) -> set[int]:
    role, scope, perms = SUBJECTS[subject]
    action = ROUTES[(method, route)]
    rule = POLICY[action]
    relation = rule.roles.get(role or ANONYMOUS)
    if role is None:
        return {401}
    if relation is None or (rule.permission and rule.permission not in perms):
        return {403}
    case_scope = scope in ("all", "town", "village", "grid")  # the case is in the first grid
    if route == "/api/cases/categories/{code}":
        return {200} if scope == "all" else {403}
    if route == "/api/cases/routing" and method == "PUT":
        return {200} if scope in ("all", "town") else {403}
    if route == "/api/cases" and method == "POST":
        return {201} if case_scope else {403}
    if route == "/api/cases/files":
        return {201}
    if "{case_id}" not in route:
        return {200}
    if not case_scope:
        return {404}
    return {
        "/api/cases/{case_id}/transitions": {412},
        "/api/cases/{case_id}/files/{sha256}": {404},
    }.get(route, {200})


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_matrix(world: World, subject: str) -> None:
    wrong = []
    for method, route in ROUTES:
        m, url, kw = _request(world, method, route)
        headers = {**world.headers[subject], **kw.pop("headers", {})}
        got = world.client.request(m, url, headers=headers, **kw)
        want = _expected(world, subject, method, route)
        if got.status_code not in want:
            wrong.append((method, route, got.status_code, sorted(want), got.text[:120]))
    assert wrong == []


def test_lists_only_hold_cases_in_scope(world: World) -> None:
    for subject, inside in (
        ("grid_worker", True),
        ("grid_worker_sibling", False),
        ("village_leader", True),
        ("town_leader_other", False),
    ):
        body = world.client.get(
            "/api/cases", headers=world.headers[subject], params={"limit": 500}
        ).json()
        ids = {c["id"] for c in body["items"]}
        assert (world.case_id in ids) is inside, subject
