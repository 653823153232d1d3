"""/metrics, request ids and structured logs over real HTTP (TestClient) against a copy of
the sample town: counters move per route template, the address rule, ids echoed, JSON
lines that parse, and nothing personal in either. The real-server tests (several workers,
the logs of ``geogrid serve``) are in test_ops_workers_serve.py."""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api import create_app
from geogrid import store
from geogrid.ops.logs import JsonFormatter, RequestIdFilter, log_config, request_id
from geogrid.people.crypto import key_provider
from geogrid.people.idcard import check_character
from geogrid.people.load import import_members
from geogrid.settings import Settings
from tests.conftest import make_home

NAME, PHONE = "欧阳明月", "13987654321"
ID_NUMBER = "42011719850607002" + check_character("42011719850607002")
REPORTER = ("司马青云", "15811112222")
CANARIES = [NAME, PHONE, ID_NUMBER, *REPORTER, PHONE[-4:] + ID_NUMBER[-6:]]
ALLOWED = "127.0.0.1"


@dataclass
class Site:
    client: TestClient
    app: Any
    url: str
    member: int
    headers: dict[str, str]  # a town leader with the unmask permission, scope all
    service: str  # an Open311 service code
    point: tuple[float, float]  # inside the town


@pytest.fixture(scope="module")
def site(pg, _town_template: str, account_maker) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    home = make_home("geogrid-metrics-")
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            village, village_name, reg = conn.execute(
                text(
                    "SELECT h.village_code, a.name, h.register_no FROM households h "
                    "JOIN admin_areas a ON a.code = h.village_code ORDER BY h.id LIMIT 1"
                )
            ).one()
            lon, lat = conn.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p "
                    "FROM admin_areas WHERE code = :v) q"
                ),
                {"v": village},
            ).one()
            service = conn.execute(
                text(
                    "SELECT min(code) FROM case_categories WHERE parent_code IS NOT NULL AND active"
                )
            ).scalar_one()
        members = home / "members.csv"
        with members.open("w", encoding="utf-8", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["村", "户号", "姓名", "与户主关系", "公民身份号码", "联系电话"])
            out.writerow([village_name, reg, NAME, "户主", ID_NUMBER, PHONE])
        assert import_members(engine, members, key_provider(home, env={}, create=True)).inserted
        members.unlink()
        with engine.connect() as conn:
            member = conn.execute(text("SELECT max(id) FROM household_members")).scalar_one()
        settings = Settings(home=home, metrics_allow=f"{ALLOWED}/32, 10.20.0.0/16")
        app = create_app(settings, database_url=url)
        app.state.open311_limits = (100_000, 3600)
        with TestClient(app, client=(ALLOWED, 50000)) as client:
            leader = account_maker(url, "town_leader", "all", ("unmask",)).headers(client)
            yield Site(client, app, url, int(member), leader, str(service), (lon, lat))
    finally:
        engine.dispose()
        pg.drop_database(name)


@pytest.fixture(scope="module")
def signed_in(site: Site, account_maker) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """Anonymous, the system administrator and a viewer: the role never matters here."""
    return {
        "anonymous": {},
        "sysadmin": account_maker(site.url, "sysadmin").headers(site.client),
        "viewer": account_maker(site.url, "viewer").headers(site.client),
        "town_leader": site.headers,
    }


def _families(body: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body)}


def _count(body: str, route: str, status: str, method: str = "GET") -> float:
    fam = _families(body)["geogrid_http_request_duration_seconds"]
    return sum(
        s.value
        for s in fam.samples
        if s.name == "geogrid_http_request_duration_seconds_count"
        and s.labels == {"route": route, "method": method, "status": status}
    )


def test_counters_move_per_route_template_and_status_class(site: Site) -> None:
    c = site.client
    before = c.get("/metrics")
    assert before.status_code == 200, before.text
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    job_id = "0123456789abcdef" * 2
    for _ in range(3):
        assert c.get("/health").status_code == 200
        assert c.get(f"/api/jobs/{job_id}", headers=site.headers).status_code == 404
    assert c.get("/no/such/page/4711").status_code == 404
    after = c.get("/metrics").text
    assert _count(after, "/health", "2xx") - _count(before.text, "/health", "2xx") == 3
    assert (
        _count(after, "/api/jobs/{job_id}", "4xx")
        - _count(before.text, "/api/jobs/{job_id}", "4xx")
        == 3
    )
    assert _count(after, "unmatched", "4xx") >= 1
    # templates only: no raw path, id or unmatched path as a label
    assert job_id not in after and "4711" not in after and "/no/such" not in after
    fams = _families(after)
    hist = fams["geogrid_http_request_duration_seconds"]
    counts = [
        s.value
        for s in hist.samples
        if s.name.endswith("_count") and s.labels.get("route") == "/health"
    ]
    assert counts and counts[0] >= 3
    # the pool of this app (size + overflow), the tile cache and the job queue are there
    assert fams["geogrid_db_pool_size"].samples[0].value >= 1
    assert fams["geogrid_db_pool_checked_out"].samples[0].value >= 0
    jobs = {s.labels["status"]: s.value for s in fams["geogrid_plan_jobs"].samples}
    assert set(jobs) == {"queued", "running", "done", "failed"}
    tile = c.get("/tiles/villages/10/842/416.mvt")
    assert tile.status_code in (200, 204), tile.text
    c.get("/tiles/villages/10/842/416.mvt")
    cache = {
        s.labels["result"]: s.value
        for s in _families(c.get("/metrics").text)["geogrid_tile_cache_requests"].samples
        if s.name.endswith("_total")
    }
    assert cache.get("miss", 0) >= 1 and cache.get("hit", 0) >= 1, cache


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.20.3.4", True),
        ("127.0.0.2", False),  # loopback, but not in this site's list
        ("10.21.0.1", False),
        ("192.168.1.10", False),
        ("::1", False),
        ("testclient", False),  # not an address at all
    ],
)
def test_metrics_only_for_allowed_addresses_whoever_signs_in(
    site: Site, signed_in: dict[str, dict[str, str]], address: str, allowed: bool
) -> None:
    with TestClient(site.app, client=(address, 40000)) as other:
        for who, headers in signed_in.items():
            r = other.get("/metrics", headers=headers)
            if allowed:
                assert (
                    r.status_code == 200 and "geogrid_http_request_duration_seconds_count" in r.text
                ), who
            else:
                assert r.status_code == 403, (who, r.text)
                assert r.json()["code"] == "Forbidden"
                assert "GEOGRID_METRICS_ALLOW" in r.json()["description"]
                assert "geogrid_" not in r.text


def test_default_allows_this_machine_only() -> None:
    from api.routes.metrics import allowed

    s = Settings(home="/tmp/unused")
    assert allowed(s, "127.0.0.1") and allowed(s, "::1") and allowed(s, "::ffff:127.0.0.1")
    assert not allowed(s, "10.0.0.1") and not allowed(s, "") and not allowed(s, None)


@pytest.mark.parametrize("bad", ["not-a-network", "10.0.0.0/33", "127.0.0.1/8"])
def test_metrics_allow_refuses_what_is_not_a_network(bad: str) -> None:
    with pytest.raises(ValueError, match="metrics_allow"):
        Settings(home="/tmp/unused", metrics_allow=bad)


def test_request_id_is_echoed_or_made(site: Site) -> None:
    given = "0f8fad5b-d9cb-469f-a165-70867728950e"
    r = site.client.get("/health", headers={"X-Request-ID": given})
    assert r.headers["x-request-id"] == given
    made = site.client.get("/health").headers["x-request-id"]
    again = site.client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and made != again
    # refusals from the outer guards carry one too
    nul = site.client.get("/health?x=%00")
    assert nul.status_code == 400 and re.fullmatch(r"[0-9a-f]{32}", nul.headers["x-request-id"])


#: Incoming ids that are replaced (one per rule: a UUID or 32 hex digits, nothing else).
BAD_IDS = {
    "phone number": PHONE,
    "ID number": ID_NUMBER,
    "a name": "request-欧阳明月",
    "too short": "0f8fad5b",
    "not hex": "0f8fad5b-d9cb-469f-a165-70867728950z",
    "too long": "0f8fad5b-d9cb-469f-a165-70867728950e0",
    "free text": "hello world, this is my request",
    "empty": "",
}


@pytest.mark.parametrize("rule", sorted(BAD_IDS))
def test_unfit_incoming_request_ids_are_replaced(site: Site, rule: str) -> None:
    bad = BAD_IDS[rule]
    assert request_id(bad) != bad
    r = site.client.get("/health", headers={"X-Request-ID": bad.encode("utf-8")})
    assert r.status_code == 200
    assert r.headers["x-request-id"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


@pytest.fixture
def json_lines() -> Iterator[list[str]]:
    """Every server-side record while the test runs, formatted as ``geogrid serve`` does
    with ``GEOGRID_LOG_FORMAT=json`` at DEBUG (SQLAlchemy pinned as log_config pins it)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith(("httpx", "httpcore")):  # the test's own client
                lines.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    pinned = {name: spec["level"] for name, spec in log_config("DEBUG", "json")["loggers"].items()}
    saved = {name: logging.getLogger(name).level for name in pinned}
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name, level in pinned.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_json_log_lines_parse_and_carry_the_request(site: Site, json_lines: list[str]) -> None:
    rid = "7d444840-9dc0-11d1-b245-5ffdce74fad2"
    assert site.client.get("/api/plans/2147483000", headers={**site.headers,
                           "X-Request-ID": rid}).status_code == 404  # fmt: skip
    parsed = [json.loads(line) for line in json_lines]
    access = [p for p in parsed if p["logger"] == "geogrid.http" and p["request_id"] == rid]
    assert len(access) == 1, parsed
    line = access[0]
    assert set(line) >= {"time", "level", "logger", "message", "request_id", "route", "status",
                         "duration_ms"}  # fmt: skip
    assert line["route"] == "/api/plans/{plan_id}" and line["status"] == 404
    assert line["level"] == "INFO" and line["duration_ms"] >= 0
    assert "2147483000" not in json.dumps(line)
    assert line["time"].endswith("+00:00")


def test_nothing_personal_in_logs_or_metrics(site: Site, json_lines: list[str]) -> None:
    c, h = site.client, site.headers
    # a search by name and ID number, an unmask (the full values in the answer), an error
    # carrying them, and a resident's report with name and phone
    r = c.post("/api/people/search", json={"name": NAME, "id_number": ID_NUMBER}, headers=h)
    assert r.status_code == 200 and r.json()["items"], r.text
    r = c.post(f"/api/people/{site.member}/unmask", json={"reason": "入户核实"}, headers=h)
    assert r.status_code == 200 and ID_NUMBER in r.text and PHONE in r.text
    bad = c.post("/api/people/search", json={"name": NAME * 30, "phone": PHONE}, headers=h)
    assert bad.status_code == 400
    r = c.post(
        "/open311/v2/requests.json",
        json={
            "service_code": site.service, "description": "路灯坏了",
            "lat": site.point[1], "long": site.point[0], "first_name": REPORTER[0][2:],
            "last_name": REPORTER[0][:2], "phone": REPORTER[1],
        },
    )  # fmt: skip
    assert r.status_code in (200, 201), r.text
    c.get(f"/api/people?phone={PHONE}&name={NAME}", headers=h)  # in a query string, too
    metrics = c.get("/metrics").text
    logs = "\n".join(json_lines)
    assert json_lines, "nothing was logged: the capture is broken"
    assert sum('"logger": "geogrid.http"' in line for line in json_lines) >= 5
    for canary in CANARIES:
        assert canary not in logs, canary
        assert canary not in metrics, canary
    assert "/api/people/search" in metrics  # the route, counted
    assert f"/api/people/{site.member}/" not in logs + metrics  # the template, not the id


def test_more_requests_at_once_than_threads_do_not_deadlock_the_pool(site: Site) -> None:
    """120 signed-in reads at once (threads: 40, pooled connections: 20): each request in
    flight finds a thread, so every wait for a connection ends (without the admission
    gate they all waited out the pool's 30 s timeout and failed: bench_workers' first run)."""
    from concurrent.futures import ThreadPoolExecutor

    def get(i: int) -> int:
        path = f"/ogc/collections/grids/items?limit=5&offset={i % 7}"
        return site.client.get(path, headers=site.headers).status_code

    t = time.monotonic()
    with ThreadPoolExecutor(120) as pool:
        statuses = list(pool.map(get, range(360)))
    took = time.monotonic() - t
    assert set(statuses) == {200}, sorted(set(statuses))
    assert took < 25, f"{took:.0f} s: requests waited for the pool's timeout"
