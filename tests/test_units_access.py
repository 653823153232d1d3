"""Access to /api/key-units and /api/inspections: every role (and anonymous) × scope ×
route, the expected answer computed from the policy table and where the records lie (every
route under the two prefixes is listed here; tests/test_access_api.py leaves them to this
file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from api.auth import all_routes, policy_of
from geogrid.access.policy import ANONYMOUS, POLICY
from geogrid.fieldwork import filings, inspection_records, inspections, units
from tests.fieldwork_support import SUBJECTS, World, make_world

#: (method, route) → action
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/key-units"): "unit.read",
    ("POST", "/api/key-units"): "unit.write",
    ("GET", "/api/key-units/types"): "unit.read",
    ("GET", "/api/key-units/overdue"): "unit.read",
    ("GET", "/api/key-units/overdue/counts"): "unit.read",
    ("GET", "/api/key-units/{unit_id}"): "unit.read",
    ("PATCH", "/api/key-units/{unit_id}"): "unit.write",
    ("DELETE", "/api/key-units/{unit_id}"): "unit.write",
    ("POST", "/api/key-units/{unit_id}/unmask"): "unit.unmask",
    ("GET", "/api/key-units/{unit_id}/filings"): "unit.read",
    ("POST", "/api/key-units/{unit_id}/filings"): "unit.write",
    ("PATCH", "/api/key-units/{unit_id}/filings/{filing_id}"): "unit.write",
    ("GET", "/api/inspections/points"): "inspection.read",
    ("POST", "/api/inspections/points"): "unit.write",
    ("GET", "/api/inspections/points/{point_id}"): "inspection.read",
    ("PATCH", "/api/inspections/points/{point_id}"): "unit.write",
    ("GET", "/api/inspections/points/{point_id}/records"): "inspection.read",
    ("GET", "/api/inspections/due"): "inspection.read",
    ("GET", "/api/inspections/overdue"): "inspection.read",
    ("GET", "/api/inspections/completion"): "inspection.read",
    ("GET", "/api/inspections/templates"): "inspection.read",
    ("PUT", "/api/inspections/templates/{code}"): "inspection.admin",
    ("POST", "/api/inspections/records"): "inspection.record",
    ("GET", "/api/inspections/records/{record_id}"): "inspection.read",
}
PREFIXES = ("/api/key-units", "/api/inspections")


@dataclass
class Ids:
    unit: int
    filing: int
    point: int
    record: int
    items: list[str]


@pytest.fixture(scope="module")
def world(pg, _town_template, sample_town, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(
        pg, _town_template, sample_town, account_maker, tmp_path_factory.mktemp("units-acc")
    )


@pytest.fixture(scope="module")
def ids(world: World) -> Ids:
    worker = world.principals["grid_worker"]
    lon, lat = world.points["grid"]
    with world.engine.begin() as conn:
        unit = units.create_unit(
            conn, principal=worker,
            body=units.KeyUnitCreate(name="矩阵单位", unit_type="工厂", risk_level=2, lon=lon,
                                     lat=lat, safety=units.ContactIn(name="周九")),
        )  # fmt: skip
        filing, _ = filings.record_filing(
            conn, principal=worker, unit_id=unit.id, client_id=None,
            body=filings.FilingCreate(kind="self_assessment", event_date=dt.date(2026, 3, 1)),
        )  # fmt: skip
        point = inspections.create_point(
            conn, principal=worker,
            body=inspections.PointCreate(name="矩阵点", lon=lon, lat=lat, key_unit_id=unit.id),
        )  # fmt: skip
        template = next(t for t in inspections.templates(conn) if t.code == point.template_code)
        items = [i.code for i in template.items]
        record = inspection_records.record_inspection(
            conn, principal=worker, client_id=None,
            body=inspection_records.InspectionCreate(
                point_id=point.id,
                results=[inspection_records.ItemResult(item=c, result="pass") for c in items],
            ),
        )  # fmt: skip
    return Ids(unit.id, filing.id, point.id, record.id, items)


def test_every_route_is_in_the_matrix(world: World) -> None:
    mine = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if getattr(r, "path", "").startswith(PREFIXES)
        for m in getattr(r, "methods", ()) or ()
        if m != "HEAD"
    }
    assert mine == ROUTES


def _request(w: World, i: Ids, method: str, route: str) -> tuple[str, dict[str, Any]]:
    """(url, request kwargs): harmless samples (stale If-Match, all items passed)."""
    url = (
        route.replace("{unit_id}", str(i.unit)).replace("{filing_id}", str(i.filing))
        .replace("{point_id}", str(i.point)).replace("{record_id}", str(i.record))
        .replace("{code}", "matrix")
    )  # fmt: skip
    lon, lat = w.points["grid"]
    kw: dict[str, Any] = {}
    if method in ("PATCH", "DELETE"):
        kw["headers"] = {"If-Match": 'W/"stale-0-0"'}
        kw["json"] = {"name": "改"} if "filings" not in route else {"note": "改"}
        if method == "DELETE":
            kw.pop("json")
    if route == "/api/key-units" and method == "POST":
        kw["json"] = {"name": "矩阵", "unit_type": "工厂", "risk_level": 1, "lon": lon, "lat": lat}
    elif route.endswith("/unmask"):
        kw["json"] = {"reason": "矩阵测试"}
    elif route.endswith("/filings") and method == "POST":
        kw["json"] = {"kind": "maintenance", "event_date": "2026-03-01"}
    elif route == "/api/inspections/points" and method == "POST":
        kw["json"] = {"name": "矩阵点", "lon": lon, "lat": lat, "schedule": "monthly"}
    elif route == "/api/inspections/records":
        kw["json"] = {"point_id": i.point,
                      "results": [{"item": c, "result": "pass"} for c in i.items]}  # fmt: skip
    elif route == "/api/inspections/completion":
        kw["params"] = {"from": "2026-01-01", "to": "2026-06-30"}
    elif route.startswith("/api/inspections/templates/"):
        kw["json"] = {
            "name": "通用消防安全检查",
            "items": [{"code": "exits", "label": "安全出口畅通", "case_category": "0301"}],
        }
    return url, kw


def _expected(subject: str, method: str, route: str) -> set[int]:
    role, scope, perms = SUBJECTS[subject]
    rule = POLICY[ROUTES[(method, route)]]
    if role is None:
        return {401}
    if rule.roles.get(role or ANONYMOUS) is None or (
        rule.permission and rule.permission not in perms
    ):
        return {403}
    inside = scope in ("all", "town", "village", "grid")  # the records lie in the first grid
    if route.startswith("/api/inspections/templates/"):
        return {200} if scope == "all" else {403}
    if method == "POST" and route in ("/api/key-units", "/api/inspections/points"):
        return {201} if inside else {403}
    if route == "/api/inspections/records":
        return {201} if inside else {404}
    if "{" not in route:
        return {200}
    if not inside:
        return {404}
    if method in ("PATCH", "DELETE"):
        return {412}
    return {201} if method == "POST" and route.endswith("/filings") else {200}


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_matrix(world: World, ids: Ids, subject: str) -> None:
    wrong = []
    for method, route in ROUTES:
        url, kw = _request(world, ids, method, route)
        headers = {**world.headers[subject], **kw.pop("headers", {})}
        got = world.client.request(method, url, headers=headers, **kw)
        want = _expected(subject, method, route)
        if got.status_code not in want:
            wrong.append((method, route, got.status_code, sorted(want), got.text[:120]))
    assert wrong == []


def test_lists_hold_only_records_in_scope(world: World, ids: Ids) -> None:
    for subject, inside in (
        ("grid_worker", True), ("grid_worker_sibling", False), ("village_leader", True),
        ("town_leader_other", False), ("village_leader_other", False),
    ):  # fmt: skip
        h = world.headers[subject]
        unit_ids = {u["id"] for u in world.client.get("/api/key-units", headers=h).json()}
        point_ids = {p["id"] for p in world.client.get(
            "/api/inspections/points", headers=h, params={"limit": 1000}).json()}  # fmt: skip
        assert (ids.unit in unit_ids, ids.point in point_ids) == (inside, inside), subject


def test_refusals_of_audited_actions_are_audited(world: World, ids: Ids) -> None:
    world.client.post(
        f"/api/key-units/{ids.unit}/unmask", json={"reason": "看看"},
        headers=world.headers["grid_worker"],
    )  # fmt: skip
    with world.engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE action = 'unit.unmask' "
                "AND outcome = 'refused'"
            )
        ).scalar_one()
    assert n >= 1
