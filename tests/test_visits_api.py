"""Visit logs over real HTTP as the web role under row-level security: create (idempotent on
client_id), read masked and audited, edit with If-Match (428/412 with detail.current), the
validators (one rejected input per rule), scope, the coverage layer (numbers only) and the
role × scope matrix of every /api/visits and /api/followups route."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from api.auth import all_routes, policy_of
from tests.visits_support import (
    CANARIES,
    SUBJECTS,
    VisitWorld,
    audit_rows,
    jpeg,
    no_canary,
    visit_world,
)


@pytest.fixture(scope="module")
def world(pg, _town_template: str, sample_town, account_maker) -> Iterator[VisitWorld]:  # type: ignore[no-untyped-def]
    yield from visit_world(pg, _town_template, sample_town.town_code, account_maker)


def _body(w: VisitWorld, **kw: Any) -> dict[str, Any]:
    return {
        "household_id": w.households["g1"][0],
        "visited_on": "2026-11-02",
        "people_met": [CANARIES[2], "李四"],
        "notes": "了解低保申请进度",
        "tags": ["低保", "医疗"],
        **kw,
    }


def _fresh(w: VisitWorld, make_account, role: str = "grid_worker", scope: str = "grid"):  # type: ignore[no-untyped-def]
    acct = make_account(w.url, role, w.codes[scope])
    return acct, acct.headers(w.client)


def test_create_read_masked_and_audited(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    acct, h = _fresh(world, make_account)
    photo = world.client.post(
        "/api/cases/files", headers=h, files={"file": ("a.jpg", jpeg((9, 8, 7)), "image/jpeg")}
    )
    assert photo.status_code == 201, photo.text
    sha = photo.json()["sha256"]
    r = world.client.post("/api/visits", headers=h, json=_body(world, photos=[sha]))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["people_met"] == ["诸**亮", "李*"]
    assert made["worker_name"] == acct.username and made["version"] == 1
    assert made["photos"] == [sha] and made["area_code"] == world.codes["grid"]
    assert r.headers["ETag"] == f'W/"visit-{made["id"]}-1"' == made["etag"]
    no_canary(r.text)
    one = world.client.get(f"/api/visits/{made['id']}", headers=h)
    assert one.status_code == 200 and one.headers["ETag"] == made["etag"]
    again = world.client.get(
        f"/api/visits/{made['id']}", headers={**h, "If-None-Match": made["etag"]}
    )
    assert again.status_code == 304
    page = world.client.get("/api/visits", headers=h, params={"worker_id": made["worker_id"]})
    assert [v["id"] for v in page.json()["items"]] == [made["id"]]
    no_canary(page.text)
    rows = audit_rows(world, acct.username)
    assert [(a, o) for a, o, *_ in rows] == [
        ("visit.write", "ok"), ("visit.read", "ok"), ("visit.read", "ok"), ("visit.read", "ok")
    ]  # fmt: skip
    assert rows[0].target_ids == [str(made["id"])]
    no_canary(str([tuple(r) for r in rows]))
    with world.engine.connect() as conn:  # stored as given (masked in answers only)
        stored = conn.execute(
            text("SELECT people_met FROM visits WHERE id = :i"), {"i": made["id"]}
        ).scalar_one()
    assert stored == [CANARIES[2], "李四"]


def test_key_unit_visit(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    _, h = _fresh(world, make_account)
    r = world.client.post(
        "/api/visits", headers=h,
        json=_body(world, household_id=None, key_unit_id=world.key_unit, tags=["安全"]),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["key_unit_name"] == "村小学" and r.json()["household_id"] is None


def test_create_is_idempotent_on_client_id(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    _, h = _fresh(world, make_account)
    key = str(uuid.uuid4())
    first = world.client.post("/api/visits", headers=h, json={**_body(world), "client_id": key})
    second = world.client.post("/api/visits", headers=h, json={**_body(world), "client_id": key})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    with world.engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM client_records WHERE client_id = :c AND record_id = :r"),
            {"c": key, "r": first.json()["id"]},
        ).scalar_one()
    assert n == 1
    _, other = _fresh(world, make_account)
    stolen = world.client.post(
        "/api/visits", headers=other, json={**_body(world), "client_id": key}
    )
    assert stolen.status_code == 409


def test_edit_needs_if_match_and_refuses_stale_versions(world: VisitWorld, make_account) -> None:  # type: ignore[no-untyped-def]
    _, h = _fresh(world, make_account)
    made = world.client.post("/api/visits", headers=h, json=_body(world)).json()
    url = f"/api/visits/{made['id']}"
    assert world.client.patch(url, headers=h, json={"notes": "x"}).status_code == 428
    ok = world.client.patch(
        url, headers={**h, "If-Match": made["etag"]},
        json={"notes": "已协调解决", "follow_up": True, "follow_up_due": "2026-12-10"},
    )  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert ok.json()["version"] == 2 and ok.headers["ETag"] == f'W/"visit-{made["id"]}-2"'
    assert ok.json()["people_met"] == made["people_met"]  # unchanged fields stay
    stale = world.client.patch(url, headers={**h, "If-Match": made["etag"]}, json={"notes": "y"})
    assert stale.status_code == 412
    body = stale.json()
    assert body["code"] == "StaleVersion"
    assert body["detail"]["current"]["version"] == 2
    assert body["detail"]["current"]["notes"] == "已协调解决"
    no_canary(stale.text)
    junk = world.client.patch(url, headers={**h, "If-Match": '"case-1-v1"'}, json={"notes": "y"})
    assert junk.status_code == 412
    # only the writer edits: a village leader in scope is refused
    _, leader = _fresh(world, make_account, "village_leader", "village")
    other = world.client.patch(
        url, headers={**leader, "If-Match": ok.headers["ETag"]}, json={"notes": "z"}
    )
    assert other.status_code == 403


def _future() -> str:
    return (dt.date.today() + dt.timedelta(days=3)).isoformat()


REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("two targets", {"key_unit_id": 1}, "exactly one"),
    ("no target", {"household_id": None}, "exactly one"),
    ("future day", {"visited_on": "FUTURE"}, "future"),
    ("before 2000", {"visited_on": "1999-12-31"}, "before 2000"),
    ("empty notes", {"notes": "   "}, "needs notes"),
    ("blank name", {"people_met": [" "]}, "empty"),
    ("long name", {"people_met": ["名" * 41]}, "longer than 40"),
    ("control character", {"people_met": ["张\x07三"]}, "control"),
    ("too many people", {"people_met": ["甲"] * 21}, "people_met"),
    ("unknown tag", {"tags": ["赌博"]}, "unknown need tag"),
    ("due without follow-up", {"follow_up_due": "2026-12-01"}, "needs follow_up"),
    ("due before visit", {"follow_up": True, "follow_up_due": "2026-11-01"}, "before the visit"),
    ("not a hash", {"photos": ["abc"]}, "SHA-256"),
    ("unknown photo", {"photos": ["0" * 64]}, "upload the photos first"),
    ("unknown field", {"worker_id": 5}, "worker_id"),
]


@pytest.mark.parametrize(("case", "change", "why"), REJECTS, ids=[r[0] for r in REJECTS])
def test_validators_reject(world: VisitWorld, case: str, change: dict[str, Any], why: str) -> None:
    change = {k: (_future() if v == "FUTURE" else v) for k, v in change.items()}
    if case == "two targets":
        change["key_unit_id"] = world.key_unit
    r = world.client.post("/api/visits", headers=world.headers["grid_worker"],
                          json=_body(world, **change))  # fmt: skip
    assert r.status_code == 400, r.text
    assert why in r.json()["description"]
    no_canary(r.text)


def test_edit_validators_reject(world: VisitWorld) -> None:
    h = world.headers["grid_worker"]
    made = world.client.post("/api/visits", headers=h, json=_body(world)).json()
    url, etag = f"/api/visits/{made['id']}", {"If-Match": made["etag"]}
    for change, why in (
        ({"tags": ["赌博"]}, "unknown need tag"),
        ({"follow_up_due": "2026-12-01"}, "needs follow_up"),
        ({"visited_on": _future()}, "future"),
        ({"notes": ""}, "needs notes"),
        ({"household_id": 5}, "household_id"),
    ):
        r = world.client.patch(url, headers={**h, **etag}, json=change)
        assert r.status_code == 400 and why in r.json()["description"], (change, r.text)


def test_scope(world: VisitWorld) -> None:
    mine = world.client.post("/api/visits", headers=world.headers["grid_worker"],
                             json=_body(world)).json()  # fmt: skip
    sib = world.headers["grid_worker_sibling"]
    assert world.client.get(f"/api/visits/{mine['id']}", headers=sib).status_code == 404
    listed = world.client.get("/api/visits", headers=sib, params={"limit": 500}).json()
    assert mine["id"] not in {v["id"] for v in listed["items"]}
    outside = world.client.post("/api/visits", headers=sib, json=_body(world))
    assert outside.status_code == 404
    other = _body(world, household_id=world.households["other"][0])
    assert world.client.post("/api/visits", headers=world.headers["grid_worker"],
                             json=other).status_code == 404  # fmt: skip
    leader = world.client.get("/api/visits", headers=world.headers["village_leader"],
                              params={"limit": 500}).json()  # fmt: skip
    assert mine["id"] in {v["id"] for v in leader["items"]}


def test_coverage_routes(world: VisitWorld) -> None:
    h = world.headers["village_leader"]
    world.client.post("/api/visits", headers=world.headers["grid_worker"], json=_body(world))
    cov = world.client.get("/api/visits/coverage", headers=h, params={"period": "2026-Q4"})
    assert cov.status_code == 200, cov.text
    rows = {r["area_code"]: r for r in cov.json()["items"]}
    assert rows[world.codes["grid"]]["households"] == 3
    assert rows[world.codes["grid"]]["visited"] == 1
    assert rows[world.codes["sibling"]]["visited"] == 0
    assert all(code.startswith(world.codes["village"]) for code in rows)
    never = world.client.get(
        "/api/visits/coverage/never", headers=h,
        params={"period": "2026-Q4", "area": world.codes["grid"]},
    ).json()  # fmt: skip
    assert {i["household_id"] for i in never["items"]} == set(world.households["g1"][1:])
    assert never["total"] == 2
    workers = world.client.get("/api/visits/coverage/workers", headers=h).json()
    assert workers["items"] and all("visits" in w for w in workers["items"])
    bad = world.client.get("/api/visits/coverage", headers=h, params={"period": "2026-Q9"})
    assert bad.status_code == 400
    both = world.client.get(
        "/api/visits/coverage", headers=h, params={"period": "2026", "from": "2026-01-01"}
    )
    assert both.status_code == 400
    outside = world.client.get(
        "/api/visits/coverage", headers=h, params={"area": world.codes["other_village"]}
    )
    assert outside.status_code == 403


def test_coverage_layer_holds_numbers_only(world: VisitWorld) -> None:
    r = world.client.get("/api/visits/coverage/layer", headers=world.headers["viewer"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["legend"] and all(item["label"] for item in body["legend"])
    allowed = {"code", "name", "households", "visited", "coverage", "due", "done",
               "plan_rate", "colour"}  # fmt: skip
    for f in body["features"]:
        assert set(f["properties"]) == allowed
    no_canary(r.text)
    for word in ("register_no", "people_met", "notes", "worker"):
        assert word not in r.text
    assert world.client.get("/api/visits/coverage/layer").status_code == 401


# --------------------------------------------------------------------------- the matrix

ROUTES = {
    ("POST", "/api/visits"): "visit.write",
    ("GET", "/api/visits"): "visit.read",
    ("GET", "/api/visits/tags"): "visit.read",
    ("GET", "/api/visits/rules"): "visit.read",
    ("PUT", "/api/visits/rules"): "visit.admin",
    ("DELETE", "/api/visits/rules/{rule_id}"): "visit.admin",
    ("GET", "/api/visits/coverage"): "visit.read",
    ("GET", "/api/visits/coverage/workers"): "visit.read",
    ("GET", "/api/visits/coverage/never"): "visit.read",
    ("GET", "/api/visits/coverage/due"): "visit.read",
    ("GET", "/api/visits/coverage/layer"): "layer.read",
    ("GET", "/api/visits/{visit_id}"): "visit.read",
    ("PATCH", "/api/visits/{visit_id}"): "visit.write",
    ("POST", "/api/followups"): "special.write",
    ("GET", "/api/followups/due"): "special.read",
    ("GET", "/api/followups/records/{record_id}"): "special.read",
    ("GET", "/api/followups/rules"): "special.read",
    ("PUT", "/api/followups/rules/{risk_level}"): "visit.admin",
}


def test_every_route_is_in_the_matrix(world: VisitWorld) -> None:
    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith(("/api/visits", "/api/followups"))
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == ROUTES


_READERS = {"town_leader", "town_leader_other", "village_leader", "grid_worker",
            "grid_worker_plain", "grid_worker_sibling"}  # fmt: skip
_IN_SCOPE = {"town_leader", "village_leader", "grid_worker", "grid_worker_plain"}
_WRITERS = {"village_leader", "grid_worker", "grid_worker_plain", "grid_worker_sibling"}
_SPECIAL = {"town_leader", "town_leader_other", "village_leader", "grid_worker",
            "grid_worker_sibling"}  # fmt: skip


def _expected(subject: str, method: str, route: str) -> int:
    """The status a subject gets: written out per route (independent of the policy code)."""
    if subject == "anonymous":
        return 401
    if route == "/api/visits/coverage/layer":
        return 200
    if route == "/api/visits/rules" and method == "PUT":
        return {"sysadmin": 200, "town_leader": 200, "town_leader_other": 403}.get(subject, 403)
    if route == "/api/visits/rules/{rule_id}":
        return 404 if subject in ("sysadmin", "town_leader", "town_leader_other") else 403
    if route == "/api/followups/rules/{risk_level}":
        return 200 if subject == "sysadmin" else 403
    if route.startswith("/api/followups"):
        writing = method == "POST"
        allowed = (_SPECIAL & _WRITERS) if writing else _SPECIAL
        if subject not in allowed:
            return 403
        if route in ("/api/followups/due", "/api/followups/rules"):
            return 200
        in_scope = subject in _IN_SCOPE
        return (201 if writing else 200) if in_scope else 404
    if method in ("POST", "PATCH"):
        if subject not in _WRITERS:
            return 403
        if subject not in _IN_SCOPE:
            return 404
        return 201 if method == "POST" else 412
    if subject not in _READERS:
        return 403
    if route == "/api/visits/{visit_id}":
        return 200 if subject in _IN_SCOPE else 404
    return 200


def _request(w: VisitWorld, visit_id: int, method: str, route: str) -> tuple[str, dict[str, Any]]:
    url = (
        route.replace("{visit_id}", str(visit_id)).replace("{rule_id}", str(10**9))
        .replace("{record_id}", str(w.records["g1"])).replace("{risk_level}", "高")
    )  # fmt: skip
    kw: dict[str, Any] = {}
    if route == "/api/visits" and method == "POST":
        kw["json"] = _body(w)
    elif method == "PATCH":
        kw["json"] = {"notes": "矩阵"}
        kw["headers"] = {"If-Match": f'W/"visit-{visit_id}-999"'}
    elif route == "/api/visits/rules" and method == "PUT":
        kw["json"] = {"area_code": w.codes["grid"], "kind": "household", "period_months": 3}
    elif route == "/api/followups":
        kw["json"] = {"record_id": w.records["g1"], "note": "矩阵",
                      "followed_at": "2026-06-01T10:00:00+08:00"}  # fmt: skip
    elif route == "/api/followups/rules/{risk_level}":
        kw["json"] = {"working_days": 5}
    return url, kw


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_matrix(world: VisitWorld, subject: str) -> None:
    visit = world.client.post("/api/visits", headers=world.headers["grid_worker"],
                              json=_body(world)).json()  # fmt: skip
    wrong = []
    for method, route in ROUTES:
        url, kw = _request(world, visit["id"], method, route)
        headers = {**world.headers[subject], **kw.pop("headers", {})}
        got = world.client.request(method, url, headers=headers, **kw)
        want = _expected(subject, method, route)
        if got.status_code != want:
            wrong.append((method, route, got.status_code, want, got.text[:120]))
        no_canary(got.text)
    assert wrong == []
