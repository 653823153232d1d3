"""/api/assessment over HTTP: the indicator table B's dashboard reads (contract in
/tmp/team/CONTRACTS.md, session 4), and the role matrix of every assessment route (allowed
and refused roles and scopes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import create_app
from geogrid import store
from geogrid.people.crypto import key_provider
from geogrid.settings import Settings
from tests.assessment_support import G1, G2, TOWN, V1, V2, build
from tests.conftest import make_home

SUBJECTS = {
    "leader": ("town_leader", TOWN),
    "vleader": ("village_leader", V1),
    "vleader2": ("village_leader", V2),
    "worker": ("grid_worker", G1),
    "viewer": ("viewer", TOWN),
    "planner": ("planner", TOWN),
    "sysadmin": ("sysadmin", "all"),
    "secadmin": ("secadmin", "all"),
    "auditor": ("auditor", "all"),
    "other": ("town_leader", "420117999000"),
}


@dataclass
class Api:
    client: TestClient
    url: str
    ids: dict[str, int]
    headers: dict[str, dict[str, str]]

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers[who])


@pytest.fixture(scope="module")
def api(pg, account_maker) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    name = pg.create_database()
    url = pg.url(name)
    engine = store.make_engine(url)
    with engine.begin() as conn:
        ids = build(conn)
    engine.dispose()
    accounts = {k: account_maker(url, role, scope) for k, (role, scope) in SUBJECTS.items()}
    home = make_home()
    key_provider(home, env={}, create=True)
    app = create_app(Settings(home=home), database_url=url)
    try:
        with TestClient(app) as client:
            headers: dict[str, dict[str, str]] = {"anonymous": {}}
            headers.update({k: a.headers(client) for k, a in accounts.items()})
            yield Api(client, url, ids, headers)
    finally:
        pg.drop_database(name)


JUNE = {"from": "2026-06-01", "to": "2026-06-30"}


def test_indicator_table_contract(api: Api) -> None:
    r = api.get("leader", "/api/assessment/indicators", level="grid", code=TOWN, **JUNE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == {"from": "2026-06-01", "to": "2026-06-30"}
    assert {"key", "name", "formula", "unit"} <= set(body["indicators"][0])
    rows = {row["code"]: row for row in body["rows"]}
    assert set(rows) == {G1, G2}
    g1 = rows[G1]
    assert g1["level"] == "grid" and g1["name"] == "东村一网格" and g1["households"] == 4
    assert g1["valid_report_rate"] == 0.75 and g1["ontime_close_rate"] == 0.5
    assert rows[G2]["ontime_close_rate"] is None
    towns = api.get("leader", "/api/assessment/indicators", level="town", **JUNE).json()
    assert [row["code"] for row in towns["rows"]] == [TOWN]


def test_definitions(api: Api) -> None:
    r = api.get("viewer", "/api/assessment/indicators/definitions")
    assert r.status_code == 200
    keys = [d["key"] for d in r.json()]
    assert "satisfaction_rate" in keys and "filing_punctuality" in keys


def test_village_leader_sees_their_village_only(api: Api) -> None:
    r = api.get("vleader2", "/api/assessment/indicators", level="village", **JUNE)
    assert r.status_code == 200
    assert [row["code"] for row in r.json()["rows"]] == [V2]
    r = api.get("vleader2", "/api/assessment/indicators", level="grid", code=G1, **JUNE)
    assert r.status_code == 403
    assert set(r.json()) >= {"code", "description"}
    r = api.get("vleader", "/api/assessment/indicators", level="town", **JUNE)
    assert r.status_code == 403


def test_bad_input(api: Api) -> None:
    bad = [
        {"level": "county"},
        {"code": "12345"},
        {"from": "2026-06-30", "to": "2026-06-01"},
        {"from": "2024-01-01", "to": "2026-01-01"},
        {"from": "June"},
    ]
    for params in bad:
        r = api.get("leader", "/api/assessment/indicators", **params)
        assert r.status_code in (400, 422), (params, r.text)
        assert "description" in r.json()


READS = ("leader", "vleader", "viewer", "planner", "sysadmin")
REFUSED = ("worker", "secadmin", "auditor")


def test_read_matrix(api: Api) -> None:
    for path in ("/api/assessment/indicators/definitions", "/api/assessment/indicators"):
        for who in READS:
            assert api.get(who, path).status_code == 200, (who, path)
        for who in REFUSED:
            assert api.get(who, path).status_code == 403, (who, path)
        assert api.get("anonymous", path).status_code == 401
    # a town leader of another town: refused for this town's code
    r = api.get("other", "/api/assessment/indicators", level="village", code=TOWN)
    assert r.status_code == 403


SCHEME = {
    "name": "网格月度考核", "level": "grid", "area_code": TOWN,
    "thresholds": {"A": 90, "B": 80, "C": 70, "D": 60},
    "items": [{"key": "close_rate", "weight": 60}, {"key": "spot", "kind": "spot", "weight": 40}],
}  # fmt: skip


def test_scheme_and_round_over_http(api: Api) -> None:
    h = api.headers["leader"]
    r = api.client.post("/api/assessment/schemes", json=SCHEME, headers=h)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    bad = {**SCHEME, "items": [{"key": "nope", "weight": 100}]}
    r = api.client.post("/api/assessment/schemes", json=bad, headers=h)
    assert r.status_code == 400 and "nope" in r.json()["description"]
    r = api.client.post("/api/assessment/rounds", json={"scheme_id": sid, "label": "2026-06"},
                        headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    score = {"item_key": "spot", "target_code": G1, "score": 95, "checker": "王", "note": "好"}
    r = api.client.put(f"/api/assessment/rounds/{rid}/scores", json=score, headers=h)
    assert r.status_code == 200, r.text
    r = api.client.post(f"/api/assessment/rounds/{rid}/publish", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "published"
    r = api.client.post(f"/api/assessment/rounds/{rid}/publish", headers=h)
    assert r.status_code == 409
    g1 = {x["target_code"]: x for x in api.get("leader", f"/api/assessment/rounds/{rid}").json()[
        "results"]}[G1]  # fmt: skip
    assert g1["score"] == 98.0 and g1["grade"] == "A"  # (60·100 + 40·95) ÷ 100
    # a village leader sees the rows of their village only; another village's: none
    rows = api.get("vleader", f"/api/assessment/rounds/{rid}/ranking").json()["results"]
    assert {x["target_code"] for x in rows} == {G1, G2}
    assert api.get("vleader2", f"/api/assessment/rounds/{rid}").json()["results"] == []
    assert api.get("other", f"/api/assessment/rounds/{rid}").status_code == 404
    assert [x["id"] for x in api.get("leader", "/api/assessment/rounds").json()] == [rid]
    assert api.get("leader", f"/api/assessment/schemes/{sid}").json()["version"] == 1


def test_manage_matrix(api: Api) -> None:
    """Only town leaders (in their town) and system administrators edit and publish."""
    body = {**SCHEME, "name": "矩阵"}
    for who in ("vleader", "worker", "viewer", "planner", "secadmin", "auditor", "anonymous"):
        r = api.client.post("/api/assessment/schemes", json=body, headers=api.headers[who])
        assert r.status_code == (401 if who == "anonymous" else 403), who
        r = api.client.post("/api/assessment/rounds/1/publish", headers=api.headers[who])
        assert r.status_code == (401 if who == "anonymous" else 403), who
    r = api.client.post("/api/assessment/schemes", json=body, headers=api.headers["other"])
    assert r.status_code == 403  # a town leader of another town
    r = api.client.post("/api/assessment/schemes", json=body, headers=api.headers["sysadmin"])
    assert r.status_code == 201
    sid = r.json()["id"]
    r = api.client.put(f"/api/assessment/schemes/{sid}?version=1", json=body,
                       headers=api.headers["leader"])  # fmt: skip
    assert r.status_code == 200 and r.json()["version"] == 2
    r = api.client.delete(f"/api/assessment/schemes/{sid}", headers=api.headers["vleader"])
    assert r.status_code == 403
    r = api.client.delete(f"/api/assessment/schemes/{sid}", headers=api.headers["leader"])
    assert r.status_code == 204
    for who in READS:
        assert api.get(who, "/api/assessment/schemes").status_code == 200
        assert api.get(who, "/api/assessment/rounds").status_code == 200
    for who in REFUSED:
        assert api.get(who, "/api/assessment/schemes").status_code == 403
        assert api.get(who, "/api/assessment/rounds").status_code == 403


def test_public_figures_and_exports(api: Api) -> None:
    """The public grid map's figures (anyone; only published rounds) and the file exports."""
    before = api.get("anonymous", f"/api/assessment/public/grids/{G2}")
    assert before.status_code == 200
    h = api.headers["leader"]
    sid = api.client.post("/api/assessment/schemes", json={**SCHEME, "name": "公示"},
                          headers=h).json()["id"]  # fmt: skip
    rid = api.client.post("/api/assessment/rounds", json={"scheme_id": sid, "label": "2026-Q2"},
                          headers=h).json()["id"]  # fmt: skip
    # a draft is not public
    draft = api.get("anonymous", f"/api/assessment/public/grids/{G1}").json()["published"]
    assert draft is None or draft["label"] != "2026-Q2"
    assert api.client.post(f"/api/assessment/rounds/{rid}/publish", headers=h).status_code == 200
    pub = api.get("anonymous", f"/api/assessment/public/grids/{G1}").json()["published"]
    # Q2 (April–June) holds June's cases only: closure 1.0, satisfaction 0.5 (see the fixture)
    assert pub["label"] == "2026-Q2" and pub["close_rate"] == 1.0
    assert pub["satisfaction_rate"] == 0.5
    assert set(pub) == {"label", "kind", "period_start", "period_end", "published_at",
                        "close_rate", "satisfaction_rate"}  # fmt: skip
    assert api.get("anonymous", "/api/assessment/public/grids/420117105299001").json() == {
        "code": "420117105299001", "published": None,
    }  # fmt: skip
    assert api.get("anonymous", "/api/assessment/public/grids/12345").status_code == 400
    for fmt, magic in (("xlsx", b"PK"), ("pdf", b"%PDF")):
        r = api.get("viewer", f"/api/assessment/rounds/{rid}/export", format=fmt)
        assert r.status_code == 200 and r.content.startswith(magic), r.text[:200]
        r = api.get("vleader", "/api/assessment/indicators/export", format=fmt, **JUNE)
        assert r.status_code == 200 and r.content.startswith(magic)
        assert f".{fmt}" in r.headers["content-disposition"]
    assert api.get("worker", "/api/assessment/indicators/export").status_code == 403
    assert api.get("leader", "/api/assessment/indicators/export", format="doc").status_code == 400
