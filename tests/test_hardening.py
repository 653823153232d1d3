"""Issue 9 §0 and §5: the open doors closed, tried against the real app over real PostGIS.

One app per module over a copy of the loaded sample town (TestClient; server exceptions are
answered, not raised, as a real server would). Its settings point the file-serving routes at
temporary folders each holding a symlink that leads out to a secret file; the secret must
never appear in any answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from api.routes.plans import get_plan_jobs
from api.security import RequestGuard, RequestRejected, basemap_sources, content_security_policy
from geogrid import store
from geogrid.access import users
from geogrid.access.scope import Scope
from geogrid.planner import photos
from geogrid.plans import PlanJobs
from geogrid.settings import Settings
from tiles import pages as tp

SECRET = "canary-db-password-7f3a"
EVIL = "http://evil.example"
PORTAL = "https://portal.example"
NODE_MODULES = Path(tp.__file__).resolve().parents[1] / "node_modules"


@dataclass
class Api:
    client: TestClient
    engine: Engine
    settings: Settings
    home: Path
    secret: Path
    auth: dict[str, dict[str, str]]  # role → Authorization header of a user in the town

    def as_(self, method: str, url: str) -> dict[str, str]:
        """Credentials for a request: plan writes need a planner, the rest a town leader."""
        writes = method == "POST" and url.startswith("/api/plans")
        return self.auth["planner" if writes else "town_leader"]


def _sign_in(client: TestClient, engine: Engine, town: str) -> dict[str, dict[str, str]]:
    """A planner and a town leader of ``town``, signed in through the OAuth2 password flow."""
    auth = {}
    for role in ("planner", "town_leader"):
        with engine.begin() as conn:
            _, password = users.add_user(
                conn, username=f"hardening-{role}", role=role, scope=Scope.parse(town),
                must_change_password=False,
            )  # fmt: skip
        r = client.post("/api/auth/token", data={"username": f"hardening-{role}",
                                                 "password": password})  # fmt: skip
        assert r.status_code == 200, r.text
        auth[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return auth


def _folders(root: Path) -> dict[str, Path]:
    """Photo, base-map, npm and static folders, each with a symlink to the secret file."""
    secret = root / "outside" / "cluster.json"
    secret.parent.mkdir(parents=True)
    secret.write_text(json.dumps({"password": SECRET}))
    photos = root / "photos"
    photos.mkdir()
    (photos / "ok.png").write_bytes(b"\x89PNG fake photo")
    (photos / "evil.png").symlink_to(secret)
    tiles = root / "basemap" / "1" / "0"
    tiles.mkdir(parents=True)
    (tiles / "0.png").write_bytes(b"\x89PNG fake tile")
    (tiles / "1.png").symlink_to(secret)
    npm = root / "node_modules" / "leaflet"
    (npm / "dist").mkdir(parents=True)
    (npm / "dist" / "leaflet.js").write_text("/* leaflet */")
    (npm / "dist" / "link.js").symlink_to(secret)
    (npm / "package.json").write_text(SECRET)
    static = root / "static"
    static.mkdir()
    (static / "geogrid.css").write_text("body {}")
    (static / "link.js").symlink_to(secret)
    (static / "up").symlink_to(root / "outside")
    return {"secret": secret, "photos": photos, "basemap": root / "basemap",
            "npm": root / "node_modules", "static": static}  # fmt: skip


@pytest.fixture(scope="module")
def api(pg, _town_template: str, sample_town, tmp_path_factory) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    root = tmp_path_factory.mktemp("hardening")
    f = _folders(root)
    home = root / "home"
    home.mkdir()
    (home / "cluster.json").write_text(json.dumps({"password": SECRET}))
    settings = Settings(
        home=home,
        photo_dir=f["photos"],
        basemap="xyz",
        basemap_dir=f["basemap"],
        node_modules=f["npm"],
        cors_origins=[PORTAL],
        trusted_origins=["https://proxy.example"],
    )
    app = create_app(settings, database_url=url)
    engine = store.make_engine(url)
    runner = PlanJobs(engine, jobs=1)
    app.dependency_overrides[get_plan_jobs] = lambda: runner

    @app.get("/test/boom", include_in_schema=False)
    def boom() -> None:  # an unexpected failure carrying SQL and a secret in its message
        raise RuntimeError(f"[SQL: SELECT * FROM people WHERE name = %(n)s] [parameters: {SECRET}]")

    @app.get("/test/framed", include_in_schema=False)
    def framed(request: Request) -> dict[str, str]:
        request.state.frame_ancestors = [PORTAL, "https://x.example; script-src *", "*"]
        return {"ok": "framed"}

    mp = pytest.MonkeyPatch()
    mp.setattr(tp, "STATIC_DIR", f["static"])
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            auth = _sign_in(c, engine, sample_town.town_code)
            yield Api(c, engine, settings, home, f["secret"], auth)
    finally:
        mp.undo()
        runner.shutdown()
        engine.dispose()
        pg.drop_database(name)


def assert_error(resp: Any, *statuses: int) -> dict[str, Any]:
    """The answer is one of ``statuses`` with the ErrorPublic shape and no secret."""
    assert resp.status_code in statuses, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("description"), str) and body["description"], body
    assert SECRET not in resp.text
    return dict(body)


# -- arbitrary file read -------------------------------------------------------------------


def _escape_urls(home: Path) -> list[str]:
    return [
        "/assets/static//etc/passwd",
        f"/assets/static/{home}/cluster.json",
        f"/assets/static//{home}/cluster.json",
        "/assets/static/%2Fetc%2Fpasswd",
        f"/assets/static/%2F{str(home)[1:].replace('/', '%2F')}%2Fcluster.json",
        "/assets/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/assets/static/%2E%2E%2Foutside%2Fcluster.json",
        "/assets/static/.%2Fgeogrid.css",
        "/assets/static/geogrid.css%00.js",
        "/assets/static/link.js",  # a symlink in the folder pointing out of it
        "/assets/static/up/cluster.json",  # a symlinked folder
        "/assets/static/..\\..\\outside\\cluster.json",
        "/assets/npm/leaflet/dist/link.js",
        "/assets/npm/leaflet/package.json",
        "/assets/npm/leaflet/dist/%2e%2e/package.json",
        "/assets/npm/leaflet/dist/..%2Fpackage.json",
        "/assets/npm/leaflet/dist//etc/passwd",
        "/assets/npm/leaflet/dist/%2Fetc%2Fpasswd",
        "/assets/npm/%2e%2e/leaflet/package.json",
        "/assets/npm/leaflet/dist/leaflet.js%00",
        "/basemap/1/0/1.png",  # a symlinked tile
        "/basemap/1/0/%2e%2e.png",
        "/basemap/-1/0/0.png",
    ]


def test_file_routes_refuse_every_escape(api: Api) -> None:
    for url in _escape_urls(api.home):
        resp = api.client.get(url)
        assert_error(resp, 400, 404)
        assert "root:" not in resp.text, url


def test_file_routes_still_serve_their_files(api: Api) -> None:
    c = api.client
    assert c.get("/assets/static/geogrid.css").text == "body {}"
    assert c.get("/assets/npm/leaflet/dist/leaflet.js").text == "/* leaflet */"
    assert c.get("/basemap/1/0/0.png").content == b"\x89PNG fake tile"


@pytest.mark.parametrize(
    "relative",
    ["", "/etc/passwd", "//etc/passwd", "../outside/cluster.json", "a/../../x", "./geogrid.css",
     ".hidden", "geogrid.css\x00", "..\\outside", "link.js", "up/cluster.json", "up", "missing"],
)  # fmt: skip
def test_containment_check_refuses(api: Api, relative: str) -> None:
    assert tp.contained_file(tp.STATIC_DIR, relative) is None


def test_staff_photo_symlink_is_not_followed(api: Api) -> None:
    with api.engine.begin() as conn:
        ids = {
            photo: conn.execute(
                text("INSERT INTO staff (name, photo) VALUES ('王五', :p) RETURNING id"),
                {"p": photo},
            ).scalar_one()
            for photo in ("ok.png", "evil.png", "../outside/cluster.json", "/etc/passwd")
        }
    assert api.client.get(f"/public/photos/{ids['ok.png']}").content == b"\x89PNG fake photo"
    for photo in ("evil.png", "../outside/cluster.json", "/etc/passwd"):
        resp = api.client.get(f"/public/photos/{ids[photo]}")
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/svg+xml"
        assert SECRET not in resp.text and "root:" not in resp.text
    with pytest.raises(Exception, match="no such photo"):
        photos.staff_photo(api.settings, "evil.png")


# -- no 500 on bad input -------------------------------------------------------------------

HUGE = "99999999999999999999999"
BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/ogc/collections/grids/items?code=a%00b", None),
    ("GET", "/ogc/collections/cases/items?category=%00", None),
    ("GET", "/ogc/collections/villages/items/%00", None),
    ("GET", "/ogc/collections/%00/items", None),
    ("GET", "/ogc/collections/cases/items?datetime=2025-01-01%00", None),
    ("GET", f"/ogc/collections/cases/items?offset={HUGE}", None),
    ("GET", f"/ogc/collections/cases/items?limit={HUGE}", None),
    ("GET", "/ogc/collections/cases/items?offset=-1", None),
    ("GET", "/api/stats/cases-by-grid?category=a%00", None),
    ("GET", f"/api/stats/cases-by-grid?plan={HUGE}", None),
    ("GET", "/api/heat?bbox=1,2,3,4%00&z=3", None),
    ("GET", f"/api/heat?bbox=1,2,3,4&z={HUGE}", None),
    ("GET", "/public/grids.geojson?town=%00", None),
    ("GET", "/public/grids.geojson?town=4201%00", None),
    ("GET", "/api/plans?town=%00", None),
    ("GET", f"/api/plans/{HUGE}", None),
    ("GET", f"/api/plans/{HUGE}/grids", None),
    ("GET", f"/api/plans/1/diff/{HUGE}", None),
    ("GET", f"/public/photos/{HUGE}", None),
    ("GET", f"/planner/plans/{HUGE}/groups.geojson", None),
    ("GET", f"/planner?plan={HUGE}", None),
    ("GET", f"/tiles/grids/{HUGE}/0/0.mvt", None),
    ("GET", f"/tiles/grids/3/{HUGE}/0.mvt", None),
    ("GET", f"/tiles/grids/3/0/0.mvt?plan={HUGE}", None),
    ("GET", "/tiles/cases/3/0/0.mvt?category=%00", None),
    ("GET", "/tiles/gr%00ids.json", None),
    ("GET", f"/basemap/{HUGE}/0/0.png", None),
    ("GET", "/embed/grids%00", None),
    ("GET", "/api/jobs/%00", None),
    ("PUT", "/api/grids/420117105201001/staff", {"role": "leader", "name": "张\u0000三"}),
    ("PUT", "/api/grids/420117105201001/staff", {"role": "leader", "name": "x", "duties": "\x00"}),
    ("PUT", "/api/grids/420117105201001/staff", {"role": "leader", "staff_id": int(HUGE)}),
    ("POST", "/api/plans", {"town": "420117105000", "name": "方案\u0000"}),
    ("POST", "/api/plans", {"town": "420117105000", "target": int(HUGE)}),
    ("POST", "/api/plans/1/moves", {"group": "420117105201/3", "to": "4201171052010\u00001"}),
]


@pytest.mark.parametrize(("method", "url", "body"), BAD_REQUESTS)
def test_bad_input_is_a_400_never_a_500(api: Api, method: str, url: str, body: Any) -> None:
    resp = api.client.request(method, url, json=body, headers=api.as_(method, url))
    assert_error(resp, 400)


def test_nul_in_a_form_body_is_refused(api: Api, draft_plan: int) -> None:
    resp = api.client.post(
        f"/api/plans/{draft_plan}/activate", content=b"note=a%00b",
        headers={"content-type": "application/x-www-form-urlencoded", **api.auth["planner"]},
    )  # fmt: skip
    assert_error(resp, 400)
    assert _status(api, draft_plan) == "draft"


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "text/json"])
def test_nul_in_json_under_any_content_type_is_refused(api: Api, content_type: str | None) -> None:
    body = json.dumps({"role": "leader", "name": "张\u0000三"}).encode()
    headers = {
        **api.auth["town_leader"],
        **({"content-type": content_type} if content_type else {}),
    }
    resp = api.client.put("/api/grids/420117105201001/staff", content=body, headers=headers)
    assert_error(resp, 400)


def test_an_escaped_backslash_before_u0000_is_text_not_nul(api: Api) -> None:
    """The text ``\\u0000`` (a backslash, then u0000; ``\\\\u0000`` in JSON) is not a NUL."""
    body = {"role": "leader", "name": "a\\u0000b"}
    resp = api.client.put(
        "/api/grids/420117105201001/staff", json=body, headers=api.auth["town_leader"]
    )
    assert resp.status_code in (200, 404), resp.text


def test_nul_in_a_header_value_is_refused(api: Api) -> None:
    """httpx refuses to send a NUL in a header, so the guard gets the ASGI scope itself."""
    guard = RequestGuard(api.client.app, max_body_bytes=1024, allowed_origins=())
    scope = {"type": "http", "method": "GET", "path": "/api/plans/1", "query_string": b"",
             "raw_path": b"/api/plans/1", "headers": [(b"if-none-match", b'"a\x00b"')]}  # fmt: skip
    with pytest.raises(RequestRejected, match="NUL"):
        guard.check_request(scope)


def test_unexpected_error_is_a_clean_500_logged_without_data(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.security"):
        resp = api.client.get("/test/boom")
    body = assert_error(resp, 500)
    assert body["code"] == "InternalError"
    assert "SQL" not in resp.text and "Traceback" not in resp.text
    ref = body["description"].rsplit(" ", 1)[-1].rstrip(")")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ref in logged and "RuntimeError" in logged
    assert SECRET not in logged and "SELECT" not in logged


def test_failed_job_reports_a_clean_error(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    """A plan job failing in the database: no SQL, no parameters in the job or the log."""
    with api.engine.begin() as conn:
        conn.execute(text("""
            CREATE FUNCTION refuse_plans() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'refused by the test for %', NEW.name; END $$;
            CREATE TRIGGER refuse_plans BEFORE INSERT ON plans
               FOR EACH ROW EXECUTE FUNCTION refuse_plans();
        """))  # fmt: skip
    try:
        with api.engine.connect() as conn:
            code = conn.execute(text("SELECT code FROM admin_areas WHERE level='town'")).scalar()
        planner = api.auth["planner"]
        with caplog.at_level(logging.WARNING):
            resp = api.client.post(
                "/api/plans", json={"town": code, "name": SECRET}, headers=planner
            )
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["id"]
            deadline = time.monotonic() + 120
            while (body := api.client.get(f"/api/jobs/{job_id}", headers=planner).json())[
                "status"
            ] not in (
                "done",
                "failed",
            ):
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        with api.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_plans ON plans; DROP FUNCTION refuse_plans()"))
    assert body["status"] == "failed"
    assert body["error_type"] == "InternalError" and body["error"]
    raw = json.dumps(body, ensure_ascii=False)
    for leak in (SECRET, "INSERT", "SQL", "refused by the test", "parameters"):
        assert leak not in raw
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert job_id in logged and SECRET not in logged and "INSERT" not in logged


# -- body size -----------------------------------------------------------------------------

FIFTY_MB = 50 * 1024 * 1024


def test_a_50_mb_body_is_refused(api: Api) -> None:
    body = b'{"town": "' + b"4" * FIFTY_MB + b'"}'
    resp = api.client.post("/api/plans", content=body, headers={"content-type": "application/json"})
    assert assert_error(resp, 413)["code"] == "PayloadTooLarge"


def test_a_50_mb_chunked_body_is_refused_as_it_arrives(api: Api) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"town": "'
        for _ in range(50):
            sent += 1
            yield b"4" * (1024 * 1024)
        yield b'"}'

    resp = api.client.post(
        "/api/plans", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in resp.request.headers}
    assert assert_error(resp, 413)["code"] == "PayloadTooLarge"


def test_a_lying_content_length_is_refused(api: Api) -> None:
    resp = api.client.post(
        "/api/plans", content=b"{}", headers={"content-type": "application/json",
                                              "content-length": "abc"}
    )  # fmt: skip
    assert_error(resp, 400)


# -- cross-site requests -------------------------------------------------------------------


@pytest.fixture
def draft_plan(api: Api) -> int:
    with api.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO plans (town_code, name, status) SELECT code, '草案', 'draft' "
                    "FROM admin_areas WHERE level = 'town' LIMIT 1 RETURNING id"
                )
            ).scalar_one()
        )


def _status(api: Api, plan_id: int) -> str:
    with api.engine.connect() as conn:
        return str(
            conn.execute(text("SELECT status FROM plans WHERE id = :i"), {"i": plan_id}).scalar()
        )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Referer": f"{EVIL}/attack.html"},
        {"Referer": "not a url"},
        {"Origin": EVIL, "Referer": "http://testserver/planner"},
    ],
)
def test_cross_site_form_post_is_refused(
    api: Api, draft_plan: int, headers: dict[str, str]
) -> None:
    resp = api.client.post(
        f"/api/plans/{draft_plan}/activate",
        data={"confirm": "1"},  # form-encoded, as a hostile page's <form> would send it
        headers={**headers, **api.auth["planner"]},  # refused even with valid credentials
    )
    assert assert_error(resp, 403)["code"] == "Forbidden"
    assert _status(api, draft_plan) == "draft"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts with an API token
        {"Origin": "http://testserver"},
        {"Referer": "http://testserver/planner?plan=1"},
        {"Origin": PORTAL},  # a configured CORS origin
        {"Origin": "https://proxy.example"},  # a trusted origin
    ],
)
def test_same_site_and_non_browser_posts_pass(
    api: Api, draft_plan: int, headers: dict[str, str]
) -> None:
    resp = api.client.post(
        f"/api/plans/{draft_plan}/activate", headers={**headers, **api.auth["planner"]}
    )
    assert resp.status_code == 200, resp.text
    assert _status(api, draft_plan) == "active"


def test_safe_methods_are_not_origin_checked(api: Api) -> None:
    headers = {"Origin": EVIL, **api.auth["town_leader"]}
    assert api.client.get("/api/plans", headers=headers).status_code == 200


# -- error shapes and the OpenAPI document -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("GET", "/no/such/route", {}, 404),
        ("DELETE", "/api/plans", {}, 405),
        ("POST", "/api/plans", {"content": b"{not json", "headers": {"content-type":
                                                                     "application/json"}}, 400),
        ("POST", "/api/plans", {"content": b"town=1", "headers": {"content-type": "text/plain"}},
         400),
        ("POST", "/api/plans", {"json": {"town": "x"}}, 400),
        ("POST", "/api/plans", {"json": {"town": "420117105000", "unknown": 1}}, 400),
        ("GET", "/api/plans/abc", {}, 400),
        ("GET", "/api/jobs/" + "0" * 32, {}, 404),
        ("GET", "/embed/nothing", {}, 404),
        ("GET", "/tiles/nothing/1/0/0.mvt", {}, 404),
    ],
)  # fmt: skip
def test_every_error_has_the_documented_shape(
    api: Api, method: str, url: str, kwargs: dict[str, Any], status: int
) -> None:
    headers = {**kwargs.pop("headers", {}), **api.as_(method, url)}
    assert_error(api.client.request(method, url, headers=headers, **kwargs), status)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_openapi_lists_the_error_statuses_with_errorpublic(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(doc)
    refs = set(json.dumps(doc).split('"$ref": "')[1:])
    for ref in refs:
        _resolve(doc, ref.split('"', 1)[0])  # every reference resolves
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "422" not in responses, (method, path)
            expected = {"400", "413", "500", "503"} | ({"403"} if method != "get" else set())
            expected |= {"404"} if "{" in path else set()
            assert expected <= set(responses), (method, path, sorted(responses))
            for status, response in responses.items():
                if status[0] in "45":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    schema = _resolve(doc, ref)
                    if path.startswith("/open311/"):  # GeoReport v2 answers errors as arrays
                        assert schema["type"] == "array", (method, path)
                        schema = schema["items"]
                    assert schema["required"] == ["code", "description"], (method, path)


# -- browser security ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/", "/api/plans", "/assets/static/geogrid.css", "/no/such/route", "/test/boom"]
)
def test_security_headers_on_every_response(api: Api, url: str) -> None:
    resp = api.client.get(url)
    csp = resp.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"].startswith("'self' 'nonce-")
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "same-origin"


def test_nonce_changes_per_response(api: Api) -> None:
    a, b = (api.client.get("/api/plans").headers["content-security-policy"] for _ in range(2))
    assert a != b


def test_frame_ancestors_hook(api: Api) -> None:
    """A route names the origins that may frame it; anything but a plain origin is dropped."""
    csp = api.client.get("/test/framed").headers["content-security-policy"]
    assert csp.endswith(f"frame-ancestors 'self' {PORTAL}")
    assert csp.count("script-src") == 1


def test_hsts_only_over_https(api: Api) -> None:
    assert "strict-transport-security" not in api.client.get("/api/plans").headers
    tls = api.client.get("https://testserver/assets/static/geogrid.css")
    assert tls.headers["strict-transport-security"].startswith("max-age=")


def test_csp_names_the_configured_base_map() -> None:
    tdt = Settings(basemap="tianditu", tianditu_key="k")
    assert basemap_sources(tdt) == ["https://*.tianditu.gov.cn"]
    xyz = Settings(basemap="gcj02", basemap_url="https://wprd0{s}.amap.lan/t/{z}/{x}/{y}")
    assert basemap_sources(xyz) == ["https://*.amap.lan"]
    odd = Settings(basemap="xyz", basemap_url="https://t.{s}.amap.lan/{z}/{x}/{y}")
    assert basemap_sources(odd) == ["https:"]
    assert basemap_sources(Settings(basemap="xyz", basemap_dir="/srv/t")) == []
    csp = content_security_policy("n", extra_sources=basemap_sources(tdt))
    assert "img-src 'self' data: blob: https://*.tianditu.gov.cn" in csp


def test_cors_allows_only_configured_origins(api: Api) -> None:
    c = api.client
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}  # fmt: skip
    ok = c.options("/api/plans", headers={"Origin": PORTAL, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == PORTAL
    bad = c.options("/api/plans", headers={"Origin": EVIL, **preflight})
    assert_error(bad, 403)
    assert "access-control-allow-origin" not in bad.headers
    for url in ("/api/plans", "/tiles/grids.json", "/tiles/grids/3/0/0.mvt"):
        evil = c.get(url, headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in evil.headers, url
        portal = c.get(url, headers={"Origin": PORTAL})
        assert portal.headers["access-control-allow-origin"] == PORTAL, url


@pytest.mark.parametrize(
    ("content_type", "size", "refused"),
    [
        ("application/json", 2000, True),  # over the body limit
        ("multipart/form-data; boundary=x", 2000, False),  # an upload: over it, allowed
        ("multipart/form-data; boundary=x", 5000, True),  # over the upload limit
        ("application/x-www-form-urlencoded", 2000, True),
    ],
)
def test_uploads_have_their_own_larger_limit(content_type: str, size: int, refused: bool) -> None:
    """Photos from phones exceed the 1 MiB body limit: multipart bodies get the upload
    limit, counted as they arrive like every other body (no Content-Length here)."""
    import anyio

    received: list[bytes] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        while True:
            message = await receive()
            received.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = RequestGuard(app, max_body_bytes=1024, max_upload_bytes=4096, allowed_origins=())
    chunks = [b"a" * 500] * (size // 500)
    statuses: list[int] = []

    async def receive():  # type: ignore[no-untyped-def]
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):  # type: ignore[no-untyped-def]
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    headers = [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": "/upload", "query_string": b"",
             "raw_path": b"/upload", "headers": headers}  # fmt: skip
    anyio.run(guard, scope, receive, send)
    assert statuses == [413 if refused else 200]
    assert (sum(map(len, received)) == size) is not refused
