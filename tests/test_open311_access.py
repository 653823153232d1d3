"""Access to the Open311, complaint and desk routes: every role (and anonymous) × every route,
expected answers computed from the policy table; every route under these prefixes is listed
here (tests/test_access_api.py leaves them to this file)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.auth import all_routes, policy_of
from geogrid.access.policy import ANONYMOUS, POLICY
from geogrid.settings import Settings

PREFIXES = ("/open311", "/desk", "/complain")
SHA = "0" * 64

#: (method, path) → (action, sample URL, JSON body)
ROUTES: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("GET", "/open311/discovery.{fmt}"): ("open311.read", "/open311/discovery.xml", None),
    ("GET", "/open311/v2/services.{fmt}"): ("open311.read", "/open311/v2/services.json", None),
    ("GET", "/open311/v2/services/{service_code}.{fmt}"): (
        "open311.read", "/open311/v2/services/01.xml", None),
    ("POST", "/open311/v2/requests.{fmt}"): (
        "open311.submit", "/open311/v2/requests.json", {"description": "矩阵测试"}),
    ("GET", "/open311/v2/requests.{fmt}"): ("open311.read", "/open311/v2/requests.json", None),
    ("GET", "/open311/v2/requests/{request_id}.{fmt}"): (
        "open311.read", "/open311/v2/requests/999999.json", None),
    ("POST", "/open311/v2/requests/{request_id}/feedback.{fmt}"): (
        "open311.feedback", "/open311/v2/requests/999999/feedback.json", {"rating": "basic"}),
    ("GET", "/open311/v2/tokens/{token}.{fmt}"): (
        "open311.read", "/open311/v2/tokens/AAAA-BBBB-CCCC.json", None),
    ("GET", "/open311/v2/media/{request_id}/{sha256}.jpg"): (
        "open311.read", f"/open311/v2/media/999999/{SHA}.jpg", None),
    ("GET", "/desk"): ("page.desk", "/desk", None),
    ("GET", "/complain"): ("open311.read", "/complain", None),
    ("GET", "/complain/status"): ("open311.read", "/complain/status", None),
}  # fmt: skip

#: The answer an allowed request gets (the samples are valid, invalid or missing on purpose).
ALLOWED = {
    "/open311/v2/requests.json": {200, 400},  # GET lists; POST misses service and place
    "/open311/v2/requests/999999.json": {404},
    "/open311/v2/requests/999999/feedback.json": {403},  # no token: refused, rule token_invalid
    "/open311/v2/tokens/AAAA-BBBB-CCCC.json": {404},  # no such token, rule token_invalid
    f"/open311/v2/media/999999/{SHA}.jpg": {404},
}


@dataclass
class World:
    client: TestClient
    url: str
    town: str


@pytest.fixture(scope="module")
def world(pg, _town_template, sample_town, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    app = create_app(Settings(home=tmp_path_factory.mktemp("o311acc")), database_url=url)
    app.state.open311_limits = (100_000, 3600)
    try:
        with TestClient(app, follow_redirects=False) as client:
            yield World(client, url, sample_town.town_code)
    finally:
        pg.drop_database(name)


def test_every_route_is_in_the_matrix(world: World) -> None:
    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith(PREFIXES)
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == {k: action for k, (action, _, _) in ROUTES.items()}


SUBJECTS = [None, "sysadmin", "secadmin", "auditor", "planner", "town_leader",
            "village_leader", "grid_worker", "viewer"]  # fmt: skip


@pytest.mark.parametrize("role", SUBJECTS, ids=lambda r: r or ANONYMOUS)
def test_role_matrix(world: World, account_maker, role: str | None) -> None:  # type: ignore[no-untyped-def]
    headers: dict[str, str] = {}
    if role is not None:
        scope = {"sysadmin": "all", "secadmin": "all", "auditor": "all",
                 "village_leader": world.town[:9] + "201",
                 "grid_worker": world.town[:9] + "201001"}.get(role, world.town)  # fmt: skip
        headers = account_maker(world.url, role, scope).headers(world.client)
    failures = []
    for (method, path), (action, url, body) in ROUTES.items():
        may = (role or ANONYMOUS) in POLICY[action].roles
        r = world.client.request(method, url, json=body, headers=headers)
        if may:
            want = ALLOWED.get(url, {200})
        elif role is None:
            want = {303} if path == "/desk" else {401}  # pages send anonymous users to sign in
        else:
            want = {403}
        if r.status_code not in want:
            failures.append(f"{role} {method} {path}: {r.status_code} not {sorted(want)}")
        if r.status_code == 303:
            assert r.headers["location"].startswith("/login?next=")
        if path.startswith("/open311") and r.status_code >= 400:
            errors = r.json()
            assert isinstance(errors, list) and {"code", "description", "rule"} <= set(errors[0])
            if may:
                assert errors[0]["rule"] not in ("forbidden", "unauthenticated"), (path, errors)
    assert failures == [], "\n".join(failures)


def test_pages_render_chinese_first_and_english(world: World, account_maker) -> None:  # type: ignore[no-untyped-def]
    zh = world.client.get("/complain")
    assert zh.status_code == 200 and "居民投诉" in zh.text and 'lang="zh-CN"' in zh.text
    en = world.client.get("/complain?lang=en")
    assert "Report a problem" in en.text
    status = world.client.get("/complain/status")
    assert status.status_code == 200 and "投诉办理进度" in status.text
    acct = account_maker(world.url, "grid_worker", world.town[:9] + "201001")
    r = world.client.post("/login", data={"username": acct.username, "password": acct.password})
    assert r.status_code == 303
    desk = world.client.get("/desk")
    assert desk.status_code == 200 and "事件受理台" in desk.text
    for page in (zh.text, status.text, desk.text):
        assert "https://" not in page and "http://" not in page.replace("http://www.w3.org", "")
    world.client.cookies.clear()
