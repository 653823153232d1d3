"""The app factory, lifespan and error table, through a real HTTP client."""

from __future__ import annotations

import time

import psycopg
from fastapi.testclient import TestClient

from api import create_app
from api.errors import status_for
from geogrid.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from geogrid.settings import Settings


def test_health_reaches_postgis(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(Settings(home=tmp_path), database_url=db_url)
    with TestClient(app) as client:
        body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["postgis"].startswith("3.")


def test_server_connections_are_warm_and_plan_per_request(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from api.app import WARM_CONNECTIONS

    app = create_app(Settings(home=tmp_path), database_url=db_url)
    with TestClient(app):
        engine = app.state.engine
        # the lifespan opened and exercised the pool before the first request (the plan
        # jobs' start-up recovery may hold one of them for a moment, in its own thread)
        deadline = time.monotonic() + 10
        while engine.pool.checkedin() != WARM_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.pool.checkedin() == WARM_CONNECTIONS
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
            assert conn.exec_driver_sql("SHOW application_name").scalar() == "geogrid-api"
            assert conn.exec_driver_sql("SHOW jit").scalar() == "off"


def test_an_unreachable_database_does_not_stop_start_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = "postgresql://nobody:wrong@127.0.0.1:9/none"  # port 9 (discard): refused
    app = create_app(Settings(home=tmp_path), database_url=url)
    with TestClient(app) as client:
        r = client.get("/health")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json()["code"] == "DatabaseUnavailable"
    assert "127.0.0.1" not in r.text and "nobody" not in r.text  # no connection details


def test_an_unmigrated_database_does_not_stop_start_up(pg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = pg.create_database(template="template0")
    try:
        with psycopg.connect(pg.url(name).replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")  # PostGIS, but no geogrid tables yet
        app = create_app(Settings(home=tmp_path), database_url=pg.url(name))
        with TestClient(app) as client:  # the warm-up fails quietly; the app is up
            assert client.get("/health").json()["status"] == "ok"
    finally:
        pg.drop_database(name)


def test_domain_errors_map_to_4xx() -> None:
    assert status_for(InvalidInput("x")) == 400
    assert status_for(NotFound("x")) == 404
    assert status_for(Conflict("x")) == 409
    assert status_for(IllegalTransition("x")) == 409
